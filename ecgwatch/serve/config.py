"""Daemon configuration: defaults < TOML file < environment (``ECGWATCH_``, nested ``__``) < CLI flags.

One pydantic model per section, every field described, unknown keys rejected, so a typo in a config file
stops start-up naming the setting instead of being silently ignored.
"""

from __future__ import annotations

import contextvars
import logging
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from ecgwatch.detection.episodes import DEFAULT_KINDS, KINDS, Rules
from ecgwatch.shipped import POPULATION_MODEL_DIR

CONFIG_ENV = "ECGWATCH_CONFIG"
log = logging.getLogger(__name__)
# The TOML file of the settings being built; a context variable, so that loading settings never changes
# the process environment (which leaked a config test's file into later tests).
_toml_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("ecgwatch_toml_file", default=None)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _readable_file(path: Path | None, name: str) -> None:
    if path is not None and not path.is_file():
        raise ValueError(f"{name} {path} does not exist or is not a file")


class TlsSettings(Section):
    enabled: bool = Field(False, description="connect with TLS; setting ca_file turns it on too")
    ca_file: Path | None = Field(None, description="CA certificate(s) to verify the broker; unset: system CAs")
    cert_file: Path | None = Field(None, description="client certificate, for brokers that require one (mTLS)")
    key_file: Path | None = Field(None, description="private key of cert_file")

    @model_validator(mode="after")
    def _check(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file for a client certificate, or neither")
        if self.cert_file is not None and not self.active:
            raise ValueError("a client certificate needs TLS: set enabled = true or ca_file")
        for name in ("ca_file", "cert_file", "key_file"):
            _readable_file(getattr(self, name), name)
        return self

    @property
    def active(self) -> bool:
        """The server certificate is always verified; there is no setting to turn that off."""
        return self.enabled or self.ca_file is not None


class MqttSettings(Section):
    host: str = Field("localhost", description="MQTT broker host")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT version; 3.1.1 for brokers without v5")
    username: str | None = Field(None, description="MQTT user name (optional)")
    password: SecretStr | None = Field(None, description="MQTT password (prefer password_file or a secrets dir)")
    password_file: Path | None = Field(None, description="file holding the MQTT password, e.g. a systemd credential")
    client_id: str = Field("ecgwatch-1", description="fixed client id: the broker keeps this session's queue")
    client_id_prefix: str = Field(
        "", description="put before client_id (e.g. '<cluster>.<namespace>.') so ids sharing a broker never collide"
    )
    session_expiry_s: int = Field(86400, ge=0, description="how long the broker keeps our queued beats offline")
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive interval")
    beat_topic: str = Field("ecg/+/beat", description="subscription for beats; the + segment is the device id")
    strip_topic: str = Field("ecg/+/strip", description="subscription for strips; the + segment is the device id")
    score_topic: str = Field("ecg/{device}/score", description="where each beat's score goes")
    anomaly_topic: str = Field("ecg/{device}/anomaly", description="where anomalous beats also go")
    episode_topic: str = Field("ecg/{device}/episode", description="where episodes start, update and end")
    summary_topic: str = Field("ecg/{device}/summary", description="each device's retained summary")
    deadletter_topic: str = Field("ecgwatch/deadletter", description="where malformed messages go, with the reason")
    status_topic: str = Field("ecgwatch/{instance}/status", description="retained online/offline availability")
    publish_scores: bool = Field(True, description="publish a score message for every beat")
    publish_anomalies: bool = Field(True, description="also publish anomalous beats on anomaly_topic")
    shared_group: str | None = Field(None, description="join $share/<group>/ to split one stream across instances")
    reconnect_min_s: float = Field(1.0, gt=0, description="first reconnect delay; doubles up to reconnect_max_s")
    reconnect_max_s: float = Field(120.0, gt=0, description="longest reconnect delay")
    tls: TlsSettings = Field(default_factory=TlsSettings)

    @model_validator(mode="after")
    def _check(self) -> MqttSettings:
        for name in ("beat_topic", "strip_topic"):
            topic = getattr(self, name)
            if topic.count("+") != 1 or "#" in topic:
                raise ValueError(f"{name} must contain exactly one '+' (the device id) and no '#'")
        if self.beat_topic == self.strip_topic:
            raise ValueError("beat_topic and strip_topic must differ")
        for name in ("score_topic", "anomaly_topic", "episode_topic", "summary_topic"):
            if "{device}" not in getattr(self, name):
                raise ValueError(f"{name} must contain '{{device}}'")
        for name in (
            "score_topic",
            "anomaly_topic",
            "episode_topic",
            "summary_topic",
            "deadletter_topic",
            "status_topic",
        ):
            if any(c in getattr(self, name) for c in "+#\x00"):
                raise ValueError(f"{name} is a topic we publish to: it cannot hold the wildcards '+' or '#'")
            try:  # any other placeholder ('{0}', '{user}') would fail on the first event instead of here
                getattr(self, name).format(device="d", instance="i")
            except (IndexError, KeyError, ValueError) as exc:
                raise ValueError(
                    f"{name}: only {{device}} (and {{instance}} in status_topic) may appear: {exc}"
                ) from exc
        if self.password is not None and self.password_file is not None:
            raise ValueError("set either password or password_file, not both")
        _readable_file(self.password_file, "password_file")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def resolved_password(self) -> str | None:
        if self.password_file is not None:
            # Group bits are how Kubernetes (fsGroup) and systemd credentials share a file with a non-root user.
            if self.password_file.stat().st_mode & stat.S_IRWXO:
                log.warning(
                    "the MQTT password file can be read by other users; chmod 600 it",
                    extra={"file": str(self.password_file)},
                )
            return self.password_file.read_text().strip()
        return self.password.get_secret_value() if self.password else None

    @property
    def session_id(self) -> str:
        """The client id the broker sees: two daemons with one id would take turns kicking each other off."""
        return self.client_id_prefix + self.client_id

    @property
    def subscriptions(self) -> list[str]:
        prefix = f"$share/{self.shared_group}/" if self.shared_group else ""
        return [prefix + self.beat_topic, prefix + self.strip_topic]


class ModelSettings(Section):
    path: Path = Field(POPULATION_MODEL_DIR, description="model artifact directory (model.json + model.safetensors)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto takes CUDA when present")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16 autocast: faster on CPUs with AVX-512 (docs/benchmarks.md)"
    )
    beat_path: Path | None = Field(
        None, description="model for pre-cut beats when `path` is judged per device (default: the ECG5000 model)"
    )
    enrolment_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="readable signal a device enrols on before its beats are judged (default: the model's, 120 s)",
    )
    watch: bool = Field(True, description="reload when model.json changes on disk (as well as on SIGHUP)")
    watch_interval_s: float = Field(5.0, gt=0, description="how often to check the model files for changes")


class BatchSettings(Section):
    max_size: int = Field(64, ge=1, le=4096, description="largest micro-batch scored at once")
    max_wait_ms: float = Field(20.0, ge=0, description="longest a beat waits for its batch to fill")
    queue_size: int = Field(1024, ge=1, description="beats held in memory; beyond it the broker holds them")
    threads: int | None = Field(
        1, ge=1, description="torch CPU threads for the model (1: fastest for this small LSTM; unset: torch's choice)"
    )


class LimitSettings(Section):
    min_samples: int = Field(35, ge=2, description="shortest beat accepted (resampled to the model's length)")
    max_samples: int = Field(1000, ge=2, description="longest beat accepted")
    max_payload_bytes: int = Field(65536, ge=64, description="larger messages are dead-lettered unread")
    deadletter_echo_bytes: int = Field(
        256,
        ge=0,
        description="first bytes of a rejected payload its dead letter echoes (with the sha256 of all of it); "
        "payloads hold a person's ECG, so raise it only where dead letters are as private as the beats",
    )
    max_device_id_bytes: int = Field(256, ge=1, le=4096, description="longest device id (topic level) accepted")
    strip_min_s: float = Field(2.0, gt=0, description="shortest strip accepted, seconds")
    strip_max_s: float = Field(60.0, gt=0, description="longest strip accepted, seconds")
    strip_min_fs: float = Field(100.0, gt=0, description="lowest sampling rate accepted, Hz")
    strip_max_fs: float = Field(2000.0, gt=0, description="highest sampling rate accepted, Hz")
    max_strip_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="larger strip messages are dead-lettered")

    @model_validator(mode="after")
    def _check(self) -> LimitSettings:
        if self.max_samples < self.min_samples:
            raise ValueError("max_samples must be >= min_samples")
        if self.strip_max_s < self.strip_min_s or self.strip_max_fs < self.strip_min_fs:
            raise ValueError("strip_max_s and strip_max_fs must be >= their minimums")
        return self


def _state_directory() -> Path:
    if os.environ.get("STATE_DIRECTORY"):  # systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ecgwatch"


class StateSettings(Section):
    backend: Literal["sqlite", "redis"] = Field(
        "sqlite", description="where per-device state lives: sqlite (one instance) or redis (shared by a group)"
    )
    path: Path = Field(
        default_factory=lambda: _state_directory() / "devices.sqlite3",
        description="SQLite file of per-device state ($STATE_DIRECTORY under systemd, else $XDG_STATE_HOME/ecgwatch)",
    )
    redis_url: str = Field("redis://localhost:6379/0", description="Redis for the redis backend")


class EpisodeSettings(Section):
    """Defaults from clinical usage (ecgwatch.detection.episodes): a run of tachycardia is >= 3 beats at >= 100/min,
    frequent ectopy >= 6 ectopic beats a minute, a pause >= 2.5 s without a beat."""

    enabled: bool = Field(True, description="publish episodes on episode_topic and summaries on summary_topic")
    ectopy_per_minute: int = Field(6, ge=1, description="ectopic beats within 60 s that open frequent_ectopy")
    run_beats: int = Field(3, ge=2, description="V (or S) beats in a row that open ventricular_tachycardia (svt)")
    run_rate_bpm: float = Field(100.0, gt=0, description="the least rate of such a run to count as tachycardia")
    bigeminy_cycles: int = Field(3, ge=2, description="normal-ventricular pairs in a row that open bigeminy")
    trigeminy_cycles: int = Field(3, ge=2, description="normal-normal-ventricular triples that open trigeminy")
    bradycardia_bpm: float = Field(40.0, gt=0, description="a rate over 30 s below this opens bradycardia")
    tachycardia_bpm: float = Field(130.0, gt=0, description="a rate over 30 s above this opens tachycardia")
    pause_s: float = Field(2.5, gt=0, description="no beat for this long, in readable signal, is a pause")
    pause_critical_s: float = Field(3.0, gt=0, description="a pause this long makes its episode critical")
    fibrillation_warning_s: float = Field(
        300.0, ge=0, description="atrial fibrillation this long raises its episode from info to warning"
    )
    signal_lost_s: float = Field(30.0, gt=0, description="unreadable signal this long opens signal_lost")
    update_interval_s: float = Field(60.0, gt=0, description="an open episode sends an update at most this often")
    gap_s: dict[str, float] = Field(
        default_factory=dict,
        description="per kind: how long its condition may lapse and the episode go on (defaults: 60-300 s)",
    )
    min_duration_s: dict[str, float] = Field(
        default_factory=dict, description="per kind: how long it must last before it is published at all"
    )
    summary_interval_s: float = Field(300.0, gt=0, description="a device's summary at least this often (signal time)")

    @model_validator(mode="after")
    def _check(self) -> EpisodeSettings:
        for name in ("gap_s", "min_duration_s"):
            unknown = sorted(set(getattr(self, name)) - set(KINDS))
            if unknown:
                raise ValueError(f"{name}: unknown episode kinds {unknown}; known: {', '.join(KINDS)}")
            if any(v < 0 for v in getattr(self, name).values()):
                raise ValueError(f"{name}: durations must be >= 0")
        if self.pause_critical_s < self.pause_s:
            raise ValueError("pause_critical_s must be >= pause_s")
        return self

    def rules(self) -> Rules:
        """The detector's episode rules, with this section's per-kind overrides."""
        kinds = {
            kind: replace(
                base,
                gap_s=self.gap_s.get(kind, base.gap_s),
                min_s=self.min_duration_s.get(kind, base.min_s),
            )
            for kind, base in DEFAULT_KINDS.items()
        }
        fields = self.model_dump(exclude={"enabled", "gap_s", "min_duration_s", "summary_interval_s"})
        return Rules(**fields, kinds=kinds)


class MetricsSettings(Section):
    enabled: bool = Field(True, description="serve Prometheus metrics and /healthz over HTTP")
    host: str = Field("127.0.0.1", description="address the metrics server binds")
    port: int = Field(9808, ge=0, le=65535, description="metrics port (0 picks a free one)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ECGWATCH_", env_nested_delimiter="__", extra="forbid", secrets_dir=None, validate_default=True
    )

    instance: str = Field("ecgwatch-1", description="instance name used in the status topic and logs")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log verbosity")
    log_format: Literal["json", "text"] = Field("json", description="json for journald/log shippers, text for people")
    grace_period_s: float = Field(10.0, ge=0, description="how long shutdown waits for in-flight beats")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    episodes: EpisodeSettings = Field(default_factory=EpisodeSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, file_secret_settings]
        toml_file = _toml_file.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the effective settings; CLI ``overrides`` (nested dicts) win over everything else."""
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = Path(os.environ[CONFIG_ENV])
        if not config_file.is_file():
            raise FileNotFoundError(f"{CONFIG_ENV}={config_file} does not exist")
    elif config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")
    token = _toml_file.set(config_file)
    try:
        return Settings(**(overrides or {}))
    finally:
        _toml_file.reset(token)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as JSON-ready data, secrets shown as ``**********``."""
    return settings.model_dump(mode="json")
