"""Training speed on 2 CPU threads: our mini-batch loop vs the seed's batch-1 loop, and time to target AUROC.

Run: ECGWATCH_DATA_DIR=../shared/data python benchmarks/train_speed.py [--skip-full-run]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._common import median_seconds, report
from ecgwatch.datasets import load_ecg5000, make_split
from ecgwatch.models import RecurrentAEConfig, RecurrentAutoencoder
from training.ecg_pipeline import prepared, train_and_calibrate
from training.ecg_trainer import TrainConfig


def seed_loop_beats_per_second(x: torch.Tensor, embedding_dim: int, n: int) -> float:
    """The seed's loop: one beat per step, L1Loss(reduction='sum'), Adam."""
    model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=embedding_dim)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.L1Loss(reduction="sum")

    def run() -> None:
        for i in range(n):
            seq = x[i : i + 1]
            optimizer.zero_grad()
            loss = loss_fn(model(seq), seq)
            loss.backward()
            optimizer.step()

    return n / median_seconds(run, repeats=3)


def batched_beats_per_second(x: torch.Tensor, embedding_dim: int, batch_size: int) -> float:
    model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=embedding_dim)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run() -> None:
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            optimizer.zero_grad()
            loss = (model(batch) - batch).abs().mean()
            loss.backward()
            optimizer.step()

    return len(x) / median_seconds(run, repeats=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--embedding-dims", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--skip-full-run", action="store_true", help="only the loop comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    beats = load_ecg5000()
    split = make_split(beats, 0)
    x = torch.as_tensor(prepared(split.train), dtype=torch.float32).unsqueeze(-1)
    config = TrainConfig()
    print(f"torch {torch.__version__}, {args.threads} threads, {len(x)} training beats")
    for e in args.embedding_dims:
        seed_rate = seed_loop_beats_per_second(x, e, n=64)
        batched_rate = batched_beats_per_second(x[:512], e, config.batch_size)
        report(f"E={e} seed batch-1 loop, training", seed_rate, "beats/s")
        report(f"E={e} mini-batch {config.batch_size} loop, training", batched_rate, "beats/s")
        report(f"E={e} speed-up batched / batch-1", batched_rate / seed_rate, "x")
    if not args.skip_full_run:
        started = time.perf_counter()
        run = train_and_calibrate(beats, config, split_seed=0, target_fpr=0.01, device=torch.device("cpu"))
        elapsed = time.perf_counter() - started
        test = run.metadata["metrics"]["test"]
        report(f"full training run E={config.embedding_dim}, {config.epochs} epochs, wall", elapsed, "s")
        report("  test AUROC of that run", test["auroc"], "")
        report("  within the 5-minute target (1 = yes)", float(elapsed <= 300), "")


if __name__ == "__main__":
    main()
