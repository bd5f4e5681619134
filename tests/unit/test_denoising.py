from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import ecgwatch
from ecgwatch import artifact
from ecgwatch.models.image import ImageAEConfig, build_image_model


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_image_model(ImageAEConfig("denoising"))
    return artifact.save(model, {"version": "denoise-test"}, tmp_path_factory.mktemp("m") / "denoising")


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 784)])
def test_shapes_and_dtypes_round_trip(image_model: Path, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    floats = rng.random(shape, dtype=np.float32)
    clean = ecgwatch.denoise(floats, model=image_model)
    assert clean.shape == shape
    assert clean.dtype == np.float32
    assert 0 <= clean.min() <= clean.max() <= 1
    pixels = (floats * 255).astype(np.uint8)
    clean_u8 = ecgwatch.denoise(pixels, model=image_model)
    assert clean_u8.dtype == np.uint8
    assert clean_u8.shape == shape
    np.testing.assert_allclose(clean_u8 / 255.0, ecgwatch.denoise(pixels / 255.0, model=image_model), atol=1 / 255)


def test_conv_model_takes_flat_images_too(tmp_path: Path) -> None:
    path = artifact.save(build_image_model(ImageAEConfig("conv-denoising")), {"version": "c"}, tmp_path / "conv")
    assert ecgwatch.denoise(np.zeros((2, 784), np.float32), model=path).shape == (2, 784)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((5, 32, 32)), r"shape \(N, 28, 28\) or \(N, 784\)"),
        (np.zeros(784), r"shape \(N, 28, 28\) or \(N, 784\)"),
        (np.full((2, 784), 200.0), r"scaled to \[0, 1\]"),
        (np.full((2, 784), np.nan), "finite"),
        (np.zeros((2, 784), dtype=np.int32), "dtype int32"),
    ],
)
def test_clear_errors_for_anything_else(image_model: Path, images: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ecgwatch.denoise(images, model=image_model)


def test_ecg_model_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot denoise images"):
        ecgwatch.denoise(np.zeros((1, 784), np.float32), model=artifact.REFERENCE_MODEL_DIR)


def test_the_shipped_denoiser_works_out_of_the_box(data_root: Path) -> None:
    """No model argument: the conv U-Net that ships in the package cleans noisy digits it never saw."""
    from ecgwatch.datasets import add_noise, load_mnist

    truth = load_mnist("test", str(data_root)).unit()[:300]
    noisy = add_noise(truth, "gaussian", 0.5, seed=7)
    clean = ecgwatch.denoise(noisy)

    def psnr(x: np.ndarray) -> float:
        return float(10 * np.log10(1.0 / np.mean((x - truth) ** 2)))

    assert clean.shape == truth.shape
    assert psnr(clean) > psnr(noisy) + 6, (psnr(noisy), psnr(clean))
