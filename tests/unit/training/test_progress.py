"""Progress bars count batches and keep quiet off a terminal (CI logs, pipes)."""

from __future__ import annotations

import sys

from training.progress import batches


def test_quiet_when_stderr_is_not_a_terminal(capsys) -> None:
    assert not sys.stderr.isatty()  # pytest captures it
    bar = batches(100, "train")
    bar.update(10)
    bar.close()
    assert bar.disable
    assert capsys.readouterr().err == ""


def test_without_the_train_extra_the_command_says_what_to_install() -> None:
    import subprocess

    code = "import sys; sys.modules['sklearn'] = None\nfrom training.entry import main\nsys.exit(main(['--help']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install 'ecgwatch[train]'" in result.stderr
    assert "Traceback" not in result.stderr
