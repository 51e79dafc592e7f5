"""SQLite SQL text: a tokenizer, and the edits a table rebuild makes to a ``CREATE TABLE`` statement.

SQLite keeps every table's definition as the text of its ``CREATE TABLE`` statement and changes a
column's type, nullability or default only by creating a table from edited text and copying the rows.
Rebuilding the text from ``PRAGMA table_info`` would lose what the pragmas do not show (CHECK
constraints, collations, ``ON CONFLICT`` clauses, ``WITHOUT ROWID``), so the rebuild edits the original
text instead: the tokenizer below understands SQLite's quoting ('...', "...", `...`, [...]) and
comments, splits the column list at top-level commas, and replaces only the clauses it changes.

Pure functions of strings: no database is involved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CONSTRAINT_WORDS",
    "KEEP",
    "CreateTableText",
    "Token",
    "affinity",
    "column_item_name",
    "edit_column",
    "is_identity",
    "is_literal",
    "mentions",
    "parse_create_table",
    "quote",
    "tokenize",
]

TokenKind = Literal["space", "comment", "string", "blob", "ident", "number", "word", "param", "punct"]

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<blob>[xX]'[0-9A-Fa-f]*')
  | (?P<string>'(?:[^']|'')*(?:'|\Z))
  | (?P<ident>"(?:[^"]|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z)|\[[^\]]*(?:\]|\Z))
  | (?P<number>0[xX][0-9A-Fa-f]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)
  | (?P<param>[?:@$][A-Za-z0-9_]*)
  | (?P<punct>\|\||<<|>>|<=|>=|==|!=|<>|->>|->|.)
    """,
    re.VERBOSE | re.DOTALL,
)

CONSTRAINT_WORDS = frozenset(
    {
        "CONSTRAINT",
        "PRIMARY",
        "NOT",
        "NULL",
        "UNIQUE",
        "CHECK",
        "DEFAULT",
        "COLLATE",
        "REFERENCES",
        "GENERATED",
        "AS",
    }
)
"""Words that end a column's type and start its constraints."""

_TABLE_CONSTRAINT_WORDS = frozenset({"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str

    @property
    def significant(self) -> bool:
        return self.kind not in ("space", "comment")

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str | None:
        """The identifier this token names (unquoted), or None when it is not an identifier."""
        if self.kind == "word":
            return self.text
        if self.kind == "ident":
            body = self.text[1:-1] if len(self.text) >= 2 else self.text[1:]
            if self.text[0] == "[":
                return body
            q = self.text[0]
            return body.replace(q + q, q)
        if self.kind == "string":  # SQLite accepts 'name' where an identifier is expected
            return self.text[1:-1].replace("''", "'")
        return None


def tokenize(sql: str) -> list[Token]:
    """Every token of ``sql``, whitespace and comments included, so joining them gives ``sql`` back."""
    out: list[Token] = []
    for m in _TOKEN_RE.finditer(sql):
        kind = m.lastgroup
        if kind is None:  # pragma: no cover - every character matches some alternative
            continue
        out.append(Token(kind, m.group()))  # type: ignore[arg-type]
    return out


def quote(name: str) -> str:
    """An identifier as SQLite reads it back exactly: double-quoted, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def mentions(sql: str, name: str) -> bool:
    """Whether ``sql`` uses the identifier ``name`` anywhere (case-insensitively, as SQLite compares names).

    A conservative test: a string literal with the same text does not count, an unrelated column of
    another table with the same name does.
    """
    wanted = name.lower()
    return any(t.kind in ("word", "ident") and (t.name or "").lower() == wanted for t in tokenize(sql))


def _significant(tokens: list[Token]) -> list[tuple[int, Token]]:
    return [(i, t) for i, t in enumerate(tokens) if t.significant]


@dataclass(frozen=True)
class CreateTableText:
    """A ``CREATE TABLE`` statement split into the parts a rebuild edits."""

    name: str
    items: tuple[str, ...]
    """Column definitions and table constraints, as written, without the separating commas."""
    tail: str
    """What follows the closing parenthesis (``WITHOUT ROWID``, ``STRICT``)."""

    def render(self, name: str | None = None) -> str:
        body = ",\n  ".join(self.items)
        return f"CREATE TABLE {quote(name or self.name)} (\n  {body}\n){self.tail}"

    def column_index(self, column: str) -> int | None:
        wanted = column.lower()
        for i, item in enumerate(self.items):
            found = column_item_name(item)
            if found is not None and found.lower() == wanted:
                return i
        return None

    def replace_item(self, index: int, item: str) -> CreateTableText:
        items = list(self.items)
        items[index] = item
        return CreateTableText(self.name, tuple(items), self.tail)

    def add_item(self, item: str) -> CreateTableText:
        return CreateTableText(self.name, (*self.items, item), self.tail)


def parse_create_table(sql: str) -> CreateTableText:
    """Split the text SQLite stored for a table; raise ``ValueError`` if it is not ``CREATE TABLE (...)``."""
    tokens = tokenize(sql)
    sig = _significant(tokens)
    words = [t.upper for _, t in sig]
    if len(sig) < 4 or words[0] != "CREATE":
        raise ValueError("not a CREATE TABLE statement")
    pos = 1
    if words[pos] in ("TEMP", "TEMPORARY"):
        pos += 1
    if words[pos] != "TABLE":
        raise ValueError("not a CREATE TABLE statement")
    pos += 1
    if words[pos : pos + 3] == ["IF", "NOT", "EXISTS"]:
        pos += 3
    name_tok = sig[pos][1]
    if pos + 2 < len(sig) and sig[pos + 1][1].text == ".":
        pos += 2
        name_tok = sig[pos][1]
    name = name_tok.name
    if name is None:
        raise ValueError("CREATE TABLE without a table name")
    pos += 1
    if pos >= len(sig) or sig[pos][1].text != "(":
        raise ValueError("CREATE TABLE ... AS SELECT cannot be edited")
    open_at = sig[pos][0]
    depth = 0
    items: list[str] = []
    current: list[str] = []
    close_at = None
    for i in range(open_at, len(tokens)):
        t = tokens[i]
        if t.text == "(" and t.kind == "punct":
            depth += 1
            if depth == 1:
                continue
        elif t.text == ")" and t.kind == "punct":
            depth -= 1
            if depth == 0:
                close_at = i
                break
        elif t.text == "," and t.kind == "punct" and depth == 1:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(t.text)
    if close_at is None:
        raise ValueError("CREATE TABLE with an unbalanced column list")
    items.append("".join(current).strip())
    tail = "".join(t.text for t in tokens[close_at + 1 :]).rstrip().rstrip(";")
    return CreateTableText(name, tuple(items), tail)


def column_item_name(item: str) -> str | None:
    """The column an item of the column list defines, or None for a table constraint."""
    sig = [t for t in tokenize(item) if t.significant]
    if not sig or sig[0].upper in _TABLE_CONSTRAINT_WORDS:
        return None
    return sig[0].name


class _Keep:
    """Marker: leave the default as it is."""


KEEP = _Keep()


def _clause_end(sig: list[tuple[int, Token]], start: int) -> int:
    """Index (in ``sig``) just past the expression that starts at ``sig[start]``: a group or one term."""
    i = start
    while i < len(sig) and sig[i][1].text in ("-", "+"):
        i += 1
    if i < len(sig) and sig[i][1].text == "(":
        depth = 0
        while i < len(sig):
            if sig[i][1].text == "(":
                depth += 1
            elif sig[i][1].text == ")":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return i
    return min(i + 1, len(sig))


def edit_column(
    item: str,
    *,
    type: str | None = None,
    not_null: bool = False,
    default: str | _Keep | None = KEEP,
) -> str:
    """A column definition with a new type, NOT NULL added, or its default replaced (None: dropped).

    Everything else (constraints, collation, comments, spacing) stays as written.
    """
    tokens = tokenize(item)
    sig = _significant(tokens)
    if not sig:
        raise ValueError("empty column definition")
    # the type: the tokens after the name up to the first constraint word at depth 0
    type_end = 1
    depth = 0
    while type_end < len(sig):
        t = sig[type_end][1]
        if depth == 0 and t.upper in CONSTRAINT_WORDS:
            break
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        type_end += 1
    replace: dict[int, str] = {}
    """token index -> replacement text ("" removes the token)"""
    if type is not None:
        if type_end > 1:
            first, last = sig[1][0], sig[type_end - 1][0]
            for k in range(first, last + 1):
                replace[k] = ""
            replace[first] = type
        else:
            replace[sig[0][0]] = f"{sig[0][1].text} {type}"
    if not isinstance(default, _Keep):
        for j in range(type_end, len(sig)):
            if sig[j][1].upper == "DEFAULT":
                end = _clause_end(sig, j + 1)
                for k in range(sig[j][0], sig[end - 1][0] + 1):
                    replace[k] = ""
                break
    out = "".join(replace.get(k, t.text) for k, t in enumerate(tokens)).rstrip()
    words = [t.upper for _, t in sig]
    has_not_null = any(words[k] == "NOT" and words[k + 1] == "NULL" for k in range(len(words) - 1))
    if not_null and not has_not_null:
        out += " NOT NULL"
    if isinstance(default, str):
        out += f" DEFAULT ({default})"
    return re.sub(r"[ \t]{2,}", " ", out)


def affinity(declared_type: str) -> str:
    """SQLite's column affinity of a declared type (the rules of section 3.1 of "Datatypes In SQLite")."""
    t = declared_type.upper()
    if "INT" in t:
        return "INTEGER"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "TEXT"
    if "BLOB" in t or not t.strip():
        return "BLOB"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "REAL"
    return "NUMERIC"


_LITERAL_RE = re.compile(
    r"""^\s*(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|0[xX][0-9A-Fa-f]+
          |'(?:[^']|'')*'|[xX]'[0-9A-Fa-f]*'|null|true|false)\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def is_literal(expression: str) -> bool:
    """Whether a default is a literal, the only kind ``ALTER TABLE ADD COLUMN`` accepts without a rebuild."""
    return bool(_LITERAL_RE.match(expression))


_PG_CAST_RE = re.compile(
    r"^(?P<operand>.+?)\s*::\s*[A-Za-z_][A-Za-z0-9_ ]*(?:\(\s*\d+\s*(?:,\s*\d+\s*)?\))?(?:\[\])*\s*$"
)


def is_identity(expression: str, column: str) -> bool:
    """Whether an ``up``/``down`` expression returns the column's value unchanged.

    Accepted: the column itself, ``CAST(column AS type)``, or PostgreSQL's ``column::type`` (written for
    the PostgreSQL engine; never run on SQLite, where the value is not converted at all).
    """
    pg = _PG_CAST_RE.match(expression.strip())
    if pg is not None:
        expression = pg.group("operand")
    sig = [t for t in tokenize(expression) if t.significant]
    wanted = column.lower()

    def is_col(t: Token) -> bool:
        return t.kind in ("word", "ident") and (t.name or "").lower() == wanted

    if len(sig) == 1:
        return is_col(sig[0])
    if (
        len(sig) >= 6
        and sig[0].upper == "CAST"
        and sig[1].text == "("
        and is_col(sig[2])
        and sig[3].upper == "AS"
    ):
        depth = 0
        for k, t in enumerate(sig[1:], start=1):
            depth += {"(": 1, ")": -1}.get(t.text, 0)
            if depth == 0:
                return k == len(sig) - 1
    return False
