"""A short real run per variant on real MNIST digits lowers its loss; metrics agree with known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgwatch.datasets import add_noise, load_mnist
from ecgwatch.models.image import VARIANTS, ImageAEConfig, build_image_model
from training.image_metrics import gaussian_filter, median_filter, mse, psnr, sparsity, ssim
from training.image_trainer import ImageTrainConfig, loss_terms, negative_psnr, train_images


@pytest.fixture(scope="module")
def digits(data_root) -> np.ndarray:
    return load_mnist("test", str(data_root)).unit()[:1024]


@pytest.mark.parametrize("variant", VARIANTS)
def test_short_run_lowers_the_loss(digits: np.ndarray, variant: str) -> None:
    torch.set_num_threads(2)
    config = ImageTrainConfig(variant=variant, latent=8, epochs=4, batch_size=64, learning_rate=2e-3)
    model, history = train_images(digits, config, progress=False)
    # Denoisers minimise -PSNR in dB (negative), the rest a positive loss: either way it must fall by 10%.
    assert history.loss[-1] < history.loss[0] - 0.1 * abs(history.loss[0]), history.loss
    x = torch.as_tensor(digits[:16].reshape(16, -1))
    inputs = x.view(-1, 1, 28, 28) if variant == "conv-denoising" else x
    terms = loss_terms(model, config, inputs, inputs)
    assert set(history.terms[0]) == set(terms) - {"total"}


def test_denoising_variants_are_trained_noisy_to_clean(digits: np.ndarray, data_root) -> None:
    train = load_mnist("train", str(data_root)).unit()[:8000]
    config = ImageTrainConfig(variant="denoising", epochs=3, batch_size=64, learning_rate=2e-3, sigma=0.5)
    model, _ = train_images(train, config, progress=False)
    noisy = add_noise(digits[:200], "gaussian", 0.5, seed=99)
    with torch.no_grad():
        cleaned = model(torch.as_tensor(noisy.reshape(200, -1)))[0].numpy()
    assert psnr(digits[:200], cleaned) > psnr(digits[:200], noisy) + 3


def test_psnr_loss_is_minus_the_reported_psnr() -> None:
    rng = np.random.default_rng(1)
    clean, recon = rng.random((5, 784)), rng.random((5, 784))
    loss = negative_psnr(torch.as_tensor(recon), torch.as_tensor(clean))
    assert float(loss) == pytest.approx(-psnr(clean, recon), abs=1e-3)


def test_denoisers_can_minimise_mse_instead(digits: np.ndarray) -> None:
    x = torch.as_tensor(digits[:8].reshape(8, -1))
    config = ImageTrainConfig(variant="denoising", denoise_loss="mse")
    terms = loss_terms(build_image_model(ImageAEConfig("denoising")), config, x, x)
    assert set(terms) == {"total", "mse"}
    assert terms["total"].item() == pytest.approx(terms["mse"].item())
    with pytest.raises(ValueError, match="denoise_loss"):
        ImageTrainConfig(variant="denoising", denoise_loss="l1")


def test_image_metrics_known_values() -> None:
    a = np.zeros((2, 28, 28))
    b = a + 0.1
    assert mse(a, b) == pytest.approx(0.01)
    assert psnr(a, b) == pytest.approx(20.0)
    rng = np.random.default_rng(0)
    img = rng.random((3, 28, 28))
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, rng.random((3, 28, 28))) < 0.2
    assert median_filter(img).shape == gaussian_filter(img).shape == (3, 28, 28)
    assert sparsity(np.array([[0.0, 0.5], [0.001, 1.0]])) == {
        "mean_activation": pytest.approx(0.37525),
        "fraction_near_zero": 0.5,
    }


def test_images_cli_writes_weights_metrics_and_progress_grids(tmp_path, data_root) -> None:
    import json

    from training.cli import main

    out = tmp_path / "sparse"
    args = [
        "images",
        "--variant",
        "sparse-kl",
        "--data",
        str(data_root),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--latent",
        "16",
        "--max-images",
        "6000",
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["test"]["test_mse"] < 0.1
    assert 0 <= metrics["test"]["sparsity"]["fraction_near_zero"] <= 1
    assert len(metrics["history"]["loss"]) == 2
    assert (out / "model.safetensors").is_file()
    assert sorted(p.name for p in out.glob("progress_epoch*.png")) == ["progress_epoch000.png", "progress_epoch001.png"]


def test_images_report_command_writes_every_section_and_figure(tmp_path, data_root) -> None:
    """The whole report from one command, on a 300-image slice so it runs in seconds."""
    import json

    from ecgwatch.models.image import VARIANTS
    from training.cli import main
    from training.image_report import SWEEP_LATENTS

    out = tmp_path / "report"
    args = ["images-report", "--data", str(data_root), "--out", str(out), "--epochs", "1", "--max-images", "300"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["train_images"] == report["test_images"] == 300
    trained = {r["config"]["variant"] for r in report["results"].values()}
    assert trained == set(VARIANTS)
    for name, result in report["results"].items():
        if result["config"]["variant"] in ("denoising", "conv-denoising"):
            assert set(result["denoising"]) == {"gaussian", "speckle"}, name
    sweep = report["latent_sweep_test_mse"]
    assert [int(k) for k in sweep["PCA"]] == list(SWEEP_LATENTS)
    assert all(0 < v < 1 for v in sweep["vanilla AE"].values())
    markdown = (out / "report.md").read_text()
    for figure in (
        "triptych_gaussian",
        "triptych_speckle",
        "latent_scatter",
        "vae_samples_interpolation",
        "latent_sweep",
    ):
        png = out / f"{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
        assert f"]({figure}.png)" in markdown
    assert "## Latent size sweep" in markdown
