"""Tokenizer and Pratt parser of analysis conditions: source text to a tree of frozen nodes.

Conditions come from user specs and run inside the control plane, so Python's ``eval``, ``compile``
and ``ast`` are ruled out: with them ``().__class__.__bases__`` walks from a literal to every class in
the process. This grammar has no attribute access at all (``a.b`` is a key lookup, done by the
evaluator), no assignment, no lambdas, no comprehensions and no ``**``, and it calls only a fixed set
of functions, so the worst a condition can do is fail with an :class:`ExpressionError`.

Every input is bounded before any work grows with it: the source length, the nesting depth (checked
while parsing, so ``((((...))))`` stops at the limit instead of exhausting the Python stack), the
height of the finished tree (``1+1+...+1`` is built by a loop, so it is measured afterwards without
recursion), the digits of a number, and the length of a string. Names starting with ``__`` are
refused outright even though they could only ever be dictionary keys.

Precedence, loosest first: ``or``/``||``; ``and``/``&&``; ``not``/``!``; comparisons (chained as in
Python: ``0 < x < 1``), ``in``, ``not in``; ``+ -``; ``* / %``; unary ``- +``; then ``.key``,
``[index]`` and calls.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal as TypingLiteral

from gapless.analysis.errors import ExpressionError
from gapless.analysis.expr_tree import (
    Binary,
    Call,
    Compare,
    Field,
    Index,
    ListLiteral,
    Literal,
    Logical,
    Name,
    Node,
    Unary,
    children,
)

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_NUMBER_DIGITS",
    "MAX_SOURCE_LENGTH",
    "MAX_STRING_LENGTH",
    "Token",
    "parse",
    "tokenize",
]

MAX_SOURCE_LENGTH = 2_000
MAX_DEPTH = 50
MAX_NUMBER_DIGITS = 30
MAX_STRING_LENGTH = 1_000

# name -> (minimum, maximum) number of arguments; None means any number.
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1),
    "default": (2, 2),
    "isNaN": (1, 1),
    "len": (1, 1),
    "max": (1, None),
    "min": (1, None),
}

_CONSTANTS: dict[str, object] = {
    "true": True,
    "True": True,
    "false": False,
    "False": False,
    "null": None,
    "None": None,
    "nil": None,
}
# Python words a user might try; they get a clear message instead of "unexpected name".
_REFUSED_WORDS = frozenset({
    "import", "from", "lambda", "def", "class", "for", "while", "if", "else", "elif", "is", "return",
    "yield", "await", "async", "global", "nonlocal", "del", "with", "try", "except", "finally", "raise",
    "pass", "assert", "exec", "eval", "open",
})  # fmt: skip

_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TWO_CHAR = frozenset({"<=", ">=", "==", "!=", "&&", "||"})
_ONE_CHAR = frozenset("+-*/%()[],.<>!")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_WHITESPACE = frozenset(" \t\r\n")
_DIGITS = frozenset("0123456789")

# Binding powers of the Pratt parser (higher binds tighter).
_BP_OR = 10
_BP_AND = 20
_BP_NOT = 25
_BP_COMPARE = 30
_BP_SUM = 40
_BP_PRODUCT = 50
_BP_UNARY = 60
_BP_POSTFIX = 70


@dataclass(frozen=True)
class Token:
    """One lexical token; ``value`` holds the decoded number or string."""

    kind: TypingLiteral["number", "string", "name", "op", "end"]
    text: str
    pos: int
    value: object = None


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens, refusing what the language does not have with its position."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(
            f"condition is {len(source)} characters long; the limit is {MAX_SOURCE_LENGTH}",
            MAX_SOURCE_LENGTH,
            "",
        )
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c in _WHITESPACE:
            i += 1
        elif c in _DIGITS or (c == "." and i + 1 < n and source[i + 1] in _DIGITS):
            tokens.append(_number(source, i))
            i += len(tokens[-1].text)
        elif c.isascii() and (c.isalpha() or c == "_"):
            match = _IDENT.match(source, i)
            assert match is not None  # noqa: S101 - the first character is a letter or underscore
            word = match.group()
            if word.startswith("__"):
                raise ExpressionError(f"names starting with '__' are not allowed: {word!r}", i, source)
            tokens.append(Token("name", word, i))
            i = match.end()
        elif c in "'\"":
            tokens.append(_string(source, i))
            i += len(tokens[-1].text)
        else:
            tokens.append(_operator(source, i))
            i += len(tokens[-1].text)
    tokens.append(Token("end", "", n))
    return tokens


def _number(source: str, start: int) -> Token:
    match = _NUMBER.match(source, start)
    assert match is not None  # noqa: S101 - the caller saw a digit or ".digit"
    text = match.group()
    end = match.end()
    if end < len(source) and (source[end].isalnum() or source[end] in "_."):
        raise ExpressionError(f"invalid number {source[start : end + 1]!r}", start, source)
    mantissa = re.split(r"[eE]", text)[0]
    digits = sum(ch.isdigit() for ch in mantissa)
    if digits > MAX_NUMBER_DIGITS:
        raise ExpressionError(f"number has {digits} digits; the limit is {MAX_NUMBER_DIGITS}", start, source)
    if "." in text or "e" in text or "E" in text:
        exponent = text[len(mantissa) + 1 :]
        if len(exponent.lstrip("+-").lstrip("0")) > 3:
            raise ExpressionError(f"number {text!r} is out of range", start, source)
        value: float | int = float(text)
        if not math.isfinite(value):
            raise ExpressionError(f"number {text!r} is out of range", start, source)
    else:
        value = int(text)
    return Token("number", text, start, value)


def _string(source: str, start: int) -> Token:
    quote = source[start]
    out: list[str] = []
    i = start + 1
    while i < len(source):
        c = source[i]
        if c == quote:
            if len(out) > MAX_STRING_LENGTH:
                raise ExpressionError(
                    f"string has {len(out)} characters; the limit is {MAX_STRING_LENGTH}", start, source
                )
            return Token("string", source[start : i + 1], start, "".join(out))
        if c == "\\":
            escaped = source[i + 1] if i + 1 < len(source) else ""
            if escaped not in _ESCAPES:
                raise ExpressionError(f"unknown escape '\\{escaped}' in string", i, source)
            out.append(_ESCAPES[escaped])
            i += 2
        else:
            out.append(c)
            i += 1
    raise ExpressionError("string is not closed", start, source)


def _operator(source: str, i: int) -> Token:
    two = source[i : i + 2]
    if two == "**":
        raise ExpressionError("the power operator '**' is not supported", i, source)
    if two == "//":
        raise ExpressionError("integer division '//' is not supported; use '/'", i, source)
    if two in _TWO_CHAR:
        return Token("op", two, i)
    c = source[i]
    if c == "=":
        raise ExpressionError("'=' is not an operator; use '==' to compare", i, source)
    if c in _ONE_CHAR:
        return Token("op", c, i)
    raise ExpressionError(f"unexpected character {c!r}", i, source)


def parse(source: str) -> Node:
    """Parse a condition into a tree, checking nesting and tree height against :data:`MAX_DEPTH`."""
    tree = _Parser(source, tokenize(source)).parse()
    _check_height(tree, source)
    return tree


def _check_height(tree: Node, source: str) -> None:
    """Measure the tree without recursion: left-deep chains like ``1+1+...`` are built by a loop."""
    stack: list[tuple[Node, int]] = [(tree, 1)]
    while stack:
        node, height = stack.pop()
        if height > MAX_DEPTH:
            raise ExpressionError(f"condition is nested more than {MAX_DEPTH} levels deep", node.pos, source)
        stack.extend((child, height + 1) for child in children(node))


class _Parser:
    """A Pratt parser over a token list; ``depth`` counts the recursion of ``expression``."""

    def __init__(self, source: str, tokens: list[Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def error(self, message: str, token: Token) -> ExpressionError:
        return ExpressionError(message, token.pos, self.source)

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def expect(self, text: str) -> Token:
        token = self.peek()
        if token.kind != "op" or token.text != text:
            raise self.error(f"expected '{text}', found {_describe(token)}", token)
        return self.advance()

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error("condition is empty", self.peek())
        node = self.expression(0)
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"unexpected {_describe(token)}", token)
        return node

    def expression(self, min_bp: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"condition is nested more than {MAX_DEPTH} levels deep", self.peek())
        left = self.prefix()
        while True:
            token = self.peek()
            bp = self.infix_power(token)
            if bp is None or bp <= min_bp:
                break
            left = self.infix(left, bp)
        self.depth -= 1
        return left

    def infix_power(self, token: Token) -> int | None:
        if token.kind == "name":
            if token.text == "or":
                return _BP_OR
            if token.text == "and":
                return _BP_AND
            if token.text == "in" or (token.text == "not" and self.peek(1).text == "in"):
                return _BP_COMPARE
            return None
        if token.kind != "op":
            return None
        return _OP_POWER.get(token.text)

    def prefix(self) -> Node:
        token = self.advance()
        if token.kind in ("number", "string"):
            return Literal(token.value, token.pos)
        if token.kind == "name":
            return self.prefix_name(token)
        if token.kind == "op":
            if token.text == "(":
                node = self.expression(0)
                self.expect(")")
                return node
            if token.text == "[":
                return ListLiteral(self.sequence("]"), token.pos)
            if token.text in ("-", "+"):
                return Unary(token.text, self.expression(_BP_UNARY), token.pos)
            if token.text == "!":
                return Unary("not", self.expression(_BP_NOT), token.pos)
        raise self.error(f"expected a value, found {_describe(token)}", token)

    def prefix_name(self, token: Token) -> Node:
        word = token.text
        if word in _CONSTANTS:
            return Literal(_CONSTANTS[word], token.pos)
        if word == "not":
            return Unary("not", self.expression(_BP_NOT), token.pos)
        if word in ("and", "or", "in"):
            raise self.error(f"expected a value, found '{word}'", token)
        if word in _REFUSED_WORDS:
            raise self.error(f"'{word}' is not part of the condition language", token)
        return Name(word, token.pos)

    def infix(self, left: Node, bp: int) -> Node:
        token = self.advance()
        word = token.text
        if word in ("or", "||"):
            return Logical("or", left, self.expression(bp), token.pos)
        if word in ("and", "&&"):
            return Logical("and", left, self.expression(bp), token.pos)
        if bp == _BP_COMPARE:
            return self.comparison(left, token)
        if bp in (_BP_SUM, _BP_PRODUCT):
            return Binary(word, left, self.expression(bp), token.pos)
        return self.postfix(left, token)

    def comparison(self, left: Node, first: Token) -> Node:
        ops: list[str] = []
        operands = [left]
        token: Token | None = first
        while token is not None:
            op = token.text
            if op == "not":
                self.advance()  # the "in" of "not in"
                op = "not in"
            ops.append(op)
            operands.append(self.expression(_BP_COMPARE))
            nxt = self.peek()
            token = self.advance() if self.infix_power(nxt) == _BP_COMPARE else None
        return Compare(tuple(ops), tuple(operands), first.pos)

    def postfix(self, left: Node, token: Token) -> Node:
        if token.text == ".":
            key = self.advance()
            if key.kind != "name":
                raise self.error(f"expected a key name after '.', found {_describe(key)}", key)
            return Field(left, key.text, key.pos)
        if token.text == "[":
            index = self.expression(0)
            self.expect("]")
            return Index(left, index, token.pos)
        # "(": a call, allowed only on a bare function name.
        if not isinstance(left, Name) or left.name not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"only these functions can be called: {allowed}", token)
        args = self.sequence(")")
        low, high = FUNCTIONS[left.name]
        if len(args) < low or (high is not None and len(args) > high):
            wanted = str(low) if low == high else f"at least {low}"
            raise ExpressionError(
                f"{left.name}() takes {wanted} argument(s), got {len(args)}", left.pos, self.source
            )
        return Call(left.name, args, left.pos)

    def sequence(self, close: str) -> tuple[Node, ...]:
        """Comma-separated expressions up to ``close`` (a trailing comma is allowed)."""
        items: list[Node] = []
        while not (self.peek().kind == "op" and self.peek().text == close):
            items.append(self.expression(0))
            if self.peek().kind == "op" and self.peek().text == ",":
                self.advance()
            else:
                break
        self.expect(close)
        return tuple(items)


_OP_POWER: dict[str, int] = {
    "||": _BP_OR,
    "&&": _BP_AND,
    "<": _BP_COMPARE,
    "<=": _BP_COMPARE,
    ">": _BP_COMPARE,
    ">=": _BP_COMPARE,
    "==": _BP_COMPARE,
    "!=": _BP_COMPARE,
    "+": _BP_SUM,
    "-": _BP_SUM,
    "*": _BP_PRODUCT,
    "/": _BP_PRODUCT,
    "%": _BP_PRODUCT,
    ".": _BP_POSTFIX,
    "[": _BP_POSTFIX,
    "(": _BP_POSTFIX,
}


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the condition"
    if token.kind == "op":
        return f"'{token.text}'"
    return f"{token.kind} {token.text!r}"
