"""The versioned model artifact: ``model.safetensors`` (weights) + ``model.json`` (everything else).

Weights are safetensors so loading never unpickles. ``model.json`` records the architecture, the input
contract, the threshold and how it was chosen, the data hash and split seed, metrics and versions, so a
model can be rebuilt, audited and served without the training code. Every check that can fail at load
time fails with a message that says which file is wrong and how.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
from safetensors import SafetensorError

import ecgwatch
from ecgwatch.artifact_schema import FORMAT, FORMAT_VERSION, problems
from ecgwatch.detection import features
from ecgwatch.detection.classifier import Trees
from ecgwatch.detection.device import Classifiers
from ecgwatch.detection.segmentation import Window
from ecgwatch.models.image import IMAGE_ARCHITECTURE, ImageAEConfig, build_image_model
from ecgwatch.models.recurrent import ARCHITECTURE, RecurrentAEConfig, RecurrentAutoencoder
from ecgwatch.shipped import DENOISER_MODEL_DIR, POPULATION_MODEL_DIR, REFERENCE_MODEL_DIR, ArtifactError

__all__ = [
    "DENOISER_MODEL_DIR",
    "POPULATION_MODEL_DIR",
    "REFERENCE_MODEL_DIR",
    "ArtifactError",
    "LoadedModel",
    "load",
    "save",
]

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
DETECTOR_FILE = "detector.safetensors"  # the beat classifier's trees (ecgwatch.detection.classifier)


@dataclass(frozen=True)
class Architecture:
    """How to rebuild and smoke-test one kind of model, and what else its model.json must hold."""

    config: Any  # a frozen dataclass type with to_dict()
    build: Callable[[Any], torch.nn.Module]
    probe: Callable[[Any], torch.Tensor]


ARCHITECTURES = {
    ARCHITECTURE: Architecture(
        RecurrentAEConfig,
        RecurrentAutoencoder,
        lambda c: torch.sin(torch.linspace(0, 6.28, c.seq_len)).reshape(1, -1, 1),
    ),
    IMAGE_ARCHITECTURE: Architecture(ImageAEConfig, build_image_model, lambda c: torch.full((1, *c.input_shape), 0.5)),
}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    metadata: dict[str, Any]
    path: Path
    classifiers: Classifiers | None = None  # the beat classifier, for models that classify strip beats

    def recurrent(self) -> RecurrentAutoencoder:
        """The model as the ECG autoencoder, or an ArtifactError saying this artifact is something else."""
        if not isinstance(self.model, RecurrentAutoencoder):
            raise ArtifactError(
                f"{self.path}: a {self.metadata['architecture']!r} model cannot score ECG beats; "
                f"the daemon needs a {ARCHITECTURE!r} artifact"
            )
        return self.model

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"]["value"])

    @property
    def seq_len(self) -> int:
        return int(self.metadata["input"]["seq_len"])

    @property
    def window(self) -> Window:
        """How strips are cut for this model: R-R windows (ECG5000's) unless the artifact says fixed."""
        section = self.metadata["input"]
        if section.get("window", "rr") != "fixed":
            return Window(seq_len=self.seq_len)
        return Window("fixed", self.seq_len, section["before_s"], section["after_s"], section["align_samples"])

    @property
    def adapted(self) -> bool:
        """Scored against each device's own enrolment (ecgwatch.detection.adaptation) rather than one fixed rule."""
        return str(self.metadata["score"].get("kind")) == "device-adapted"


def library_versions() -> dict[str, str]:
    return {
        "ecgwatch": ecgwatch.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_of(model: torch.nn.Module) -> Any:
    """The frozen config dataclass every model of ours carries as ``model.config`` (to rebuild it)."""
    return getattr(model, "config", None)


def _architecture_of(model: torch.nn.Module) -> str:
    config = config_of(model)
    for name, arch in ARCHITECTURES.items():
        if isinstance(config, arch.config):
            return name
    raise TypeError(f"{type(model).__name__} has no known config; build it with its architecture's builder")


def save(model: torch.nn.Module, metadata: dict[str, Any], directory: Path, stamp_version: bool = False) -> Path:
    """Write the artifact; files appear under their final names only when complete (atomic rename).

    ``stamp_version`` appends the weights' digest to the version (``...-w1a2b3c4d``): a recipe and its data
    name a model, but two trainings of one recipe (3 epochs today, 14 last week) must not share a version,
    or the events and ``ecgwatch_model_info`` could not say which one scored.
    """
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        weights_tmp = Path(tmp) / WEIGHTS_FILE
        safetensors.torch.save_file(state, str(weights_tmp))
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": _architecture_of(model),
            "hyperparameters": config_of(model).to_dict(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": library_versions(),
            **metadata,
            "weights": {"file": WEIGHTS_FILE, "sha256": _sha256(weights_tmp)},
        }
        if stamp_version:
            full["version"] = f"{metadata['version']}-w{full['weights']['sha256'][:8]}"
        meta_tmp = Path(tmp) / METADATA_FILE
        meta_tmp.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        for written in (weights_tmp, meta_tmp):
            written.chmod(0o644)  # the daemon often runs as another user (systemd DynamicUser)
        weights_tmp.replace(directory / WEIGHTS_FILE)
        meta_tmp.replace(directory / METADATA_FILE)
    return directory


def read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / METADATA_FILE
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; a model directory needs {METADATA_FILE} and {WEIGHTS_FILE}")
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc}); the file is truncated or corrupt") from None
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    if metadata.get("format_version") not in (None, FORMAT_VERSION) and metadata.get("format") == FORMAT:
        raise ArtifactError(
            f"{path}: format {FORMAT!r} version {metadata['format_version']!r} is not supported; "
            f"this ecgwatch reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    issues = problems(metadata)
    if issues:
        raise ArtifactError(f"{path}: {'; '.join(issues)}; retrain or restore the file")
    if metadata["architecture"] not in ARCHITECTURES:
        raise ArtifactError(f"{path}: architecture {metadata['architecture']!r} is not one of {sorted(ARCHITECTURES)}")
    return metadata


def _load_weights(directory: Path, metadata: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; the weights must sit beside {METADATA_FILE}")
    expected = metadata.get("weights", {}).get("sha256")
    actual = _sha256(path)
    if expected != actual:
        raise ArtifactError(
            f"{path}: sha256 {actual} does not match {expected} recorded in {METADATA_FILE}; "
            "the weights are truncated, corrupt or from another model"
        )
    try:
        return safetensors.torch.load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path}: cannot be read as safetensors: {exc}") from None


def _build(metadata: dict[str, Any], state: dict[str, torch.Tensor], directory: Path) -> torch.nn.Module:
    arch = ARCHITECTURES[metadata["architecture"]]
    try:
        model = arch.build(arch.config(**metadata["hyperparameters"]))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory / METADATA_FILE}: bad hyperparameters: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{directory / WEIGHTS_FILE}: weights do not fit the recorded architecture: {exc}"
        ) from None
    return model.eval()


def _smoke_test(model: torch.nn.Module, architecture: str, directory: Path) -> None:
    """One forward pass before anyone relies on the model: NaN weights would otherwise score every beat NaN."""
    probe = ARCHITECTURES[architecture].probe(config_of(model))
    with torch.inference_mode():
        out = model(probe)
    out = out[0] if isinstance(out, tuple) else out
    if not torch.isfinite(out).all():
        raise ArtifactError(f"{directory}: the model produces non-finite output on a test input")


def load(directory: Path | str, serving: bool = True) -> LoadedModel:
    """Load and verify an artifact: schema, weights hash, architecture fit, a test forward pass, and the beat
    classifier where the model has one (``serving``: a device-adapted model must have one; training's fold
    autoencoders, which only produce terms, need not)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: model directory does not exist")
    metadata = read_metadata(directory)
    model = _build(metadata, _load_weights(directory, metadata), directory)
    _smoke_test(model, metadata["architecture"], directory)
    classifiers = _load_classifiers(directory, metadata)
    if serving and classifiers is None and str(metadata.get("score", {}).get("kind")) == "device-adapted":
        raise ArtifactError(
            f"{directory / METADATA_FILE}: a device-adapted model needs its beat classifier ({DETECTOR_FILE} and "
            "a 'detection' section); attach one with ecgwatch-train crossperson --attach"
        )
    return LoadedModel(model=model, metadata=metadata, path=directory, classifiers=classifiers)


def attach_classifiers(directory: Path, classifiers: Classifiers, extra: dict[str, Any]) -> None:
    """Add (or replace) the beat classifier of the model in ``directory``, each file moved in whole."""
    metadata = read_metadata(directory)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        arrays_tmp = Path(tmp) / DETECTOR_FILE
        safetensors.numpy.save_file(classifiers.trees.to_arrays("ventricular"), str(arrays_tmp))
        metadata["detection"] = {
            **extra,
            "file": DETECTOR_FILE,
            "sha256": _sha256(arrays_tmp),
            "features": list(classifiers.trees.names),
            "threshold": classifiers.threshold,
            "fibrillation_threshold": classifiers.fibrillation_threshold,
        }
        meta_tmp = Path(tmp) / METADATA_FILE
        meta_tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        for written in (arrays_tmp, meta_tmp):
            written.chmod(0o644)
        arrays_tmp.replace(directory / DETECTOR_FILE)
        meta_tmp.replace(directory / METADATA_FILE)


def _load_classifiers(directory: Path, metadata: dict[str, Any]) -> Classifiers | None:
    section = metadata.get("detection")
    if section is None:
        return None
    path = directory / DETECTOR_FILE
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; {METADATA_FILE} names a beat classifier")
    if _sha256(path) != section["sha256"]:
        raise ArtifactError(f"{path}: sha256 does not match {METADATA_FILE}; the classifier is corrupt or another's")
    if tuple(section["features"]) != features.NAMES:
        raise ArtifactError(
            f"{directory / METADATA_FILE}: the classifier was trained on other features than this ecgwatch "
            "computes; retrain it (ecgwatch-train crossperson --attach) or use the ecgwatch it came with"
        )
    try:
        trees = Trees.from_arrays(safetensors.numpy.load_file(str(path)), "ventricular", features.NAMES)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a usable beat classifier: {exc}") from None
    return Classifiers(trees, float(section["threshold"]), float(section["fibrillation_threshold"]))
