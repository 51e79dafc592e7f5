"""A canary step as people read it (events, dashboard): ``CanaryStep.describe``.

Rules: one line, never a raw mapping (no ``{``), and it names what the step does with its own numbers
and names: the weight, the pause's length or "until promoted", the replicas, each header or cookie of
a route, each analysis template.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gapless.spec.strategy import CanaryStep, _seconds_text

names = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
values = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=12)
string_match = st.one_of(
    st.builds(lambda v: {"exact": v}, values),
    st.builds(lambda v: {"prefix": v}, values),
    st.builds(lambda v: {"regex": f"^{v}"}, values),
)
route_match = st.one_of(
    st.builds(lambda n, v: {"headerName": n, "headerValue": v}, names, string_match),
    st.builds(lambda n, v: {"cookieName": n, "cookieValue": v}, names, string_match),
)
steps: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.builds(lambda w: {"setWeight": w}, st.integers(0, 100)),
    st.just({"pause": {}}),
    st.builds(lambda d: {"pause": {"duration": d}}, st.integers(1, 86400)),
    st.builds(lambda r: {"setCanaryScale": {"replicas": r}}, st.integers(0, 50)),
    st.builds(lambda w: {"setCanaryScale": {"weight": w}}, st.integers(0, 100)),
    st.just({"setCanaryScale": {"matchTrafficWeight": True}}),
    st.builds(lambda ms: {"setHeaderRoute": {"match": ms}}, st.lists(route_match, max_size=3)),
    st.builds(
        lambda ts: {"analysis": {"templates": [{"templateName": t} for t in ts]}},
        st.lists(names, min_size=1, max_size=3, unique=True),
    ),
)


@given(steps)
def test_a_step_reads_as_one_line_with_its_own_values(raw: dict[str, Any]) -> None:
    step = CanaryStep.model_validate(raw)
    text = step.describe()
    assert text
    assert "\n" not in text
    assert "{" not in text
    if "setWeight" in raw:
        assert text == f"set weight {raw['setWeight']}%"
    if "pause" in raw:
        d = raw["pause"].get("duration")
        assert text == ("pause until promoted" if d is None else f"pause {_seconds_text(d)}")
    if "setCanaryScale" in raw:
        scale = raw["setCanaryScale"]
        for key in ("replicas", "weight"):
            if key in scale:
                assert str(scale[key]) in text
    if "setHeaderRoute" in raw:
        matches = raw["setHeaderRoute"]["match"]
        assert text == "header route removed" or matches
        for m in matches:
            assert (m.get("headerName") or m.get("cookieName")) in text
    if "analysis" in raw:
        for t in raw["analysis"]["templates"]:
            assert t["templateName"] in text


@given(st.integers(1, 10 * 86400))
def test_whole_seconds_read_back(seconds: int) -> None:
    """``_seconds_text`` of whole seconds is h/m/s parts that add up to the same number."""
    text = _seconds_text(seconds)
    total, num = 0, ""
    for ch in text:
        if ch.isdigit():
            num += ch
        else:
            total += int(num) * {"h": 3600, "m": 60, "s": 1}[ch]
            num = ""
    assert total == seconds
    assert not num


def test_examples() -> None:
    assert _seconds_text(0.5) == "500ms"
    assert _seconds_text(90) == "1m30s"
    assert _seconds_text(2.5) == "2.5s"
    assert CanaryStep.model_validate({"pause": {"duration": "1h"}}).describe() == "pause 1h"
