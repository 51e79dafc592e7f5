"""The regex engine: the same answers as Python's ``re`` on its syntax, refusals that say why, linear time."""

from __future__ import annotations

import re
import time

import pytest

from gapless.flags.regex import MAX_PATTERN_LENGTH, MAX_VALUE_LENGTH, Regex, RegexError

PATTERNS = [
    r"abc",
    r"^abc$",
    r"a.c",
    r"^.*@example\.com$",
    r"@(acme|example)\.(com|org)$",
    r"^user-\d+$",
    r"^[a-z]{2,4}-[0-9]{3}$",
    r"[^a-z]",
    r"^[\w.+-]+@[\w-]+\.[a-z]{2,}$",
    r"colou?r",
    r"(ab)+c",
    r"(?:ab|a)*b$",
    r"x*",
    r"^$",
    r"^(a|b|c){3}$",
    r"\s+",
    r"^\S+$",
    r"[\d\s]+",
    r"^[]a]+$",
    r"^[a\-z]+$",
    r"[.*+?]",
    r"a{,2}b",
    r"a{2,}b",
    r"a{0}b",
    r"(?P<id>\d+)-x",
    r"\x41\u00e9",
    r"^\t",
    r"a{",
    r"a{x}",
    r"}",
    r"]",
    r"\AStart",
    r"end\Z",
    r"a|",
    r"()",
    r"(a*)*b",
    r"((a|b)*c)+d",
    r"^(?:\d{1,3}\.){3}\d{1,3}$",
    r"[\u4e00-\u9fff]+",
    r"\W",
    r"\D{2}",
    r"a*?b",
    r"a+?b",
    r"a??b",
    r"a{1,3}?c",
]

VALUES = [
    "",
    "abc",
    "xabcx",
    "a.c",
    "aXc",
    "bob@example.com",
    "bob@example.org",
    "bob@acme.com",
    "bob@evil.com.example",
    "user-42",
    "user-",
    "ab-123",
    "abcde-123",
    "color",
    "colour",
    "ababc",
    "aab",
    "b",
    "abc def",
    "tab\tx",
    "\tstart",
    "]]a",
    "a-z",
    "a+b",
    "aab",
    "aaab",
    "123-x",
    "Aé",
    "a{",
    "a{x}",
    "}",
    "Start here",
    "the end",
    "aaaaaaaaaaaaaaaaaaaab",
    "ababcabcd",
    "192.168.0.1",
    "1.2.3",
    "漢字",
    "12 34",
    "no digits",
    "_",
    "ab c",
    "aaac",
    "ac",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_agrees_with_re_search(pattern: str) -> None:
    """On the supported syntax, search() answers what re.search does, for every value."""
    ours, theirs = Regex(pattern), re.compile(pattern)
    for value in VALUES:
        assert ours.search(value) == bool(theirs.search(value)), value


@pytest.mark.parametrize("pattern", [r"^abc$", r"[a-c]+x", r"[^k]", r"straße", r"\w+@ACME\.com$"])
def test_ignore_case_agrees_with_re(pattern: str) -> None:
    """ignore_case answers what re.IGNORECASE does."""
    ours, theirs = Regex(pattern, ignore_case=True), re.compile(pattern, re.IGNORECASE)
    for value in [
        *VALUES,
        "ABC",
        "AbC",
        "BCX",
        "K",
        "k",
        "STRASSE",
        "Straße",
        "bob@acme.COM",
        "BOB@Acme.com",
    ]:
        assert ours.search(value) == bool(theirs.search(value)), value


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(a)\1", "backreferences"),
        (r"(?P<x>a)(?P=x)", "backreferences"),
        (r"a(?=b)", "lookaround"),
        (r"a(?!b)", "lookaround"),
        (r"(?<=a)b", "lookaround"),
        (r"(?<!a)b", "lookaround"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r"(?>a+)b", "atomic"),
        (r"a*+b", "possessive"),
        (r"(?i)abc", "inline flags"),
        (r"(?#comment)a", "comments"),
        (r"\bword\b", "word boundaries"),
        (r"\N{BULLET}", "\\N"),
        (r"\q", "bad escape"),
        (r"a**", "multiple repeat"),
        (r"*a", "nothing to repeat"),
        (r"^*", "nothing to repeat"),
        (r"(abc", "missing ')'"),
        (r"abc)", "unbalanced"),
        (r"[abc", "unterminated"),
        (r"[z-a]", "bad character range"),
        (r"a{5,2}", "min repeat"),
        (r"a{1000}", "above 100"),
        (r"(?:(?:a{100}){100})", "too large"),
        ("a" * (MAX_PATTERN_LENGTH + 1), "longer than"),
        ("\\", "end of pattern"),
        ("(" * 60 + ")" * 60, "nested"),
    ],
)
def test_refusals_say_why(pattern: str, message: str) -> None:
    """Unsupported or invalid patterns raise a RegexError naming the reason."""
    with pytest.raises(RegexError, match=re.escape(message)):
        Regex(pattern)


@pytest.mark.parametrize(
    "pattern",
    [r"(a+)+b", r"(a|a)*b", r"(a*)*b", r"\w*\w*\w*[.]", r"(.*.*.*.*.*.*)*!", r"(?:a?){30}a{30}", r"(x+x+)+y"],
)
def test_catastrophic_patterns_run_in_linear_time(pattern: str) -> None:
    """Patterns that make backtracking engines run for hours take milliseconds on the longest value."""
    rx = Regex(pattern)
    value = "a" * MAX_VALUE_LENGTH if "x" not in pattern else "x" * MAX_VALUE_LENGTH
    start = time.perf_counter()
    rx.search(value)
    rx.search(value[:-1] + "!")
    assert time.perf_counter() - start < 0.5


def test_worst_case_first_search_is_bounded() -> None:
    """A pattern at the state limit searching an uncached value of the longest length stays under a second."""
    rx = Regex(r"(?:.{0,24}){9}!")
    value = "".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(MAX_VALUE_LENGTH))
    start = time.perf_counter()
    assert not rx.search(value)
    assert time.perf_counter() - start < 1.0


def test_values_over_the_limit_never_match() -> None:
    """A value longer than MAX_VALUE_LENGTH does not match, even a pattern that matches everything."""
    rx = Regex("")
    assert rx.search("x" * MAX_VALUE_LENGTH)
    assert not rx.search("x" * (MAX_VALUE_LENGTH + 1))


def test_transition_cache_stays_bounded() -> None:
    """Many distinct characters and states do not grow the cache past its limit, and answers stay right."""
    rx = Regex(r"(?:[^!]{0,20}){5}!")
    for start in range(0, 60_000, 1_000):
        value = "".join(chr(0x4E00 + start + i) for i in range(1_000)) + "!"
        assert rx.search(value)
    assert rx._transitions <= 50_000
    assert rx._size <= 200_000 + 600
