"""A small SQL tokenizer: enough to split scripts into statements and to recognise statement shapes.

It is not a parser. It knows PostgreSQL's lexical rules that matter for finding statement boundaries and
keywords safely (single quotes with doubled quotes, ``E''`` escapes, dollar quoting, double-quoted
identifiers, ``--`` and nested ``/* */`` comments), so a keyword inside a string or a comment is never
mistaken for one. The model uses it to reject expressions that would escape their slot (a stray ``;``,
unbalanced parentheses), the linter to match statement shapes.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Kind",
    "SqlTextError",
    "Statement",
    "Token",
    "expression_problem",
    "function_calls",
    "has_phrase",
    "index_table",
    "qualified_name",
    "skip_phrase",
    "split_statements",
    "split_top_level",
    "tokenize",
]


class Kind(StrEnum):
    """What a token is."""

    word = "word"
    quoted = "quoted"  # "identifier"
    string = "string"  # 'text', E'text', $tag$text$tag$
    number = "number"
    punct = "punct"  # ( ) , ; . [ ]
    operator = "operator"


@dataclass(frozen=True)
class Token:
    """One lexical token; ``upper`` is the case-folded text of a word (keywords compare on it)."""

    kind: Kind
    text: str
    line: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind is Kind.word else self.text

    @property
    def name(self) -> str:
        """The identifier this token names: quoted as written, unquoted folded to lower case."""
        if self.kind is Kind.quoted:
            return self.text[1:-1].replace('""', '"')
        return self.text.lower()


@dataclass(frozen=True)
class Statement:
    """The tokens of one statement (without the ``;``), its 1-based index and first line."""

    index: int
    line: int
    tokens: tuple[Token, ...]
    text: str

    @property
    def words(self) -> list[str]:
        return [t.upper for t in self.tokens]


class SqlTextError(ValueError):
    """The text cannot be tokenized (an unterminated string, identifier or comment)."""


_WORD = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_NUMBER = re.compile(r"\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_OPERATOR_CHARS = set("+-*/<>=~!@#%^&|`?:")
_PUNCT = set("(),;.[]")


def tokenize(text: str) -> list[Token]:
    """Tokens of ``text``, skipping whitespace and comments; raise ``SqlTextError`` when unterminated."""
    tokens: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise SqlTextError(f"unterminated /* comment starting on line {line}")
            line += text.count("\n", i, j)
            i = j
        elif c == "'" or (c in "eE" and text.startswith("'", i + 1)):
            start = i
            escapes = c != "'"
            j = i + (2 if escapes else 1)
            while True:
                if j >= n:
                    raise SqlTextError(f"unterminated string starting on line {line}")
                if escapes and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == "'":
                    if text.startswith("''", j):
                        j += 2
                        continue
                    j += 1
                    break
                j += 1
            tokens.append(Token(Kind.string, text[start:j], line))
            line += text.count("\n", start, j)
            i = j
        elif c == '"':
            j = i + 1
            while True:
                end = text.find('"', j)
                if end < 0:
                    raise SqlTextError(f"unterminated quoted identifier starting on line {line}")
                if text.startswith('""', end):
                    j = end + 2
                    continue
                break
            tokens.append(Token(Kind.quoted, text[i : end + 1], line))
            i = end + 1
        elif c == "$" and (m := _DOLLAR_TAG.match(text, i)):
            tag = m.group(0)
            end = text.find(tag, m.end())
            if end < 0:
                raise SqlTextError(f"unterminated dollar-quoted string {tag} starting on line {line}")
            stop = end + len(tag)
            tokens.append(Token(Kind.string, text[i:stop], line))
            line += text.count("\n", i, stop)
            i = stop
        elif m := _WORD.match(text, i):
            tokens.append(Token(Kind.word, m.group(0), line))
            i = m.end()
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m2 = _NUMBER.match(text, i)
            end = m2.end() if m2 else i + 1
            tokens.append(Token(Kind.number, text[i:end], line))
            i = end
        elif c in _PUNCT:
            tokens.append(Token(Kind.punct, c, line))
            i += 1
        elif c in _OPERATOR_CHARS:
            j = i
            while j < n and text[j] in _OPERATOR_CHARS and not text.startswith(("--", "/*"), j):
                j += 1
            tokens.append(Token(Kind.operator, text[i:j], line))
            i = j
        elif c == "$":  # a positional parameter such as $1
            j = i + 1
            while j < n and text[j].isdigit():
                j += 1
            tokens.append(Token(Kind.operator, text[i:j], line))
            i = j
        else:
            tokens.append(Token(Kind.operator, c, line))
            i += 1
    return tokens


def split_statements(text: str) -> list[Statement]:
    """The non-empty statements of a script, split at top-level semicolons."""
    statements: list[Statement] = []
    current: list[Token] = []
    lines = text.splitlines()

    def flush() -> None:
        if current:
            first, last = current[0].line, current[-1].line
            snippet = "\n".join(lines[first - 1 : last]).strip()
            statements.append(Statement(len(statements) + 1, first, tuple(current), snippet))
            current.clear()

    for token in tokenize(text):
        if token.kind is Kind.punct and token.text == ";":
            flush()
        else:
            current.append(token)
    flush()
    return statements


def expression_problem(text: str) -> str | None:
    """Why ``text`` cannot be used as one SQL expression in a generated statement, or None.

    Expressions are placed verbatim inside parentheses in generated DDL and trigger bodies, so they
    must be one balanced expression: no ``;``, no unbalanced parentheses, nothing unterminated.
    """
    if not text.strip():
        return "must not be empty"
    try:
        tokens = tokenize(text)
    except SqlTextError as e:
        return str(e)
    if not tokens:
        return "must contain an expression, not only a comment"
    depth = 0
    for t in tokens:
        if t.kind is Kind.punct and t.text == ";":
            return "must be one expression; ';' is not allowed"
        if t.kind is Kind.punct and t.text == "(":
            depth += 1
        elif t.kind is Kind.punct and t.text == ")":
            depth -= 1
            if depth < 0:
                return "has a ')' without a matching '('"
    if depth:
        return "has a '(' without a matching ')'"
    return None


# -- statement shapes, for the linter and the lock summary ------------------------------------------


def qualified_name(tokens: Sequence[Token], i: int) -> tuple[str, int]:
    """The (unqualified) relation name starting at ``tokens[i]`` and the index after it."""
    name = tokens[i].name if i < len(tokens) else ""
    i += 1
    while i + 1 < len(tokens) and tokens[i].text == "." and tokens[i].kind is Kind.punct:
        name = tokens[i + 1].name
        i += 2
    return name, i


def skip_phrase(words: Sequence[str], i: int, *phrase: str) -> int:
    """Index after ``phrase`` if it starts at ``i``, else ``i``."""
    if list(words[i : i + len(phrase)]) == list(phrase):
        return i + len(phrase)
    return i


def has_phrase(words: Sequence[str], *phrase: str) -> bool:
    n = len(phrase)
    return any(list(words[i : i + n]) == list(phrase) for i in range(len(words) - n + 1))


def split_top_level(tokens: Sequence[Token]) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    depth = 0
    for t in tokens:
        if t.kind is Kind.punct and t.text == "(":
            depth += 1
        elif t.kind is Kind.punct and t.text == ")":
            depth -= 1
        if depth == 0 and t.kind is Kind.punct and t.text == ",":
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]


def function_calls(tokens: Sequence[Token]) -> list[str]:
    return [
        t.name
        for t, nxt in itertools.pairwise(tokens)
        if t.kind is Kind.word and nxt.kind is Kind.punct and nxt.text == "("
    ]


def index_table(s: Statement) -> str:
    words = s.words
    if "ON" not in words:
        return ""
    i = words.index("ON") + 1
    i = skip_phrase(words, i, "ONLY")
    name, _ = qualified_name(s.tokens, i)
    return name
