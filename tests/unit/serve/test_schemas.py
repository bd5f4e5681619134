"""The machine-readable contract cannot drift from the code: enums come from the same constants, and every
payload schema the AsyncAPI document names exists."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ecgwatch.detection.episodes import KINDS, SEVERITIES
from ecgwatch.detection.quality import QUALITY_REASONS
from ecgwatch.serve.messages import REASONS

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "ecgwatch" / "serve" / "schemas"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def test_enums_are_the_codes_own() -> None:
    assert set(schema("deadletter")["properties"]["reason"]["enum"]) == set(REASONS)
    assert set(schema("score")["properties"]["quality"]["enum"]) == set(QUALITY_REASONS)
    assert set(schema("episode")["properties"]["kind"]["enum"]) == set(KINDS)
    assert set(schema("episode")["properties"]["severity"]["enum"]) == set(SEVERITIES)
    assert set(schema("summary")["properties"]["open_episodes"]["items"]["properties"]["kind"]["enum"]) == set(KINDS)


def test_asyncapi_names_every_channel_and_existing_schemas() -> None:
    document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert document["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in document["channels"].values()}
    assert {
        "ecg/{device}/beat", "ecg/{device}/strip", "ecg/{device}/score", "ecg/{device}/episode", "ecg/{device}/summary"
    } <= addresses  # fmt: skip
    for message in document["components"]["messages"].values():
        reference = message["payload"].get("$ref")
        if reference:
            assert (ROOT / "docs" / reference).resolve().is_file(), reference
