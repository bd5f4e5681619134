"""Log lines a shipper can parse, sort and attribute without help."""

from __future__ import annotations

import json
import logging

from ecgwatch.serve.logs import JsonFormatter


def test_a_line_has_utc_milliseconds_static_fields_and_extras() -> None:
    record = logging.LogRecord("ecgwatch.serve", logging.WARNING, __file__, 1, "mqtt disconnected", None, None)
    record.created = 1_796_245_879.8029
    record.link = "intake"
    static = {"service": "ecgwatch", "instance": "ecgwatch-2", "version": "0.1.0"}
    entry = json.loads(JsonFormatter(static).format(record))
    assert entry["time"] == "2026-12-02T21:11:19.802Z"
    assert entry["ts"] == 1_796_245_879.803
    assert (entry["level"], entry["msg"], entry["link"]) == ("warning", "mqtt disconnected", "intake")
    assert {k: entry[k] for k in static} == static
