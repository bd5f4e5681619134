"""Fit the LSTM autoencoder on normal beats: mini-batch Adam, L1 loss, early stopping, resumable.

The recipe (one-cycle learning rate, gradient clipping, batch 32) exists because the seed's batch-1 loop
takes hours on a CPU; see the training benchmark for the speed-up it buys.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgwatch.models import RecurrentAEConfig, RecurrentAutoencoder
from training.progress import batches

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    embedding_dim: int = 64
    epochs: int = 120
    batch_size: int = 32
    learning_rate: float = 5e-3
    grad_clip: float = 1.0
    # Long enough to ride out the one-cycle peak, when the validation loss jumps for a while (at most
    # 33 epochs without a new best in the reference sweep) before the annealing phase brings it down.
    patience: int = 40
    seed: int = 0
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = -1

    @property
    def best_val_loss(self) -> float:
        return self.val_loss[self.best_epoch]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def l1_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return (model(batch) - batch).abs().mean()


def _as_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32, device=device).unsqueeze(-1)


@torch.inference_mode()
def mean_loss(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> float:
    model.eval()
    total = sum(
        l1_loss(model, x[i : i + batch_size]).item() * len(x[i : i + batch_size]) for i in range(0, len(x), batch_size)
    )
    return total / len(x)


def _train_epoch(
    model: torch.nn.Module,
    x: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    generator: torch.Generator,
    on_batch: Callable[[int], object] = lambda _n: None,
) -> float:
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    total = 0.0
    for start in range(0, len(x), config.batch_size):
        batch = x[order[start : start + config.batch_size]]
        loss = l1_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(batch)
        on_batch(1)
    return total / len(x)


class Trainer:
    """Owns the model, optimiser and history, so a run can be checkpointed and resumed mid-way."""

    def __init__(self, config: TrainConfig, seq_len: int, n_train: int, device: torch.device) -> None:
        self.config = config
        self.device = device
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = RecurrentAutoencoder(RecurrentAEConfig(seq_len=seq_len, embedding_dim=config.embedding_dim))
        self.model.to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        steps_per_epoch = -(-n_train // config.batch_size)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
        )
        self.history = History()
        self.best_state: dict[str, torch.Tensor] = copy.deepcopy(self.model.state_dict())

    def save_checkpoint(self, path: Path) -> None:
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "best_state": self.best_state,
                "history": self.history.to_dict(),
                "generator": self.generator.get_state(),
                "config": self.config.to_dict(),
            },
            path,
        )

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["config"] != self.config.to_dict():
            raise ValueError(f"{path} was written with different settings {state['config']}; delete it or match them")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_state = state["best_state"]
        self.history = History(**state["history"])
        self.generator.set_state(state["generator"])

    def fit(
        self,
        train_x: np.ndarray,
        val_x: np.ndarray,
        checkpoint: Path | None = None,
        on_epoch: Callable[[int, RecurrentAutoencoder], None] | None = None,
    ) -> History:
        """Train on normal beats, stop early on normal validation loss, end with the best weights loaded.

        ``on_epoch`` sees the model after each epoch (outside the timed part): the training benchmark uses it
        to find when the detector first reaches its target.
        """
        if checkpoint is not None and checkpoint.is_file():
            self.load_checkpoint(checkpoint)
            log.info("resumed from %s at epoch %d", checkpoint, len(self.history.train_loss))
        x_train, x_val = _as_tensor(train_x, self.device), _as_tensor(val_x, self.device)
        first = len(self.history.train_loss)
        per_epoch = math.ceil(len(x_train) / self.config.batch_size)
        bar = batches(per_epoch * self.config.epochs, "train", initial=per_epoch * first)
        for epoch in range(first, self.config.epochs):
            started = time.perf_counter()
            train_loss = _train_epoch(
                self.model, x_train, self.optimizer, self.scheduler, self.config, self.generator, bar.update
            )
            val_loss = mean_loss(self.model, x_val)
            self._record(epoch, train_loss, val_loss, time.perf_counter() - started)
            bar.set_postfix(epoch=epoch, train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=self.history.best_epoch)
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            if on_epoch is not None:
                on_epoch(epoch, self.model)
            if epoch - self.history.best_epoch >= self.config.patience:
                log.info("early stop at epoch %d (best %d)", epoch, self.history.best_epoch)
                break
        bar.close()
        self.model.load_state_dict(self.best_state)
        return self.history

    def _record(self, epoch: int, train_loss: float, val_loss: float, seconds: float) -> None:
        history = self.history
        history.train_loss.append(train_loss)
        history.val_loss.append(val_loss)
        history.epoch_seconds.append(seconds)
        if history.best_epoch < 0 or val_loss < history.best_val_loss:
            history.best_epoch = epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
