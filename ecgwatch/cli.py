"""``ecgwatch``: the runtime command line (model information and offline scoring of beat files)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ecgwatch import artifact
from ecgwatch.artifact import ArtifactError
from ecgwatch.datasets import CLASS_NAMES, DataFormatError
from ecgwatch.datasets.ecg5000 import read_file
from ecgwatch.models import resolve_device
from ecgwatch.scorer import Scorer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print a model artifact's version, threshold and test metrics")
    info.add_argument("--model", type=Path, default=artifact.REFERENCE_MODEL_DIR)
    score = sub.add_parser("score", help="score every beat of an ECG5000-format file (.arff/.txt/.tsv/.ts) as CSV")
    score.add_argument("file", type=Path)
    score.add_argument("--model", type=Path, default=artifact.REFERENCE_MODEL_DIR)
    score.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    score.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    return parser


def _info(model_dir: Path) -> None:
    meta = artifact.load(model_dir).metadata
    summary = {
        "path": str(model_dir),
        "version": meta["version"],
        "hyperparameters": meta["hyperparameters"],
        "input": meta["input"],
        "threshold": meta["threshold"],
        "test_metrics": {
            k: meta.get("metrics", {}).get("test", {}).get(k) for k in ("auroc", "recall", "false_alarm_rate")
        },
        "created": meta.get("created"),
    }
    print(json.dumps(summary, indent=2))


def _score(args: argparse.Namespace) -> None:
    loaded = artifact.load(args.model)
    beats = read_file(args.file)
    result = Scorer(loaded, resolve_device(args.device), args.precision).score(beats.x)
    print("row,label,score,anomaly,peak_start,peak_end")
    for i, score in enumerate(result.scores):
        anomaly = int(score > loaded.threshold)
        print(
            f"{i + 1},{CLASS_NAMES[int(beats.y[i])]},{score:.6f},{anomaly},{result.peak_start[i]},{result.peak_end[i]}"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            _info(args.model)
        else:
            _score(args)
    except (ArtifactError, DataFormatError, ValueError, RuntimeError) as exc:
        print(f"ecgwatch: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
