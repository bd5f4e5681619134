"""Where the models that ship inside the package live, and the error a bad artifact raises.

Kept free of torch so that ``ecgwatch --help``, ``ecgwatch config`` and the settings load in a fraction of
a second (importing torch takes seconds); :mod:`ecgwatch.artifact` loads the models themselves.
"""

from __future__ import annotations

from pathlib import Path

REFERENCE_MODEL_DIR = Path(__file__).parent / "reference_model"  # ECG5000: pre-cut beats of one person
POPULATION_MODEL_DIR = Path(__file__).parent / "population_model"  # many people's strips, judged per device
DENOISER_MODEL_DIR = Path(__file__).parent / "denoiser_model"  # MNIST conv U-Net: ecgwatch.denoise()'s default


class ArtifactError(ValueError):
    """A model artifact is missing, corrupt or inconsistent."""
