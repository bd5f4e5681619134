"""``ecgwatch``: the runtime command line: serve, config, simulate, demo, inspect, info, score."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

import ecgwatch
from ecgwatch.datasets.errors import DataFormatError, DataUnavailableError
from ecgwatch.serve import logs
from ecgwatch.serve.config import load_settings, masked
from ecgwatch.shipped import POPULATION_MODEL_DIR, REFERENCE_MODEL_DIR, ArtifactError

# torch, numpy and paho load inside the commands that need them: `ecgwatch --help` must not wait for torch.


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgwatch", description=__doc__, formatter_class=Help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {ecgwatch.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=Help)  # type: ignore[method-assign]
    serve = sub.add_parser("serve", help="run the daemon: score beats from MQTT, publish events, export metrics")
    _add_settings_flags(serve)
    config = sub.add_parser("config", help="validate and print the effective configuration (secrets masked)")
    _add_settings_flags(config)
    sim = sub.add_parser("simulate", help="publish ECG5000 beats as N smartwatches; write the true labels")
    sim.add_argument("--broker", default="localhost:1883", help="host:port")
    sim.add_argument("--devices", type=int, default=10, help="simulated watches")
    sim.add_argument("--count", type=int, default=100, help="beats in total")
    sim.add_argument("--rate", type=float, default=1.0, help="beats per second per device")
    sim.add_argument("--fast", action="store_true", help="as fast as the broker takes them (load tests)")
    sim.add_argument("--labels", type=Path, help="CSV of device_id,seq,row,label for scoring a run afterwards")
    sim.add_argument("--data", help="data directory (default: $ECGWATCH_DATA_DIR)")
    sim.add_argument("--split", choices=("test", "all"), default="test", help="test: beats --model never trained on")
    sim.add_argument("--model", type=Path, help="the served model (default: model.path, the shipped model)")
    sim.add_argument("--seed", type=int, default=0, help="which beats, offsets and artifacts each watch gets")
    strips = sim.add_argument_group("strips (--strips: MIT-BIH records as continuous strips, as watches record them)")
    strips.add_argument("--strips", action="store_true", help="send strips of MIT-BIH records instead of beats")
    strips.add_argument("--records", nargs="+", help="record names (default: every record in <data>/mitbih)")
    strips.add_argument("--seconds", type=float, default=60.0, help="seconds of signal per watch")
    strips.add_argument(
        "--strip-seconds", type=float, nargs=2, default=(10.0, 30.0), metavar=("MIN", "MAX"), help="strip lengths"
    )
    strips.add_argument("--fs", type=float, help="resample the records to this rate, Hz (default: 360)")
    strips.add_argument(
        "--artifact",
        action="append",
        default=[],
        metavar="KIND[=LEVEL]",
        help="artifacts on strips: noise=SNR_DB, wander=FRACTION, mains=FRACTION, emg=SNR_DB, motion, pop, reversed",
    )
    strips.add_argument("--artifact-share", type=float, default=1.0, help="share of strips with the artifacts")
    _add_mqtt_security_flags(sim)
    demo = sub.add_parser("demo", help="broker + daemon + simulator, a live view, and a detection report")
    demo.add_argument("--broker", help="host:port of an MQTT 5 broker (default: start one)")
    demo.add_argument("--embedded-broker", action="store_true", help="use the built-in broker even if mosquitto exists")
    demo.add_argument("--devices", type=int, default=20, help="simulated watches")
    demo.add_argument("--seconds", type=float, default=20.0, help="how long the simulator sends")
    demo.add_argument("--rate", type=float, default=1.0, help="beats per second per device")
    demo.add_argument("--fast", action="store_true", help="as fast as the broker takes them")
    demo.add_argument("--data", help="data directory (default: $ECGWATCH_DATA_DIR)")
    demo.add_argument("--out", type=Path, help="where labels.csv and demo_report.json go")
    demo.add_argument("--strips", action="store_true", help="other people's ECG: MIT-BIH records as watch strips")
    demo.add_argument("--records", nargs="+", default=(), help="with --strips: record names (default: all)")
    demo.add_argument("--artifact", action="append", default=[], metavar="KIND[=LEVEL]", help="see simulate")
    demo.add_argument("--artifact-share", type=float, default=0.2, help="share of strips with the artifacts")
    _add_mqtt_security_flags(demo)
    inspect = sub.add_parser("inspect", help="draw a device's next strip with its beats marked (PNG)")
    inspect.add_argument("--device", required=True, help="device id, as in ecg/<device>/strip")
    inspect.add_argument("--broker", default="localhost:1883", help="host:port")
    inspect.add_argument("--out", type=Path, help="PNG to write (default: inspect-<device>.png)")
    inspect.add_argument("--timeout", type=float, default=120.0, help="how long to wait for a strip, seconds")
    _add_mqtt_security_flags(inspect)
    info = sub.add_parser("info", help="print a model artifact's version, threshold and test metrics")
    info.add_argument("--model", type=Path, default=POPULATION_MODEL_DIR, help="model artifact directory")
    score = sub.add_parser("score", help="score every beat of an ECG5000-format file (.arff/.txt/.tsv/.ts) as CSV")
    score.add_argument("file", type=Path, help="beats in ECG5000's format, one per row, label first")
    score.add_argument("--model", type=Path, default=REFERENCE_MODEL_DIR, help="model artifact directory")
    score.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the model runs")
    score.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="inference precision")
    return parser


def _add_settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file (or $ECGWATCH_CONFIG)")
    for flag, setting, kind in (
        ("--mqtt-host", "mqtt.host", str),
        ("--mqtt-port", "mqtt.port", int),
        ("--client-id", "mqtt.client_id", str),
        ("--shared-group", "mqtt.shared_group", str),
        ("--model", "model.path", Path),
        ("--device", "model.device", str),
        ("--metrics-port", "metrics.port", int),
        ("--instance", "instance", str),
        ("--log-format", "log_format", str),
    ):
        _setting_flag(p, flag, setting, kind)
    _add_mqtt_security_flags(p)


def _setting_flag(p: argparse.ArgumentParser, flag: str, setting: str, kind: type) -> None:
    """A flag for one setting, its help and default taken from the setting itself (one description, not two).

    Its argparse default stays None, so an unset flag does not override the config file or the environment.
    """
    from ecgwatch.serve.config import Settings

    model: Any = Settings
    *sections, key = setting.split(".")
    for section in sections:
        model = model.model_fields[section].annotation
    field = model.model_fields[key]
    default = field.get_default(call_default_factory=True)
    shown = "" if default is None or isinstance(default, BaseModel) else f" (default: {default})"
    p.add_argument(flag, dest=f"set.{setting}", type=kind, metavar=key.upper(), help=f"{field.description}{shown}")


def _add_mqtt_security_flags(p: argparse.ArgumentParser) -> None:
    """Credentials and TLS, for the daemon and for every client the CLI starts (simulator, demo)."""
    _setting_flag(p, "--mqtt-username", "mqtt.username", str)
    _setting_flag(p, "--mqtt-password-file", "mqtt.password_file", Path)
    p.add_argument("--mqtt-tls", dest="set.mqtt.tls.enabled", action="store_const", const=True, help="TLS, system CAs")
    p.add_argument(
        "--mqtt-ca-file", dest="set.mqtt.tls.ca_file", type=Path, metavar="FILE", help="CA to verify the broker (TLS)"
    )
    p.add_argument(
        "--mqtt-cert-file", dest="set.mqtt.tls.cert_file", type=Path, metavar="FILE", help="client certificate (mTLS)"
    )
    p.add_argument(
        "--mqtt-key-file", dest="set.mqtt.tls.key_file", type=Path, metavar="FILE", help="client certificate's key"
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags with a ``set.`` destination (``set.mqtt.host``) become nested overrides; unset ones are left out."""
    nested: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if not dest.startswith("set.") or value is None:
            continue
        *sections, key = dest.removeprefix("set.").split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return nested


def _serve(args: argparse.Namespace) -> int:
    from ecgwatch.serve.service import Service  # torch and paho load only for the daemon

    try:  # start-up: a bad setting or model file is the operator's to fix (exit 2, one line)
        settings = load_settings(args.config, _overrides(args))
        static = {"service": "ecgwatch", "instance": settings.instance, "version": ecgwatch.__version__}
        logs.setup(settings.log_level, settings.log_format, static)
        service = Service(settings)
    except STARTUP_ERRORS as exc:
        return _startup_failed(exc)
    # Running: an exception from here on is a defect; it propagates with its traceback (exit 1).
    return service.run()


def _client_settings(args: argparse.Namespace) -> Any:
    """Settings for a client the CLI starts: ``--broker host:port`` plus the --mqtt-* security flags."""
    host, _, port = args.broker.rpartition(":")
    overrides = _overrides(args)
    overrides.setdefault("mqtt", {}).update(host=host or "localhost", port=int(port))
    return load_settings(None, overrides)


def _simulate(args: argparse.Namespace) -> None:
    from ecgwatch.demo.simulator import SimulationConfig, held_out_split_seed, load_beats, run

    settings = _client_settings(args)
    if args.strips:
        print(json.dumps(_simulate_strips(args, settings.mqtt)))
        return
    config = SimulationConfig(
        mqtt=settings.mqtt,
        devices=args.devices,
        count=args.count,
        rate_hz=args.rate,
        fast=args.fast,
        seed=args.seed,
    )
    split_seed = held_out_split_seed(args.model or settings.model.path)
    summary = run(config, load_beats(args.data, args.split, split_seed), args.labels)
    print(json.dumps(summary))


def _simulate_strips(args: argparse.Namespace, mqtt: Any) -> dict[str, float]:
    from ecgwatch.datasets import data_dir
    from ecgwatch.datasets.mitbih import load_record, records_in
    from ecgwatch.demo.strip_simulator import StripSimulation, run_strips

    folder = data_dir("mitbih", args.data)
    names = args.records or records_in(folder)
    simulation = StripSimulation(
        mqtt=mqtt,
        devices=args.devices,
        seconds=args.seconds,
        strip_seconds=tuple(args.strip_seconds),
        fs=args.fs,
        artifacts=tuple(_artifact(a) for a in args.artifact),
        artifact_share=args.artifact_share,
        fast=args.fast,
        seed=args.seed,
    )
    return run_strips(simulation, [load_record(folder, name) for name in names], args.labels)


def _artifact(spec: str) -> tuple[str, float | None]:
    kind, _, level = spec.partition("=")
    return kind, float(level) if level else None


def _inspect(args: argparse.Namespace) -> None:
    from ecgwatch.demo.inspect import capture, draw

    settings = _client_settings(args)
    seen = capture(settings.mqtt, args.device, args.timeout)
    print(draw(seen, args.device, args.out or Path(f"inspect-{args.device}.png")))


def _demo(args: argparse.Namespace) -> None:
    from ecgwatch.demo.run import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            broker=args.broker,
            embedded_broker=args.embedded_broker,
            mqtt=_overrides(args).get("mqtt"),
            strips=args.strips,
            records=tuple(args.records),
            artifacts=tuple(_artifact(a) for a in args.artifact),
            artifact_share=args.artifact_share,
            devices=args.devices,
            seconds=args.seconds,
            rate_hz=args.rate,
            fast=args.fast,
            data=args.data,
            out=args.out,
        )
    )


def _info(model_dir: Path) -> None:
    from ecgwatch import artifact

    meta = artifact.load(model_dir).metadata
    summary: dict[str, Any] = {
        "path": str(model_dir),
        "version": meta["version"],
        "architecture": meta["architecture"],
        "hyperparameters": meta["hyperparameters"],
        # Image models have no input, score or threshold sections: show what the artifact holds.
        **{key: meta[key] for key in ("input", "threshold") if key in meta},
        "test_metrics": {k: v for k, v in meta.get("metrics", {}).get("test", {}).items() if not isinstance(v, dict)},
        "created": meta.get("created"),
    }
    print(json.dumps(summary, indent=2))


def _score(args: argparse.Namespace) -> None:
    from ecgwatch import artifact
    from ecgwatch.datasets import CLASS_NAMES
    from ecgwatch.datasets.ecg5000 import read_file
    from ecgwatch.models import resolve_device
    from ecgwatch.scorer import Scorer

    loaded = artifact.load(args.model)
    beats = read_file(args.file)
    result = Scorer(loaded, resolve_device(args.device), args.precision).score(beats.x)
    print("row,label,score,anomaly,peak_start,peak_end")
    for i, score in enumerate(result.scores):
        anomaly = int(score > loaded.threshold)
        print(
            f"{i + 1},{CLASS_NAMES[int(beats.y[i])]},{score:.6f},{anomaly},{result.peak_start[i]},{result.peak_end[i]}"
        )


STARTUP_ERRORS = (ValidationError, ArtifactError, DataFormatError, DataUnavailableError, OSError, ValueError)


def _startup_failed(exc: Exception) -> int:
    if isinstance(exc, ValidationError):
        print(f"ecgwatch: invalid configuration ({exc.error_count()} error(s)):", file=sys.stderr)
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"  {where}: {error['msg']}{_shown_input(error)}", file=sys.stderr)
    else:
        logging.getLogger("ecgwatch").debug("start-up failed", exc_info=True)
        print(f"ecgwatch: error: {exc}", file=sys.stderr)
    return 2


def _shown_input(error: Any) -> str:
    """The offending value, when it is safe to print: a scalar, and not from a secret setting.

    A section-level error's input is the whole section, password included: never print that.
    """
    value, where = error.get("input"), [str(part).lower() for part in error["loc"]]
    if isinstance(value, dict | list) or any("password" in part or "key" in part for part in where):
        return ""
    return f" (got {value!r})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    try:
        return _command(args)
    except BrokenPipeError:
        # `ecgwatch info | head`: the reader left. Point stdout at /dev/null so Python's exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _command(args: argparse.Namespace) -> int:
    try:
        if args.command == "config":
            print(json.dumps(masked(load_settings(args.config, _overrides(args))), indent=2))
        elif args.command == "simulate":
            _simulate(args)
        elif args.command == "demo":
            _demo(args)
        elif args.command == "inspect":
            _inspect(args)
        elif args.command == "info":
            _info(args.model)
        else:
            _score(args)
    except (*STARTUP_ERRORS, RuntimeError) as exc:  # RuntimeError: e.g. no broker for the demo
        return _startup_failed(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
