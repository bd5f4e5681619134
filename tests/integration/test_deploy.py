"""Deployment files checked by the real tools: systemd-analyze, promtool, a real Prometheus server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from ecgwatch.demo.brokers import Mosquitto, free_port
from ecgwatch.serve.metrics import Metrics
from tests.factories import make_model
from tests.integration.harness import Collector, Daemon, Publisher, connack, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it (Debian package)")
    return path


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",), "gauge": ("",)}


def exported_metric_names() -> set[str]:
    """Every sample name the daemon can expose, including labelled families that have no sample yet.

    A counter such as ``ecgwatch_publish_failures_total{kind,reason}`` has no sample until the first
    refusal, so the names come from the families' types, not from one scrape.
    """
    names = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def metric_names_in(expression: str) -> set[str]:
    return set(re.findall(r"\becgwatch_[a-z_]+\b", expression))


def test_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "ecgwatch.service").read_text()
    executable = Path(sys.executable).parent / "ecgwatch"
    (tmp_path / "ecgwatch.service").write_text(unit.replace("/opt/ecgwatch/venv/bin/ecgwatch", str(executable)))
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", str(tmp_path / "ecgwatch.service")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "systemd-analyze warned"
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=ecgwatch",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ):
        assert line in unit


def test_systemd_unit_exposure_stays_ok() -> None:
    """`systemd-analyze security` scores the sandbox: 5.5 (MEDIUM) before hardening, 1.2 (OK) after."""
    result = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=yes", str(DEPLOY / "systemd" / "ecgwatch.service")],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout[-3000:]


def test_kubernetes_manifests_validate_against_the_api_schemas() -> None:
    """kubernetes-validate (PyPI) checks every manifest strictly (unknown fields are errors); the
    ServiceMonitor's CRD has no bundled schema and is only parsed."""
    manifests = sorted((DEPLOY / "k8s").glob("*.yaml"))
    kinds = {yaml.safe_load(m.read_text())["kind"] for m in manifests}
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "ServiceMonitor"} <= kinds
    validate = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run(
        [str(validate), "--strict", "-k", "1.30.0", *map(str, manifests)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("INFO") >= 3, result.stdout
    pod = yaml.safe_load((DEPLOY / "k8s" / "ecgwatch-statefulset.yaml").read_text())["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "@sha256:" in container["image"]


def test_promtool_checks_rules_and_config() -> None:
    for args in (
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        result = subprocess.run([tool("promtool"), *args], cwd=PROMETHEUS, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_test_and_actionable_annotations() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = (PROMETHEUS / "alerts_test.yml").read_text()
    exported = exported_metric_names()
    for rule in rules:
        assert f"alertname: {rule['alert']}" in tests, f"{rule['alert']} has no promtool test"
        assert len(rule["annotations"]["description"]) > 80
        assert metric_names_in(rule["expr"]) <= exported, rule["expr"]


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "ecgwatch.json").read_text())
    exported = exported_metric_names()
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(expressions) >= 8
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"]), "no hard-coded uid"
    assert all('instance=~"$instance"' in e for e in expressions), "every query follows the instance picker"
    assert {"heatmap", "alertlist"} <= {panel["type"] for panel in dashboard["panels"]}
    for expression in expressions:
        names = metric_names_in(expression)
        assert names, expression
        assert names <= exported, f"{expression}: unknown {names - exported}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for wanted in ("beats per second", "anomaly rate", "latency", "queue depth", "dead letters", "connected", "score"):
        assert wanted in titles


def test_compose_stack_references_existing_files() -> None:
    compose_dir = DEPLOY / "container"
    compose = yaml.safe_load((compose_dir / "compose.yaml").read_text())
    services = compose["services"]
    assert {"mosquitto", "ecgwatch", "simulator", "prometheus", "alertmanager", "grafana"} <= set(services)
    build = services["ecgwatch"]["build"]
    assert (compose_dir / build["context"] / build["dockerfile"]).is_file()
    generated = {"./certs", "./certs/ca.crt"}  # written by make-dev-certs.sh, checked below
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and source not in generated:
                assert (compose_dir / source).exists(), f"{name}: {source} does not exist"
    prometheus_mounts = " ".join(services["prometheus"]["volumes"])
    assert "alerts.yml" in prometheus_mounts
    targets = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"][0]
    assert targets["targets"] == ["ecgwatch:9808"]


def test_dockerfile_is_multistage_non_root_with_healthcheck() -> None:
    dockerfile = (DEPLOY / "container" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) == 2
    assert re.search(r"^USER ecgwatch$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile
    assert "/livez" in dockerfile  # liveness: a broker outage must not restart every replica
    assert dockerfile.count("FROM ${PYTHON_IMAGE}") == 2, "one base image, which a release build pins by digest"
    assert "ARG TORCH_INDEX=cpu" in dockerfile
    root = DEPLOY.parent
    for source in re.findall(r"^COPY (?!--from)(.+) /src/", dockerfile, re.M):
        for path in source.split():
            assert (root / path).exists(), path


def test_real_prometheus_scrapes_the_daemon(tmp_path: Path, ecg_beats) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    daemon = Daemon(broker.port, make_model(tmp_path / "model", "prom-test"), tmp_path / "daemon.log")
    prom_port = free_port()
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["alerts.yml"],
                "scrape_configs": [
                    {"job_name": "ecgwatch", "static_configs": [{"targets": [f"127.0.0.1:{daemon.metrics_port}"]}]}
                ],
            }
        )
    )
    prometheus = None
    log = (tmp_path / "prometheus.log").open("wb")
    try:
        daemon.start()
        prometheus = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        publisher = Publisher(broker.port)
        for i in range(25):
            publisher.beat("watch-1", i, ecg_beats.x[i].tolist())
        publisher.close()

        def query(expression: str) -> list[dict[str, object]]:
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?query={urllib.parse.quote(expression)}"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return json.loads(response.read())["data"]["result"]
            except OSError:
                return []

        wait_for(
            lambda: any(float(r["value"][1]) == 25 for r in query("ecgwatch_beats_scored_total")),
            60,
            "Prometheus to see 25 scored beats",
            interval=0.5,
        )
        assert query('up{job="ecgwatch"}')[0]["value"][1] == "1"
        assert query("ecgwatch_mqtt_connected")[0]["value"][1] == "1"
        (model_info,) = query('ecgwatch_model_info{version="prom-test"}')
        assert "path" not in model_info["metric"]  # per-host paths would split the series
        assert query("process_resident_memory_bytes")
        with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/rules", timeout=5) as response:
            groups = json.loads(response.read())["data"]["groups"]
        shipped = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
        assert len(groups[0]["rules"]) == len(shipped)
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(20)
        log.close()
        daemon.stop()
        broker.stop()


def test_the_compose_brokers_tls_config_serves_the_daemon(tmp_path: Path, ecg_beats) -> None:
    """make-dev-certs.sh and mosquitto.conf as shipped (container paths mapped to a temp dir), the daemon on TLS."""
    certs = tmp_path / "certs"
    subprocess.run([str(DEPLOY / "container" / "make-dev-certs.sh"), str(certs)], check=True, capture_output=True)
    config = (DEPLOY / "container" / "mosquitto.conf").read_text()
    listener = "".join(
        line.replace("/mosquitto/certs", str(certs)) + "\n"
        for line in config.splitlines()
        if line.split(" ")[0] in ("cafile", "certfile", "keyfile", "allow_anonymous", "password_file")
    )
    assert "8883" in config
    assert "allow_anonymous false" in config
    broker = Mosquitto(tmp_path / "broker", listener)
    broker.start()
    ca = {"ca_file": str(certs / "ca.crt")}
    simulator = {"username": "simulator", "password": (certs / "mqtt-simulator.password").read_text().strip()}
    daemon = Daemon(
        broker.port,
        make_model(tmp_path / "m", "tls"),
        tmp_path / "d.log",
        ECGWATCH_MQTT__TLS__CA_FILE=ca["ca_file"],
        ECGWATCH_MQTT__USERNAME="ecgwatch",
        ECGWATCH_MQTT__PASSWORD_FILE=str(certs / "mqtt-ecgwatch.password"),
    )
    try:
        daemon.start()
        refusal = connack(broker.port, **ca)
        assert refusal is not None
        assert refusal.is_failure, "anonymous clients are refused"
        collector, publisher = Collector(broker.port, **ca, **simulator), Publisher(broker.port, **ca, **simulator)
        publisher.beat("w", 0, ecg_beats.x[0].tolist())
        wait_for(lambda: len(collector.on("/score")) == 1, 30, "a score over the compose TLS listener")
        collector.close()
        publisher.close()
    finally:
        daemon.stop()
        broker.stop()
