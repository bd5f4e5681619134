"""MIT-BIH Arrhythmia Database records (PhysioNet WFDB): other people's ECG as a watch would stream it.

Read with the ``wfdb`` package: the first signal (MLII in most records) in mV at 360 Hz, every annotated beat
with its symbol, and the rhythm annotations (``(N``, ``(AFIB``, ``(B``, ...) as spans. Beat symbols come from
PhysioNet's own ``<rec>.atr``; where only ``<rec>_beats.csv`` (``sample,pvc``) is present, a beat is ``V`` or
``N`` by its ``pvc`` column and there are no rhythm spans.

AAMI EC57 groups the symbols into five classes (:data:`AAMI_CLASSES`), the terms every published result on
this database uses: N (normal and bundle-branch beats), S (supraventricular ectopic), V (ventricular
ectopic), F (fusion), Q (paced and unclassifiable).
"""

from __future__ import annotations

import contextlib
import csv
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecgwatch.datasets.errors import DataFormatError, DataUnavailableError

# AAMI EC57 non-beat annotation symbols: rhythm changes, noise, artefacts, flutter waves; the rest mark beats.
NON_BEATS = frozenset("[]!x(){}~+|\"'^*=p@tsTuU`D")
PACED = frozenset(("102", "104", "107", "217"))  # the database's paced records
AAMI_CLASSES: dict[str, str] = {
    **dict.fromkeys("NLReBj", "N"),
    **dict.fromkeys("AaJSn", "S"),
    **dict.fromkeys("VEr", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
# Records of the inter-patient training set (de Chazal et al. 2004, DS1); the rest of the non-paced ones is DS2.
DS1 = (
    "101",
    "106",
    "108",
    "109",
    "112",
    "114",
    "115",
    "116",
    "118",
    "119",
    "122",
    "124",
    "201",
    "203",
    "205",
    "207",
    "208",
    "209",
    "215",
    "220",
    "223",
    "230",
)


@dataclass(frozen=True)
class RhythmSpan:
    """A stretch of one rhythm, as the cardiologists annotated it: ``label`` without its parenthesis."""

    start: int  # sample
    end: int  # sample, exclusive
    label: str  # "N", "AFIB", "AFL", "B", "T", "VT", "SVTA", ...


@dataclass(frozen=True)
class Record:
    name: str
    signal: np.ndarray  # mV
    fs: float
    beats: np.ndarray  # annotated beat positions (samples)
    symbols: np.ndarray  # one annotation symbol per beat ("N", "V", "A", ...)
    rhythms: tuple[RhythmSpan, ...] = field(default=())

    @property
    def paced(self) -> bool:
        return self.name in PACED

    @property
    def pvc(self) -> np.ndarray:
        """Per beat: cardiologists called it a premature ventricular contraction (``V``)."""
        return np.asarray(self.symbols == "V")

    @property
    def classes(self) -> np.ndarray:
        """Per beat: its AAMI class letter (N, S, V, F or Q)."""
        return np.array([AAMI_CLASSES.get(s, "Q") for s in self.symbols])

    def rhythm_at(self, samples: np.ndarray) -> np.ndarray:
        """The annotated rhythm label at each sample position ("" before the first annotation)."""
        out = np.full(len(samples), "", dtype=object)
        for span in self.rhythms:
            out[(samples >= span.start) & (samples < span.end)] = span.label
        return out


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
    signal = np.asarray(record.p_signal[:, 0], dtype=np.float64)
    beats, symbols, rhythms = _annotations(directory, name, len(signal))
    return Record(name, signal, float(record.fs), beats, symbols, rhythms)


def _annotations(directory: Path, name: str, length: int) -> tuple[np.ndarray, np.ndarray, tuple[RhythmSpan, ...]]:
    if (directory / f"{name}.atr").is_file():
        wfdb = _wfdb()
        try:
            with _quiet_wfdb():
                annotation = wfdb.rdann(str(directory / name), "atr")
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{directory / name}.atr: cannot be read as a WFDB annotation: {exc}") from None
        samples = np.asarray(annotation.sample)
        keep = [i for i, s in enumerate(annotation.symbol) if s not in NON_BEATS]
        symbols = np.array(annotation.symbol)[keep]
        return samples[keep], symbols, _rhythm_spans(samples, annotation.aux_note, length)
    table = directory / f"{name}_beats.csv"
    if not table.is_file():
        raise DataUnavailableError(f"{directory / name}: neither {name}.atr nor {name}_beats.csv is there")
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    try:
        beats = np.array([int(r["sample"]) for r in rows])
        symbols = np.array(["V" if r["pvc"] == "1" else "N" for r in rows])
    except (KeyError, ValueError) as exc:
        raise DataFormatError(f"{table}: expected columns sample,pvc: {exc}") from None
    return beats, symbols, ()


def _rhythm_spans(samples: np.ndarray, notes: list[str], length: int) -> tuple[RhythmSpan, ...]:
    """Each rhythm annotation (an aux note starting with "(") lasts until the next one or the record's end."""
    changes = [(int(s), n.strip("\x00 ")[1:]) for s, n in zip(samples, notes, strict=True) if n.startswith("(")]
    ends = [s for s, _ in changes[1:]] + [length]
    return tuple(RhythmSpan(s, e, label) for (s, label), e in zip(changes, ends, strict=True) if e > s)
