from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ecgwatch import artifact
from ecgwatch.artifact import ArtifactError
from ecgwatch.models import RecurrentAEConfig, RecurrentAutoencoder

META = {
    "version": "test-model-1",
    "input": {"seq_len": 140, "preprocessing": "zscore-per-beat", "zscore_ddof": 1},
    "score": {"kind": "max-window-mean-absolute-error", "window": 20},
    "threshold": {"value": 0.25, "method": "normal-validation-quantile", "target_fpr": 0.01},
}


@pytest.fixture
def saved(tmp_path: Path) -> tuple[RecurrentAutoencoder, Path]:
    torch.manual_seed(0)
    model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=8)).eval()
    return model, artifact.save(model, META, tmp_path / "model")


def test_round_trip_reproduces_outputs_and_metadata(saved) -> None:
    model, path = saved
    loaded = artifact.load(path)
    x = torch.randn(3, 140, 1)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
    assert loaded.version == "test-model-1"
    assert loaded.threshold == 0.25
    assert loaded.seq_len == 140
    meta = json.loads((path / "model.json").read_text())
    assert meta["hyperparameters"] == {"seq_len": 140, "n_features": 1, "embedding_dim": 8, "reverse_decoder": True}
    assert set(meta["versions"]) >= {"torch", "numpy", "ecgwatch", "python"}


def test_two_trainings_of_one_recipe_get_different_versions(tmp_path: Path) -> None:
    """A 3-epoch model trained today once got the shipped model's version string."""
    versions = set()
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=8)).eval()
        path = artifact.save(model, META, tmp_path / str(seed), stamp_version=True)
        meta = json.loads((path / "model.json").read_text())
        assert meta["version"] == f"test-model-1-w{meta['weights']['sha256'][:8]}"
        versions.add(artifact.load(path).version)
    assert len(versions) == 2


def test_weights_are_safetensors_not_pickle(saved) -> None:
    _, path = saved
    header_len = int.from_bytes((path / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((path / "model.safetensors").read_bytes()[8 : 8 + header_len])
    assert "enc1.weight_ih_l0" in header


def _rewrite_json(path: Path, **changes: object) -> None:
    meta = json.loads((path / "model.json").read_text())
    meta.update(changes)
    (path / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda p: (p / "model.json").unlink(), r"model.json: missing"),
        (lambda p: (p / "model.safetensors").unlink(), r"model.safetensors: missing"),
        (lambda p: (p / "model.json").write_text((p / "model.json").read_text()[:100]), r"not valid JSON"),
        (
            lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:500]),
            r"does not match .* truncated, corrupt or from another model",
        ),
        (lambda p: _rewrite_json(p, format_version=99), r"version 99 is not supported"),
        (lambda p: _rewrite_json(p, architecture="transformer"), r"architecture 'transformer'"),
        (
            lambda p: _rewrite_json(p, hyperparameters={"embedding_dim": 16, "seq_len": 140, "n_features": 1}),
            r"weights do not fit the recorded architecture",
        ),
        (lambda p: _rewrite_json(p, hyperparameters={"hidden": 3}), r"bad hyperparameters"),
        (lambda p: (p / "model.json").write_text("[1, 2]"), r"expected a JSON object"),
    ],
)
def test_each_corruption_stops_loading_with_a_clear_message(saved, corrupt, message: str) -> None:
    _, path = saved
    corrupt(path)
    with pytest.raises(ArtifactError, match=message):
        artifact.load(path)


def test_non_finite_weights_fail_the_smoke_test(tmp_path: Path) -> None:
    model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=4))
    with torch.no_grad():
        model.out.bias.fill_(float("nan"))
    path = artifact.save(model, META, tmp_path / "nan")
    with pytest.raises(ArtifactError, match="non-finite output"):
        artifact.load(path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        artifact.load(tmp_path / "absent")
