"""JSON log lines carry the generation id; plain lines stay plain."""

from __future__ import annotations

import logging

import orjson

from reasonq.logs import JsonFormatter


def test_json_lines_with_generation_id() -> None:
    record = logging.LogRecord(
        "reasonq.worker.generation",
        logging.INFO,
        __file__,
        1,
        "generation %s: attempt %d started",
        ("gen_AAAAAAAAAAAAAAAAAAAAAA", 2),
        None,
    )
    line = orjson.loads(JsonFormatter().format(record))
    assert line["message"] == "generation gen_AAAAAAAAAAAAAAAAAAAAAA: attempt 2 started"
    assert line["generation_id"] == "gen_AAAAAAAAAAAAAAAAAAAAAA" and line["level"] == "INFO"
    other = logging.LogRecord("api", logging.WARNING, __file__, 1, "no id here", (), None)
    assert "generation_id" not in orjson.loads(JsonFormatter().format(other))
