"""The CLI separates the operator's mistakes (exit 2, one line) from the daemon's defects (traceback, exit 1)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ecgwatch
from ecgwatch import artifact, cli
from ecgwatch.serve.service import Service
from training import cli as training_cli


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


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("build", [cli.build_parser, training_cli.build_parser])
def test_every_flag_of_every_command_explains_itself(build) -> None:
    for name, sub in _subcommands(build()).items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        assert "(default: " in " ".join(sub.format_help().split()), name


def test_settings_flags_show_the_settings_own_description_and_default() -> None:
    text = " ".join(_subcommands(cli.build_parser())["serve"].format_help().split())
    assert "--mqtt-port PORT MQTT broker port (default: 1883)" in text


def test_help_and_version_do_not_wait_for_torch() -> None:
    code = "import sys; from ecgwatch.cli import main\ntry:\n main(['--version'])\nexcept SystemExit:\n pass\n"
    code += "print(sorted(m for m in ('torch', 'paho') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [f"ecgwatch {ecgwatch.__version__}", "[]"]


def test_output_cut_short_by_a_pipe_ends_quietly(data_root: Path) -> None:
    """`ecgwatch score FILE | head -1` used to end with a BrokenPipeError traceback."""
    score = subprocess.Popen(
        [sys.executable, "-m", "ecgwatch", "score", str(data_root / "ecg5000" / "ECG5000_TEST.txt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert score.stdout is not None
    assert score.stdout.readline().startswith(b"row,label,score")
    score.stdout.close()  # the reader leaves, as head does
    _, err = score.communicate(timeout=120)
    assert b"Traceback" not in err
    assert b"BrokenPipe" not in err


@pytest.mark.parametrize(
    "model", [artifact.REFERENCE_MODEL_DIR, artifact.POPULATION_MODEL_DIR, artifact.DENOISER_MODEL_DIR]
)
def test_info_describes_every_shipped_model(model: Path, capsys) -> None:
    """`info` on the image denoiser used to fail with KeyError: 'input'."""
    assert cli.main(["info", "--model", str(model)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == artifact.read_metadata(model)["version"]
