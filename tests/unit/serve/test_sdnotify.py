"""The notify protocol is best effort: a socket that is gone must not take the daemon down."""

from __future__ import annotations

from pathlib import Path

from ecgwatch.serve.sdnotify import Notifier


def test_a_notification_that_cannot_be_sent_is_logged_once_not_raised(tmp_path: Path, caplog) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))  # systemd restarted: the socket is not there
    notifier.ready("serving")
    notifier.watchdog()
    warnings = [r for r in caplog.records if r.getMessage() == "cannot notify systemd"]
    assert len(warnings) == 1
