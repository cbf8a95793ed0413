"""Log set-up for every reasonq process: plain lines, or one JSON object per line with ``REASONQ_LOG_JSON=1``.

In JSON, a ``generation_id`` field is added to every record whose message is about one (reasonq's log lines
about a generation start with ``generation <id>:``), so a log pipeline can filter on it.

Share-link tokens travel in URLs (``?token=``, as ``EventSource`` needs), so uvicorn's access log would write
them out: every record passes through ``RedactTokens`` first.
"""

from __future__ import annotations

import logging
import re
import time

import orjson

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_GENERATION = re.compile(r"\bgeneration (gen_[A-Za-z0-9_-]{22})\b")
_TOKEN = re.compile(r"([?&]token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Replaces the value of a ``token=`` query parameter in a record's message by ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = _TOKEN.sub(r"\1[redacted]", message), None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, generation_id when present, exception."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        match = _GENERATION.search(message)
        if match:
            out["generation_id"] = match.group(1)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure_logging(level: str, json_lines: bool) -> None:
    """Root logging for a reasonq process."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactTokens())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # One INFO line per HTTP request (health polls, provider calls) is noise in every reasonq process's log.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
