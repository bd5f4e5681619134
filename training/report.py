"""Markdown rendering of evaluation and sweep results, for people; the JSON beside it is for machines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

METRIC_COLUMNS = ("auroc", "auprc", "precision", "recall", "f1", "false_alarm_rate")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def metrics_table(results: dict[str, Any]) -> list[str]:
    lines = [_row(["method", *METRIC_COLUMNS, "tn/fp/fn/tp"]), _row(["---"] * (len(METRIC_COLUMNS) + 2))]
    for name, result in results.items():
        m = result["metrics"]
        cm = m["confusion_matrix"]
        lines.append(
            _row([name, *(f"{m[c]:.4f}" for c in METRIC_COLUMNS), f"{cm['tn']}/{cm['fp']}/{cm['fn']}/{cm['tp']}"])
        )
    return lines


def per_class_table(results: dict[str, Any]) -> list[str]:
    classes = sorted({c for r in results.values() for c in r["metrics"]["recall_per_class"]})
    lines = [_row(["method", *classes]), _row(["---"] * (len(classes) + 1))]
    for name, result in results.items():
        per = result["metrics"]["recall_per_class"]
        lines.append(_row([name, *(f"{per.get(c, float('nan')):.3f}" for c in classes)]))
    return lines


def score_kind_table(results: dict[str, Any]) -> list[str]:
    rows = {name: r for name, r in results.items() if "test_auroc_by_score_kind" in r}
    kinds = sorted({k for r in rows.values() for k in r["test_auroc_by_score_kind"]})
    lines = [_row(["method", *kinds]), _row(["---"] * (len(kinds) + 1))]
    for name, result in rows.items():
        chosen = result["chosen_score_kind"]
        cells = [f"{result['test_auroc_by_score_kind'][k]:.4f}{' *' if k == chosen else ''}" for k in kinds]
        lines.append(_row([name, *cells]))
    return lines


def write_markdown(report: dict[str, Any], path: Path) -> Path:
    threshold = report["model"]["threshold"]
    lines = [
        f"# Evaluation of `{report['model']['version']}`",
        "",
        f"Test split: {report['data']['n_test']} beats, split seed {report['data']['split_seed']}, "
        f"data sha256 `{report['data']['sha256'][:16]}…`. Normal (class 1) vs the rest.",
        "",
        f"Threshold {threshold['value']:.4f}: {threshold['method']} at target false-alarm rate "
        f"{threshold.get('target_fpr')}; every method below is calibrated the same way on normal validation beats.",
        "",
        "## Detection at the calibrated threshold",
        "",
        *metrics_table(report["results"]),
        "",
        "## Test AUROC by score kind",
        "",
        "Each reconstruction method uses the score kind that did best on *validation* (marked *); the others",
        "are shown for comparison. The worst 20-sample window keeps a short malformed complex from being",
        "averaged away; the beat-wide mean is the seed's score. *Scaled* kinds divide each sample's error by",
        "the usual (RMS) error at that position on the normal training beats, so an error counts by how",
        "unusual it is where it occurs. The *fused* kind adds the Mahalanobis distance of the beat's embedding",
        "(for PCA: its component scores) from the normal training beats', each term divided by its median on",
        "those beats.",
        "",
        *score_kind_table(report["results"]),
        "",
        "## Recall per anomaly class",
        "",
        *per_class_table(report["results"]),
        "",
        "## Figures",
        "",
        *(f"- {name}: ![{name}]({file})" for name, file in report["figures"].items()),
        "",
    ]
    path.write_text("\n".join(lines))
    return path
