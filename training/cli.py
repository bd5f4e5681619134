"""``ecgwatch-train``: train the ECG model, evaluate an artifact, or sweep embedding sizes over split seeds."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from ecgwatch import artifact
from ecgwatch.artifact import ArtifactError
from ecgwatch.cli import Help as _Help
from ecgwatch.datasets import (
    NOISE_KINDS,
    DataFormatError,
    DataUnavailableError,
    data_dir,
    load_ecg5000,
    load_mnist,
)
from ecgwatch.datasets.mitbih import load_record, records_in
from ecgwatch.models import resolve_device
from ecgwatch.models.image import VARIANTS
from ecgwatch.serve.config import EpisodeSettings
from training import crossperson, episode_report, population, robustness, synthetic
from training.ecg_pipeline import train_and_calibrate, write_artifact
from training.ecg_trainer import TrainConfig
from training.evaluate import evaluate
from training.image_eval import progress_grid, variant_metrics
from training.image_report import run_report
from training.image_trainer import DENOISE_LOSSES, ImageTrainConfig, train_images
from training.mitbih_eval import strips_report
from training.population import ENROLMENT_S, PopulationConfig
from training.sweep import run_sweep

log = logging.getLogger("ecgwatch.train")
DEFAULTS = TrainConfig()


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="data directory (default: $ECGWATCH_DATA_DIR, else download to the user cache)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where training runs")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details at INFO level")


def _add_recipe(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="most epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="beats per training batch")
    p.add_argument("--lr", type=float, default=DEFAULTS.learning_rate, help="peak learning rate (one-cycle)")
    p.add_argument("--patience", type=int, default=DEFAULTS.patience, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="weight-initialisation and shuffling seed")
    p.add_argument("--target-fpr", type=float, default=0.01, help="false-alarm rate the threshold is calibrated to")


def _add_population_recipe(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--epochs", type=int, default=PopulationConfig.epochs, help="population model epochs (per fold)")
    p.add_argument(
        "--beats-per-epoch", type=int, default=PopulationConfig.beats_per_epoch, help="beats drawn each epoch"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgwatch-train", description=__doc__, formatter_class=_Help)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_Help)  # type: ignore[method-assign]
    ecg = sub.add_parser("ecg", help="train, calibrate and write an ECG model artifact")
    _add_common(ecg)
    _add_recipe(ecg)
    ecg.add_argument("--out", required=True, type=Path, help="artifact directory to write")
    ecg.add_argument("--embedding-dim", type=int, default=DEFAULTS.embedding_dim, help="the LSTM's embedding size E")
    ecg.add_argument("--split-seed", type=int, default=0, help="which train/validation/test split of ECG5000")
    ecg.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt if present")
    ecg.add_argument("--max-beats", type=int, help="train on a seeded random N of the beats (a quick look, tests)")
    ev = sub.add_parser("evaluate", help="evaluate an artifact beside PCA and IsolationForest baselines")
    _add_common(ev)
    ev.add_argument("--model", required=True, type=Path, help="model artifact directory")
    ev.add_argument("--out", type=Path, help="report directory (default: <model>/report)")
    sw = sub.add_parser("sweep", help="embedding-size sweep over several split seeds, with baselines")
    _add_common(sw)
    _add_recipe(sw)
    sw.add_argument("--out", required=True, type=Path, help="report and per-run artifacts")
    sw.add_argument("--embedding-dims", type=int, nargs="+", default=[16, 32, 64, 128], help="sizes E to compare")
    sw.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="splits each E runs on")
    sw.add_argument("--report-name", default="sweep", help="file stem of the summary (several sweeps can share --out)")
    sw.add_argument("--tolerance", type=float, default=0.002, help="AUROC gap to the largest E still accepted")
    im = sub.add_parser("images", help="train and evaluate one image autoencoder variant on MNIST")
    _add_common(im)
    im.add_argument("--variant", required=True, choices=VARIANTS, help="which image autoencoder")
    im.add_argument("--out", required=True, type=Path, help="artifact, metrics and progress figures")
    im.add_argument("--latent", type=int, default=ImageTrainConfig.latent, help="latent size")
    im.add_argument("--noise", choices=NOISE_KINDS, default="gaussian", help="noise the denoisers train on")
    im.add_argument("--sigma", type=float, default=ImageTrainConfig.sigma, help="noise level of the denoisers")
    im.add_argument(
        "--denoise-loss", choices=DENOISE_LOSSES, default=ImageTrainConfig.denoise_loss, help="what denoisers minimise"
    )
    im.add_argument("--epochs", type=int, default=ImageTrainConfig.epochs, help="training epochs")
    im.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed")
    im.add_argument("--max-images", type=int, help="use only the first N train and test images (a quick look)")
    rep = sub.add_parser("images-report", help="train and evaluate every image variant; figures and report.md")
    _add_common(rep)
    rep.add_argument("--out", required=True, type=Path, help="report directory")
    rep.add_argument("--epochs", type=int, default=10, help="epochs per variant")
    rep.add_argument("--max-images", type=int, help="use only the first N train and test images (a quick look)")
    cp = sub.add_parser(
        "crossperson", help="beat classification, leave one person out, AAMI EC57 terms; markdown, JSON and PNG"
    )
    _add_population_recipe(cp)
    cp.add_argument("--out", required=True, type=Path, help="report directory (fold models are kept there)")
    cp.add_argument("--enrolment-s", type=float, default=ENROLMENT_S, help="each person's unlabelled enrolment")
    cp.add_argument("--attach", type=Path, help="write the classifier fitted on everyone into this model artifact")
    ep = sub.add_parser("episodes", help="published episodes against the annotated rhythms; markdown, JSON, timelines")
    _add_population_recipe(ep)
    ep.add_argument("--out", required=True, type=Path, help="report directory")
    ep.add_argument("--folds", type=Path, help="fold autoencoders to reuse (default: <out>/folds, trained if missing)")
    ep.add_argument("--enrolment-s", type=float, default=ENROLMENT_S, help="each person's unlabelled enrolment")
    po = sub.add_parser("population", help="train the population autoencoder on every non-paced MIT-BIH record")
    _add_population_recipe(po)
    po.add_argument("--out", required=True, type=Path, help="artifact directory to write")
    st = sub.add_parser("strips-report", help="MIT-BIH records as strips through the daemon's path, scored by a model")
    _add_common(st)
    st.add_argument("--model", type=Path, default=artifact.REFERENCE_MODEL_DIR, help="model artifact directory")
    st.add_argument("--out", required=True, type=Path, help="report directory")
    rb = sub.add_parser("robustness", help="false alarms under noise, wander, mains, EMG, shifts, reversal, warp")
    _add_common(rb)
    rb.add_argument("--out", required=True, type=Path, help="report directory")
    rb.add_argument("--records", nargs="+", help="MIT-BIH records (default: every non-paced one in --data)")
    rb.add_argument("--enrolment-s", type=float, default=ENROLMENT_S, help="clean enrolment before the condition")
    rb.add_argument("--minutes", type=float, help="only each record's first minutes (default: whole records)")
    rb.add_argument(
        "--conditions",
        nargs="+",
        type=robustness.Condition.parse,
        default=robustness.CONDITIONS,
        help="kind or kind:level, e.g. clean noise:20 shift:3 reversed warp:1.1 (default: the whole suite)",
    )
    sy = sub.add_parser("synthetic", help="false alarms on synthetic people (neurokit2 ECGSYN), every beat normal")
    _add_common(sy)
    sy.add_argument("--out", required=True, type=Path, help="report directory")
    sy.add_argument("--people", type=int, default=8, help="synthetic people (seeds 0..N-1)")
    sy.add_argument("--minutes", type=float, default=10.0, help="minutes of ECG per person")
    return parser


def _images(args: argparse.Namespace) -> None:
    config = ImageTrainConfig(
        variant=args.variant,
        latent=args.latent,
        noise=args.noise,
        sigma=args.sigma,
        denoise_loss=args.denoise_loss,
        epochs=args.epochs,
        seed=args.seed,
    )
    train = load_mnist("train", args.data).unit()[: args.max_images]
    test = load_mnist("test", args.data).unit()[: args.max_images]
    args.out.mkdir(parents=True, exist_ok=True)

    def show_progress(model: torch.nn.Module, epoch: int) -> None:
        progress_grid(model, config, test, epoch, args.out / f"progress_epoch{epoch:03d}.png")

    model, history = train_images(train, config, after_epoch=show_progress)
    metrics = variant_metrics(model, config, test)
    history_dict = {"loss": history.loss, "terms": history.terms}
    version = f"mnist-{config.variant}-l{config.latent}-s{config.seed}"
    metadata = {"version": version, "training": config.to_dict(), "history": history_dict, "metrics": {"test": metrics}}
    artifact.save(model, metadata, args.out, stamp_version=True)
    summary = {"config": config.to_dict(), "history": history_dict, "test": metrics}
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


def _recipe(args: argparse.Namespace, embedding_dim: int) -> TrainConfig:
    return TrainConfig(
        embedding_dim=embedding_dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
    )


def _robustness(args: argparse.Namespace) -> None:
    folder = data_dir("mitbih", args.data)
    records = [load_record(folder, n) for n in args.records or records_in(folder)]
    records = [robustness.first_minutes(r, args.minutes) if args.minutes else r for r in records]
    chosen = [r for r in records if args.records or not r.paced]  # the paced record only trains
    robustness.run(chosen, load_ecg5000(args.data), args.out, tuple(args.conditions), args.enrolment_s)
    print(f"report: {args.out / 'robustness.md'}")


def _run(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "images":
        _images(args)
        return
    if args.command == "images-report":
        run_report(args.data, args.out, args.epochs, args.max_images)
        print(f"report: {args.out / 'report.md'}")
        return
    if args.command == "episodes":
        config = PopulationConfig(epochs=args.epochs, beats_per_epoch=args.beats_per_epoch)
        folds = args.folds or args.out / "folds"
        _, _, results, _ = crossperson.classify(data_dir("mitbih", args.data), folds, config, args.enrolment_s)
        episode_report.report(results, EpisodeSettings().rules(), args.out)
        print(f"report: {args.out / 'episodes.md'}")
        return
    if args.command in ("crossperson", "population"):
        config = PopulationConfig(epochs=args.epochs, beats_per_epoch=args.beats_per_epoch)
        folder = data_dir("mitbih", args.data)
        if args.command == "crossperson":
            crossperson.run_report(folder, args.out, config, args.enrolment_s, args.attach)
            print(f"report: {args.out / 'crossperson.md'}")
        else:
            records = [r for r in (load_record(folder, n) for n in records_in(folder)) if not r.paced]
            names = [r.name for r in records]
            model, history = population.train(population.people(records), config)
            population.save(model, population.metadata(config, history, names, {}), args.out)
            print(f"wrote {args.out}")
        return
    if args.command == "robustness":
        _robustness(args)
        return
    if args.command == "synthetic":
        report = synthetic.run(args.people, args.minutes, args.out)
        print(json.dumps(report["pooled"]))
        return
    if args.command == "strips-report":
        strips_report(args.model, data_dir("mitbih", args.data), args.out)
        print(f"report: {args.out / 'strips_report.md'}")
        return
    beats = load_ecg5000(args.data)
    if args.command == "ecg":
        if args.max_beats:
            beats = beats.subset(np.random.default_rng(args.seed).permutation(len(beats))[: args.max_beats])
        args.out.mkdir(parents=True, exist_ok=True)
        run = train_and_calibrate(
            beats,
            _recipe(args, args.embedding_dim),
            args.split_seed,
            args.target_fpr,
            device,
            checkpoint_dir=args.out if args.resume else None,
        )
        write_artifact(run, args.out)
        test = run.metadata["metrics"]["test"]
        print(
            f"wrote {args.out} ({run.metadata['version']}): test AUROC {test['auroc']:.4f}, "
            f"recall {test['recall']:.4f} at false-alarm rate {test['false_alarm_rate']:.4f}"
        )
    elif args.command == "evaluate":
        out = args.out or args.model / "report"
        report = evaluate(args.model, beats, out, device)
        for name, result in report["results"].items():
            print(f"{name:28s} AUROC {result['metrics']['auroc']:.4f}  recall {result['metrics']['recall']:.4f}")
        print(f"report: {out / 'report.md'}")
    else:
        recipes = [_recipe(args, e) for e in args.embedding_dims]
        chosen = run_sweep(
            beats, recipes, args.split_seeds, args.target_fpr, device, args.out, args.tolerance, args.report_name
        )
        print(
            f"smallest E within {args.tolerance} AUROC of E={max(args.embedding_dims)}: {chosen}; "
            f"report: {args.out / (args.report_name + '.md')}"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s",
    )
    try:
        _run(args)
    except (DataFormatError, DataUnavailableError, ArtifactError, ValueError, RuntimeError) as exc:
        print(f"ecgwatch-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
