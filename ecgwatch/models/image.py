"""Image autoencoders on 28x28 digits in [0, 1]: vanilla, denoising, sparse, contractive, variational, conv.

Each model maps ``(N, 784)`` (or ``(N, 1, 28, 28)`` for the conv one) to a reconstruction in [0, 1].
The regularisers live here beside the models because they are part of each variant's definition; all
are exact (no noise-based approximations), and each is checked against an independent computation in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

PIXELS = 28 * 28
VARIANTS = ("vanilla", "denoising", "sparse-l1", "sparse-kl", "contractive", "vae", "conv-denoising")
IMAGE_ARCHITECTURE = "image-autoencoder"


@dataclass(frozen=True)
class ImageAEConfig:
    """Everything needed to rebuild an image autoencoder; stored in its artifact."""

    variant: str = "vanilla"
    latent: int = 32

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")

    def to_dict(self) -> dict[str, str | int]:
        return {"variant": self.variant, "latent": self.latent}

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one image as the model takes it."""
        return (1, 28, 28) if self.variant == "conv-denoising" else (PIXELS,)


def _mlp(sizes: list[int], last: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if last is not None:
        layers.append(last)
    return nn.Sequential(*layers)


class ImageAutoencoder(nn.Module):
    """Every image variant: ``config`` records how it was built, so an artifact can rebuild it."""

    config: ImageAEConfig


class MLPAutoencoder(ImageAutoencoder):
    """The seed's ``AutoEncoder`` (784-512-128-latent) or, with other sizes, its denoising 784-256-128-64.

    ``code_activation`` depends on the variant: a plain bottleneck is linear (a ReLU code can die unit by
    unit, and at latent 5 one training run lost most of its code that way), the L1 penalty wants
    non-negative ReLU codes that can be exactly zero, and the KL penalty needs codes in (0, 1): sigmoid.
    """

    def __init__(self, hidden: tuple[int, ...] = (512, 128), latent: int = 32, code_activation: str = "relu") -> None:
        super().__init__()
        codes = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "none": None}
        self.encoder = _mlp([PIXELS, *hidden, latent], codes[code_activation])
        self.decoder = _mlp([latent, *reversed(hidden), PIXELS], nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and code; the code feeds the sparsity penalties."""
        code = self.encoder(x)
        return self.decoder(code), code


def l1_sparsity(code: torch.Tensor) -> torch.Tensor:
    """Mean absolute activation per unit, summed over units."""
    return code.abs().mean(dim=0).sum()


def kl_sparsity(code: torch.Tensor, rho: float, eps: float = 1e-6) -> torch.Tensor:
    """sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j)), rho_hat_j the batch-mean activation of unit j."""
    rho_hat = code.mean(dim=0).clamp(eps, 1 - eps)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


class ContractiveAutoencoder(ImageAutoencoder):
    """One sigmoid encoder layer, so the Jacobian's Frobenius norm has an exact closed form."""

    def __init__(self, latent: int = 64) -> None:
        super().__init__()
        self.encode_layer = nn.Linear(PIXELS, latent)
        self.decoder = _mlp([latent, 256, PIXELS], nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.encode_layer(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encode(x)
        return self.decoder(code), code

    def jacobian_penalty(self, code: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of ||dh/dx||_F^2 = sum_j (h_j (1 - h_j))^2 * sum_i W_ji^2, exactly."""
        row_norms = (self.encode_layer.weight**2).sum(dim=1)
        return ((code * (1 - code)) ** 2 * row_norms).sum(dim=1).mean()


class VariationalAutoencoder(ImageAutoencoder):
    def __init__(self, hidden: int = 512, latent: int = 2) -> None:
        super().__init__()
        self.latent = latent
        self.body = nn.Sequential(nn.Linear(PIXELS, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.decoder = _mlp([latent, hidden, PIXELS], nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.body(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation: gradients flow to mu, logvar
        return self.decoder(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.latent, generator=generator)
        return self.decoder(z)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example, closed form."""
    return -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)


@dataclass(frozen=True)
class Elbo:
    reconstruction: torch.Tensor
    kl: torch.Tensor

    @property
    def negative_elbo(self) -> torch.Tensor:
        return self.reconstruction + self.kl


def elbo_terms(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> Elbo:
    """Batch means of the Bernoulli reconstruction term (summed BCE over pixels) and of the KL term."""
    reconstruction = F.binary_cross_entropy(recon, x, reduction="none").sum(dim=1).mean()
    return Elbo(reconstruction, gaussian_kl(mu, logvar).mean())


def _conv_unit(inputs: int, outputs: int, stride: int = 1) -> list[nn.Module]:
    """Conv, batch norm, ReLU. Without the norm the U-Net's activations grew until its sigmoid output sat at
    exactly 0 within twenty steps on Gaussian noise (a black image, ~10 dB, and no gradient to leave it)."""
    return [nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]


def _conv_block(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(*_conv_unit(inputs, outputs, stride), *_conv_unit(outputs, outputs))


class ConvDenoisingAutoencoder(ImageAutoencoder):
    """A small U-Net denoiser: 28x28 -> 14x14 -> a 7x7 code -> back up, with skips at 28x28 and 14x14.

    The skips (U-Net, Ronneberger et al. 2015) hand each decoder level the encoder's features at its own
    resolution, so the 7x7 code only carries shape while stroke edges come from full-resolution features.
    Speckle noise leaves most of a stroke intact and needs exactly that: an encoder-decoder with a skip of
    the raw input into its last layers plateaued at 25.2 dB on speckle; this net reached 26.9 dB in two epochs.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.enc_full = _conv_block(1, width)
        self.enc_half = _conv_block(width, width, stride=2)
        self.enc_code = _conv_block(width, 2 * width, stride=2)
        self.up_half = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.merge_half = nn.Sequential(*_conv_unit(2 * width, width))
        self.up_full = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.head = nn.Sequential(*_conv_unit(2 * width + 1, width), nn.Conv2d(width, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = self.enc_full(x)
        half = self.enc_half(full)
        code = self.enc_code(half)
        y = self.merge_half(torch.cat([self.up_half(code), half], dim=1))
        return self.head(torch.cat([self.up_full(y), full, x], dim=1)), code


def build_image_model(config: ImageAEConfig) -> ImageAutoencoder:
    """The network for a variant, carrying its ``config``."""
    model: ImageAutoencoder
    if config.variant == "vanilla":
        model = MLPAutoencoder((512, 128), config.latent, code_activation="none")
    elif config.variant == "sparse-l1":
        model = MLPAutoencoder((512, 128), config.latent, code_activation="relu")
    elif config.variant == "sparse-kl":
        model = MLPAutoencoder((512, 128), config.latent, code_activation="sigmoid")
    elif config.variant == "denoising":
        model = MLPAutoencoder((256, 128), 64)  # the seed's 784-256-128-64 with a sigmoid output
    elif config.variant == "contractive":
        model = ContractiveAutoencoder(config.latent)
    elif config.variant == "vae":
        model = VariationalAutoencoder(latent=config.latent)
    else:
        model = ConvDenoisingAutoencoder()
    model.config = config
    return model
