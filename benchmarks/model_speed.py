"""The shipped population model's scoring path (E=32: autoencoder terms, then the per-device detector and its
beat classifier) beside the previous design's rule on the same autoencoder terms, and the ECG5000 model (E=64, its
own score), side by side in one run: beats per second on CPU, one thread, batch 1 and batch 64.

Run: ECGWATCH_DATA_DIR=../shared/data python -m benchmarks.model_speed [--threads 1] [--rounds 5]

All paths score the same 1,024 beats of MIT-BIH record 106 (cut by the daemon's segmentation, each model's
own window), in alternating rounds; figures are medians over rounds and ratios the median of the rounds'
ratios. The population paths include everything the daemon does per beat for an enrolled device: alignment to
its template, amplitude scaling, the model and its terms; then either the detector (template bank, rhythm,
features, trees; one beat at a time, as the publishing thread runs it) or the previous rule's arithmetic.
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
from ecgwatch.detection.device import DeviceDetector
from ecgwatch.scorer import Scorer
from training.mitbih_eval import stream_record

BEATS = 1024


def population_path(batch: int, detector: bool) -> Callable[[], None]:
    loaded = artifact.load(artifact.POPULATION_MODEL_DIR)
    streamed = stream_record(load_record(data_dir("mitbih"), "106"), loaded.window)
    beats = [b for b in streamed.beats if b.window is not None][:BEATS]
    windows = np.stack([b.window for b in beats if b.window is not None])
    margin = loaded.window.margin
    scorer = Scorer(loaded, torch.device("cpu"))

    def model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        part = scorer.reconstruct(x)
        return part.reconstruction, part.embedding

    device = adaptation.fit(windows[:150], margin, model)
    rr = np.array([b.rr_s or 1.0 for b in beats])
    following = np.array([b.rr_next_s or 1.0 for b in beats])

    def run() -> None:
        judge = DeviceDetector(loaded.window)
        for i in range(0, len(windows), batch):
            prepared = adaptation.prepare(device, windows[i : i + batch], margin)
            part = scorer.reconstruct(prepared)
            terms = adaptation.terms(device, prepared, part.reconstruction, part.embedding)
            if detector:
                for k in range(len(prepared)):
                    ae = (float(terms.morphology[k]), float(terms.embedding[k]))
                    judge.step(beats[i + k], ae, loaded.classifiers)
            else:  # the previous design: prematurity, pause and the capped model term, against a threshold
                premature = np.clip(1 - rr[i : i + batch] / np.median(rr[max(0, i - 16) : i + 1]), -0.5, 0.6) / 0.3
                pause = np.clip(np.log(following[i : i + batch] / rr[i : i + batch]), -0.5, 1.0) / 0.6
                strongest = np.log(np.maximum(np.maximum(terms.morphology, terms.embedding), 1e-9))
                _ = premature + pause + np.clip(strongest / np.log(3.0), -1.0, 1.5) > 2.2

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
        paths = {
            "population E=32, detector and classifier": population_path(batch, detector=True),
            "population E=32, previous rule": population_path(batch, detector=False),
            "ECG5000 E=64": reference_path(batch),
        }
        for fn in paths.values():
            fn()  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, fn in paths.items():
                rates[name].append(BEATS / seconds(fn))
        for name, values in rates.items():
            report(f"{name}, batch {batch}", statistics.median(values), "beats/s")
        new, old, reference = rates.values()
        for label, other in (("previous rule", old), ("ECG5000", reference)):
            ratio = statistics.median([a / b for a, b in zip(new, other, strict=True)])
            report(f"detector / {label}, batch {batch}", ratio, "x")


if __name__ == "__main__":
    main()
