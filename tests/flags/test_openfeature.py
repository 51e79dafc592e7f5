"""The OpenFeature provider, through the real openfeature API client: values, reasons and error codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from gapless.flags.openfeature import GaplessProvider
from gapless.flags.sdk import FlagClient

from .conftest import boolean_flag, ruleset

DOMAIN = "gapless-tests"
TEN_PERCENT = {
    "split": {"weights": [{"variant": "on", "weight": 10_000}, {"variant": "off", "weight": 90_000}]}
}


def flags() -> dict[str, Any]:
    def typed(kind: str, values: dict[str, Any], serve: str) -> dict[str, Any]:
        return {
            "kind": kind,
            "variants": [{"key": k, "value": v} for k, v in values.items()],
            "offVariant": next(iter(values)),
            "enabled": True,
            "rules": [
                {"conditions": [{"attribute": "plan", "operator": "in", "values": ["pro"]}], "variant": serve}
            ],
        }

    return ruleset(
        {
            "checkout": boolean_flag(default={"variant": "on"}),
            "targeted": boolean_flag(
                rules=[
                    {
                        "conditions": [{"attribute": "plan", "operator": "in", "values": ["pro"]}],
                        "variant": "on",
                    }
                ]
            ),
            "rollout": boolean_flag(default=TEN_PERCENT),
            "killed": boolean_flag(default={"variant": "on"}, enabled=False),
            "theme": typed("string", {"light": "light", "dark": "dark"}, "dark"),
            "limit": typed("number", {"low": 10, "high": 100}, "high"),
            "ratio": typed("number", {"none": 0, "half": 0.5}, "half"),
            "whole": typed("number", {"none": 0, "two": 2.0}, "two"),
            "config": typed("json", {"off": {}, "on": {"retries": 3, "hosts": ["a", "b"]}}, "on"),
            "broken": {
                **boolean_flag(),
                "rules": [
                    {
                        "conditions": [{"attribute": "a", "operator": "soundsLike", "value": 1}],
                        "variant": "on",
                    }
                ],
            },
        },
        revision=12,
    )


@pytest.fixture
def client() -> Iterator[OpenFeatureClient]:
    """An OpenFeature client whose domain is served by a GaplessProvider over a bootstrapped FlagClient."""
    provider = GaplessProvider(FlagClient(bootstrap=flags()))
    api.set_provider_and_wait(provider, domain=DOMAIN)
    yield api.get_client(domain=DOMAIN)
    api.clear_providers()


PRO = EvaluationContext("user-1", {"plan": "pro"})


def test_metadata() -> None:
    """The provider names itself."""
    assert GaplessProvider(FlagClient()).get_metadata().name == "gapless"


def test_boolean_reasons(client: OpenFeatureClient) -> None:
    """STATIC, TARGETING_MATCH, DEFAULT, DISABLED and SPLIT come through with values and variants."""
    d = client.get_boolean_details("checkout", False)
    assert (d.value, d.variant, d.reason, d.error_code) == (True, "on", Reason.STATIC, None)
    d = client.get_boolean_details("targeted", False, PRO)
    assert (d.value, d.variant, d.reason) == (True, "on", Reason.TARGETING_MATCH)
    assert d.flag_metadata == {"ruleIndex": 0}
    d = client.get_boolean_details("targeted", True, EvaluationContext("user-1", {"plan": "free"}))
    assert (d.value, d.variant, d.reason) == (False, "off", Reason.DEFAULT)
    d = client.get_boolean_details("killed", True, PRO)
    assert (d.value, d.variant, d.reason) == (False, "off", Reason.DISABLED)
    d = client.get_boolean_details("rollout", True, PRO)
    assert d.reason == Reason.SPLIT
    assert d.variant in ("on", "off")


def test_targeting_key_drives_splits(client: OpenFeatureClient) -> None:
    """The evaluation context's targeting key is the split's stickiness; about 10% get on."""
    on = sum(client.get_boolean_value("rollout", False, EvaluationContext(f"user-{i}")) for i in range(5_000))
    assert 400 < on < 600


def test_targeting_key_missing(client: OpenFeatureClient) -> None:
    """A split without a targeting key gives the default with TARGETING_KEY_MISSING."""
    d = client.get_boolean_details("rollout", True, EvaluationContext(attributes={"plan": "pro"}))
    assert (d.value, d.reason, d.error_code) == (True, Reason.ERROR, ErrorCode.TARGETING_KEY_MISSING)


def test_string_integer_float_object(client: OpenFeatureClient) -> None:
    """Each value kind resolves through its typed method, integers widening to floats and whole floats to ints."""
    assert client.get_string_details("theme", "x", PRO).value == "dark"
    d = client.get_integer_details("limit", 0, PRO)
    assert (d.value, d.variant, d.reason) == (100, "high", Reason.TARGETING_MATCH)
    assert client.get_float_details("ratio", 0.0, PRO).value == 0.5
    f = client.get_float_details("limit", 0.0, PRO)
    assert f.value == 100.0
    assert isinstance(f.value, float)
    w = client.get_integer_details("whole", 0, PRO)
    assert w.value == 2
    assert isinstance(w.value, int)
    assert client.get_object_details("config", {}, PRO).value == {"retries": 3, "hosts": ["a", "b"]}


@pytest.mark.parametrize(
    ("method", "key", "default", "code"),
    [
        ("get_boolean_details", "nope", True, ErrorCode.FLAG_NOT_FOUND),
        ("get_string_details", "checkout", "x", ErrorCode.TYPE_MISMATCH),
        ("get_boolean_details", "theme", False, ErrorCode.TYPE_MISMATCH),
        ("get_integer_details", "ratio", 7, ErrorCode.TYPE_MISMATCH),
        ("get_integer_details", "checkout", 7, ErrorCode.TYPE_MISMATCH),
        ("get_object_details", "limit", {"d": 1}, ErrorCode.TYPE_MISMATCH),
        ("get_boolean_details", "broken", True, ErrorCode.PARSE_ERROR),
    ],
)
def test_error_codes(client: OpenFeatureClient, method: str, key: str, default: Any, code: ErrorCode) -> None:
    """Errors give the caller's default, reason ERROR, the matching error code and a message."""
    d = getattr(client, method)(key, default, PRO)
    assert (d.value, d.reason, d.error_code) == (default, Reason.ERROR, code)
    assert d.error_message


class Unreadable(Mapping[str, Any]):
    """Attributes that fail when read."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


def test_general_error_from_unreadable_attributes(client: OpenFeatureClient) -> None:
    """Attributes that cannot be read give the default with GENERAL from the provider, not an exception."""
    provider = GaplessProvider(FlagClient(bootstrap=flags()))
    details = provider.resolve_boolean_details("targeted", True, EvaluationContext("u", Unreadable()))
    assert (details.value, details.reason, details.error_code) == (True, Reason.ERROR, ErrorCode.GENERAL)
    assert "boom" in (details.error_message or "")
    assert provider.resolve_boolean_details("targeted", True, None).value is False  # no context: no match


def test_provider_starts_a_client_nobody_started(tmp_path: Path) -> None:
    """initialize() starts an unstarted client, which reads its bootstrap file."""
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flags()))
    flag_client = FlagClient(bootstrap_file=path)
    api.set_provider_and_wait(GaplessProvider(flag_client), domain=DOMAIN)
    try:
        assert flag_client.started
        assert api.get_client(domain=DOMAIN).get_boolean_value("checkout", False) is True
    finally:
        api.clear_providers()


def test_async_resolution(client: OpenFeatureClient) -> None:
    """The async API resolves through the same provider."""
    value = asyncio.run(client.get_string_value_async("theme", "x", PRO))
    assert value == "dark"
