"""gapless's linter compared with squawk on one corpus: where they agree, and each documented difference.

Every case of ``lint_corpus.CORPUS`` records what both tools report, so a change of either tool's
behaviour (a squawk upgrade, a gapless rule) fails here until the corpus, and the comparison in
docs/migrations.md, are brought up to date. Without the squawk executable (the ``squawk-cli`` wheel of
the ``dev`` extra) the squawk side is skipped on a developer's machine and fails under CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gapless.migrations.lint import lint_sql
from tests.conftest import REPO, in_ci
from tests.migrations.lint_corpus import (
    CORPUS,
    SQUAWK_STYLE_RULES,
    Case,
    run_squawk,
    squawk_binary,
    squawk_version,
    write_corpus,
)

DOC = REPO / "docs" / "migrations.md"
SECTION = "## Lint compared with squawk"


def require_squawk() -> str:
    """The squawk executable; skips the test when it is missing (fails it instead under CI)."""
    binary = squawk_binary()
    if binary is None:
        message = "squawk is not installed (pip install -e '.[dev]' installs squawk-cli)"
        if in_ci():
            pytest.fail(f"{message}; CI must run the comparison with squawk")
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def squawk_found(tmp_path_factory: pytest.TempPathFactory) -> dict[str, frozenset[str]]:
    """squawk's rules per case (style rules left out), from one run over the whole corpus."""
    binary = require_squawk()
    paths = write_corpus(tmp_path_factory.mktemp("lint-corpus"))
    found = run_squawk(binary, list(paths.values()))
    return {name: frozenset(found[path]) - SQUAWK_STYLE_RULES for name, path in paths.items()}


def _ids(cases: list[Case]) -> list[str]:
    return [case.name for case in cases]


def _gapless(case: Case) -> tuple[str, ...]:
    return tuple(f.rule for f in lint_sql(case.text))


def _differs(case: Case) -> bool:
    """The tools disagree, or agree on a wrong verdict."""
    return not (bool(case.gapless) == bool(case.squawk) == case.dangerous)


CAUGHT_BY_BOTH = [c for c in CORPUS if c.dangerous and c.gapless and c.squawk]
DIFFERENCES = [c for c in CORPUS if _differs(c)]


def test_the_corpus_is_consistent() -> None:
    """Names are unique, and a note explains exactly the rows where the tools differ or are both wrong."""
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    assert [c.name for c in CORPUS if bool(c.note) != _differs(c)] == []
    assert {c.kind for c in CORPUS} == {"statement", "alembic", "django", "script"}


@pytest.mark.parametrize("case", CORPUS, ids=_ids(CORPUS))
def test_gapless_reports_the_recorded_rules(case: Case) -> None:
    """gapless's findings on each input are the ones the comparison documents."""
    assert _gapless(case) == case.gapless


@pytest.mark.parametrize("case", CORPUS, ids=_ids(CORPUS))
def test_squawk_reports_the_recorded_rules(case: Case, squawk_found: dict[str, frozenset[str]]) -> None:
    """squawk's findings (style rules aside) on each input are the ones the comparison documents."""
    assert squawk_found[case.name] == case.squawk


@pytest.mark.parametrize("case", CAUGHT_BY_BOTH, ids=_ids(CAUGHT_BY_BOTH))
def test_dangerous_input_caught_by_both(case: Case, squawk_found: dict[str, frozenset[str]]) -> None:
    """What both tools should catch, both catch."""
    assert _gapless(case)
    assert squawk_found[case.name]


@pytest.mark.parametrize("case", DIFFERENCES, ids=_ids(DIFFERENCES))
def test_documented_difference(case: Case, squawk_found: dict[str, frozenset[str]]) -> None:
    """Each difference holds as documented: one tool flags the input and the other passes it (or both miss it)."""
    gapless, squawk = _gapless(case), squawk_found[case.name]
    if case.gapless and not case.squawk:
        assert gapless == case.gapless
        assert squawk == frozenset(), f"squawk now flags {case.name}: {sorted(squawk)}"
    elif case.squawk and not case.gapless:
        assert squawk == case.squawk
        assert gapless == (), f"gapless now flags {case.name}: {gapless}"
    else:  # missed (or flagged) by both, against the expectation
        assert bool(gapless) == bool(squawk) != case.dangerous
    assert f"`{case.name}`" in _doc_section(), f"{case.name} is missing from the comparison in {DOC.name}"


def test_the_compared_version_is_documented() -> None:
    """The comparison names the squawk version it was made with, which is the one installed."""
    version = squawk_version(require_squawk())
    assert f"squawk {version}" in _doc_section()


def _doc_section() -> str:
    text = Path(DOC).read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else len(text)]
