"""``ecgwatch-train crossperson``: detection on people the model has never seen, leave one person out.

For each non-paced MIT-BIH record (a person), a population model is trained on the *other* records only,
then the held-out person is streamed through the daemon's segmentation, enrols for its first
``enrolment_s`` seconds (no labels) and is scored from then on. Compared on the same beats:

- ``population, adapted``: the shipped design (fixed windows, device adaptation, rhythm + capped model score);
- ``population, not adapted``: the same model's worst-window reconstruction error alone;
- ``ECG5000 model, adapted`` and ``ECG5000 model, its own score``: the model that knows one person;
- ``PCA-16, adapted``: a linear baseline fitted on the same people, adapted the same way.

Operating points: the adapted scores use the shipped constant threshold; scores without one (the not-adapted
population and PCA error) use the 99.5% quantile of the *other* people's non-PVC scores. Reported per person
and pooled: PVC recall, false-alarm rate on non-PVC beats, AUROC of PVC vs the rest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from ecgwatch import artifact
from ecgwatch.datasets.mitbih import load_record, records_in
from ecgwatch.detection import adaptation
from ecgwatch.detection.adaptation import Rhythm, Rules
from ecgwatch.detection.segmentation import Window
from ecgwatch.preprocess import zscore
from ecgwatch.scorer import Scorer, reconstruct_and_embed
from training.mitbih_eval import StreamedRecord, stream_record
from training.population import THRESHOLD, WINDOW, PersonBeats, PopulationConfig, metadata, normal_beats, train

log = logging.getLogger(__name__)
Model = adaptation.Model


@dataclass(frozen=True)
class Scored:
    """One variant on one person, after enrolment: a score per beat and which beats count."""

    score: np.ndarray
    pvc: np.ndarray
    counted: np.ndarray  # matched to an annotation, after enrolment, with a window
    readable: np.ndarray
    threshold: float

    def metrics(self) -> dict[str, float]:
        flagged = (self.score > self.threshold) & self.readable
        pvc, normal = self.counted & self.pvc, self.counted & ~self.pvc & self.readable
        both = self.counted & self.readable
        auroc = roc_auc_score(self.pvc[both], self.score[both]) if 0 < self.pvc[both].sum() < both.sum() else np.nan
        return {
            "pvc": int(pvc.sum()),
            "pvc_caught": int(flagged[pvc].sum()),
            "non_pvc": int(normal.sum()),
            "false_alarms": int(flagged[normal].sum()),
            "auroc": float(auroc),
        }


def device_scores(streamed: StreamedRecord, model: Model, window: Window, rules: Rules, enrol_s: float) -> Scored:
    """The adapted score of every beat after enrolment, as the daemon computes it (ecgwatch.detection.adaptation)."""
    beats = streamed.beats
    has = np.array([b.window is not None for b in beats])
    t = np.array([b.t for b in beats])
    enrol = has & streamed.readable & (t < enrol_s)
    windows = np.stack([b.window if b.window is not None else np.zeros(window.length) for b in beats])
    prepared = windows if window.kind == "fixed" else zscore(windows)
    device = adaptation.fit(prepared[enrol], window.margin, model)
    rhythm = Rhythm()
    premature, pause = np.zeros(len(beats)), np.zeros(len(beats))
    for i, b in enumerate(beats):
        premature[i], pause[i] = rhythm.terms(b.rr_s, b.rr_next_s)
    score = np.full(len(beats), np.nan)
    later = has & (t >= enrol_s)
    x = adaptation.prepare(device, prepared[later], window.margin)
    recon, embedding = model(x)
    terms = adaptation.terms(device, x, recon, embedding, (premature[later], pause[later]), rules.window)
    score[later] = terms.score(rules)[0]
    return Scored(score, streamed.pvc, later & (streamed.annotation >= 0), streamed.readable, THRESHOLD)


def plain_scores(streamed: StreamedRecord, error: Callable[[np.ndarray], np.ndarray], enrol_s: float) -> Scored:
    """A score without adaptation (threshold set later): ``error`` of each beat's own window."""
    beats = streamed.beats
    has = np.array([b.window is not None for b in beats])
    later = has & (np.array([b.t for b in beats]) >= enrol_s)
    score = np.full(len(beats), np.nan)
    score[later] = error(np.stack([beats[i].window for i in np.flatnonzero(later)]))  # type: ignore[misc]
    return Scored(score, streamed.pvc, later & (streamed.annotation >= 0), streamed.readable, np.inf)


def lstm(model: torch.nn.Module) -> Model:
    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert isinstance(model, torch.nn.Module)
        return reconstruct_and_embed(model, x, torch.device("cpu"))  # type: ignore[arg-type]

    return run


def pca_model(people_: list[PersonBeats], components: int = 16) -> Model:
    pca = PCA(n_components=components, random_state=0).fit(
        np.concatenate([adaptation.center(p.windows, WINDOW.margin) for p in people_])
    )

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        code = pca.transform(x)
        return pca.inverse_transform(code), code

    return run


def worst_window_error(model: Model, margin: int) -> Callable[[np.ndarray], np.ndarray]:
    from ecgwatch.score_rules import window_scores

    def error(windows: np.ndarray) -> np.ndarray:
        x = zscore(adaptation.center(windows, margin))
        return window_scores(x, model(x)[0], Rules.window)[0]

    return error


def run(data: Path, out: Path, config: PopulationConfig, shipped: Path, enrol_s: float = 120.0) -> dict[str, Any]:
    names = records_in(data)
    records = {n: load_record(data, n) for n in names}
    targets = [n for n in names if not records[n].paced]
    fixed = {n: stream_record(records[n], WINDOW) for n in names}
    rr = {n: stream_record(records[n], Window()) for n in targets}
    normal = {n: normal_beats(fixed[n]) for n in names}
    ecg5000 = artifact.load(shipped)
    ecg5000_scorer = Scorer(ecg5000, torch.device("cpu"))
    rules = Rules()
    variants: dict[str, dict[str, Scored]] = {}
    for held in targets:
        model = _fold(
            out / "folds" / held, [normal[n] for n in names if n != held], config, [n for n in names if n != held]
        )
        pca = pca_model([normal[n] for n in names if n != held])
        scored = {
            "population LSTM-AE, adapted": device_scores(fixed[held], lstm(model), WINDOW, rules, enrol_s),
            "population LSTM-AE, not adapted": plain_scores(
                fixed[held], worst_window_error(lstm(model), WINDOW.margin), enrol_s
            ),
            "PCA-16, adapted": device_scores(fixed[held], pca, WINDOW, rules, enrol_s),
            "ECG5000 model, adapted": device_scores(rr[held], lstm(ecg5000.recurrent()), Window(), rules, enrol_s),
            "ECG5000 model, its own score": _own_score(rr[held], ecg5000_scorer, enrol_s),
        }
        for name, result in scored.items():
            variants.setdefault(name, {})[held] = result
    _lopo_thresholds(variants, "population LSTM-AE, not adapted")
    report = _report(variants, targets, fixed, config, enrol_s)
    out.mkdir(parents=True, exist_ok=True)
    (out / "crossperson.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "crossperson.md").write_text(_markdown(report))
    _figure(report, out / "crossperson.png")
    return report


def _fold(directory: Path, people_: list[PersonBeats], config: PopulationConfig, names: list[str]) -> torch.nn.Module:
    """The held-out person's fold model, trained once and kept as an artifact (reruns reuse it)."""
    if (directory / artifact.METADATA_FILE).is_file():
        return artifact.load(directory).recurrent()
    model, history = train(people_, config)
    artifact.save(model, metadata(config, history, names, {}), directory, stamp_version=True)
    return model


def _own_score(streamed: StreamedRecord, scorer: Scorer, enrol_s: float) -> Scored:
    result = plain_scores(streamed, lambda w: scorer.score(w).scores, enrol_s)
    return Scored(result.score, result.pvc, result.counted, result.readable, scorer.loaded.threshold)


def _lopo_thresholds(variants: dict[str, dict[str, Scored]], name: str) -> None:
    """Each person's threshold: the 99.5% quantile of the *other* people's non-PVC scores (0.5% FAR)."""
    people_ = variants[name]
    for held, scored in list(people_.items()):
        others = np.concatenate([s.score[s.counted & ~s.pvc & s.readable] for n, s in people_.items() if n != held])
        people_[held] = Scored(
            scored.score, scored.pvc, scored.counted, scored.readable, float(np.quantile(others, 0.995))
        )


def _report(
    variants: dict[str, dict[str, Scored]],
    targets: list[str],
    fixed: dict[str, StreamedRecord],
    config: PopulationConfig,
    enrol_s: float,
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, per_person in variants.items():
        metrics = {held: per_person[held].metrics() for held in targets}
        pooled = {k: sum(m[k] for m in metrics.values()) for k in ("pvc", "pvc_caught", "non_pvc", "false_alarms")}
        scored = list(per_person.values())
        both = [s.counted & s.readable for s in scored]
        pooled_auroc = roc_auc_score(
            np.concatenate([s.pvc[b] for s, b in zip(scored, both, strict=True)]),
            np.concatenate([s.score[b] for s, b in zip(scored, both, strict=True)]),
        )
        rows[name] = {"per_person": metrics, "pooled": {**pooled, "auroc": float(pooled_auroc)}}
    detection = {
        n: {"annotated": len(s.record.beats), "matched": int((s.annotation >= 0).sum()), "found": len(s.beats)}
        for n, s in fixed.items()
    }
    return {
        "targets": targets,
        "enrolment_s": enrol_s,
        "threshold": THRESHOLD,
        "population_config": config.__dict__,
        "variants": rows,
        "detection": detection,
    }


def _rate(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "-"


def _markdown(report: dict[str, Any]) -> str:
    targets = report["targets"]
    lines = [
        "# Detection on people the model has never seen (leave one person out)",
        "",
        f"MIT-BIH records {', '.join(targets)} (non-paced; 102 is paced and only trains), each streamed as 10 s strips "
        f"through the daemon's segmentation; the first {report['enrolment_s']:g} s of each person enrol the device "
        "(no labels), every beat after is scored. Each person's population model was trained on the other "
        f"records only. Adapted scores use the shipped threshold {report['threshold']}; scores without one use the "
        "99.5% quantile of the other people's non-PVC scores.",
        "",
        "| variant | pooled PVC recall | pooled false-alarm rate | pooled AUROC | "
        + " | ".join(f"{t}: caught/PVC, FA rate" for t in targets)
        + " |",
        "|---|---|---|---|" + "---|" * len(targets),
    ]
    for name, row in report["variants"].items():
        p = row["pooled"]
        cells = [
            f"{m['pvc_caught']}/{m['pvc']}, {_rate(m['false_alarms'], m['non_pvc'])}"
            for m in (row["per_person"][t] for t in targets)
        ]
        lines.append(
            f"| {name} | **{_rate(p['pvc_caught'], p['pvc'])}** ({p['pvc_caught']}/{p['pvc']}) "
            f"| **{_rate(p['false_alarms'], p['non_pvc'])}** ({p['false_alarms']}/{p['non_pvc']}) | {p['auroc']:.4f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "Beat detection (10 s strips, within 150 ms):",
        "",
        "| record | annotated | matched | found |",
        "|---|---|---|---|",
    ]
    for n, d in report["detection"].items():
        lines.append(f"| {n} | {d['annotated']} | {d['matched']} | {d['found']} |")
    return "\n".join(lines) + "\n"


def _figure(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["variants"])
    pooled = [report["variants"][n]["pooled"] for n in names]
    recall = [p["pvc_caught"] / max(p["pvc"], 1) for p in pooled]
    alarms = [p["false_alarms"] / max(p["non_pvc"], 1) for p in pooled]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].barh(names, recall, color="tab:green")
    axes[0].axvline(0.9, color="k", linestyle="--", label="target 0.90")
    axes[0].set_xlabel("pooled PVC recall")
    axes[1].barh(names, alarms, color="tab:red")
    axes[1].axvline(0.02, color="k", linestyle="--", label="target 2%")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("pooled false-alarm rate on non-PVC beats (log)")
    for ax in axes:
        ax.legend(loc="lower right")
    axes[1].set_yticklabels([])
    fig.suptitle("Leave one person out, after enrolment")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
