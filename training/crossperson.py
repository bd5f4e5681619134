"""``ecgwatch-train crossperson``: beat classification on people the detector has never seen, AAMI EC57 terms.

Every non-paced MIT-BIH record (a person) is streamed through the daemon's segmentation as 10 s strips and
run through :class:`ecgwatch.detection.device.DeviceDetector` after a label-free enrolment, as in service.

- **Autoencoder, cross-fitted**: the population autoencoder is trained once per fold of people (DS1 in
  pairs, the other records together) on the *other* people's normal beats; each person's autoencoder terms
  come from the fold that never saw them (the artifacts are kept under ``<out>/folds`` and reused).
- **Classifier, leave one person out**: for each DS1 person, the trees are fitted on the other 21 people's
  beats and that person is classified online, on the detector's own predictions. Records 100, 105 and 121
  (of DS2) are classified by trees fitted on all of DS1.
- The same beats are scored for the previous design (rhythm + the capped autoencoder score, threshold 2.2)
  and for OSEA (``peers/osea``), with :mod:`training.aami`.
- ``--attach DIR``: the trees fitted on every person are written into the model artifact at DIR.

Atrial fibrillation is measured as EC57 measures episodes' duration: the time the detector spent in AF
against the time annotated ``(AFIB`` or ``(AFL``, and false AF minutes per device-day on the other records.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgwatch import artifact
from ecgwatch.datasets.mitbih import DS1, Record, load_record, records_in
from ecgwatch.detection.device import Classifiers
from ecgwatch.scorer import reconstruct_and_embed
from training import aami
from training.beat_classifier import Run, ae_terms, fit_classifiers, run
from training.mitbih_eval import StreamedRecord, stream_record
from training.population import WINDOW, PopulationConfig, normal_beats, train

log = logging.getLogger(__name__)
THRESHOLD, FIBRILLATION_THRESHOLD = 0.5, 0.7  # P(V); the second while the device is in atrial fibrillation
PREVIOUS_THRESHOLD = 2.2
SKIP_S = aami.SKIP_S


def folds(names: list[str]) -> list[tuple[str, ...]]:
    """Groups of people the autoencoder is trained without: DS1 in pairs, the rest together."""
    ds1 = [n for n in DS1 if n in names]
    rest = tuple(n for n in names if n not in ds1)
    return [tuple(ds1[i : i + 2]) for i in range(0, len(ds1), 2)] + ([rest] if rest else [])


def fold_model(out: Path, fold: tuple[str, ...], streamed: dict[str, StreamedRecord], config: PopulationConfig) -> Any:
    """The autoencoder trained without ``fold``'s people, trained once and kept as an artifact."""
    directory = out / "-".join(fold)
    if (directory / artifact.METADATA_FILE).is_file():
        return artifact.load(directory, serving=False).recurrent()
    others = [n for n in streamed if n not in fold]
    log.info("training the autoencoder without %s", ", ".join(fold))
    model, history = train([normal_beats(streamed[n]) for n in others], config)
    from training.population import metadata

    artifact.save(model, metadata(config, history, others, {}), directory, stamp_version=True)
    return model


def _model(network: torch.nn.Module) -> Any:
    def apply(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return reconstruct_and_embed(network, x, torch.device("cpu"))  # type: ignore[arg-type]

    return apply


def detections(result: Run) -> aami.Detections:
    beats = result.streamed.beats
    return aami.Detections(
        np.array([b.t for b in beats]), np.array([v.beat_class for v in result.verdicts], dtype=object)
    )


def previous_design(streamed: StreamedRecord, ae: np.ndarray, enrol_s: float) -> aami.Detections:
    """The design this replaces, on the same beats: prematurity against the median of the last 16 intervals
    plus the compensatory pause, plus the autoencoder's evidence capped at 1.5, flagged above 2.2."""
    beats = streamed.beats
    history: list[float] = []
    classes = np.full(len(beats), None, dtype=object)
    for i, b in enumerate(beats):
        if b.rr_s is None or b.rr_next_s is None or b.rr_s <= 0:
            continue
        reference = float(np.median(history)) if history else b.rr_s
        history = [*history, b.rr_s][-16:]
        if b.quality != "ok" or b.t - beats[0].t < enrol_s or np.isnan(ae[i, 0]):
            continue
        rhythm = (
            np.clip(1 - b.rr_s / reference, -0.5, 0.6) / 0.3 + np.clip(np.log(b.rr_next_s / b.rr_s), -0.5, 1.0) / 0.6
        )
        model = np.clip(np.log(max(ae[i, 0], ae[i, 1], 1e-9)) / np.log(3.0), -1.0, 1.5)
        classes[i] = "V" if rhythm + model > PREVIOUS_THRESHOLD else "N"
    return aami.Detections(np.array([b.t for b in beats]), classes)


def fibrillation_time(record: Record, result: Run) -> dict[str, float]:
    """Seconds in AF, annotated and detected, and their overlap, after the first :data:`SKIP_S`."""
    t = np.array([b.t for b in result.streamed.beats])
    state = np.array([v.fibrillation for v in result.verdicts])
    grid = np.arange(SKIP_S, len(record.signal) / record.fs, 1.0)
    annotated = np.isin(record.rhythm_at((grid * record.fs).astype(int)), aami.FIBRILLATION)
    position = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, max(len(t) - 1, 0))
    detected = state[position] if len(t) else np.zeros(len(grid), dtype=bool)
    return {
        "seconds": float(len(grid)),
        "annotated": float(annotated.sum()),
        "detected": float(detected.sum()),
        "overlap": float((annotated & detected).sum()),
    }


def evaluate(
    streamed: dict[str, StreamedRecord], ae: dict[str, np.ndarray], enrol_s: float, osea: dict[str, aami.Detections]
) -> tuple[dict[str, Any], dict[str, Run], Classifiers]:
    """Teach runs for everyone, leave-one-person-out classifiers over DS1, the DS2 records on all of DS1."""
    teach = {n: run(streamed[n], ae[n], WINDOW, enrol_s, teach=True) for n in streamed}
    ds1 = [n for n in streamed if n in DS1]
    on_ds1 = fit_classifiers([teach[n] for n in ds1], THRESHOLD, FIBRILLATION_THRESHOLD)
    results: dict[str, Run] = {}
    for held in streamed:
        classifiers = on_ds1
        if held in ds1:
            classifiers = fit_classifiers([teach[n] for n in ds1 if n != held], THRESHOLD, FIBRILLATION_THRESHOLD)
        results[held] = run(streamed[held], ae[held], WINDOW, enrol_s, classifiers)
        log.info("classified %s", held)
    rows: dict[str, Any] = {}
    for held, result in results.items():
        record = streamed[held].record
        rows[held] = {
            "this design": aami.score(record, detections(result)),
            "previous design": aami.score(record, previous_design(streamed[held], ae[held], enrol_s)),
            "OSEA": aami.score(record, osea[held]) if held in osea else None,
            "fibrillation": fibrillation_time(record, result),
        }
    everyone = fit_classifiers(list(teach.values()), THRESHOLD, FIBRILLATION_THRESHOLD)
    return rows, results, everyone


def classify(
    data: Path, folds_dir: Path, config: PopulationConfig, enrol_s: float
) -> tuple[list[str], dict[str, Any], dict[str, Run], Classifiers]:
    """Every non-paced record classified leave one person out: names, EC57 rows, runs, trees fitted on all."""
    folder = data / "mitbih" if (data / "mitbih").is_dir() else data
    names = [n for n in records_in(folder) if not load_record(folder, n).paced]
    streamed = {n: stream_record(load_record(folder, n), WINDOW) for n in names}
    ae: dict[str, np.ndarray] = {}
    for fold in folds(names):
        model = _model(fold_model(folds_dir, fold, streamed, config))
        for n in fold:
            ae[n] = ae_terms(streamed[n], model, WINDOW, enrol_s)
    osea_path = folder.parent / "peers" / "osea" / "mitbih_beats.jsonl"
    osea = aami.osea(osea_path) if osea_path.is_file() else {}
    rows, results, everyone = evaluate(streamed, ae, enrol_s, osea)
    return names, rows, results, everyone


def run_report(
    data: Path, out: Path, config: PopulationConfig, enrol_s: float = 120.0, attach: Path | None = None
) -> dict[str, Any]:
    names, rows, _, everyone = classify(data, out / "folds", config, enrol_s)
    report = _summary(rows, names, enrol_s, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "crossperson.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "crossperson.md").write_text(_markdown(report))
    _figure(report, out / "crossperson.png")
    if attach is not None:
        metrics = {k: round(v, 4) for k, v in report["pooled"]["DS1"]["this design"].items()}
        artifact.attach_classifiers(attach, everyone, {"trained_on": names, "ds1_leave_one_out": metrics})
    return report


def _summary(rows: dict[str, Any], names: list[str], enrol_s: float, config: PopulationConfig) -> dict[str, Any]:
    groups = {"DS1": [n for n in names if n in DS1], "DS2 (shared)": [n for n in names if n not in DS1]}
    pooled: dict[str, Any] = {}
    for group, members in groups.items():
        pooled[group] = {}
        for design in ("this design", "previous design", "OSEA"):
            counts = [rows[n][design] for n in members if rows[n][design] is not None]
            if counts:
                pooled[group][design] = aami.rates(aami.total(counts))
        af = {
            k: sum(rows[n]["fibrillation"][k] for n in members) for k in ("seconds", "annotated", "detected", "overlap")
        }
        without = [n for n in members if rows[n]["fibrillation"]["annotated"] == 0]
        false_s = sum(rows[n]["fibrillation"]["detected"] for n in without)
        hours = sum(rows[n]["fibrillation"]["seconds"] for n in without) / 3600
        pooled[group]["fibrillation"] = {
            "duration_se": af["overlap"] / af["annotated"] if af["annotated"] else float("nan"),
            "duration_pp": af["overlap"] / af["detected"] if af["detected"] else float("nan"),
            "false_minutes_per_day": false_s / 60 / hours * 24 if hours else float("nan"),
        }
    return {
        "enrolment_s": enrol_s,
        "thresholds": {"ventricular": THRESHOLD, "in_fibrillation": FIBRILLATION_THRESHOLD},
        "population_config": asdict(config),
        "records": rows,
        "pooled": pooled,
    }


def _pct(x: float) -> str:
    return "-" if np.isnan(x) else f"{100 * x:.2f}%"


def _f(x: float) -> str:
    return "-" if np.isnan(x) else f"{x:.3f}"


COLUMNS = (
    ("beat Se", "beat_se", _pct), ("beat +P", "beat_pp", _pct), ("VEB Se", "veb_se", _f),
    ("VEB +P (EC57)", "veb_pp_ec57", _f), ("VEB +P (fusion counted)", "veb_pp", _f),
    ("N false alarms", "n_false_alarms", _pct), ("in AF", "n_false_alarms_af", _pct),
    ("outside AF", "n_false_alarms_not_af", _pct), ("SVEB Se", "sveb_se", _f), ("unreadable", "unreadable", _pct),
)  # fmt: skip


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Beat classification on people never seen (AAMI EC57, leave one person out)",
        "",
        f"Each record streamed as 10 s strips through the daemon's detector; the first {report['enrolment_s']:g} s "
        "enrol the device (no labels); beats of the first 5 minutes are not scored; 150 ms matching. DS1 people "
        "are classified by trees fitted on the other 21; 100, 105 and 121 by trees fitted on all of DS1; each "
        "person's autoencoder terms come from an autoencoder trained without them. Command: "
        "`ecgwatch-train crossperson --data DIR --out DIR`.",
        "",
    ]
    for group, pooled in report["pooled"].items():
        lines += [f"## {group}, pooled", "", "| design | " + " | ".join(c[0] for c in COLUMNS) + " |"]
        lines.append("|---|" + "---|" * len(COLUMNS))
        for design in ("this design", "previous design", "OSEA"):
            if design in pooled:
                cells = [fmt(pooled[design][key]) for _, key, fmt in COLUMNS]
                lines.append(f"| {design} | " + " | ".join(cells) + " |")
        af = pooled["fibrillation"]
        lines += [
            "",
            f"Atrial fibrillation (time in AF against `(AFIB`/`(AFL`): duration Se {_f(af['duration_se'])}, "
            f"+P {_f(af['duration_pp'])}; false AF {af['false_minutes_per_day']:.1f} minutes per device-day on "
            "the records without it.",
            "",
        ]
    lines += [
        "## Per record (this design / OSEA)",
        "",
        "| record | V caught / V | called V | N flagged / N | S caught / S | unreadable | OSEA V caught "
        "| OSEA N flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["records"].items():
        c, o = row["this design"], row["OSEA"]
        lines.append(
            f"| {name} | {c['v_caught']}/{c['v']} | {c['called_v']} | {c['n_flagged']}/{c['n']} | "
            f"{c['s_caught']}/{c['s']} | {c['unreadable']} | {o['v_caught'] if o else '-'} | "
            f"{o['n_flagged'] if o else '-'} |"
        )
    return "\n".join(lines) + "\n"


def _figure(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pooled = report["pooled"]["DS1"]
    designs = [d for d in ("this design", "previous design", "OSEA") if d in pooled]
    measures = [("VEB Se", "veb_se"), ("VEB +P (EC57)", "veb_pp_ec57"), ("1 - N false alarms x 100", "n_false_alarms")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(designs)
    for k, design in enumerate(designs):
        values = [
            pooled[design][key] if key != "n_false_alarms" else 1 - 100 * pooled[design][key] for _, key in measures
        ]
        axes[0].bar(np.arange(len(measures)) + k * width, values, width, label=design)
    axes[0].set_xticks(np.arange(len(measures)) + width * (len(designs) - 1) / 2, [m for m, _ in measures])
    axes[0].set_ylim(0.5, 1.0)
    axes[0].legend(loc="lower left")
    axes[0].set_title("DS1 pooled, leave one person out")
    names = [n for n in report["records"] if report["records"][n]["this design"]["v"] >= 10]
    for design, marker in (("this design", "o"), ("OSEA", "x")):
        se = [report["records"][n][design]["v_caught"] / report["records"][n][design]["v"] for n in names
              if report["records"][n][design] is not None]  # fmt: skip
        axes[1].plot(range(len(se)), se, marker, label=design)
    axes[1].set_xticks(range(len(names)), names, rotation=90)
    axes[1].set_ylabel("VEB sensitivity")
    axes[1].set_title("per person with >= 10 PVCs")
    axes[1].legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
