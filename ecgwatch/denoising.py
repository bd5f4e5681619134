"""``ecgwatch.denoise``: clean MNIST-like digits with a trained image autoencoder artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ecgwatch import artifact
from ecgwatch.models.image import IMAGE_ARCHITECTURE


def _as_unit_images(images: np.ndarray) -> tuple[np.ndarray, bool]:
    """(N, 784) float32 in [0, 1], and whether the input was uint8 (so the output can be too)."""
    array = np.asarray(images)
    if array.ndim not in (2, 3) or array.shape[1:] not in ((28, 28), (784,)):
        raise ValueError(f"images must have shape (N, 28, 28) or (N, 784), got {array.shape}")
    if array.dtype == np.uint8:
        return array.reshape(len(array), 784).astype(np.float32) / 255.0, True
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"images must be float in [0, 1] or uint8 in [0, 255], got dtype {array.dtype}")
    if array.size and (not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0):
        raise ValueError("float images must be finite and scaled to [0, 1] (pass uint8 for 0..255 pixels)")
    return array.reshape(len(array), 784).astype(np.float32), False


def denoise(
    images: np.ndarray, model: str | Path | artifact.LoadedModel | None = None, batch_size: int = 1000
) -> np.ndarray:
    """Reconstruct ``images`` through an image autoencoder artifact (default: the shipped conv U-Net denoiser,
    trained on MNIST with Gaussian noise, sigma 0.5); same shape and dtype convention back."""
    if model is None:
        model = artifact.DENOISER_MODEL_DIR
    loaded = model if isinstance(model, artifact.LoadedModel) else artifact.load(model)
    if loaded.metadata["architecture"] != IMAGE_ARCHITECTURE:
        raise ValueError(f"{loaded.path}: a {loaded.metadata['architecture']!r} model cannot denoise images")
    x, was_uint8 = _as_unit_images(images)
    net = loaded.model.eval()
    shape = (-1, *artifact.config_of(net).input_shape)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            outputs.append(net(torch.from_numpy(x[start : start + batch_size]).reshape(shape))[0].reshape(-1, 784))
    clean = torch.cat(outputs).numpy() if outputs else np.empty((0, 784), np.float32)
    clean = clean.reshape(np.asarray(images).shape)
    return np.round(clean * 255).astype(np.uint8) if was_uint8 else clean
