"""Unleash streams send Unleash's Node SDK only what changed (delta events); applied as the SDK applies
them, the events leave exactly the state ``/api/client/features`` serves, change after change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from gapless.flags.service.unleash_api import delta_events
from tests.flags_sdks.test_unleash_export import SHOP
from tests.flags_service.test_delivery import ServiceProcess, admin, service

__all__ = ["service"]  # the fixture: a real `gapless flags serve` on SQLite

NODE_SDK = {"unleash-sdk": "unleash-node-sdk:6.12.2"}


def apply(state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The events applied as unleash-client 6.12 does (``repository/index.js``, applyFeatureResponse):
    features replaced or dropped by name, segments by id, a hydration replacing everything."""
    features = {f["name"]: f for f in state["features"]}
    segments = {s["id"]: s for s in state["segments"]}
    for event in events:
        match event["type"]:
            case "feature-updated":
                features[event["feature"]["name"]] = event["feature"]
            case "feature-removed":
                features.pop(event["featureName"], None)
            case "segment-updated":
                segments[event["segment"]["id"]] = event["segment"]
            case "segment-removed":
                segments.pop(event["segmentId"], None)
            case "hydration":
                features = {f["name"]: f for f in event["features"]}
                segments = {s["id"]: s for s in event["segments"]}
            case other:
                raise AssertionError(f"an event the SDK does not know: {other}")
    return {"features": list(features.values()), "segments": list(segments.values())}


def canonical(state: dict[str, Any]) -> tuple[dict[str, Any], dict[int, Any]]:
    return {f["name"]: f for f in state["features"]}, {s["id"]: s for s in state["segments"]}


FEATURES = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.fixed_dictionaries({"enabled": st.booleans(), "segments": st.lists(st.integers(1, 3), max_size=2)}),
)
SEGMENTS = st.dictionaries(st.integers(1, 3), st.sampled_from(["DE", "FR", "US"]))


def state_of(features: dict[str, Any], segments: dict[int, str]) -> dict[str, Any]:
    return {
        "features": [{"name": name, "project": "shop"} | f for name, f in features.items()],
        "segments": [{"id": id_, "constraints": [{"values": [v]}]} for id_, v in segments.items()],
    }


@given(FEATURES, SEGMENTS, FEATURES, SEGMENTS)
def test_delta_events_turn_any_state_into_any_other(
    f1: dict[str, Any], s1: dict[int, str], f2: dict[str, Any], s2: dict[int, str]
) -> None:
    """From any state to any other, the events applied in order give the second state, and name only
    the features and segments that differ."""
    before, after = state_of(f1, s1), state_of(f2, s2)
    events = delta_events(before, after, 7)
    assert canonical(apply(before, events)) == canonical(after)
    changed = {n for n in f1.keys() | f2.keys() if f1.get(n) != f2.get(n)}
    named = {e.get("featureName") or e["feature"]["name"] for e in events if "feature" in e["type"]}
    assert named == changed
    assert all(e["eventId"] == 7 for e in events)


def events_of(lines: Iterator[str]) -> tuple[str, list[dict[str, Any]]]:
    name = next(line for line in lines if line.startswith("event:")).removeprefix("event: ")
    data = next(line for line in lines if line.startswith("data:")).removeprefix("data: ")
    events: list[dict[str, Any]] = json.loads(data)["events"]
    return name, events


def test_node_sdk_stream_gets_only_what_changed(service: ServiceProcess) -> None:
    """A kill sends one ``feature-updated``; a segment edit, an archived and a new flag send their own
    events; after each the streamed state is what ``/api/client/features`` serves. Other SDKs still get
    the whole state each time."""
    segments: list[dict[str, Any]] = SHOP["segments"]  # type: ignore[assignment]
    flags: list[dict[str, Any]] = SHOP["flags"]  # type: ignore[assignment]
    with admin(service) as c:
        assert c.put("/api/v1/projects/shop", json={"environments": ["production"]}).status_code == 200
        for segment in segments:
            assert c.put(f"/api/v1/projects/shop/segments/{segment['key']}", json=segment).status_code == 200
        for flag in flags:
            assert c.post("/api/v1/projects/shop/flags", json=flag).status_code == 201
        token = c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "n", "project": "shop", "environment": "production"},
        ).json()["token"]
        germany = segments[0] | {
            "conditions": [{"attribute": "country", "operator": "in", "values": ["DE", "AT"]}]
        }
        new_flag = {
            "key": "brand-new",
            "environments": {"production": {"enabled": True, "defaultRollout": {"variant": "on"}}},
        }
        changes = [
            ("POST", "/api/v1/projects/shop/flags/kill-me/environments/production/kill", None),
            ("PUT", "/api/v1/projects/shop/segments/germany", germany),
            ("DELETE", "/api/v1/projects/shop/flags/rollout-30", None),
            ("POST", "/api/v1/projects/shop/flags", new_flag),
        ]
        headers = {"Authorization": token} | NODE_SDK
        plain = {"Authorization": token}
        with (
            httpx.stream("GET", f"{service.url}/api/client/streaming", headers=headers, timeout=10) as node,
            httpx.stream("GET", f"{service.url}/api/client/streaming", headers=plain, timeout=10) as other,
        ):
            lines, other_lines = node.iter_lines(), other.iter_lines()
            name, events = events_of(lines)
            assert (name, [e["type"] for e in events]) == ("unleash-connected", ["hydration"])
            state = apply({"features": [], "segments": []}, events)
            events_of(other_lines)
            for i, (method, path, body) in enumerate(changes):
                assert c.request(method, path, json=body).status_code in (200, 201)
                name, events = events_of(lines)
                assert name == "unleash-updated"
                assert events
                assert all(e["type"] != "hydration" for e in events)
                if i == 0:  # the kill switch: that flag only
                    assert [(e["type"], e["feature"]["name"]) for e in events] == [
                        ("feature-updated", "kill-me")
                    ]
                state = apply(state, events)
                served = httpx.get(f"{service.url}/api/client/features", headers=headers).json()
                assert canonical(state) == canonical(served)
                _, whole = events_of(other_lines)
                assert [e["type"] for e in whole] == ["hydration"]
