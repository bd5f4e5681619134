"""Synthetic people through the CLI: the shipped model, adapted, leaves a normal ECGSYN heart alone."""

from __future__ import annotations

import json
from pathlib import Path

from training.cli import main
from training.synthetic import Person


def test_one_synthetic_person_raises_almost_no_false_alarms(tmp_path: Path) -> None:
    assert main(["synthetic", "--out", str(tmp_path), "--people", "1", "--minutes", "4"]) == 0
    pooled = json.loads((tmp_path / "synthetic.json").read_text())["pooled"]
    assert pooled["beats"] > 100
    assert pooled["adapted_false_alarms"] <= 0.02 * pooled["beats"]
    assert pooled["ecg5000_false_alarms"] > 0.5 * pooled["ecg5000_beats"], "the one-person model does not generalise"


def test_people_differ_and_are_reproducible() -> None:
    assert Person.draw(3) == Person.draw(3)
    assert Person.draw(3).heart_rate != Person.draw(4).heart_rate
