from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from ecgwatch.datasets import DataFormatError, DataUnavailableError, add_noise, load_mnist
from ecgwatch.datasets.mnist import IMAGES_MAGIC, LABELS_MAGIC, load_split, read_idx


def idx_bytes(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(directory: Path, images: np.ndarray, labels: np.ndarray, prefix: str = "t10k") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(IMAGES_MAGIC, images)))
    (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(LABELS_MAGIC, labels)))


def test_real_files_have_published_counts(data_root: Path) -> None:
    train, test = load_mnist("train", str(data_root)), load_mnist("test", str(data_root))
    assert train.x.shape == (60000, 28, 28)
    assert np.bincount(test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    unit = test.unit()
    assert unit.dtype == np.float32
    assert 0.0 == unit.min() < unit.max() == 1.0


def test_small_split_round_trips_gzip_and_raw(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    labels = np.array([0, 1, 2, 3, 9])
    write_split(tmp_path, images, labels)
    split = load_split(tmp_path, "test")
    np.testing.assert_array_equal(split.x, images)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(gzip.decompress((tmp_path / f"{name}.gz").read_bytes()))
    np.testing.assert_array_equal(load_split(raw, "test").y, labels)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:-10], r"header says shape \(5, 28, 28\)"),
        (lambda d: (0x0801).to_bytes(4, "big") + d[4:], r"magic number 0x00000801, expected 0x00000803"),
        (lambda d: d[:5], r"too short for an IDX header"),
    ],
)
def test_malformed_image_files(tmp_path: Path, mutate, message: str) -> None:
    data = idx_bytes(IMAGES_MAGIC, np.zeros((5, 28, 28)))
    path = tmp_path / "bad-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(mutate(data)))
    with pytest.raises(DataFormatError, match=message):
        read_idx(path, IMAGES_MAGIC)


def test_truncated_gzip_and_inconsistent_splits(tmp_path: Path) -> None:
    write_split(tmp_path, np.zeros((5, 28, 28)), np.arange(4))
    with pytest.raises(DataFormatError, match=r"has 5 images but .* has 4 labels"):
        load_split(tmp_path, "test")
    write_split(tmp_path, np.zeros((2, 28, 28)), np.array([3, 11]))
    with pytest.raises(DataFormatError, match="label 11 is not a digit"):
        load_split(tmp_path, "test")
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(DataFormatError, match="truncated or not gzip"):
        load_split(tmp_path, "test")
    with pytest.raises(DataUnavailableError, match="train-images-idx3-ubyte"):
        load_split(tmp_path, "train")


@pytest.mark.parametrize("kind", ["gaussian", "speckle"])
def test_noise_statistics_and_reproducibility(kind: str) -> None:
    clean = np.full((200, 28, 28), 0.5, dtype=np.float32)
    noisy = add_noise(clean, kind, sigma=0.1, seed=7)
    expected_std = 0.1 if kind == "gaussian" else 0.05  # speckle scales noise by the pixel value
    assert (noisy - clean).std() == pytest.approx(expected_std, rel=0.02)
    assert abs((noisy - clean).mean()) < 1e-3
    np.testing.assert_array_equal(noisy, add_noise(clean, kind, 0.1, seed=7))
    assert not np.array_equal(noisy, add_noise(clean, kind, 0.1, seed=8))


def test_noise_is_clipped_and_speckle_spares_black_pixels() -> None:
    images = np.zeros((10, 28, 28), dtype=np.float32)
    images[:, :14] = 1.0
    for kind in ("gaussian", "speckle"):
        noisy = add_noise(images, kind, sigma=0.8, seed=0)
        assert noisy.min() >= 0.0
        assert noisy.max() <= 1.0
    assert (add_noise(images, "speckle", 0.8, 0)[:, 14:] == 0).all()


def test_noise_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="noise must be one of"):
        add_noise(np.zeros((1, 4)), "salt", 0.1, 0)
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
        add_noise(np.full((1, 4), 255.0), "gaussian", 0.1, 0)
