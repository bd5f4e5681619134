"""Where a data set is read from: an explicit directory, ``ECGWATCH_DATA_DIR``, or the download cache."""

from __future__ import annotations

import os
from pathlib import Path

from ecgwatch.datasets import download
from ecgwatch.datasets.errors import DataUnavailableError

ENV_VAR = "ECGWATCH_DATA_DIR"

ECG5000_URL = "https://www.timeseriesclassification.com/aeon-toolkit/ECG5000.zip"
# sha256 of the files inside the official release zip (the archive itself is re-packed now and then).
ECG5000_SHA256 = {
    "ECG5000_TRAIN.txt": "0d96aff193311a6dc6111bf0dbd2f7d2313987fbf7a1da4a383d92563876057b",
    "ECG5000_TEST.txt": "baf4ad57d28daa5e79050edd4185968181762bc83d45a757753015b4ba8ab295",
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def _dataset_dir(root: Path, name: str) -> Path:
    """Accept either the data root (with ``name/`` below it) or the data set's own folder."""
    sub = root / name
    return sub if sub.is_dir() else root


def data_dir(name: str, explicit: Path | str | None = None, url: str | None = None) -> Path:
    """Resolve the folder holding data set ``name`` ("ecg5000" or "mnist"), downloading it if needed."""
    if explicit is not None:
        root = Path(explicit)
    elif os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR])
    else:
        return _download(name, url)
    if not root.is_dir():
        raise DataUnavailableError(f"data directory {root} does not exist")
    return _dataset_dir(root, name)


def _download(name: str, url: str | None) -> Path:
    target = download.cache_dir() / name
    if name == "mitbih":
        raise DataUnavailableError(
            "MIT-BIH records are read from a data directory: set ECGWATCH_DATA_DIR (or --data) to a folder with "
            "mitbih/<rec>.hea and <rec>.dat (PhysioNet's mitdb, https://physionet.org/content/mitdb/1.0.0/)"
        )
    if name == "ecg5000":
        return download.download_zip_members(url or ECG5000_URL, target, ECG5000_SHA256)
    if name == "mnist":
        return download.download_files(url or MNIST_URL, target, MNIST_SHA256)
    raise ValueError(f"unknown data set {name!r}")
