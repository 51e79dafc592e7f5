"""Argo-style ``successCondition`` / ``failureCondition`` expressions: compile once, evaluate often.

The evaluator walks the frozen tree (:mod:`gapless.analysis.expr_tree`) that
:mod:`gapless.analysis.expr_syntax` parses, over an environment of plain data (``result``,
``baseline``, ``args``). It is strict where Python is lenient, because a condition that silently
means something else is worse than one that fails:

- ``a.b`` and ``a["b"]`` read keys of mappings and ``a[0]`` indexes lists; nothing ever reads a
  Python attribute, so no environment value can lead to code.
- ``and``, ``or``, ``not`` and conditions need booleans (``requests and ...`` is an error, not a
  truthiness test); ``true == 1`` is false.
- Arithmetic and ``<`` need numbers (booleans are not numbers); ``+`` also joins strings, up to the
  string limit. Comparing with ``null`` (a metric with no data) is an error, not ``False``.
- ``/`` is true division; dividing by zero, integers beyond 30 digits and float overflow are errors.
- A missing name, key or list position raises :class:`MissingValueError`, which ``default(x, y)``
  turns into ``y`` (as it does for ``null`` and NaN). ``isNaN`` exists because NaN compares false.

Every error carries the position of the operator or name that failed.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from gapless.analysis.errors import ExpressionError, MissingValueError
from gapless.analysis.expr_syntax import MAX_NUMBER_DIGITS, MAX_STRING_LENGTH, parse
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
)

__all__ = ["Expr", "ExpressionError", "MissingValueError", "compile_expr", "evaluate_condition"]

_MAX_INT = 10**MAX_NUMBER_DIGITS


@dataclass(frozen=True)
class Expr:
    """A parsed condition; evaluating it never parses again."""

    source: str
    tree: Node

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """The value of the expression over ``env``; raises :class:`ExpressionError` on any failure."""
        try:
            return _Evaluator(self.source, env).value_of(self.tree)
        except RecursionError:  # a self-referencing list in the environment compared with ==
            raise ExpressionError("value is nested too deeply to evaluate", 0, self.source) from None


def compile_expr(source: str) -> Expr:
    """Parse ``source`` once; raises :class:`ExpressionError` with the position of the problem."""
    if not isinstance(source, str):
        raise ExpressionError(f"condition must be a string, got {type(source).__name__}", 0, "")
    return Expr(source, parse(source))


def evaluate_condition(expr: Expr | str, env: Mapping[str, Any]) -> bool:
    """Evaluate a condition that must give ``true`` or ``false``."""
    compiled = compile_expr(expr) if isinstance(expr, str) else expr
    value = compiled.evaluate(env)
    if not isinstance(value, bool):
        raise ExpressionError(f"condition must be true or false, got {_show(value)}", 0, compiled.source)
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _show(value: object) -> str:
    """The kind and a short rendering of a value, for messages: ``number 0.3``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    text = repr(value)
    return f"{_kind(value)} {text if len(text) <= 40 else text[:37] + '...'}"


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: object, b: object) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


class _Evaluator:
    def __init__(self, source: str, env: Mapping[str, Any]) -> None:
        self.source = source
        self.env = env

    def error(self, message: str, node: Node) -> ExpressionError:
        return ExpressionError(message, node.pos, self.source)

    def value_of(self, node: Node) -> Any:
        match node:
            case Literal(value=value):
                return value
            case ListLiteral(items=items):
                return [self.value_of(item) for item in items]
            case Name(name=name):
                if name not in self.env:
                    raise MissingValueError(f"unknown name '{name}'", node.pos, self.source)
                return self.env[name]
            case Field(target=target, key=key):
                return self.lookup(self.value_of(target), key, node)
            case Index(target=target, index=index):
                return self.index(self.value_of(target), self.value_of(index), node)
            case Call():
                return self.call(node)
            case Unary(op=op, operand=operand):
                return self.unary(op, self.value_of(operand), node)
            case Binary(op=op, left=left, right=right):
                return self.arithmetic(op, self.value_of(left), self.value_of(right), node)
            case Logical():
                return self.logical(node)
            case Compare():
                return self.compare(node)
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover - Node is a closed union

    def lookup(self, obj: object, key: str, node: Node) -> Any:
        if not isinstance(obj, Mapping):
            raise self.error(f"cannot read key '{key}' of a {_kind(obj)}", node)
        if key not in obj:
            raise MissingValueError(f"no key '{key}'", node.pos, self.source)
        return obj[key]

    def index(self, obj: object, key: object, node: Node) -> Any:
        if isinstance(obj, Mapping):
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise self.error(f"an object is indexed by a string, not a {_kind(key)}", node)
            if key not in obj:
                raise MissingValueError(f"no key {key!r}", node.pos, self.source)
            return obj[key]
        if isinstance(obj, list | tuple):
            if not isinstance(key, int) or isinstance(key, bool):
                raise self.error(f"a list is indexed by an integer, not a {_kind(key)}", node)
            if not -len(obj) <= key < len(obj):
                raise MissingValueError(
                    f"index {key} is out of range for a list of {len(obj)}", node.pos, self.source
                )
            return obj[key]
        raise self.error(f"cannot index a {_kind(obj)}", node)

    def call(self, node: Call) -> Any:
        if node.function == "default":
            try:
                value = self.value_of(node.args[0])
            except MissingValueError:
                return self.value_of(node.args[1])
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return self.value_of(node.args[1])
            return value
        args = [self.value_of(arg) for arg in node.args]
        name = node.function
        if name == "len":
            if not isinstance(args[0], str | Mapping | list | tuple):
                raise self.error(f"len() needs a string, list or object, got {_kind(args[0])}", node)
            return len(args[0])
        if name in ("min", "max"):
            values = args[0] if len(args) == 1 and isinstance(args[0], list | tuple) else args
            if not values:
                raise self.error(f"{name}() of an empty list", node)
            numbers = [self.number(v, node, f"{name}()") for v in values]
            return min(numbers) if name == "min" else max(numbers)
        value = self.number(args[0], node, f"{name}()")
        if name == "abs":
            return abs(value)
        return isinstance(value, float) and math.isnan(value)  # isNaN

    def number(self, value: object, node: Node, what: str) -> int | float:
        if _is_number(value):
            return value
        raise self.error(f"{what} needs a number, got {_show(value)}", node)

    def unary(self, op: str, value: object, node: Node) -> Any:
        if op == "not":
            if not isinstance(value, bool):
                raise self.error(f"'not' needs a boolean, got {_show(value)}", node)
            return not value
        number = self.number(value, node, f"unary '{op}'")
        return -number if op == "-" else number

    def arithmetic(self, op: str, a: object, b: object, node: Node) -> Any:
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            if len(a) + len(b) > MAX_STRING_LENGTH:
                raise self.error(f"string would be longer than {MAX_STRING_LENGTH} characters", node)
            return a + b
        if not (_is_number(a) and _is_number(b)):
            raise self.error(f"'{op}' needs two numbers, got {_kind(a)} and {_kind(b)}", node)
        if op in ("/", "%") and b == 0:
            raise self.error("division by zero", node)
        try:
            result = _ARITHMETIC[op](a, b)
        except (OverflowError, ArithmeticError) as exc:
            raise self.error(f"arithmetic failed: {exc}", node) from None
        if isinstance(result, int) and abs(result) >= _MAX_INT:
            raise self.error(f"result has more than {MAX_NUMBER_DIGITS} digits", node)
        if isinstance(result, float) and math.isinf(result) and math.isfinite(a) and math.isfinite(b):
            raise self.error("result is too large (overflow)", node)
        return result

    def logical(self, node: Logical) -> bool:
        left = self.value_of(node.left)
        if not isinstance(left, bool):
            raise self.error(f"'{node.op}' needs booleans, got {_show(left)} on the left", node)
        if (node.op == "and" and not left) or (node.op == "or" and left):
            return left
        right = self.value_of(node.right)
        if not isinstance(right, bool):
            raise self.error(f"'{node.op}' needs booleans, got {_show(right)} on the right", node)
        return right

    def compare(self, node: Compare) -> bool:
        left = self.value_of(node.operands[0])
        for op, operand in zip(node.ops, node.operands[1:], strict=True):
            right = self.value_of(operand)
            if not self.compare_pair(op, left, right, node):
                return False
            left = right
        return True

    def compare_pair(self, op: str, a: object, b: object, node: Node) -> bool:
        if op == "==":
            return _equal(a, b)
        if op == "!=":
            return not _equal(a, b)
        if op in ("in", "not in"):
            return self.contains(a, b, node) == (op == "in")
        if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise self.error(f"cannot compare {_show(a)} with {_show(b)} using '{op}'", node)
        return bool(_ORDER[op](a, b))

    def contains(self, item: object, container: object, node: Node) -> bool:
        if isinstance(container, str):
            if not isinstance(item, str):
                raise self.error(f"'in' a string needs a string, got {_kind(item)}", node)
            return item in container
        if isinstance(container, Mapping):
            return isinstance(item, str | int) and not isinstance(item, bool) and item in container
        if isinstance(container, Sequence):
            return any(_equal(item, element) for element in container)
        raise self.error(f"'in' needs a list, object or string on the right, got {_kind(container)}", node)


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}
_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
