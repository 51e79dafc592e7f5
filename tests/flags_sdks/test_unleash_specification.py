"""Unleash's client specification (npm ``@unleash/client-specification``), every file, through gapless's evaluator.

Each specification file is a features document (or delta events), ``isEnabled`` cases and
``getVariant`` cases. The document is translated into a gapless ruleset (``gapless.flags.unleash``),
compiled, and every case is evaluated by ``CompiledRuleset.evaluate``: enabled, and the variant's name,
payload, ``enabled`` and ``feature_enabled``, must be what the specification expects. The flags that
gapless cannot express are listed below with the reason; their cases are not run, and the list must stay
exactly what the translator refuses, so it can only shrink on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gapless.flags.evaluate import compile_ruleset
from gapless.flags.unleash import context_from_unleash, ruleset_from_unleash, state_from_delta, unleash_result

SPEC_FILES = [f"{n:02d}" for n in range(1, 23)]

NOT_EXPRESSIBLE = {
    "F7.invalid-operator": "unknown operator 'NOT_A_VALID_OPERATOR'",
    "R03.ascii_class": "POSIX character classes",
    "R04.word_boundary_ascii": "word boundaries are not supported",
    "R09.inline_flag_i": "inline flags are not supported",
    "R10.inline_flag_m": "inline flags are not supported",
    "R11.inline_flag_s_dotall": "inline flags are not supported",
}
"""Flags of the specification that gapless refuses, with why: an operator Unleash itself does not know
(Unleash evaluates it as false; gapless refuses to import it rather than guess), and regular expressions
in Rust's syntax beyond gapless's linear-time engine (docs/flags.md, "The regex engine")."""


def spec_file(node_modules: Path, prefix: str) -> Path:
    directory = node_modules / "@unleash" / "client-specification" / "specifications"
    index = json.loads((directory / "index.json").read_text())
    (name,) = [n for n in index if n.startswith(prefix)]
    return directory / name


def test_index_lists_exactly_the_files_run(node_modules: Path) -> None:
    """Every file of the specification's index is run here (a new file needs a look first)."""
    directory = node_modules / "@unleash" / "client-specification" / "specifications"
    index = json.loads((directory / "index.json").read_text())
    assert sorted(n[:2] for n in index) == SPEC_FILES


@pytest.mark.parametrize("prefix", SPEC_FILES)
def test_specification_file(node_modules: Path, prefix: str) -> None:
    """Every case of one specification file gives Unleash's expected answer through gapless's evaluator."""
    spec = json.loads(spec_file(node_modules, prefix).read_text())
    state = spec["state"]
    if "events" in state:
        state = state_from_delta(state["events"])
    translation = ruleset_from_unleash(state)
    features = {f["name"] for f in state.get("features", [])}
    assert {k: v for k, v in translation.refused.items() if k in features} == {
        k: translation.refused[k] for k in NOT_EXPRESSIBLE if k in features
    }
    for key, reason in translation.refused.items():
        assert NOT_EXPRESSIBLE[key] in reason, (key, reason)
    ruleset = compile_ruleset(translation.ruleset, strict=True)
    payloads = {
        key: {v["key"]: v.get("payload") for v in flag["variants"]}
        for key, flag in translation.ruleset["flags"].items()
    }
    failures: list[str] = []
    ran = 0
    for case in spec.get("tests", []):
        if case["toggleName"] in NOT_EXPRESSIBLE:
            continue
        ev = ruleset.evaluate(case["toggleName"], context_from_unleash(case["context"]), False)
        ran += 1
        if (ev.value is True) != case["expectedResult"]:
            failures.append(f"isEnabled: {case['description']}: {ev}")
    for case in spec.get("variantTests", []):
        if case["toggleName"] in NOT_EXPRESSIBLE:
            continue
        ev = ruleset.evaluate(case["toggleName"], context_from_unleash(case["context"]), False)
        got: dict[str, Any] = unleash_result(ev.value, ev.variant, payloads.get(case["toggleName"], {}))
        ran += 1
        if got != case["expectedResult"]:
            failures.append(f"getVariant: {case['description']}: {got} != {case['expectedResult']}")
    assert not failures, "\n".join(failures)
    assert ran > 0
