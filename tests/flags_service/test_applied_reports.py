"""SDK reports stored in batches (one upsert per batch) leave what storing them one by one would."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gapless.flags.service import schema as t
from gapless.flags.service.store import AppliedReport, FlagStore

REPORTS = st.lists(
    st.builds(
        AppliedReport,
        project=st.just("shop"),
        environment=st.sampled_from(["production", "staging"]),
        sdk_id=st.sampled_from(["a", "b", "c"]),
        revision=st.integers(0, 4),
        streaming=st.booleans(),
        at=st.integers(1, 50).map(float),
    ),
    max_size=12,
)


def one_by_one(table: dict[tuple[str, str, str], dict[str, Any]], r: AppliedReport) -> None:
    """The rule, report by report: a newer revision is stored with its time; any report is a sign of life."""
    row = table.get((r.project, r.environment, r.sdk_id))
    if row is None:
        table[r.project, r.environment, r.sdk_id] = {
            "revision": r.revision,
            "applied_at": r.at,
            "last_seen": r.at,
            "streaming": r.streaming,
        }
        return
    if r.revision > row["revision"]:
        row |= {"revision": r.revision, "applied_at": r.at}
    row |= {"last_seen": r.at, "streaming": r.streaming}


def stored(store: FlagStore) -> dict[tuple[str, str, str], dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.sdk_clients)).mappings().all()
    return {
        (r["project"], r["environment"], r["sdk_id"]): {
            "revision": r["revision"],
            "applied_at": r["applied_at"],
            "last_seen": r["last_seen"],
            "streaming": r["streaming"],
        }
        for r in rows
    }


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(batches=st.lists(REPORTS, max_size=4))
def test_batches_store_what_reports_one_by_one_would(
    store: FlagStore, batches: list[list[AppliedReport]]
) -> None:
    """Any batches of reports (repeats of one SDK in a batch, older revisions, flips of streaming) leave
    the rows that storing the same reports one at a time leaves."""
    with store.engine.begin() as conn:
        conn.execute(t.sdk_clients.delete())
    expected: dict[tuple[str, str, str], dict[str, Any]] = {}
    for batch in batches:
        store.record_applied_many(batch)
        for r in batch:
            one_by_one(expected, r)
    assert stored(store) == expected
