"""The CLI separates the operator's mistakes (exit 2, one line) from the daemon's defects (traceback, exit 1)."""

from __future__ import annotations

import pytest

from ecgwatch import cli
from ecgwatch.serve.service import Service


def test_a_runtime_error_in_the_running_daemon_is_not_hidden_as_a_start_up_error(monkeypatch, capsys) -> None:
    def defect(_self: Service, install_signals: bool = True) -> int:
        raise RuntimeError("a bug while serving")

    monkeypatch.setattr(Service, "run", defect)
    monkeypatch.setenv("ECGWATCH_METRICS__ENABLED", "false")
    with pytest.raises(RuntimeError, match="a bug while serving"):
        cli.main(["serve"])
    assert "ecgwatch: error" not in capsys.readouterr().err


def test_a_start_up_error_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert cli.main(["serve", "--model", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecgwatch: error:")
    assert "model directory does not exist" in err
