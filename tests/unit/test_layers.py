"""The architecture's boundaries (docs/architecture.md): the runtime never imports ``training``, and only the
CLI and the demo import the daemon (``ecgwatch.serve``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ecgwatch"
MAY_IMPORT_SERVE = ("serve", "demo", "cli.py")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def runtime_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_runtime_never_imports_training() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in runtime_modules()
        if any(name == "training" or name.startswith("training.") for name in imported_modules(path))
    ]
    assert offenders == []


def test_only_the_cli_and_the_demo_import_the_daemon() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in runtime_modules()
        if path.relative_to(PACKAGE).parts[0] not in MAY_IMPORT_SERVE
        and any(name == "ecgwatch.serve" or name.startswith("ecgwatch.serve.") for name in imported_modules(path))
    ]
    assert offenders == []


def test_loading_the_daemon_loads_no_training_code() -> None:
    probe = (
        "import sys, ecgwatch.cli, ecgwatch.serve.service, ecgwatch.demo.run;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'training'))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
