"""MNIST from the official IDX files (gzip or raw), read with numpy and validated.

No torchvision: the IDX format is a magic number, big-endian dimensions and raw bytes. Every check that
can fail says which file and what is wrong, since a truncated download otherwise looks like fewer images.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgwatch.datasets.errors import DataFormatError, DataUnavailableError

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Images:
    """``x``: uint8 ``(N, 28, 28)``; ``y``: digit labels ``(N,)``."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def unit(self) -> np.ndarray:
        """Pixels as float32 in [0, 1], the range the image autoencoders work in."""
        return self.x.astype(np.float32) / 255.0


def _read_bytes(path: Path) -> bytes:
    try:
        with gzip.open(path) if path.suffix == ".gz" else path.open("rb") as handle:
            return handle.read()
    except (OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: cannot be read ({exc}); the file is truncated or not gzip") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file as an array, checking the magic number and that the byte count matches the header."""
    data = _read_bytes(path)
    if len(data) < 8:
        raise DataFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataFormatError(f"{path}: magic number {found:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataFormatError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise DataUnavailableError(f"{directory}: no {stem}.gz or {stem}")


def load_split(directory: Path, split: str) -> Images:
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    images_path, labels_path = (_find(directory, stem) for stem in SPLIT_FILES[split])
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataFormatError(f"{images_path}: images are {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise DataFormatError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataFormatError(f"{labels_path}: label {int(labels.max())} is not a digit 0..9")
    return Images(images, labels.astype(np.int64))
