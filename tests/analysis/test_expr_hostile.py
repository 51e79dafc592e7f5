"""Hostile conditions: each fails fast with an ExpressionError, never runs code, hangs or exhausts memory."""

from __future__ import annotations

import time

import pytest

from gapless.analysis.errors import ExpressionError
from gapless.analysis.expr import compile_expr
from gapless.analysis.expr_syntax import MAX_DEPTH, MAX_SOURCE_LENGTH

ENV = {"result": {"value": 1, "items": [1, 2, 3], "name": "x"}, "baseline": {}, "args": {}}

HOSTILE = [
    "__class__",
    "().__class__.__bases__",
    "result.__dict__",
    "result.__class__.__mro__",
    "result['__class__']",
    "result['__globals__']",
    "__import__('os').system('id')",
    "import os",
    "eval('1')",
    "exec",
    "open('/etc/passwd')",
    "result.keys()",
    "'{0.__class__}'.format(1)",
    "'%s' % 1",
    "[1]*10**9",
    "'a'*10**9",
    "[1] * 1000000000",
    "'a' * 1000000000",
    "len(result) ** 99",
    "1" + "*99999999999999999999" * 5,
    "9.9e307 * 9.9e307 * 9.9e307",
    "1" * 31,
    "1e999",
    "1e99999999999",
    "0." + "0" * 1000 + "1",
    "'" + "a" * 1500 + "'",
    "'" + "a" * 900 + "' + '" + "a" * 900 + "'",
    "x" * (MAX_SOURCE_LENGTH + 1),
    "(" * 10_000 + "1" + ")" * 10_000,
    "(" * 900 + "1" + ")" * 900,
    "[" * 999 + "]" * 999,
    "-" * 1999 + "1",
    "not " * 400 + "true",
    "!" * 1990 + "true",
    "1" + "+1" * 999,
    "result" + ".value" * 300,
    "result" + "[0]" * 600,
    "len(" * 300 + "1" + ")" * 300,
    "\x00",
    "result.value; import os",
    "lambda: 0",
    "[x for x in result.items]",
    "result.value if true else 0",
    "result.name.__len__",
    "\u0661 + 1",  # an Arabic-Indic digit is not a number here
    "\uff52esult.value",  # a full-width letter is not a name
]


@pytest.mark.timeout(2)
@pytest.mark.parametrize("source", HOSTILE, ids=lambda s: repr(s[:30]))
def test_hostile_condition_fails_fast(source: str) -> None:
    """Parsing and evaluating a hostile condition raises ExpressionError within 250 ms of CPU time.

    CPU time of this process, not wall time, so a busy machine does not fail it; the work is bounded by
    the input limits, so a real blow-up (exponential parsing, huge numbers) would take far longer.
    """
    started = time.process_time()
    with pytest.raises(ExpressionError):
        compile_expr(source).evaluate(ENV)
    assert time.process_time() - started < 0.25


@pytest.mark.timeout(2)
@pytest.mark.parametrize(
    "source",
    [
        "(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1),
        "1" + "+1" * (MAX_DEPTH - 1),
        "-" * (MAX_DEPTH - 1) + "1",
    ],
)
def test_nesting_up_to_the_limit_is_allowed(source: str) -> None:
    """Nesting just inside the depth limit still parses and evaluates."""
    assert compile_expr(source).evaluate({}) in (1, -1, MAX_DEPTH)


@pytest.mark.timeout(2)
def test_depth_error_names_the_limit() -> None:
    """Too deep nesting reports the limit rather than a Python RecursionError."""
    with pytest.raises(ExpressionError, match=f"nested more than {MAX_DEPTH} levels"):
        compile_expr("(" * 900 + "1" + ")" * 900)
