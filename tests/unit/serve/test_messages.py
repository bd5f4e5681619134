from __future__ import annotations

import hashlib
import json

import numpy as np
import orjson
import pytest

from ecgwatch.serve.messages import BeatLimits, InvalidBeat, device_from_topic, parse_beat, score_event

LIMITS = BeatLimits()


def payload(**fields: object) -> bytes:
    return json.dumps({"seq": 3, "samples": [0.0, 1.0] * 70, **fields}).encode()


def test_valid_beat_is_parsed_and_resampled_to_the_model_length() -> None:
    beat = parse_beat("ecg/w1/beat", payload(samples=np.linspace(0, 1, 128).tolist(), ts=1.5), "ecg/+/beat", LIMITS)
    assert beat.device_id == "w1"
    assert beat.seq == 3
    assert beat.ts == 1.5
    assert beat.original_length == 128
    np.testing.assert_allclose(beat.samples, np.linspace(0, 1, 140))


@pytest.mark.parametrize(
    ("topic", "pattern", "device"),
    [("ecg/abc/beat", "ecg/+/beat", "abc"), ("site/7/ecg/x-1/beat", "site/7/ecg/+/beat", "x-1")],
)
def test_device_id_comes_from_the_plus_segment(topic: str, pattern: str, device: str) -> None:
    assert device_from_topic(topic, pattern) == device


@pytest.mark.parametrize("topic", ["ecg/beat", "ecg/a/b/beat", "other/a/beat", "ecg//beat"])
def test_topics_that_do_not_match(topic: str) -> None:
    with pytest.raises(InvalidBeat) as info:
        device_from_topic(topic, "ecg/+/beat")
    assert info.value.reason == "bad_topic"


def test_limits_are_configurable() -> None:
    strict = BeatLimits(min_samples=140, max_samples=140, max_payload_bytes=10_000)
    with pytest.raises(InvalidBeat, match="length_out_of_bounds"):
        parse_beat("ecg/a/beat", payload(samples=[0.0] * 139), "ecg/+/beat", strict)


def test_score_event_fields() -> None:
    beat = parse_beat("ecg/w1/beat", payload(), "ecg/+/beat", LIMITS)
    event = score_event(
        beat, np.float32(0.7), 0.5, "m1", (np.int64(40), np.int64(60)), {"inference_s": np.float64(0.002)}
    )
    assert event["anomaly"] is True
    assert event["peak_error_samples"] == [40, 60]
    assert event["peak_error_fraction"] == [round(40 / 140, 3), round(60 / 140, 3)]
    assert event["model"] == "m1"
    assert json.loads(orjson.dumps(event)) == event  # numpy scalars from the scorer serialise as plain numbers


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"seq": 1, "samples": [NaN' + b", 1.0" * 139 + b"]}", "non_finite"),
        (b'{"seq": 1, "samples": [-Infinity' + b", 1.0" * 139 + b"]}", "non_finite"),
        (b'{"seq": 1, "samples": [1e999' + b", 1.0" * 139 + b"]}", "non_finite"),
        (b'{"seq": 1, "samples": [' + str(10**400).encode() + b", 1.0" * 139 + b"]}", "non_finite"),
        (b'{"seq": 1, "samples": [true' + b", 1.0" * 139 + b"]}", "bad_samples"),
        (b'{"seq": 1, "samples": ["1.0"' + b", 1.0" * 139 + b"]}", "bad_samples"),
        (b'{"seq": 1, "samples": [null' + b", 1.0" * 139 + b"]}", "bad_samples"),
        (b'{"seq": 1, "samples": [1.0,' + b" 1.0," * 139 + b"]}", "not_json"),
        (b'{"seq": 1, "samples": [1.0' + b", 1.0" * 139 + b"]", "not_json"),
    ],
)
def test_values_json_allows_but_a_beat_cannot_hold(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidBeat) as info:
        parse_beat("ecg/a/beat", raw, "ecg/+/beat", LIMITS)
    assert info.value.reason == reason


def test_integer_samples_are_numbers() -> None:
    beat = parse_beat("ecg/a/beat", payload(samples=list(range(140))), "ecg/+/beat", LIMITS)
    np.testing.assert_array_equal(beat.samples, np.arange(140, dtype=np.float64))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 1100 + b"]" * 1100, "not_json"),  # the stdlib fallback raised RecursionError
        (b'{"a":' * 1100 + b"1" + b"}" * 1100, "not_json"),
        (b'{"seq": 1, "ts": ' + str(10**400).encode() + b', "samples": [1.0, 2.0]}', "bad_ts"),  # OverflowError
        (b'{"seq": ' + str(2**64).encode() + b', "samples": [1.0, 2.0]}', "bad_seq"),  # orjson cannot echo it
        (b'{"seq": 1, "samples": [1e300' + b", 1.0" * 139 + b"]}", "out_of_range"),  # overflows the z-score
    ],
)
def test_hostile_payloads_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidBeat) as info:
        parse_beat("ecg/a/beat", raw, "ecg/+/beat", LIMITS)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "device",
    ["d" * 65526, "d" * 257, "a+b", "a#b", "tab\there", "nul\x00", "new\nline"],
)
def test_device_ids_that_cannot_make_an_output_topic_are_bad_topics(device: str) -> None:
    with pytest.raises(InvalidBeat) as info:
        parse_beat(f"ecg/{device}/beat", payload(), "ecg/+/beat", LIMITS)
    assert info.value.reason == "bad_topic"


def test_dead_letters_echo_at_most_the_payload_limit() -> None:
    from ecgwatch.serve.messages import dead_letter

    big = b"x" * 5_000_000
    letter = json.loads(dead_letter("ecg/a/beat", big, InvalidBeat("too_large", "big"), 1.0, 65536))
    assert len(letter["payload"]) == 65536
    assert letter["payload_truncated"] is True
    assert letter["payload_bytes"] == 5_000_000
    small = json.loads(dead_letter("ecg/a/beat", b"{}", InvalidBeat("bad_seq", "x"), 1.0, 65536))
    assert small["payload"] == "{}"
    assert "payload_truncated" not in small


def test_dead_letters_echo_only_the_head_of_a_persons_ecg_with_its_digest() -> None:
    from ecgwatch.serve.messages import dead_letter

    ecg = json.dumps({"seq": "x", "samples": [0.123456] * 500}).encode()
    letter = json.loads(dead_letter("ecg/a/beat", ecg, InvalidBeat("bad_seq", "x"), 1.0, 256))
    assert letter["payload"] == ecg[:256].decode()
    assert letter["payload_truncated"] is True
    assert letter["payload_bytes"] == len(ecg)
    assert letter["payload_sha256"] == hashlib.sha256(ecg).hexdigest()
