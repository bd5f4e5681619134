"""Data sets: ECG5000 beats (and MNIST images), with validation, a seeded split and verified downloads."""

from ecgwatch.datasets.ecg5000 import CLASS_NAMES, SEQ_LEN, Beats, load_directory
from ecgwatch.datasets.errors import DataFormatError, DataUnavailableError
from ecgwatch.datasets.locate import data_dir
from ecgwatch.datasets.mnist import Images, load_split
from ecgwatch.datasets.noise import NOISE_KINDS, add_noise
from ecgwatch.datasets.splits import Split, make_split


def load_mnist(split: str, directory: str | None = None) -> Images:
    """One MNIST split ("train" or "test") from ``directory``, ``$ECGWATCH_DATA_DIR`` or the download cache."""
    return load_split(data_dir("mnist", directory), split)


def load_ecg5000(directory: str | None = None) -> Beats:
    """All ECG5000 beats found in ``directory``, ``$ECGWATCH_DATA_DIR`` or the download cache."""
    return load_directory(data_dir("ecg5000", directory))


__all__ = [
    "CLASS_NAMES",
    "NOISE_KINDS",
    "SEQ_LEN",
    "Beats",
    "DataFormatError",
    "DataUnavailableError",
    "Images",
    "Split",
    "add_noise",
    "data_dir",
    "load_directory",
    "load_ecg5000",
    "load_mnist",
    "make_split",
]
