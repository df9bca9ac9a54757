"""Structured JSON logs, one object per line, redacted on every path.

``configure_logging`` gives the root logger one handler whose formatter writes
``ts``, ``level``, ``service``, ``logger``, ``message``, ``correlation_id``,
``trace_id``/``span_id`` (W3C hex, when a span is recording), the ``extra=``
fields and ``exc``. Everything in a line goes through
``clearway.shared.redaction`` (docs/design.md §9).

Redaction happens twice, on purpose:

- a log record factory masks the message, its arguments, the exception and
  the stack as each record is *created*, so handlers we do not own (pytest's
  ``caplog``, uvicorn's access log) never see a PAN or a secret either; it
  also captures the correlation id and trace context there, which stays right
  even when a record is formatted later on another thread;
- the JSON formatter redacts again, including the ``extra=`` fields, so a
  record that reached it some other way is still safe.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from datetime import time as dt_time
from typing import Any, Final, TextIO

from opentelemetry import trace

from clearway.shared.context import current_correlation_id
from clearway.shared.redaction import redact_text, redact_value

_CONTEXT_ATTR: Final = "_clearway_log_context"
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS: Final = frozenset(
    [*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime", "taskName"]
)
_CORE_KEYS: Final = (
    "ts",
    "level",
    "service",
    "logger",
    "message",
    "correlation_id",
    "trace_id",
    "span_id",
    "exc",
    "stack",
)
# Used only for its default traceback rendering.
_PLAIN: Final = logging.Formatter()

_LogContext = tuple[str | None, str | None, str | None]


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Make the root logger write redacted JSON lines for ``service`` to ``stream``.

    ``stream`` defaults to standard output. Calling it again replaces the
    handler it installed before (no duplicate lines) and leaves handlers that
    others added alone. Run uvicorn with ``log_config=None`` so its loggers
    propagate here instead of printing plain text.
    """
    root = logging.getLogger()
    root.setLevel(level.upper())  # first: an unknown level raises before anything changes
    # aiokafka's DEBUG lines print whole protocol structs (metadata of every topic,
    # record batches with their payloads): costly to build and redact on every
    # response, and payloads are not log material. Its INFO and above still flow.
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.INFO))
    for handler in list(root.handlers):
        if isinstance(handler, _JsonHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _JsonHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    _install_record_factory()


def get_logger(name: str) -> logging.Logger:
    """The logger called ``name`` (use ``__name__``); its lines go through ``configure_logging``."""
    return logging.getLogger(name)


class JsonFormatter(logging.Formatter):
    """Formats a record as one redacted JSON object (no trailing newline)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line, every value redacted."""
        correlation_id, trace_id, span_id = _context_of(record)
        payload: dict[str, Any] = {
            "ts": _rfc3339(record.created),
            "level": record.levelname,
            "service": self.service,
            "logger": redact_text(record.name),
            "message": redact_text(_message_of(record)),
            "correlation_id": None if correlation_id is None else redact_text(correlation_id),
        }
        if trace_id is not None and span_id is not None:
            payload["trace_id"] = trace_id
            payload["span_id"] = span_id
        for key, value in _extras_of(record).items():
            payload[f"extra_{key}" if key in _CORE_KEYS else key] = value
        if record.exc_info and not record.exc_text:
            # Cached on the record, as logging.Formatter does, but redacted.
            record.exc_text = redact_text(_PLAIN.formatException(record.exc_info))
        if record.exc_text:
            payload["exc"] = redact_text(record.exc_text)
        if record.stack_info:
            payload["stack"] = redact_text(record.stack_info)
        return _dumps(payload)


class _JsonHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` owns, told apart from everyone else's."""


class _RedactingRecordFactory:
    """Wraps the current record factory: every new record is redacted at birth."""

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        try:
            record.__dict__[_CONTEXT_ATTR] = _current_context()
            _redact_record(record)
        except Exception:  # a log call must never raise, nor let an unredacted record out
            record.msg, record.args = "[log record could not be redacted]", ()
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return record


def _install_record_factory() -> None:
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(current))


def _current_context() -> _LogContext:
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return current_correlation_id(), None, None
    return (
        current_correlation_id(),
        format(span_context.trace_id, "032x"),
        format(span_context.span_id, "016x"),
    )


def _context_of(record: logging.LogRecord) -> _LogContext:
    captured = record.__dict__.get(_CONTEXT_ATTR)
    if isinstance(captured, tuple):
        return captured
    return _current_context()


def _redact_record(record: logging.LogRecord) -> None:
    """Mask the message, arguments, exception and stack of ``record`` in place.

    When the formatted message holds nothing sensitive the record is left as
    it is, so formatters that read ``record.args`` (uvicorn's access log) keep
    working; otherwise the arguments are redacted one by one if that is
    enough, and the message is frozen to its redacted text if it is not.
    """
    try:
        original = record.getMessage()
    except Exception:  # bad %-args: logging reports it at emit time, with these values
        record.msg = redact_text(str(record.msg))
        record.args = _redact_args(record.args)
    else:
        redacted = redact_text(original)
        if redacted != original:
            record.msg, record.args = _redacted_msg_and_args(record, redacted)
    if record.exc_info and not record.exc_text:
        record.exc_text = redact_text(_PLAIN.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)


def _redacted_msg_and_args(
    record: logging.LogRecord, redacted: str
) -> tuple[object, tuple[object, ...] | Mapping[str, object]]:
    if isinstance(record.msg, str) and record.args:
        msg = redact_text(record.msg)
        args = _redact_args(record.args)
        try:
            candidate = msg % args
        except (TypeError, ValueError, KeyError):
            candidate = None
        # Accept the shape-keeping version only if it is as clean as the whole
        # message redacted: a PAN split over two arguments is caught here.
        if candidate is not None and redact_text(candidate) == candidate:
            return msg, args
    return redacted, ()


def _redact_args(
    args: tuple[object, ...] | Mapping[str, object] | None,
) -> tuple[object, ...] | Mapping[str, object]:
    if args is None:
        return ()
    if isinstance(args, Mapping):
        return redact_value(args)
    return tuple(redact_value(arg) for arg in args)


def _message_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return f"{record.msg!s} [unformattable log arguments]"


def _extras_of(record: logging.LogRecord) -> dict[Any, Any]:
    extras = {
        k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and k != _CONTEXT_ATTR
    }
    return redact_value(extras) if extras else {}


def _rfc3339(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _json_default(value: object) -> object:
    """JSON for what ``json`` cannot encode itself; strings are redacted again."""
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return redact_value(value.value)
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"  # raw bytes may hold anything: never print them
    return redact_text(str(value))


def _dumps(payload: dict[str, Any]) -> str:
    try:
        return json.dumps(payload, default=_json_default)
    except (TypeError, ValueError):
        # e.g. a dict with tuple keys in ``extra=``: keep the line, flatten the culprit.
        safe: dict[str, Any] = {}
        for key, value in payload.items():
            try:
                json.dumps(value, default=_json_default)
                safe[key] = value
            except (TypeError, ValueError):
                safe[key] = redact_text(repr(value))
        return json.dumps(safe, default=_json_default)
