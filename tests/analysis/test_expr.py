"""The condition language: values of valid expressions, errors with positions, and the tree's shape."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gapless.analysis.errors import ExpressionError, MissingValueError
from gapless.analysis.expr import Expr, compile_expr, evaluate_condition
from gapless.analysis.expr_syntax import FUNCTIONS
from gapless.analysis.expr_tree import (
    Binary,
    Compare,
    Field,
    Literal,
    Logical,
    Name,
    Unary,
)

ENV: dict[str, Any] = {
    "result": {
        "error_rate": 0.005,
        "p99": 0.3,
        "requests": 150,
        "ratio": 0.9,
        "codes": [200, 500],
        "nested": {"a": {"b": 7}},
        "nan": math.nan,
        "none": None,
        "name": "canary",
    },
    "baseline": {"ratio": 1.0},
    "args": {"limit": 0.01},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("result.error_rate < 0.01", True),
        ("result.p99 < 0.5 and result.requests >= 100", True),
        ("result.ratio >= 0.8 * baseline.ratio", True),
        ("len(result) > 0", True),
        ("not (false or true)", False),
        ("0 < result.p99 < 1", True),
        ("0 < result.p99 < 0.2", False),
        ("1 < 2 > 1.5", True),
        ("1 < 2 < 2", False),
        ("1e-3", 0.001),
        ("2.5E2", 250.0),
        (".5 + 1", 1.5),
        ("7 / 2", 3.5),
        ("7 % 3", 1),
        ("-2 % 3", 1),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("-3 * -2", 6),
        ("- - 1", 1),
        ("+4", 4),
        ("10 - 4 - 3", 3),
        ("12 / 3 / 2", 2.0),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("'canary' == result.name", True),
        ('"a\\"b"', 'a"b'),
        ("'it\\'s'", "it's"),
        ("'tab\\there'", "tab\there"),
        ("'ab' + 'cd'", "abcd"),
        ("'nar' in result.name", True),
        ("500 in result.codes", True),
        ("404 not in result.codes", True),
        ("'nested' in result", True),
        ("'nope' in result", False),
        ("[1, 2, 3][1]", 2),
        ("[]", []),
        ("[1, 2,]", [1, 2]),
        ("result.codes[-1]", 500),
        ("result['nested'].a['b']", 7),
        ("result.nested.a.b == 7", True),
        ("true && !false", True),
        ("True || False", True),
        ("true == 1", False),
        ("1 == 1.0", True),
        ("1 != 2", True),
        ("null == None", True),
        ("nil == result.none", True),
        ("[1, 'a'] == [1, 'a']", True),
        ("abs(-2.5)", 2.5),
        ("min(3, 1, 2)", 1),
        ("max(result.codes)", 500),
        ("max(1, 2.5,)", 2.5),
        ("isNaN(result.nan)", True),
        ("isNaN(1)", False),
        ("result.nan < 1", False),
        ("default(result.missing, 5)", 5),
        ("default(nothing, 5)", 5),
        ("default(result.none, 'x')", "x"),
        ("default(result.nan, 0)", 0),
        ("default(result.p99, 0)", 0.3),
        ("default(result.codes[9], -1)", -1),
        ("default(result.missing.deeper, 1)", 1),
        ("args.limit > result.error_rate", True),
        ("not 1 == 2", True),
        ("not true and false", False),
        ("true or false and false", True),
        ("false and result.missing", False),
        ("true or 1 / 0 > 0", True),
        ("result.requests >= 100 and result.error_rate < args.limit or false", True),
        ("  result.requests\n  >= 100\t", True),
    ],
)
def test_valid_expressions(source: str, expected: object) -> None:
    """Each expression evaluates to its value over the shared environment."""
    value = compile_expr(source).evaluate(ENV)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "position", "fragment"),
    [
        ("", 0, "empty"),
        ("   ", 3, "empty"),
        ("result.error_rate <", 19, "expected a value"),
        ("1 +* 2", 3, "expected a value"),
        ("(1 + 2", 6, "expected ')'"),
        ("[1, 2", 5, "expected ']'"),
        ("()", 1, "expected a value"),
        ("1 2", 2, "unexpected number"),
        ("x = 1", 2, "'=='"),
        ("1 ** 2", 2, "'**'"),
        ("7 // 2", 2, "'//'"),
        ("a & b", 2, "unexpected character"),
        ("1 ? 2 : 3", 2, "unexpected character"),
        ("$x", 0, "unexpected character"),
        ("'abc", 0, "not closed"),
        ("'a\\q'", 2, "unknown escape"),
        ("1.2.3", 0, "invalid number"),
        ("12abc", 0, "invalid number"),
        ("1" * 31, 0, "31 digits"),
        ("1e400", 0, "out of range"),
        ("foo(1)", 3, "only these functions"),
        ("result.f(1)", 8, "only these functions"),
        ("len(1, 2)", 0, "takes 1 argument"),
        ("max()", 0, "at least 1"),
        ("default(1)", 0, "takes 2"),
        ("result.", 7, "key name"),
        ("result.1", 6, "unexpected number"),
        ("lambda x", 0, "not part of the condition language"),
        ("import os", 0, "not part of the condition language"),
        ("a is b", 2, "unexpected name 'is'"),
        ("a not b", 2, "unexpected name 'not'"),
        ("and", 0, "expected a value"),
        ("x.__y", 2, "'__'"),
    ],
)
def test_syntax_errors(source: str, position: int, fragment: str) -> None:
    """A condition that does not parse names the problem and its 0-based position."""
    with pytest.raises(ExpressionError) as info:
        compile_expr(source)
    assert info.value.position == position
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("source", "position", "fragment", "missing"),
    [
        ("result.missing < 1", 7, "no key 'missing'", True),
        ("nope", 0, "unknown name 'nope'", True),
        ("result.codes[5]", 12, "out of range", True),
        ("result['x']", 6, "no key 'x'", True),
        ("1 / 0", 2, "division by zero", False),
        ("5 % 0.0", 2, "division by zero", False),
        ("result.none < 1", 12, "cannot compare null with number 1", False),
        ("'a' < 1", 4, "cannot compare", False),
        ("[1] < [2]", 4, "cannot compare", False),
        ("result.requests and true", 16, "needs booleans", False),
        ("false or 1", 6, "on the right", False),
        ("not 1", 0, "needs a boolean", False),
        ("!'x'", 0, "needs a boolean", False),
        ("-'a'", 0, "needs a number", False),
        ("true + 1", 5, "needs two numbers", False),
        ("'a' - 'b'", 4, "needs two numbers", False),
        ("[1] + [2]", 4, "needs two numbers", False),
        ("result.codes.x", 13, "cannot read key 'x' of a list", False),
        ("result.name.upper", 12, "cannot read key 'upper' of a string", False),
        ("result.codes['x']", 12, "indexed by an integer", False),
        ("result.codes[true]", 12, "indexed by an integer", False),
        ("result[1.5]", 6, "indexed by a string", False),
        ("result.p99[0]", 10, "cannot index a number", False),
        ("len(5)", 0, "len() needs", False),
        ("min([])", 0, "empty", False),
        ("max(1, 'a')", 0, "needs a number", False),
        ("abs(null)", 0, "needs a number, got null", False),
        ("isNaN('x')", 0, "needs a number", False),
        ("1 in 5", 2, "'in' needs", False),
        ("1 in 'abc'", 2, "needs a string", False),
        ("99999999999999999999 * 99999999999999999999", 21, "more than 30 digits", False),
        ("1e300 * 1e300", 6, "overflow", False),
        ("1e300 / 1e-300", 6, "overflow", False),
    ],
)
def test_evaluation_errors(source: str, position: int, fragment: str, missing: bool) -> None:
    """A condition that cannot be evaluated names the problem and points at the failing operator or name."""
    with pytest.raises(ExpressionError) as info:
        compile_expr(source).evaluate(ENV)
    assert info.value.position == position
    assert fragment in info.value.message
    assert isinstance(info.value, MissingValueError) == missing


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("1 + 2 * 3", Binary("+", Literal(1, 0), Binary("*", Literal(2, 0), Literal(3, 0), 0), 0)),
        ("-a.b", Unary("-", Field(Name("a", 0), "b", 0), 0)),
        ("not a < b", Unary("not", Compare(("<",), (Name("a", 0), Name("b", 0)), 0), 0)),
        (
            "a or b and c",
            Logical("or", Name("a", 0), Logical("and", Name("b", 0), Name("c", 0), 0), 0),
        ),
        ("0 < x <= 1", Compare(("<", "<="), (Literal(0, 0), Name("x", 0), Literal(1, 0)), 0)),
        ("x not in y", Compare(("not in",), (Name("x", 0), Name("y", 0)), 0)),
    ],
)
def test_tree_shape(source: str, tree: object) -> None:
    """Precedence and chaining give the tree Python's grammar would (positions aside)."""
    assert compile_expr(source).tree == tree


def test_error_renders_a_caret_under_the_position() -> None:
    """The message shows the source with a caret under the failing column."""
    with pytest.raises(ExpressionError) as info:
        compile_expr("result.p99 < 1 ** 2")
    assert str(info.value).splitlines() == [
        "the power operator '**' is not supported (at column 16)",
        "  result.p99 < 1 ** 2",
        "                 ^",
    ]


def test_compiled_expression_is_reused_across_environments() -> None:
    """An Expr is parsed once and evaluates against any number of environments."""
    expr = compile_expr("result.error_rate < args.limit")
    assert isinstance(expr, Expr)
    assert [expr.evaluate({"result": {"error_rate": r}, "args": {"limit": 0.01}}) for r in (0.0, 0.02)] == [
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [("result.requests > 100", True), ("result.requests > 1000", False)],
)
def test_evaluate_condition_accepts_source_or_expr(source: str, expected: bool) -> None:
    """evaluate_condition takes text or a compiled Expr and returns a bool."""
    assert evaluate_condition(source, ENV) is expected
    assert evaluate_condition(compile_expr(source), ENV) is expected


@pytest.mark.parametrize("source", ["result.requests", "result.none", "'true'", "[true]"])
def test_evaluate_condition_requires_a_boolean(source: str) -> None:
    """A condition whose value is not true or false is an error, never a truthiness test."""
    with pytest.raises(ExpressionError, match="must be true or false"):
        evaluate_condition(source, ENV)


def test_dot_reads_keys_never_attributes() -> None:
    """`a.b` on a non-mapping object is an error even when the object has that attribute."""

    class Metric:
        value = 1

    with pytest.raises(ExpressionError, match="cannot read key 'value' of a Metric"):
        compile_expr("result.value").evaluate({"result": Metric()})


def test_self_referencing_environment_is_an_error() -> None:
    """A cyclic list compared with itself fails as an ExpressionError rather than a RecursionError."""
    cyclic: list[object] = []
    cyclic.append(cyclic)
    other: list[object] = []
    other.append(other)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expr("a == b").evaluate({"a": cyclic, "b": other})


def test_every_function_is_implemented() -> None:
    """Each whitelisted function evaluates with its minimum arity."""
    values = {
        name: compile_expr(f"{name}({', '.join(['[1]' if name == 'len' else '1'] * low)})").evaluate({})
        for name, (low, _) in FUNCTIONS.items()
    }
    assert values == {"abs": 1, "default": 1, "isNaN": False, "len": 1, "max": 1, "min": 1}


def test_non_string_source_is_an_expression_error() -> None:
    """Passing a number where condition text belongs is reported, not crashed on."""
    with pytest.raises(ExpressionError, match="must be a string"):
        compile_expr(0.5)  # type: ignore[arg-type]
