from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ecgwatch.cli import main
from ecgwatch.config import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECGWATCH_CONFIG", raising=False)


def test_defaults_work_against_a_local_broker_with_the_shipped_model() -> None:
    settings = load_settings()
    assert (settings.mqtt.host, settings.mqtt.port) == ("localhost", 1883)
    assert settings.model.path.name == "reference_model"
    assert settings.mqtt.subscription == "ecg/+/beat"


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
    assert load_settings(None, {"mqtt": {"shared_group": "g1"}}).mqtt.subscription == "$share/g1/ecg/+/beat"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"ECGWATCH_MQTT__PORT": "99999"}, "mqtt.port"),
        ({"ECGWATCH_BATCH__MAX_SIZE": "0"}, "batch.max_size"),
        ({"ECGWATCH_MQTT__BEAT_TOPIC": "ecg/#"}, "mqtt"),
        ({"ECGWATCH_MODEL__DEVICE": "tpu"}, "model.device"),
        ({"ECGWATCH_MQTT__COLOUR": "blue"}, "mqtt.colour"),
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
