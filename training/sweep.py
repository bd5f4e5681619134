"""Embedding-size sweep over split seeds: mean and spread of every test metric, beside the baselines.

With 500-odd normal test beats one split is noisy, so every figure we quote is over several split seeds.
Each (E, seed) run is written as it finishes and skipped when present, so a long sweep can be resumed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgwatch import artifact
from ecgwatch.datasets import Beats
from training import plots
from training.ecg_pipeline import recalibrate_artifact, train_and_calibrate, write_artifact
from training.ecg_trainer import TrainConfig
from training.evaluate import baseline_metrics
from training.report import METRIC_COLUMNS

log = logging.getLogger(__name__)
SUMMARY_METRICS = (*METRIC_COLUMNS, "train_seconds", "best_epoch")


def _model_result(
    beats: Beats, config: TrainConfig, seed: int, target_fpr: float, device: torch.device, out: Path
) -> dict[str, Any]:
    path = out / f"e{config.embedding_dim}" / f"s{seed}"
    result_file = path / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    if (path / artifact.METADATA_FILE).is_file():  # trained before, result missing: recalibrate, don't retrain
        metadata = recalibrate_artifact(path, beats, target_fpr, device)
    else:
        run = train_and_calibrate(beats, config, seed, target_fpr, device)
        write_artifact(run, path)
        metadata = {**run.metadata, "history": run.history.to_dict()}
    result = {
        **metadata["metrics"]["test"],
        "train_seconds": metadata["training"]["seconds"],
        "best_epoch": metadata["training"]["best_epoch"],
        "score_kind": metadata["score"]["kind"],
    }
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _baseline_results(beats: Beats, seed: int, target_fpr: float, out: Path) -> dict[str, dict[str, Any]]:
    result_file = out / "baselines" / f"s{seed}.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    results = {name.split(" (")[0]: r["metrics"] for name, r in baseline_metrics(beats, seed, target_fpr).items()}
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(results, indent=2) + "\n")
    return results


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """mean / std / min / max over seeds for each metric present in every run."""
    keys = [k for k in SUMMARY_METRICS if all(k in r for r in runs)]
    return {
        k: {
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "min": float(np.min(v)),
            "max": float(np.max(v)),
        }
        for k in keys
        for v in [[float(r[k]) for r in runs]]
    }


def choose_embedding(model_summary: dict[int, dict[str, dict[str, float]]], tolerance: float) -> int:
    """Smallest E whose mean test AUROC is within ``tolerance`` of the largest E's."""
    reference = model_summary[max(model_summary)]["auroc"]["mean"]
    return min(e for e, s in model_summary.items() if s["auroc"]["mean"] >= reference - tolerance)


def run_sweep(
    beats: Beats,
    recipes: list[TrainConfig],
    seeds: list[int],
    target_fpr: float,
    device: torch.device,
    out: Path,
    tolerance: float,
    report_name: str = "sweep",
) -> int:
    out.mkdir(parents=True, exist_ok=True)
    baselines = {s: _baseline_results(beats, s, target_fpr, out) for s in seeds}
    model_summary = {}
    for config in recipes:
        runs = [_model_result(beats, config, s, target_fpr, device, out) for s in seeds]
        model_summary[config.embedding_dim] = summarise(runs)
        log.info("E=%d: AUROC %.4f", config.embedding_dim, model_summary[config.embedding_dim]["auroc"]["mean"])
    baseline_summary = {name: summarise([baselines[s][name] for s in seeds]) for name in baselines[seeds[0]]}
    chosen = choose_embedding(model_summary, tolerance)
    summary = {
        "seeds": seeds,
        "target_fpr": target_fpr,
        "tolerance": tolerance,
        "chosen_embedding_dim": chosen,
        "recipe": {k: v for k, v in recipes[0].to_dict().items() if k != "embedding_dim"},
        "lstm_ae": {str(e): s for e, s in model_summary.items()},
        "baselines": baseline_summary,
    }
    (out / f"{report_name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_markdown(summary, out / f"{report_name}.md", f"{report_name}_auroc.png")
    auroc = {"LSTM-AE": {e: s["auroc"] for e, s in model_summary.items()}}
    plots.sweep(auroc, {name: s["auroc"] for name, s in baseline_summary.items()}, out / f"{report_name}_auroc.png")
    return chosen


def _cell(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def _write_markdown(summary: dict[str, Any], path: Path, figure: str) -> None:
    metrics = [m for m in SUMMARY_METRICS if m in summary["lstm_ae"][next(iter(summary["lstm_ae"]))]]
    rows = [("LSTM-AE E=" + e, s) for e, s in summary["lstm_ae"].items()] + list(summary["baselines"].items())
    lines = [
        f"# Embedding-size sweep over split seeds {summary['seeds']}",
        "",
        f"Mean ± standard deviation over seeds, test split, threshold calibrated to a {summary['target_fpr']:.0%} "
        f"false-alarm rate on normal validation beats. Chosen: E={summary['chosen_embedding_dim']} (smallest E "
        f"within {summary['tolerance']} mean AUROC of the largest). Recipe: `{summary['recipe']}`.",
        "",
        "| method | " + " | ".join(metrics) + " |",
        "| --- |" + " --- |" * len(metrics),
        *(f"| {name} | " + " | ".join(_cell(s[m]) if m in s else "" for m in metrics) + " |" for name, s in rows),
        "",
        f"![AUROC by embedding size]({figure})",
        "",
    ]
    path.write_text("\n".join(lines))
