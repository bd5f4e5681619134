"""Evaluate a trained image autoencoder on the MNIST test set with the metrics its variant calls for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from ecgwatch.datasets import NOISE_KINDS, add_noise
from ecgwatch.models.image import ContractiveAutoencoder, VariationalAutoencoder, elbo_terms
from training.image_metrics import gaussian_filter, median_filter, mse, psnr, sparsity, ssim
from training.image_trainer import DENOISING, ImageTrainConfig, shaped


@torch.no_grad()
def reconstruct_images(model: torch.nn.Module, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    outputs = []
    for start in range(0, len(images), batch):
        x = shaped(model, torch.as_tensor(images[start : start + batch].reshape(-1, 784), dtype=torch.float32))
        out = model(x)[0]
        outputs.append(out.reshape(-1, 28, 28).numpy())
    return np.concatenate(outputs)


def denoising_metrics(model: torch.nn.Module, clean: np.ndarray, sigma: float, seed: int) -> dict[str, Any]:
    """PSNR/SSIM of the noisy input, two classical filters and the model, for each noise kind."""
    out = {}
    for kind in NOISE_KINDS:
        noisy = add_noise(clean, kind, sigma, seed)
        candidates = {
            "noisy input": noisy,
            "median filter 3x3": median_filter(noisy),
            "gaussian filter sigma 1": gaussian_filter(noisy),
            "autoencoder": reconstruct_images(model, noisy),
        }
        out[kind] = {name: {"psnr_db": psnr(clean, img), "ssim": ssim(clean, img)} for name, img in candidates.items()}
    return out


@torch.no_grad()
def variant_metrics(model: torch.nn.Module, config: ImageTrainConfig, clean: np.ndarray) -> dict[str, Any]:
    metrics: dict[str, Any] = {"test_mse": mse(clean, reconstruct_images(model, clean))}
    x = torch.as_tensor(clean.reshape(-1, 784), dtype=torch.float32)
    if config.variant in DENOISING:
        metrics["denoising"] = denoising_metrics(model, clean, config.sigma, seed=12345)
    if config.variant.startswith("sparse"):
        metrics["sparsity"] = sparsity(model(x)[1].numpy())
    if isinstance(model, ContractiveAutoencoder):
        metrics["mean_jacobian_frobenius_sq"] = float(model.jacobian_penalty(model.encode(x)))
    if isinstance(model, VariationalAutoencoder):
        recon, mu, logvar = model(x)
        terms = elbo_terms(x, recon, mu, logvar)
        metrics["negative_elbo"] = float(terms.negative_elbo)
        metrics["reconstruction_nats"] = float(terms.reconstruction)
        metrics["kl_nats"] = float(terms.kl)
    return metrics


def progress_grid(model: torch.nn.Module, config: ImageTrainConfig, clean: np.ndarray, epoch: int, path: Path) -> Path:
    """The seed's per-epoch "visual progress": inputs on top, reconstructions below."""
    shown = clean[:8]
    inputs = add_noise(shown, config.noise, config.sigma, seed=0) if config.variant in DENOISING else shown
    recon = reconstruct_images(model, inputs)
    fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
    for i in range(8):
        for row, img in enumerate((inputs[i], recon[i])):
            axes[row, i].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[row, i].axis("off")
    fig.suptitle(f"{config.variant}, epoch {epoch}: input (top) and reconstruction (bottom)")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
