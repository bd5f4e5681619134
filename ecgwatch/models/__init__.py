"""Neural network definitions used by training and by the daemon."""

from ecgwatch.models.device import resolve_device
from ecgwatch.models.recurrent import RecurrentAEConfig, RecurrentAutoencoder

__all__ = ["RecurrentAEConfig", "RecurrentAutoencoder", "resolve_device"]
