"""MIT-BIH Arrhythmia Database records (PhysioNet WFDB): other people's ECG as a watch would stream it.

Read with the ``wfdb`` package: the first signal (MLII) in mV at 360 Hz, and every annotated beat with
whether cardiologists called it a premature ventricular contraction (``V``). Labels come from
``<rec>_beats.csv`` (``sample,pvc``) where present, else from PhysioNet's own ``<rec>.atr``.
``pvc = False`` means "not a PVC", not "normal": it covers every other beat type.
"""

from __future__ import annotations

import contextlib
import csv
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgwatch.datasets.errors import DataFormatError, DataUnavailableError

# AAMI EC57 non-beat annotation symbols: rhythm changes, noise, artefacts; everything else marks a beat.
NON_BEATS = frozenset("[]!x(){}~+|\"'^*=p@tsTuU`D")
PACED = frozenset(("102", "104", "107", "217"))  # the database's paced records


@dataclass(frozen=True)
class Record:
    name: str
    signal: np.ndarray  # mV
    fs: float
    beats: np.ndarray  # annotated beat positions (samples)
    pvc: np.ndarray  # bool, one per beat

    @property
    def paced(self) -> bool:
        return self.name in PACED


@contextlib.contextmanager
def _quiet_wfdb() -> Iterator[None]:
    """wfdb 4.3 calls pandas in ways pandas 3 deprecates; its users cannot act on those warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The inplace keyword")
        yield


def records_in(directory: Path) -> list[str]:
    """The record names (``100``, ``106``, ...) with a header in ``directory``."""
    return sorted(p.stem for p in directory.glob("*.hea"))


def _wfdb() -> Any:
    """wfdb, imported on first use (only the simulator and training read records), quietly."""
    with _quiet_wfdb():
        import wfdb

    return wfdb


def load_record(directory: Path, name: str) -> Record:
    wfdb = _wfdb()
    path = directory / name
    if not path.with_suffix(".hea").is_file():
        raise DataUnavailableError(f"{path}.hea not found; a MIT-BIH record needs <rec>.hea and <rec>.dat")
    try:
        with _quiet_wfdb():
            record = wfdb.rdrecord(str(path), channels=[0])
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot be read as a WFDB record: {exc}") from None
    beats, pvc = _labels(directory, name)
    return Record(name, np.asarray(record.p_signal[:, 0], dtype=np.float64), float(record.fs), beats, pvc)


def _labels(directory: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    table = directory / f"{name}_beats.csv"
    if table.is_file():
        with table.open() as handle:
            rows = list(csv.DictReader(handle))
        try:
            return np.array([int(r["sample"]) for r in rows]), np.array([r["pvc"] == "1" for r in rows])
        except (KeyError, ValueError) as exc:
            raise DataFormatError(f"{table}: expected columns sample,pvc: {exc}") from None
    wfdb = _wfdb()
    try:
        with _quiet_wfdb():
            annotation = wfdb.rdann(str(directory / name), "atr")
    except (OSError, ValueError) as exc:
        raise DataUnavailableError(f"{directory / name}: no {name}_beats.csv and no readable .atr: {exc}") from None
    keep = [i for i, s in enumerate(annotation.symbol) if s not in NON_BEATS]
    symbols = np.array(annotation.symbol)[keep]
    return np.asarray(annotation.sample)[keep], symbols == "V"
