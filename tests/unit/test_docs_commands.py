"""Every command in the README and docs still works: it parses against the real CLI, names real make targets,
benchmark flags and deploy files. A renamed flag or file fails here instead of rotting in the docs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ecgwatch.cli import build_parser as runtime_parser
from training.cli import build_parser as training_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "ecgwatch").glob("*_model/MODEL_CARD.md")),
]
PLACEHOLDERS = {"DIR": "some/dir", "N": "2"}
SYSTEM_TOOLS = ("sudo", "systemctl", "journalctl", "docker", "kubectl")


def shell_lines(document: Path) -> list[str]:
    """Command lines of the ```sh blocks: comments stripped, continuation lines joined, env assignments dropped."""
    lines = []
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", document.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(re.sub(r"^(\w+=\S+\s+)+", "", line))
    return lines


COMMANDS = [(document.relative_to(ROOT).as_posix(), line) for document in DOCUMENTS for line in shell_lines(document)]


def argv_of(line: str) -> list[str]:
    """Optional ``[--flag X]`` groups included, ``a|b`` and ``{a,b}`` choices reduced to the first, and
    placeholders filled."""
    line = line.replace("[", "").replace("]", "")
    line = re.sub(r"\{([^,}]+),[^}]*\}", r"\1", line)
    line = re.sub(r"([^\s|]+)(\|[^\s|]+)+", r"\1", line)
    return [PLACEHOLDERS.get(token, token) for token in shlex.split(line)]


def test_the_docs_have_commands_to_check() -> None:
    assert len(COMMANDS) > 20
    assert {doc for doc, _ in COMMANDS} >= {"README.md", "docs/operations.md", "docs/training.md"}


@pytest.mark.parametrize(("document", "line"), COMMANDS)
def test_command_is_current(document: str, line: str) -> None:
    for part in (p.strip() for p in line.split("&&")):
        argv = argv_of(part)
        program = argv[0].rsplit("/", 1)[-1]
        if program == "ecgwatch":
            runtime_parser().parse_args(argv[1:])  # SystemExit on an unknown flag or a bad value
        elif program == "ecgwatch-train":
            training_parser().parse_args(argv[1:])
        elif program == "make":
            assert subprocess.run(["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True).returncode == 0, part
        elif argv[:2] == [".venv/bin/python", "-m"] or argv[:2] == ["python", "-m"]:
            _benchmark_accepts(argv[2], [a for a in argv[3:] if a.startswith("--")])
        elif program in SYSTEM_TOOLS or program.endswith(".sh"):
            _repository_paths_exist(argv)
        else:
            raise AssertionError(f"{document}: no check for {part!r}; teach this test about it")


def _benchmark_accepts(module: str, flags: list[str]) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    missing = [flag for flag in flags if flag not in help_text]
    assert missing == [], f"{module} has no {missing}"


def _repository_paths_exist(argv: list[str]) -> None:
    for token in argv:
        if token.startswith(("deploy/", "constraints.txt")) or token.endswith(".sh"):
            assert (ROOT / token).exists(), f"{token} does not exist"
