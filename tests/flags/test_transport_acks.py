"""The SDK acknowledges applied revisions after a short random delay: the newest only, with its age."""

from __future__ import annotations

import threading
import time
from typing import Any

from gapless.flags.transport import HttpTransport


class Recording(HttpTransport):
    """A transport whose posts are recorded (and fail while ``failing`` is set)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("http://127.0.0.1:9", "gfl_x_y", flush_interval=60, **kwargs)
        self.posts: list[tuple[float, str, dict[str, Any]]] = []
        self.failing = False

    def _post(self, path: str, body: dict[str, Any]) -> bool:
        self.posts.append((time.monotonic(), path, body))
        return not self.failing

    def run_reporting(self) -> threading.Thread:
        thread = threading.Thread(target=self._report, daemon=True)
        thread.start()
        return thread

    def stop(self, thread: threading.Thread) -> None:
        with self._wake:
            self._stop.set()
            self._wake.notify_all()
        thread.join(2)
        assert not thread.is_alive()


def wait_for(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_acks_wait_and_only_the_newest_revision_is_sent_with_its_age() -> None:
    t = Recording(ack_delay=0.1)
    thread = t.run_reporting()
    try:
        applied = time.monotonic()
        t._schedule_ack(3, True)
        time.sleep(0.02)
        t._schedule_ack(4, True)  # applied before the ack of 3 went: 3 is not sent at all
        t._schedule_ack(2, True)  # older than what is pending: ignored
        wait_for(lambda: t.posts)
        time.sleep(0.25)
        assert len(t.posts) == 1
        at, path, body = t.posts[0]
        assert path == "/sdk/v1/applied"
        assert (body["revision"], body["streaming"], body["sdkId"]) == (4, True, t.sdk_id)
        assert 0.1 <= at - applied <= 0.2 + 0.1  # ack_delay to twice that, plus scheduling
        assert 0.05 <= body["age"] <= at - applied  # since 4 was applied, 20 ms after 3
    finally:
        t.stop(thread)


def test_a_failed_ack_is_sent_again_and_close_sends_a_pending_one() -> None:
    t = Recording(ack_delay=0.01)
    thread = t.run_reporting()
    try:
        t.failing = True
        t._schedule_ack(5, False)
        wait_for(lambda: t.posts)
        t.failing = False
        wait_for(lambda: len(t.posts) == 2, timeout=5)  # retried after a second or two
        assert [p[2]["revision"] for p in t.posts] == [5, 5]
        assert t.posts[1][2]["age"] >= 1.0  # still dated from when 5 was applied
    finally:
        t.stop(thread)

    t = Recording(ack_delay=60)
    t._schedule_ack(7, True)
    t.close()  # an SDK going away reports what it applied without waiting
    assert [p[2]["revision"] for p in t.posts if p[1] == "/sdk/v1/applied"] == [7]
