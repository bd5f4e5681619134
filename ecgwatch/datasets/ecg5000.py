"""ECG5000 loading and validation.

The UCR archive ships the same beats as ARFF, whitespace text (``.txt``), tab-separated text (``.tsv``)
and sktime ``.ts``. We accept whichever the directory holds, merge the splits it has, and validate every
row, because a silently mis-parsed beat would poison both training and the calibrated threshold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import arff
import numpy as np

from ecgwatch.datasets.errors import DataFormatError, DataUnavailableError

SEQ_LEN = 140
NORMAL_CLASS = 1
CLASS_NAMES: dict[int, str] = {1: "Normal", 2: "R-on-T PVC", 3: "PVC", 4: "SP/EB", 5: "UB"}
SPLITS = ("TRAIN", "TEST")
# Preference order when a split exists in several formats: they hold identical rows.
FORMATS = (".arff", ".txt", ".tsv", ".ts")


@dataclass(frozen=True)
class Beats:
    """Beats as float64 ``(N, 140)`` with integer class labels 1..5."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x {self.x.shape} and y {self.y.shape} do not describe the same beats")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def is_anomaly(self) -> np.ndarray:
        return self.y != NORMAL_CLASS

    def subset(self, index: np.ndarray) -> Beats:
        return Beats(self.x[index], self.y[index])

    def sha256(self) -> str:
        """Hash of the values and labels, independent of which file format they came from."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.x, dtype="<f8").tobytes())
        digest.update(np.ascontiguousarray(self.y, dtype="<i8").tobytes())
        return digest.hexdigest()


def _check_finite(path: Path, x: np.ndarray, y: np.ndarray) -> Beats:
    """NaN and inf parse as floats, so they are caught here; the row counts data rows."""
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        row, col = bad[0]
        raise DataFormatError(f"{path}: row {row + 1}: sample {col + 1} is not a finite number")
    return Beats(x, y)


def _parse_label(path: Path, row: int, token: str) -> int:
    try:
        value = float(token)
    except ValueError:
        raise DataFormatError(f"{path}: row {row}: label {token!r} is not a number") from None
    if not value.is_integer():
        raise DataFormatError(f"{path}: row {row}: label {token!r} is not an integer class")
    if int(value) not in CLASS_NAMES:
        raise DataFormatError(f"{path}: row {row}: label {int(value)} is not one of 1..5")
    return int(value)


def _parse_values(path: Path, row: int, tokens: list[str]) -> list[float]:
    if len(tokens) != SEQ_LEN:
        raise DataFormatError(f"{path}: row {row}: expected {SEQ_LEN} samples, found {len(tokens)}")
    try:
        return [float(t) for t in tokens]
    except ValueError as exc:
        raise DataFormatError(f"{path}: row {row}: {exc}") from None


def _read_delimited(path: Path, sep: str | None) -> Beats:
    """UCR text: one beat per line, label first, then the samples."""
    xs: list[list[float]] = []
    ys: list[int] = []
    with path.open(encoding="utf-8") as handle:
        for row, line in enumerate(handle, start=1):
            tokens = line.strip().split(sep)
            if tokens == [""] or tokens == []:
                continue
            ys.append(_parse_label(path, row, tokens[0]))
            xs.append(_parse_values(path, row, tokens[1:]))
    return _finish(path, xs, ys)


def _read_ts(path: Path) -> Beats:
    """sktime ``.ts``: header lines start with ``@`` or ``#``; data rows are ``v1,...,vN:label``."""
    xs: list[list[float]] = []
    ys: list[int] = []
    with path.open(encoding="utf-8") as handle:
        for row, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or line.startswith(("@", "#")):
                continue
            values, sep, label = line.rpartition(":")
            if not sep:
                raise DataFormatError(f"{path}: line {row}: no ':label' at the end of the row")
            ys.append(_parse_label(path, row, label))
            xs.append(_parse_values(path, row, values.split(",")))
    return _finish(path, xs, ys)


def _read_arff(path: Path) -> Beats:
    """Weka ARFF via liac-arff: 140 numeric attributes, then the class."""
    try:
        with path.open(encoding="utf-8") as handle:
            decoded = arff.load(handle)
    except (arff.ArffException, ValueError) as exc:
        raise DataFormatError(f"{path}: not a valid ARFF file: {exc}") from None
    attributes = decoded["attributes"]
    if len(attributes) != SEQ_LEN + 1:
        raise DataFormatError(
            f"{path}: expected {SEQ_LEN} sample attributes and a class, found {len(attributes)} attributes"
        )
    xs: list[list[float]] = []
    ys: list[int] = []
    for row, values in enumerate(decoded["data"], start=1):
        if any(v is None for v in values):
            raise DataFormatError(f"{path}: data row {row}: missing value '?'")
        ys.append(_parse_label(path, row, str(values[-1])))
        xs.append([float(v) for v in values[:-1]])
    return _finish(path, xs, ys)


def _finish(path: Path, xs: list[list[float]], ys: list[int]) -> Beats:
    if not xs:
        raise DataFormatError(f"{path}: no beats in file")
    return _check_finite(path, np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.int64))


def read_file(path: Path) -> Beats:
    """Read one ECG5000 file in any supported format, chosen by its suffix."""
    readers = {
        ".arff": _read_arff,
        ".txt": lambda p: _read_delimited(p, None),
        ".tsv": lambda p: _read_delimited(p, "\t"),
        ".ts": _read_ts,
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataFormatError(f"{path}: unsupported suffix; expected one of {', '.join(FORMATS)}")
    return reader(path)


def find_split_files(directory: Path) -> list[Path]:
    """One file per split the directory holds, in the preferred format."""
    found = []
    for split in SPLITS:
        for suffix in FORMATS:
            candidate = directory / f"ECG5000_{split}{suffix}"
            if candidate.is_file():
                found.append(candidate)
                break
    return found


def load_directory(directory: Path) -> Beats:
    """Merge every split present in ``directory`` (TRAIN first), so a user with both gets 5,000 beats."""
    files = find_split_files(directory)
    if not files:
        names = ", ".join(f"ECG5000_{s}{f}" for s in SPLITS for f in FORMATS)
        raise DataUnavailableError(f"{directory}: no ECG5000 file found (looked for {names})")
    parts = [read_file(path) for path in files]
    return Beats(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))
