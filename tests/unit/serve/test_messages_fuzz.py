"""Property-based fuzzing of the beat parser: whatever arrives, it returns a beat or raises InvalidBeat.

Anything else would escape into paho's network thread. And whatever it accepts must be publishable: the
score event built from it serialises (orjson refuses integers beyond 64 bits, for one).
"""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecgwatch.serve.messages import MAX_SEQ, BeatLimits, InvalidBeat, parse_beat, score_event

LIMITS = BeatLimits(min_samples=2, max_samples=300, max_payload_bytes=20_000)
PATTERN = "ecg/+/beat"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**400), max_value=10**400)
)
beat_like = st.fixed_dictionaries(
    {},
    optional={
        "seq": st.one_of(st.integers(min_value=-5, max_value=2**70), json_values),
        "ts": st.one_of(numbers, json_values),
        "samples": st.one_of(st.lists(numbers, min_size=0, max_size=310), json_values),
    },
)
topics = st.one_of(
    st.just("ecg/w1/beat"),
    st.text(max_size=40).map(lambda device: f"ecg/{device}/beat"),
    st.text(max_size=60),
)


def _check(topic: str, payload: bytes) -> None:
    try:
        beat = parse_beat(topic, payload, PATTERN, LIMITS)
    except InvalidBeat:
        return
    assert 0 <= beat.seq <= MAX_SEQ
    assert beat.samples.shape == (LIMITS.seq_len,)
    event = score_event(beat, 1.0, 2.0, "m", (0, 20), {"inference_s": 0.001})
    orjson.dumps(event)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics, document=beat_like, extra=st.dictionaries(st.text(max_size=5), json_values, max_size=3))
def test_structured_payloads_parse_or_are_rejected(topic: str, document: dict[str, object], extra: dict) -> None:
    _check(topic, json.dumps({**extra, **document}, allow_nan=True).encode())


@settings(max_examples=400, deadline=None)
@given(topic=topics, payload=st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_are_rejected(topic: str, payload: bytes) -> None:
    _check(topic, payload)


@settings(max_examples=100, deadline=None)
@given(depth=st.integers(min_value=1, max_value=5000), opener=st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_rejected(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    _check("ecg/w1/beat", (opener * depth + "1" + closer * depth).encode())
