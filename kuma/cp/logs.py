"""Structured logging for kuma-cp: ``key=value`` text for people, JSON lines for machines.

Call sites pass fields through ``extra={"fields": {...}}`` (see :func:`fields`), so a field is
a value, never text pasted into a message: log processors can filter on ``path`` or ``proxy``.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson


def fields(**values: Any) -> dict[str, Any]:
    """``log.info("msg", extra=fields(path=p))``."""
    return {"fields": values}


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    values = getattr(record, "fields", None)
    return values if isinstance(values, dict) else {}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname.lower(), record.name, record.getMessage()]
        line = "\t".join(parts)
        extra = " ".join(f"{k}={_quote(v)}" for k, v in _fields_of(record).items())
        if extra:
            line = f"{line}\t{extra}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _quote(value: Any) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields_of(record))
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # watchfiles logs every batch of file changes at info; the directory store logs what matters.
    logging.getLogger("watchfiles").setLevel(max(logging.WARNING, root.level))
