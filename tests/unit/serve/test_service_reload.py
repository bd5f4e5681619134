"""Hot reload refuses any model it cannot serve and keeps serving the old one (no broker needed)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ecgwatch import artifact
from ecgwatch.models import RecurrentAEConfig, RecurrentAutoencoder
from ecgwatch.serve.config import Settings
from ecgwatch.serve.service import Service
from tests.factories import make_model


def edit(key_path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(meta: dict[str, Any]) -> None:
        *parents, last = key_path.split(".")
        for key in parents:
            meta = meta[key]
        if value is KeyError:
            del meta[last]
        else:
            meta[last] = value

    return change


@pytest.fixture
def service(tmp_path: Path) -> Service:
    path = make_model(tmp_path / "model", "served-model")
    return Service(Settings(model={"path": path, "watch": False}, metrics={"enabled": False}))


def failures(service: Service) -> float:
    value = service.metrics.registry.get_sample_value("ecgwatch_model_reloads_total", {"result": "failure"})
    assert value is not None
    return value


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (edit("weights", "x"), "weights"),
        (edit("threshold.value", KeyError), "threshold.value"),
        (edit("score", "fused"), "score"),
        (edit("threshold.value", math.nan), "threshold.value"),
        (edit("threshold.value", math.inf), "threshold.value"),
        (edit("input.zscore_ddof", 7), "input.zscore_ddof"),
        (edit("version", ""), "version"),
        (edit("hyperparameters", None), "hyperparameters"),
    ],
)
def test_a_malformed_model_json_is_refused_naming_the_key(service: Service, change, named: str) -> None:
    path = service.settings.model.path / "model.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))  # json writes NaN and Infinity, as a hand edit might
    with pytest.raises(artifact.ArtifactError, match=r"model\.json: .*" + re.escape(named)):
        artifact.load(service.settings.model.path)
    assert service.reload() is False
    assert failures(service) == 1
    assert service.scorer.loaded.version == "served-model"
    assert service.scorer.score(torch.randn(3, 140).numpy()).scores.shape == (3,)  # still serving


def test_a_model_with_another_input_length_is_refused_on_reload(service: Service, tmp_path: Path) -> None:
    model = RecurrentAutoencoder(RecurrentAEConfig(seq_len=100, embedding_dim=8)).eval()
    meta = {
        "version": "short-beats",
        "input": {"seq_len": 100, "zscore_ddof": 1},
        "score": {"window": 20},
        "threshold": {"value": 1.0},
    }
    artifact.save(model, meta, service.settings.model.path)
    assert artifact.load(service.settings.model.path).seq_len == 100  # a valid model on its own
    assert service.reload() is False
    assert service.scorer.loaded.version == "served-model"
    assert failures(service) == 1


def test_a_valid_model_is_swapped_in(service: Service, tmp_path: Path) -> None:
    make_model(service.settings.model.path, "next-model", seed=3)
    assert service.reload() is True
    assert service.scorer.loaded.version == "next-model"


def test_liveness_fails_when_the_scoring_loop_stops_turning(service: Service) -> None:
    """What the k8s liveness probe asks (/livez): the same question as the systemd watchdog."""
    service._tick()
    assert service.alive() == (True, "alive")
    service.last_tick -= 31
    ok, detail = service.alive()
    assert not ok
    assert detail.startswith("scoring loop stalled")
