"""``flags refs``: the reference scanner (pure) and the walk over a source tree (real files)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st

from gapless.cli.flags_refs import SKIPPED_DIRS, Reference, scan_text, scan_tree

KEY = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
QUOTE = st.sampled_from(["'", '"', "`"])
PLAIN = st.text(
    st.characters(blacklist_characters="'\"`\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=30
)
"""Text without quotes or line breaks: it can hold no reference."""


@given(st.lists(PLAIN, max_size=8), st.frozensets(KEY, max_size=5))
def test_text_without_string_literals_holds_no_reference(lines: list[str], keys: frozenset[str]) -> None:
    """A key that only appears bare (not quoted) is not counted."""
    text = "\n".join(line + " " + " ".join(keys) for line in lines)
    assert scan_text(text, keys) == []


@given(st.lists(PLAIN, min_size=1, max_size=8), st.data(), KEY, QUOTE)
def test_a_quoted_key_is_found_on_its_line(lines: list[str], data: st.DataObject, key: str, q: str) -> None:
    """A known key written as a whole literal anywhere on a line is a reference on that line."""
    n = data.draw(st.integers(0, len(lines) - 1))
    at = data.draw(st.integers(0, len(lines[n])))
    lines[n] = lines[n][:at] + q + key + q + lines[n][at:]
    assert (n + 1, key, True) in scan_text("\n".join(lines), frozenset({key}))


@given(KEY, st.from_regex(r"[a-z0-9._-]{1,5}", fullmatch=True), QUOTE)
def test_a_key_inside_a_longer_literal_is_no_reference(key: str, suffix: str, q: str) -> None:
    """``"new-checkout-v2"`` does not refer to ``new-checkout``."""
    assume(key + suffix != key)
    text = f"x = {q}{key}{suffix}{q}\ny = {q}prefix{key}{q}"
    assert scan_text(text, frozenset({key})) == []


@given(
    KEY, QUOTE, st.sampled_from(["is_enabled", "isEnabled", "getBooleanValue", "get_string_value", "variant"])
)
def test_an_unknown_key_in_an_evaluation_call_is_reported(key: str, q: str, call: str) -> None:
    """A flag the project does not have, asked for by an SDK call, is an unknown reference."""
    text = f"if client.{call}( {q}{key}{q}, ctx):\n    pass"
    assert scan_text(text, frozenset()) == [(1, key, False)]
    assert scan_text(text, frozenset({key})) == [(1, key, True)]


@given(st.lists(st.tuples(KEY, QUOTE), min_size=1, max_size=6))
def test_each_key_is_listed_once_per_line_in_order(items: list[tuple[str, str]]) -> None:
    """Several keys on one line come in the order written, each once."""
    line = ", ".join(q + k + q for k, q in items + items)
    keys = frozenset(k for k, _ in items)
    found = scan_text(line, keys)
    expected = list(dict.fromkeys(k for k, _ in items))
    assert [k for _, k, _ in found] == expected


def test_the_walk_skips_vcs_dependency_and_binary_files(tmp_path: Path) -> None:
    """References under .git, node_modules and .venv and in binary files are not listed."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "checkout.py").write_text('import x\nif flags.is_enabled("new-checkout"):\n  pass\n')
    (tmp_path / "app" / "typo.ts").write_text('client.getBooleanValue("new-chekout", false)\n')
    for skipped in SKIPPED_DIRS:
        (tmp_path / skipped).mkdir(exist_ok=True)
        (tmp_path / skipped / "x.js").write_text('"new-checkout"\n')
    (tmp_path / "logo.png").write_bytes(b'\x89PNG\0\0"new-checkout"')
    refs = scan_tree(tmp_path, ["new-checkout", "dark-mode"])
    assert refs == [
        Reference("app/checkout.py", 2, "new-checkout", True),
        Reference("app/typo.ts", 1, "new-chekout", False),
    ]


def test_one_file_may_be_scanned(tmp_path: Path) -> None:
    """PATH may be a single file; it is named by its own name."""
    f = tmp_path / "main.go"
    f.write_text('on, _ := client.BooleanValue(ctx, "dark-mode", false, of.EvaluationContext{})\n')
    assert scan_tree(f, ["dark-mode"]) == [Reference("main.go", 1, "dark-mode", True)]
