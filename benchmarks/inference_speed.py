"""Inference throughput: batch 1 vs batched, fp32 vs bf16 (CPU autocast), and how far bf16 scores move.

Run: ECGWATCH_DATA_DIR=../shared/data python benchmarks/inference_speed.py [--model DIR]
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from benchmarks._common import median_seconds, report
from ecgwatch import artifact
from ecgwatch.datasets import load_ecg5000, make_split
from ecgwatch.scorer import Scorer


def one_at_a_time(scorer: Scorer, x: np.ndarray) -> None:
    for i in range(len(x)):
        scorer.score(x[i : i + 1])


def batched(scorer: Scorer, x: np.ndarray, batch_size: int) -> None:
    for i in range(0, len(x), batch_size):
        scorer.score(x[i : i + batch_size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=artifact.REFERENCE_MODEL_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = artifact.load(args.model)
    beats = load_ecg5000()
    test = make_split(beats, int(loaded.metadata["data"]["split_seed"])).test
    x = test.x[:1024]
    print(f"model {loaded.version}, torch {torch.__version__}, {args.threads} threads, {len(x)} beats")
    rates = {}
    for precision in ("fp32", "bf16"):
        scorer = Scorer(loaded, torch.device("cpu"), precision)
        rates[precision, 1] = 128 / median_seconds(functools.partial(one_at_a_time, scorer, x[:128]), 3)
        rates[precision, args.batch_size] = len(x) / median_seconds(
            functools.partial(batched, scorer, x, args.batch_size), 3
        )
        report(f"{precision} batch 1", rates[precision, 1], "beats/s")
        report(f"{precision} batch {args.batch_size}", rates[precision, args.batch_size], "beats/s")
        report(f"{precision} batched / batch 1", rates[precision, args.batch_size] / rates[precision, 1], "x")
    report(
        f"bf16 / fp32 at batch {args.batch_size}", rates["bf16", args.batch_size] / rates["fp32", args.batch_size], "x"
    )
    fp32 = Scorer(loaded, torch.device("cpu"), "fp32").score(test.x).scores
    bf16 = Scorer(loaded, torch.device("cpu"), "bf16").score(test.x).scores
    rel = np.abs(bf16 - fp32) / np.abs(fp32)
    report("bf16 vs fp32 score, max abs difference", float(np.abs(bf16 - fp32).max()), "")
    report("bf16 vs fp32 score, median relative difference", float(np.median(rel)), "")
    report("bf16 vs fp32 score, max relative difference", float(rel.max()), "")
    flips = int(((bf16 > loaded.threshold) != (fp32 > loaded.threshold)).sum())
    report("decisions flipped by bf16 (test split)", flips, f"of {len(test)}")
    report("AUROC fp32", roc_auc_score(test.is_anomaly, fp32), "")
    report("AUROC bf16", roc_auc_score(test.is_anomaly, bf16), "")


if __name__ == "__main__":
    main()
