"""Image autoencoder shapes and the exactness of every regulariser on tiny inputs."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ecgwatch.models.image import (
    ContractiveAutoencoder,
    ConvDenoisingAutoencoder,
    MLPAutoencoder,
    VariationalAutoencoder,
    elbo_terms,
    gaussian_kl,
    kl_sparsity,
    l1_sparsity,
)


def test_shapes() -> None:
    x = torch.rand(4, 784)
    recon, code = MLPAutoencoder(latent=10)(x)
    assert recon.shape == (4, 784)
    assert code.shape == (4, 10)
    assert MLPAutoencoder((256, 128), latent=64)(x)[1].shape == (4, 64)
    recon, mu, logvar = VariationalAutoencoder(latent=2)(x)
    assert recon.shape == (4, 784)
    assert mu.shape == logvar.shape == (4, 2)
    assert ConvDenoisingAutoencoder()(torch.rand(4, 1, 28, 28))[0].shape == (4, 1, 28, 28)
    for out in (recon, MLPAutoencoder()(x)[0]):
        assert out.min() >= 0
        assert out.max() <= 1


def test_contractive_penalty_equals_finite_difference_jacobian() -> None:
    torch.manual_seed(0)
    model = ContractiveAutoencoder(latent=5).double()
    x = torch.rand(3, 784, dtype=torch.float64)
    penalty = model.jacobian_penalty(model.encode(x))
    eps = 1e-6
    norms = []
    for b in range(3):
        columns = []
        for i in range(784):
            step = torch.zeros(784, dtype=torch.float64)
            step[i] = eps
            columns.append((model.encode(x[b] + step) - model.encode(x[b] - step)) / (2 * eps))
        norms.append(torch.stack(columns).pow(2).sum())
    assert penalty.item() == pytest.approx(torch.stack(norms).mean().item(), rel=1e-6)


def test_contractive_penalty_equals_autograd_jacobian() -> None:
    torch.manual_seed(1)
    model = ContractiveAutoencoder(latent=7)
    x = torch.rand(2, 784)
    exact = torch.stack([torch.autograd.functional.jacobian(model.encode, x[b]).pow(2).sum() for b in range(2)]).mean()
    assert model.jacobian_penalty(model.encode(x)).item() == pytest.approx(exact.item(), rel=1e-4)


def test_gaussian_kl_equals_closed_form_from_torch_distributions() -> None:
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3)
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), reference)
    assert torch.allclose(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_elbo_terms() -> None:
    x = torch.tensor([[0.0, 1.0]])
    recon = torch.tensor([[0.5, 0.5]])
    terms = elbo_terms(x, recon, torch.zeros(1, 2), torch.zeros(1, 2))
    assert terms.reconstruction.item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    assert terms.kl.item() == 0
    assert terms.negative_elbo.item() == pytest.approx(terms.reconstruction.item())


def test_sparsity_penalties() -> None:
    code = torch.tensor([[0.0, 0.5], [0.2, 0.5]])
    assert l1_sparsity(code).item() == pytest.approx(0.1 + 0.5)
    rho = 0.05
    manual = sum(
        rho * torch.log(torch.tensor(rho / r)) + (1 - rho) * torch.log(torch.tensor((1 - rho) / (1 - r)))
        for r in (0.1, 0.5)
    )
    assert kl_sparsity(code, rho).item() == pytest.approx(manual.item(), rel=1e-5)
    assert kl_sparsity(torch.full((4, 3), rho), rho).item() == pytest.approx(0.0, abs=1e-6)


def test_vae_samples_from_the_prior() -> None:
    model = VariationalAutoencoder(latent=2)
    samples = model.sample(5, torch.Generator().manual_seed(0))
    assert samples.shape == (5, 784)
    torch.testing.assert_close(samples, model.sample(5, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("variant", ["vanilla", "vae", "conv-denoising", "contractive"])
def test_image_artifact_round_trip(tmp_path, variant: str) -> None:
    from ecgwatch import artifact
    from ecgwatch.models.image import ImageAEConfig, build_image_model

    torch.manual_seed(0)
    model = build_image_model(ImageAEConfig(variant, latent=4)).eval()
    path = artifact.save(model, {"version": f"img-{variant}"}, tmp_path / variant)
    loaded = artifact.load(path)
    assert loaded.metadata["architecture"] == "image-autoencoder"
    assert loaded.metadata["hyperparameters"] == {"variant": variant, "latent": 4}
    x = torch.rand(3, *model.config.input_shape)
    if variant == "vae":  # sampling: compare the deterministic parts
        torch.testing.assert_close(loaded.model.mu(loaded.model.body(x)), model.mu(model.body(x)))
    else:
        torch.testing.assert_close(loaded.model(x)[0], model(x)[0])


def test_image_artifact_cannot_be_served_as_an_ecg_model(tmp_path) -> None:
    from ecgwatch import artifact
    from ecgwatch.models.image import ImageAEConfig, build_image_model
    from ecgwatch.scorer import Scorer

    path = artifact.save(build_image_model(ImageAEConfig("vanilla", 4)), {"version": "img"}, tmp_path / "m")
    with pytest.raises(artifact.ArtifactError, match="cannot score ECG beats"):
        Scorer(artifact.load(path), torch.device("cpu"))
