"""Bounds of a load run: each bad number or name is refused with the option it belongs to."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gapless.loadgen import LoadInputError, run_load
from gapless.loadgen.settings import LoadSettings

GOOD: dict[str, Any] = {
    "rps": 100.0,
    "duration": 10.0,
    "timeout": 5.0,
    "version_header": "X-Version",
    "method": "GET",
    "max_in_flight": 1000,
}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("rps", 0),
        ("rps", -5),
        ("rps", 100_001),
        ("rps", math.nan),
        ("rps", math.inf),
        ("duration", 0),
        ("duration", 3601),
        ("timeout", 0),
        ("timeout", 601),
        ("max_in_flight", 0),
        ("max_in_flight", 10_001),
        ("max_in_flight", 1.5),
        ("version_header", "X Version"),
        ("version_header", "X-Version:"),
        ("version_header", ""),
        ("method", "FETCH"),
        ("method", "GET /evil"),
    ],
)
def test_out_of_bounds_inputs_name_their_option(option: str, value: object) -> None:
    """Each invalid setting raises LoadInputError (a ValueError) whose option is the setting's name."""
    with pytest.raises(LoadInputError) as info:
        LoadSettings.create(**{**GOOD, option: value})
    assert info.value.option == option
    assert isinstance(info.value, ValueError)


def test_bounds_are_inclusive_at_the_top() -> None:
    """The largest accepted values are accepted, and the method is upper-cased."""
    settings = LoadSettings.create(**{**GOOD, "rps": 100_000, "duration": 3600, "method": "post"})
    assert (settings.rps, settings.duration, settings.method) == (100_000.0, 3600.0, "POST")


@pytest.mark.parametrize(
    ("rps", "duration", "planned"),
    [(200, 3, 600), (0.5, 1, 1), (0.5, 2.5, 2), (3, 0.1, 1), (1000, 0.001, 1), (7, 1 / 7 * 10, 10)],
)
def test_planned_requests_are_those_due_before_the_end(rps: float, duration: float, planned: int) -> None:
    """The schedule holds one request at each i / rps strictly before the duration ends."""
    assert LoadSettings.create(**{**GOOD, "rps": rps, "duration": duration}).planned_requests == planned


async def test_run_load_checks_numbers_before_the_url() -> None:
    """A bad rate is reported even when the URL would also be refused."""
    with pytest.raises(LoadInputError) as info:
        await run_load("http://10.1.2.3/", rps=0, duration=1)
    assert info.value.option == "rps"
