from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from ecgwatch.cli import main
from ecgwatch.serve.config import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECGWATCH_CONFIG", raising=False)


def test_defaults_work_against_a_local_broker_with_the_shipped_model() -> None:
    settings = load_settings()
    assert (settings.mqtt.host, settings.mqtt.port) == ("localhost", 1883)
    assert settings.model.path.name == "population_model"
    assert settings.mqtt.subscriptions == ["ecg/+/beat", "ecg/+/strip"]


def test_precedence_toml_then_env_then_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "ecgwatch.toml"
    toml.write_text('instance = "from-toml"\n[mqtt]\nhost = "broker.toml"\nport = 1000\n[batch]\nmax_size = 8\n')
    monkeypatch.setenv("ECGWATCH_MQTT__PORT", "2000")
    settings = load_settings(toml, {"mqtt": {"host": "broker.cli"}})
    assert settings.instance == "from-toml"
    assert settings.batch.max_size == 8
    assert settings.mqtt.port == 2000
    assert settings.mqtt.host == "broker.cli"


def test_shared_group_subscription() -> None:
    subscriptions = load_settings(None, {"mqtt": {"shared_group": "g1"}}).mqtt.subscriptions
    assert subscriptions == ["$share/g1/ecg/+/beat", "$share/g1/ecg/+/strip"]


def test_client_id_prefix_keeps_ids_of_clusters_sharing_a_broker_apart() -> None:
    mqtt = load_settings(None, {"mqtt": {"client_id": "ecgwatch-0", "client_id_prefix": "eu1.prod."}}).mqtt
    assert mqtt.session_id == "eu1.prod.ecgwatch-0"
    assert load_settings(None, {"mqtt": {"client_id": "ecgwatch-0"}}).mqtt.session_id == "ecgwatch-0"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"ECGWATCH_MQTT__PORT": "99999"}, "mqtt.port"),
        ({"ECGWATCH_BATCH__MAX_SIZE": "0"}, "batch.max_size"),
        ({"ECGWATCH_MQTT__BEAT_TOPIC": "ecg/#"}, "mqtt"),
        ({"ECGWATCH_MODEL__DEVICE": "tpu"}, "model.device"),
        ({"ECGWATCH_MQTT__COLOUR": "blue"}, "mqtt.colour"),
        ({"ECGWATCH_MQTT__SCORE_TOPIC": "ecg/{device}/{0}"}, "mqtt"),
    ],
)
def test_invalid_settings_name_the_setting(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], setting: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as info:
        load_settings()
    assert any(".".join(map(str, e["loc"])).startswith(setting) for e in info.value.errors())


def test_unknown_key_in_toml_is_rejected(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[mqtt]\nhots = 'typo'\n")
    with pytest.raises(ValidationError, match="hots"):
        load_settings(toml)


def test_password_from_file_and_masked_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("ECGWATCH_MQTT__USERNAME", "ecg")
    monkeypatch.setenv("ECGWATCH_MQTT__PASSWORD_FILE", str(secret))
    assert load_settings().mqtt.resolved_password() == "s3cret"
    monkeypatch.delenv("ECGWATCH_MQTT__PASSWORD_FILE")
    monkeypatch.setenv("ECGWATCH_MQTT__PASSWORD", "hunter2")
    assert main(["config", "--mqtt-port", "1884"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    printed = json.loads(out)
    assert printed["mqtt"]["password"] == "**********"
    assert printed["mqtt"]["port"] == 1884


def test_config_command_reports_each_error_and_exits_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ECGWATCH_MQTT__PORT", "abc")
    monkeypatch.setenv("ECGWATCH_GRACE_PERIOD_S", "-1")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "mqtt.port" in err
    assert "grace_period_s" in err


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    assert main(["config", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "invalid",
    [
        {"ECGWATCH_MQTT__RECONNECT_MAX_S": "0.5"},  # a section-level check: its input is the whole section
        {"ECGWATCH_MQTT__PORT": "abc"},
        {"ECGWATCH_MQTT__BEAT_TOPIC": "ecg/#"},
    ],
)
def test_config_errors_never_print_the_password(monkeypatch: pytest.MonkeyPatch, capsys, invalid) -> None:
    monkeypatch.setenv("ECGWATCH_MQTT__PASSWORD", "hunter2-secret")
    for key, value in invalid.items():
        monkeypatch.setenv(key, value)
    assert main(["config"]) == 2
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration" in err
    assert "hunter2-secret" not in err


def test_loading_settings_leaves_the_environment_alone(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[batch]\nmax_size = 8\n")
    assert load_settings(toml).batch.max_size == 8
    assert "ECGWATCH_CONFIG" not in os.environ
    assert load_settings().batch.max_size == 64  # the file's setting did not leak into the next load


@pytest.mark.parametrize("name", ["deadletter_topic", "score_topic", "anomaly_topic", "status_topic"])
@pytest.mark.parametrize("wildcard", ["+", "#"])
def test_wildcards_in_topics_we_publish_to_are_refused(name: str, wildcard: str) -> None:
    value = {"deadletter_topic": "dl/{w}", "status_topic": "s/{w}/{{instance}}"}.get(name, "ecg/{{device}}/{w}")
    with pytest.raises(ValidationError, match=name):
        load_settings(None, {"mqtt": {name: value.format(w=wildcard)}})


def test_a_password_file_others_can_read_is_accepted_with_a_warning(tmp_path: Path, caplog) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    settings = load_settings(None, {"mqtt": {"username": "u", "password_file": secret}})
    assert settings.mqtt.resolved_password() == "s3cret"
    assert any("can be read by other users" in r.getMessage() for r in caplog.records)
    caplog.clear()
    secret.chmod(0o600)
    settings.mqtt.resolved_password()
    assert not caplog.records


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"cert_file": "c.pem"}, "both cert_file and key_file"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file /nonexistent/ca.pem does not exist"),
    ],
)
def test_tls_settings_are_checked_at_start_up(tls: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_settings(None, {"mqtt": {"tls": tls}})


def test_tls_is_on_with_a_ca_file_and_env_names_reach_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert not load_settings().mqtt.tls.active
    monkeypatch.setenv("ECGWATCH_MQTT__TLS__CA_FILE", str(ca))
    assert load_settings().mqtt.tls.active
    monkeypatch.delenv("ECGWATCH_MQTT__TLS__CA_FILE")
    monkeypatch.setenv("ECGWATCH_MQTT__TLS__ENABLED", "true")
    assert load_settings().mqtt.tls.active  # system CAs
