"""The population model: the LSTM autoencoder fitted on many people's normal beats, cut the way the daemon
cuts strips (fixed windows around the R peak, :class:`ecgwatch.detection.segmentation.Window`).

Beats come from MIT-BIH records streamed through :mod:`ecgwatch.detection.segmentation` exactly as the daemon does it;
the annotations only say which found beats are PVCs (left out: the model learns normal beats). Each record's
beats are divided by that person's amplitude scale, as a device's are after enrolment. Every epoch re-draws
the beats with random shift, time warp, noise and gain, so the model does not learn one cut.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgwatch import artifact
from ecgwatch.datasets.mitbih import Record
from ecgwatch.detection.adaptation import ALIGN_SAMPLES, amplitude_of, center
from ecgwatch.detection.adaptation import WINDOW as RESIDUAL_WINDOW
from ecgwatch.detection.segmentation import Window
from ecgwatch.models import RecurrentAEConfig, RecurrentAutoencoder
from training.mitbih_eval import StreamedRecord, stream_record
from training.progress import batches

log = logging.getLogger(__name__)
WINDOW = Window(kind="fixed", seq_len=140, before_s=0.25, after_s=0.45, margin=ALIGN_SAMPLES)
ENROLMENT_S = 120.0


@dataclass(frozen=True)
class PopulationConfig:
    embedding_dim: int = 32
    epochs: int = 14
    beats_per_epoch: int = 5000
    batch_size: int = 64
    learning_rate: float = 1e-2
    max_shift: int = 5  # samples, within the alignment margin
    warp: tuple[float, float] = (0.9, 1.1)
    noise: float = 0.1  # at most, in amplitude-scale units, on half the beats
    gain: tuple[float, float] = (0.8, 1.25)
    seed: int = 0


@dataclass
class PersonBeats:
    """One person's normal beats as training sees them: fixed windows with the alignment margin, scaled."""

    name: str
    windows: np.ndarray  # (N, T + 2m), divided by the person's amplitude scale
    amplitude: float


@dataclass
class History:
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def normal_beats(streamed: StreamedRecord) -> PersonBeats:
    """The found beats that match a normal (AAMI N) annotation and are readable, over the person's amplitude
    scale."""
    classes = streamed.record.classes
    keep = [
        i
        for i, b in enumerate(streamed.beats)
        if b.window is not None
        and b.quality == "ok"
        and streamed.annotation[i] >= 0
        and classes[streamed.annotation[i]] == "N"
    ]
    windows = np.stack([streamed.beats[i].window for i in keep])  # type: ignore[misc]
    amplitude = amplitude_of(center(windows, WINDOW.margin))
    return PersonBeats(streamed.record.name, windows / amplitude, amplitude)


def people(records: list[Record]) -> list[PersonBeats]:
    return [normal_beats(stream_record(record, WINDOW)) for record in records]


def augmented(people_: list[PersonBeats], config: PopulationConfig, rng: np.random.Generator) -> np.ndarray:
    """One epoch's beats: an equal share from each person, each shifted, warped, noised and scaled at random."""
    per_person = config.beats_per_epoch // len(people_)
    out = []
    margin, length = WINDOW.margin, WINDOW.seq_len
    centre = margin + (length - 1) * WINDOW.before_s / (WINDOW.before_s + WINDOW.after_s)  # where R sits
    grid = np.arange(length) - (length - 1) * WINDOW.before_s / (WINDOW.before_s + WINDOW.after_s)
    for person in people_:
        rows = person.windows[rng.integers(0, len(person.windows), per_person)]
        shift = rng.uniform(-config.max_shift, config.max_shift, per_person)
        warp = rng.uniform(*config.warp, per_person)
        positions = np.clip(centre + shift[:, None] + grid[None, :] * warp[:, None], 0, rows.shape[1] - 1)
        x = np.stack([np.interp(p, np.arange(rows.shape[1]), row) for p, row in zip(positions, rows, strict=True)])
        x = x - x.mean(axis=1, keepdims=True)
        x = x * rng.uniform(*config.gain, per_person)[:, None]
        noisy = rng.random(per_person) < 0.5
        x[noisy] += rng.normal(0, 1, (int(noisy.sum()), length)) * rng.uniform(0, config.noise, (int(noisy.sum()), 1))
        out.append(x)
    beats = np.concatenate(out)
    return beats[rng.permutation(len(beats))]


def train(
    people_: list[PersonBeats], config: PopulationConfig, progress: bool = True
) -> tuple[RecurrentAutoencoder, History]:
    """Adam with a short warm-up and cosine decay, L1 loss, gradient clipping: a CPU-minutes budget."""
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    model = RecurrentAutoencoder(RecurrentAEConfig(seq_len=WINDOW.seq_len, embedding_dim=config.embedding_dim))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    steps = config.epochs * math.ceil(config.beats_per_epoch / config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda k: min(1.0, (k + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
    )
    history, started = History(), time.monotonic()
    bar = batches(
        config.epochs * math.ceil(config.beats_per_epoch / config.batch_size), "population model", 0, progress
    )
    for epoch in range(config.epochs):
        x = torch.as_tensor(augmented(people_, config, rng), dtype=torch.float32).unsqueeze(-1)
        model.train()
        total = 0.0
        for start in range(0, len(x), config.batch_size):
            batch = x[start : start + config.batch_size]
            loss = (model(batch) - batch).abs().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
            bar.update(1)
        history.loss.append(total / len(x))
        bar.set_postfix(epoch=epoch, loss=f"{history.loss[-1]:.4f}")
    bar.close()
    history.seconds = time.monotonic() - started
    return model.eval(), history


def metadata(
    config: PopulationConfig, history: History, trained_on: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    """model.json for a population model: the fixed-window input, the device-adapted score, its threshold."""
    return {
        "version": f"ecg-population-e{config.embedding_dim}-{'-'.join(trained_on)}",
        "input": {
            "seq_len": WINDOW.seq_len,
            "zscore_ddof": 1,
            "window": WINDOW.kind,
            "before_s": WINDOW.before_s,
            "after_s": WINDOW.after_s,
            "align_samples": WINDOW.margin,
            "scaling": "device-amplitude",
            "preprocessing": "fixed window around R, aligned to the device template, over its amplitude scale",
        },
        "score": {"kind": "device-adapted", "window": RESIDUAL_WINDOW},
        "threshold": {"value": 0.5, "method": "P(ventricular) of the beat classifier (detection section)"},
        "adaptation": {"enrolment_s": ENROLMENT_S},
        "data": {"dataset": "mitbih", "records": trained_on},
        "training": {**asdict(config), "seconds": round(history.seconds, 1)},
        "history": {"loss": history.loss},
        **extra,
    }


def save(model: RecurrentAutoencoder, meta: dict[str, Any], out: Path) -> Path:
    return artifact.save(model, meta, out, stamp_version=True)
