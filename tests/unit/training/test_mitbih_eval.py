"""The offline strips report: a MIT-BIH record through the daemon's segmentation, scored and matched."""

from __future__ import annotations

import json
from pathlib import Path

from tests.factories import make_model
from training.cli import main


def test_strips_report_on_one_record(tmp_path: Path, data_root: Path, capsys) -> None:
    records = tmp_path / "mitbih"
    records.mkdir()
    for suffix in (".hea", ".dat", "_beats.csv"):  # one person, linked, not copied
        (records / f"121{suffix}").symlink_to((data_root / "mitbih" / f"121{suffix}").resolve())
    model = make_model(tmp_path / "model", "report-model", threshold=1e9)
    assert main(["strips-report", "--data", str(records), "--model", str(model), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "strips_report.json").read_text())
    (row,) = report["records"]
    assert row["record"] == "121"
    assert row["sensitivity"] >= 0.995
    assert row["positive_predictivity"] >= 0.995
    assert row["false_alarm_rate"] == 0.0  # nothing crosses a threshold of 1e9
    assert row["episodes_per_day"] == {}
    assert "| 121 |" in (tmp_path / "out" / "strips_report.md").read_text()
    assert "strips_report.md" in capsys.readouterr().out
