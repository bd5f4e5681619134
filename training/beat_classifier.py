"""The beat classifier: features of MIT-BIH people's beats through the daemon's own detector, gradient-boosted
trees fitted on them, exported as arrays (:class:`ecgwatch.detection.classifier.Trees`).

A person's beats are streamed through the daemon's segmentation, enrol the device for ``enrol_s`` (no
labels), and from then on every readable beat goes through :class:`ecgwatch.detection.device.DeviceDetector`
with the autoencoder's terms, exactly as in service. For training, the rhythm history follows the annotated
classes (so one person's features do not depend on a classifier that does not exist yet); evaluation runs
the detector on its own predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ecgwatch.artifact import LoadedModel
from ecgwatch.detection import adaptation, features
from ecgwatch.detection.classifier import Trees
from ecgwatch.detection.device import Classifiers, DeviceDetector, Verdict
from ecgwatch.detection.segmentation import Window
from ecgwatch.scorer import reconstruct_and_embed
from training.mitbih_eval import StreamedRecord

Model = adaptation.Model
TRAIN_CLASSES = ("N", "S", "V")  # fusion (F) and unknown (Q) beats teach nothing clear either way


@dataclass(frozen=True)
class Run:
    """One person through the detector: per found beat its verdict and the annotated AAMI class ('-': none)."""

    streamed: StreamedRecord
    verdicts: list[Verdict]
    labels: np.ndarray  # AAMI class of the matched annotation, "-" if none
    scored: np.ndarray  # after enrolment, readable, with features

    @property
    def features(self) -> np.ndarray:
        return np.stack([v.features if v.features is not None else np.full(len(features.NAMES), np.nan)
                         for v in self.verdicts])  # fmt: skip


def labels_of(streamed: StreamedRecord) -> np.ndarray:
    classes = streamed.record.classes
    return np.array([classes[a] if a >= 0 else "-" for a in streamed.annotation])


def ae_terms(streamed: StreamedRecord, model: Model, window: Window, enrol_s: float) -> np.ndarray:
    """The autoencoder's (morphology, embedding) terms per beat, NaN before the device is fitted.

    The device model is fitted on the readable beats of its first ``enrol_s`` seconds, as the daemon does.
    """
    beats = streamed.beats
    start = beats[0].t if beats else 0.0
    has = np.array([b.window is not None for b in beats])
    readable = np.array([b.quality == "ok" for b in beats]) & has
    t = np.array([b.t - start for b in beats])
    out = np.full((len(beats), 2), np.nan)
    enrol = readable & (t < enrol_s)
    if enrol.sum() < adaptation.MIN_ENROLMENT_BEATS:
        return out
    windows = np.stack([b.window if b.window is not None else np.zeros(window.length) for b in beats])
    device = adaptation.fit(windows[enrol], window.margin, model)
    later = has & (t >= enrol_s)
    x = adaptation.prepare(device, windows[later], window.margin)
    recon, embedding = model(x)
    terms = adaptation.terms(device, x, recon, embedding)
    out[later] = np.column_stack([terms.morphology, terms.embedding])
    return out


def run(
    streamed: StreamedRecord,
    ae: np.ndarray,
    window: Window,
    enrol_s: float,
    classifiers: Classifiers | None = None,
    teach: bool = False,
) -> Run:
    """Every beat of the person through a fresh :class:`DeviceDetector`; ``teach``: the rhythm history follows
    the annotations (training), else the detector's own classes."""
    detector = DeviceDetector(window)
    labels = labels_of(streamed)
    start = streamed.beats[0].t if streamed.beats else 0.0
    verdicts = []
    for i, beat in enumerate(streamed.beats):
        fitted = beat.t - start >= enrol_s and not np.isnan(ae[i, 0])
        terms = (float(ae[i, 0]), float(ae[i, 1])) if fitted else None
        label = labels[i] if teach and labels[i] in TRAIN_CLASSES else None
        verdicts.append(detector.step(beat, terms, classifiers if fitted else None, label))
    scored = np.array([v.features is not None and not np.isnan(ae[i, 0]) for i, v in enumerate(verdicts)])
    return Run(streamed, verdicts, labels, scored)


def detect(streamed: StreamedRecord, loaded: LoadedModel, enrol_s: float) -> Run:
    """A person through a shipped model (its autoencoder and classifier), as the daemon would run them."""
    network = loaded.recurrent()

    def model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return reconstruct_and_embed(network, x, torch.device("cpu"))

    ae = ae_terms(streamed, model, loaded.window, enrol_s)
    return run(streamed, ae, loaded.window, enrol_s, loaded.classifiers)


def fit(x: np.ndarray, ventricular: np.ndarray, names: tuple[str, ...], seed: int = 0) -> Trees:
    """Gradient-boosted trees for P(V), exported to arrays (scikit-learn only at training time)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.1,
        max_leaf_nodes=15,
        l2_regularization=1.0,
        monotonic_cst=[features.MONOTONE.get(name, 0) for name in names],
        random_state=seed,
    )
    model.fit(x, ventricular.astype(int))
    return export(model, names)


def export(model: object, names: tuple[str, ...]) -> Trees:
    """A fitted binary ``HistGradientBoostingClassifier`` as flat arrays (its leaf values carry the shrinkage)."""
    predictors = [tree[0] for tree in model._predictors]  # type: ignore[attr-defined]
    parts, roots, offset = [], [], 0
    for predictor in predictors:
        nodes = predictor.nodes
        parts.append((nodes, offset))
        roots.append(offset)
        offset += len(nodes)
    nodes_all = np.concatenate([n for n, _ in parts])
    shift = np.concatenate([np.full(len(n), o) for n, o in parts])
    leaf = nodes_all["is_leaf"].astype(bool)
    return Trees(
        feature=nodes_all["feature_idx"].astype(np.int64),
        threshold=nodes_all["num_threshold"].astype(np.float64),
        left=np.where(leaf, 0, nodes_all["left"] + shift).astype(np.int64),
        right=np.where(leaf, 0, nodes_all["right"] + shift).astype(np.int64),
        leaf=leaf,
        missing_left=nodes_all["missing_go_to_left"].astype(bool),
        value=np.where(leaf, nodes_all["value"], 0.0).astype(np.float64),
        roots=np.array(roots, dtype=np.int64),
        baseline=float(np.asarray(model._baseline_prediction).ravel()[0]),  # type: ignore[attr-defined]
        names=names,
    )


def training_rows(runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    """Features and annotated classes of the beats a classifier learns from (N, S, V; readable, fitted)."""
    x, y = [], []
    for r in runs:
        keep = r.scored & np.isin(r.labels, TRAIN_CLASSES)
        x.append(r.features[keep])
        y.append(r.labels[keep])
    return np.concatenate(x), np.concatenate(y)


def fit_classifiers(runs: list[Run], threshold: float, fibrillation_threshold: float, seed: int = 0) -> Classifiers:
    x, y = training_rows(runs)
    return Classifiers(fit(x, y == "V", features.NAMES, seed), threshold, fibrillation_threshold)
