"""The shipped population model (E=32, scored against a device) beside the ECG5000 model (E=64, its own
score), side by side in one run: beats per second on CPU, whole scoring path, batch 1 and batch 64.

Run: ECGWATCH_DATA_DIR=../shared/data python -m benchmarks.model_speed [--threads 1] [--rounds 5]

Both models score the same 1,024 beats of MIT-BIH record 106 (cut by the daemon's segmentation, each
model's own window), in alternating rounds; figures are medians over rounds and the ratio is the median of
the rounds' ratios. The population path includes everything the daemon does per beat for an enrolled
device: alignment to its template, amplitude scaling, the model, and the score terms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks._common import report
from ecgwatch import artifact
from ecgwatch.datasets import data_dir
from ecgwatch.datasets.mitbih import load_record
from ecgwatch.detection import adaptation
from ecgwatch.scorer import Scorer
from training.crossperson import lstm
from training.mitbih_eval import stream_record

BEATS = 1024


def population_path(batch: int) -> Callable[[], None]:
    loaded = artifact.load(artifact.POPULATION_MODEL_DIR)
    streamed = stream_record(load_record(data_dir("mitbih"), "106"), loaded.window)
    windows = np.stack([b.window for b in streamed.beats if b.window is not None])
    margin = loaded.window.margin
    device = adaptation.fit(windows[:150], margin, lstm(loaded.recurrent()))
    rules = adaptation.Rules.from_metadata(loaded.metadata["score"]["rules"])
    scorer = Scorer(loaded, torch.device("cpu"))
    x = windows[:BEATS]
    rhythm = (np.zeros(batch), np.zeros(batch))

    def run() -> None:
        for i in range(0, len(x), batch):
            prepared = adaptation.prepare(device, x[i : i + batch], margin)
            part = scorer.reconstruct(prepared)
            n = len(prepared)
            terms = adaptation.terms(
                device, prepared, part.reconstruction, part.embedding, (rhythm[0][:n], rhythm[1][:n]), rules.window
            )
            terms.score(rules)

    return run


def reference_path(batch: int) -> Callable[[], None]:
    loaded = artifact.load(artifact.REFERENCE_MODEL_DIR)
    streamed = stream_record(load_record(data_dir("mitbih"), "106"), loaded.window)
    x = np.stack([b.window for b in streamed.beats if b.window is not None])[:BEATS]
    scorer = Scorer(loaded, torch.device("cpu"))

    def run() -> None:
        for i in range(0, len(x), batch):
            scorer.score(x[i : i + batch])

    return run


def seconds(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the daemon's default is 1)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {BEATS} beats of record 106, {args.rounds} rounds")
    for batch in (1, 64):
        paths = {"population E=32, adapted": population_path(batch), "ECG5000 E=64": reference_path(batch)}
        for fn in paths.values():
            fn()  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, fn in paths.items():
                rates[name].append(BEATS / seconds(fn))
        for name, values in rates.items():
            report(f"{name}, batch {batch}", statistics.median(values), "beats/s")
        ratios = [p / r for p, r in zip(*rates.values(), strict=True)]
        report(f"population / ECG5000, batch {batch}", statistics.median(ratios), "x")


if __name__ == "__main__":
    main()
