"""The HAProxy executable's version check."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapless.haproxy.binary import BinaryError, check_binary
from tests.haproxy.binary import require_haproxy
from tests.haproxy.test_apply import fake_old_haproxy


def test_debian_haproxy_passes() -> None:
    """The installed HAProxy is >= 2.6."""
    found = check_binary(require_haproxy())
    assert found.version[:2] >= (2, 6)


def test_too_old_missing_or_foreign_binaries_are_refused(tmp_path: Path) -> None:
    """2.4, a path that does not exist and a program that is not HAProxy are each refused with the reason."""
    with pytest.raises(BinaryError, match=r"HAProxy 2\.4\.22; gapless needs HAProxy >= 2\.6"):
        check_binary(str(fake_old_haproxy(tmp_path)))
    with pytest.raises(BinaryError, match="not found"):
        check_binary(str(tmp_path / "nowhere"))
    with pytest.raises(BinaryError, match="does not look like HAProxy"):
        check_binary("/bin/true")


def test_missing_haproxy_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without haproxy on PATH a test is skipped with the reason, but under CI=true it fails."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="haproxy not installed"):
        require_haproxy()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the HAProxy tests"):
        require_haproxy()
