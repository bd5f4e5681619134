"""``ecgwatch-train images-report``: every image variant trained and evaluated, figures and a report, one command."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.decomposition import PCA

from ecgwatch import artifact
from ecgwatch.datasets import NOISE_KINDS, add_noise, load_mnist
from ecgwatch.models.image import VARIANTS, VariationalAutoencoder
from training.image_eval import reconstruct_images, variant_metrics
from training.image_metrics import mse
from training.image_trainer import DENOISING, ImageTrainConfig, train_images

log = logging.getLogger(__name__)
SWEEP_LATENTS = (2, 3, 5, 10, 32)


def _runs(epochs: int) -> list[ImageTrainConfig]:
    """Each variant once; the denoisers once per noise kind, so each is judged on the noise it learned."""
    runs = []
    for variant in VARIANTS:
        noises = NOISE_KINDS if variant in DENOISING else ("gaussian",)
        latent = 2 if variant == "vae" else 32
        runs += [ImageTrainConfig(variant=variant, latent=latent, epochs=epochs, noise=n) for n in noises]
    return runs


def _name(config: ImageTrainConfig) -> str:
    return f"{config.variant}-{config.noise}" if config.variant in DENOISING else config.variant


def _triptych(models: dict[str, torch.nn.Module], clean: np.ndarray, kind: str, sigma: float, path: Path) -> Path:
    """The seed's original / dirty / cleaned rows, one cleaned row per denoiser."""
    shown = clean[:10]
    noisy = add_noise(shown, kind, sigma, seed=3)
    rows = [("original", shown), (f"{kind} noise", noisy)]
    rows += [(name, reconstruct_images(model, noisy)) for name, model in models.items()]
    fig, axes = plt.subplots(len(rows), 10, figsize=(12, 1.3 * len(rows)))
    for r, (label, images) in enumerate(rows):
        for c in range(10):
            axes[r, c].imshow(images[c], cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


@torch.no_grad()
def _vae_figures(vae: VariationalAutoencoder, test: np.ndarray, labels: np.ndarray, out: Path) -> list[Path]:
    x = torch.as_tensor(test.reshape(-1, 784))
    mu = vae.mu(vae.body(x)).numpy()
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(mu[:, 0], mu[:, 1], c=labels, cmap="tab10", s=3)
    fig.colorbar(points, label="digit")
    ax.set(title="VAE latent means of test digits (2-D latent)", xlabel="z1", ylabel="z2")
    fig.savefig(out / "latent_scatter.png", dpi=100)
    plt.close(fig)
    samples = vae.sample(64, torch.Generator().manual_seed(0)).reshape(-1, 28, 28).numpy()
    a, b = mu[labels == 1][0], mu[labels == 7][0]
    steps = torch.as_tensor(np.linspace(a, b, 10), dtype=torch.float32)
    strip = vae.decoder(steps).reshape(-1, 28, 28).numpy()
    fig, axes = plt.subplots(9, 10, figsize=(10, 9))
    for i in range(80):
        ax = axes[i // 10, i % 10]
        ax.imshow(samples[i] if i < 64 else np.zeros((28, 28)), cmap="gray")
        ax.axis("off")
    for i in range(10):
        axes[8, i].imshow(strip[i], cmap="gray")
        axes[8, i].axis("off")
    fig.suptitle("VAE: 64 samples from the prior; bottom row: interpolation from a 1 to a 7 in latent space")
    fig.savefig(out / "vae_samples_interpolation.png", dpi=90)
    plt.close(fig)
    return [out / "latent_scatter.png", out / "vae_samples_interpolation.png"]


def _latent_sweep(train: np.ndarray, test: np.ndarray, epochs: int, out: Path) -> dict[str, dict[int, float]]:
    sweep: dict[str, dict[int, float]] = {"vanilla AE": {}, "PCA": {}}
    flat_train, flat_test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    for latent in SWEEP_LATENTS:
        model, _ = train_images(train, ImageTrainConfig(variant="vanilla", latent=latent, epochs=epochs))
        sweep["vanilla AE"][latent] = mse(test, reconstruct_images(model, test))
        pca = PCA(n_components=latent, random_state=0).fit(flat_train)
        sweep["PCA"][latent] = mse(flat_test, pca.inverse_transform(pca.transform(flat_test)))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in sweep.items():
        ax.plot(list(values), list(values.values()), marker="o", label=name)
    ax.set(xscale="log", xlabel="latent size / PCA components", ylabel="test MSE", title="Autoencoder vs PCA")
    ax.set_xticks(SWEEP_LATENTS, [str(k) for k in SWEEP_LATENTS])
    ax.legend()
    fig.savefig(out / "latent_sweep.png", dpi=100)
    plt.close(fig)
    return sweep


def run_report(data: str | None, out: Path, epochs: int, max_images: int | None = None) -> dict[str, Any]:
    """``max_images`` caps the train and test sets: a quick smoke run of the whole report, for tests."""
    out.mkdir(parents=True, exist_ok=True)
    train_split, test_split = load_mnist("train", data), load_mnist("test", data)
    train, test = train_split.unit()[:max_images], test_split.unit()[:max_images]
    test_labels = test_split.y[:max_images]
    results: dict[str, Any] = {}
    models: dict[str, torch.nn.Module] = {}
    for config in _runs(epochs):
        name = _name(config)
        model, history = train_images(train, config)
        models[name] = model
        results[name] = {
            "config": config.to_dict(),
            "final_loss": history.loss[-1],
            **variant_metrics(model, config, test),
        }
        artifact.save(
            model,
            {"version": f"mnist-{name}-l{config.latent}", "metrics": {"test": results[name]}},
            out / "models" / name,
        )
        log.info("%s done", name)
    sigma = ImageTrainConfig.sigma
    for kind in NOISE_KINDS:
        denoisers = {n: m for n, m in models.items() if n.endswith(kind)}
        _triptych(denoisers, test, kind, sigma, out / f"triptych_{kind}.png")
    vae = models["vae"]
    assert isinstance(vae, VariationalAutoencoder)
    _vae_figures(vae, test, test_labels, out)
    sweep = _latent_sweep(train, test, epochs, out)
    report = {
        "epochs": epochs,
        "train_images": len(train),
        "test_images": len(test),
        "results": results,
        "latent_sweep_test_mse": sweep,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Image autoencoders on MNIST ({report['epochs']} epochs each)",
        "",
        f"{report['train_images']} training and {report['test_images']} test images; reproduce with",
        f"`ecgwatch-train images-report --data DIR --out DIR --epochs {report['epochs']}`.",
        "The denoisers (the seed's MLP and the convolutional U-Net) minimise minus the mean per-image PSNR;",
        "the other variants minimise MSE plus their own penalty. Noise is drawn afresh every epoch.",
        "",
        "## Test reconstruction MSE",
        "",
    ]
    lines += ["| variant | test MSE | extra |", "| --- | --- | --- |"]
    for name, r in report["results"].items():
        extra = {
            k: v
            for k, v in r.items()
            if k in ("sparsity", "mean_jacobian_frobenius_sq", "negative_elbo", "reconstruction_nats", "kl_nats")
        }
        lines.append(f"| {name} | {r['test_mse']:.5f} | {json.dumps(extra)} |")
    lines += ["", "## Denoising: PSNR (dB) / SSIM against the clean image", ""]
    lines += [
        "| model (trained on) | test noise | noisy input | median 3x3 | gaussian sigma 1 | autoencoder |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report["results"].items():
        for kind, table in r.get("denoising", {}).items():
            cells = [
                f"{table[c]['psnr_db']:.2f} / {table[c]['ssim']:.3f}"
                for c in ("noisy input", "median filter 3x3", "gaussian filter sigma 1", "autoencoder")
            ]
            lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    lines += ["", "## Latent size sweep: test MSE, vanilla AE vs PCA with as many components", ""]
    sweep = report["latent_sweep_test_mse"]
    lines += ["| size | vanilla AE | PCA |", "| --- | --- | --- |"]
    lines += [f"| {k} | {sweep['vanilla AE'][k]:.5f} | {sweep['PCA'][k]:.5f} |" for k in sweep["PCA"]]
    lines += ["", "## Figures", ""] + [
        f"![{p}]({p})"
        for p in (
            "triptych_gaussian.png",
            "triptych_speckle.png",
            "latent_scatter.png",
            "vae_samples_interpolation.png",
            "latent_sweep.png",
        )
    ]
    return "\n".join(lines) + "\n"
