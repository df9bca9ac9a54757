"""Structured JSON logs: one object per line, context attached, nothing sensitive."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from clearway.shared.context import correlation
from clearway.shared.logging import JsonFormatter, configure_logging, get_logger

VISA = "4242424242424242"
TRANSFER_ID = "tr_01J9ZK3M4N5P6Q7R8S9T0V1W2X"
CORRELATION_ID = "corr_0af7651916cd43dd8448eb211c80319c"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class RecordingHandler(logging.Handler):
    """Keeps the records it is given, the way a third-party handler would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Logging configured for a ``transfer`` service, writing into a string.

    The root logger and the record factory are put back afterwards so other
    tests see logging as they left it.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_factory = logging.getLogRecordFactory()
    out = io.StringIO()
    configure_logging("transfer", level="DEBUG", stream=out)
    yield out
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    logging.setLogRecordFactory(saved_factory)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def only_line(out: io.StringIO) -> dict[str, Any]:
    [line] = lines(out)
    return line


def test_a_log_call_becomes_one_json_object_with_the_core_keys(stream: io.StringIO) -> None:
    get_logger("clearway.transfer.api").info("transfer %s accepted", TRANSFER_ID)

    line = only_line(stream)
    assert RFC3339_UTC.match(line["ts"])
    assert abs(datetime.fromisoformat(line["ts"]) - datetime.now(UTC)).total_seconds() < 60
    assert line["level"] == "INFO"
    assert line["service"] == "transfer"
    assert line["logger"] == "clearway.transfer.api"
    assert line["message"] == f"transfer {TRANSFER_ID} accepted"
    assert line["correlation_id"] is None


def test_a_message_spanning_lines_still_makes_exactly_one_line(stream: io.StringIO) -> None:
    get_logger("t").warning("first\nsecond")

    assert only_line(stream)["message"] == "first\nsecond"


def test_a_pan_in_message_args_extra_and_exception_is_masked_with_context_intact(
    stream: io.StringIO,
) -> None:
    tracer = TracerProvider().get_tracer("test")
    log = get_logger("clearway.transfer.handlers")

    with correlation(CORRELATION_ID), tracer.start_as_current_span("charge") as span:
        try:
            raise ValueError(f"rail declined card {VISA}")
        except ValueError:
            log.exception(
                f"charging {VISA} for %s with %s",
                TRANSFER_ID,
                "4242 4242 4242 4242",
                extra={"card": "4242-4242-4242-4242", "transfer_id": TRANSFER_ID},
            )
        context = span.get_span_context()

    raw = stream.getvalue()
    line = only_line(stream)
    assert VISA not in raw
    assert "4242 4242 4242 4242" not in raw
    assert "4242-4242-4242-4242" not in raw
    assert line["message"] == f"charging [PAN ****4242] for {TRANSFER_ID} with [PAN ****4242]"
    assert line["card"] == "[PAN ****4242]"
    assert line["transfer_id"] == TRANSFER_ID
    assert "ValueError: rail declined card [PAN ****4242]" in line["exc"]
    assert line["correlation_id"] == CORRELATION_ID
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_without_a_current_span_the_trace_keys_are_left_out(stream: io.StringIO) -> None:
    get_logger("t").info("no span here")

    line = only_line(stream)
    assert "trace_id" not in line
    assert "span_id" not in line


def test_sensitive_extra_fields_and_secrets_inside_them_are_masked(
    stream: io.StringIO,
) -> None:
    get_logger("t").info(
        "calling partner",
        extra={
            "headers": {"Authorization": "Bearer abc", "Content-Type": "application/json"},
            "client_secret": "cs_live_123",
            "endpoint": {"id": "ep_9", "secret": "whsec_abc", "owner": "ops@partner.example"},
        },
    )

    line = only_line(stream)
    assert line["headers"] == {"Authorization": "[REDACTED]", "Content-Type": "application/json"}
    assert line["client_secret"] == "[REDACTED]"
    assert line["endpoint"] == {
        "id": "ep_9",
        "secret": "[REDACTED]",
        "owner": "o***@partner.example",
    }


class CardHolder:
    def __str__(self) -> str:
        return f"CardHolder(pan={VISA})"


def test_extra_values_json_cannot_encode_are_written_as_redacted_text(
    stream: io.StringIO,
) -> None:
    get_logger("t").info(
        "odd extras",
        extra={
            "at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
            "tags": frozenset({"a"}),
            "body": b"\x00\x01raw",
            "holder": CardHolder(),
        },
    )

    raw = stream.getvalue()
    line = only_line(stream)
    assert VISA not in raw
    assert line["at"] == "2025-01-02T03:04:05+00:00"
    assert line["tags"] == ["a"]
    assert line["body"] == "<5 bytes>"
    assert line["holder"] == "CardHolder(pan=[REDACTED])"


def test_an_extra_field_cannot_overwrite_a_core_key(stream: io.StringIO) -> None:
    get_logger("t").info("spoof", extra={"service": "audit", "level": "DEBUG"})

    line = only_line(stream)
    assert line["service"] == "transfer"
    assert line["level"] == "INFO"
    assert line["extra_service"] == "audit"
    assert line["extra_level"] == "DEBUG"


def test_the_correlation_id_is_itself_redacted_because_clients_choose_it(
    stream: io.StringIO,
) -> None:
    with correlation(f"client-sent-{VISA}"):
        get_logger("t").info("hello")

    assert only_line(stream)["correlation_id"] == "client-sent-[PAN ****4242]"


def test_configuring_twice_does_not_duplicate_lines(stream: io.StringIO) -> None:
    second = io.StringIO()
    configure_logging("transfer", level="DEBUG", stream=second)

    get_logger("t").info("once")

    assert stream.getvalue() == ""
    assert [line["message"] for line in lines(second)] == ["once"]
    ours = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert len(ours) == 1


def test_records_below_the_configured_level_are_not_written(stream: io.StringIO) -> None:
    configure_logging("transfer", level="warning", stream=stream)

    get_logger("t").info("quiet")
    get_logger("t").warning("loud")

    assert [line["message"] for line in lines(stream)] == ["loud"]


def test_a_handler_we_do_not_own_sees_the_record_already_redacted(stream: io.StringIO) -> None:
    recorder = RecordingHandler()
    log = get_logger("uvicorn.access.test")
    log.addHandler(recorder)
    try:
        try:
            raise RuntimeError(f"card {VISA}")
        except RuntimeError:
            log.error("card %s", VISA, exc_info=True)
    finally:
        log.removeHandler(recorder)

    [record] = recorder.records
    assert record.getMessage() == "card [PAN ****4242]"
    assert record.exc_text is not None
    assert VISA not in record.exc_text


def test_arguments_keep_their_shape_when_redacting_them_one_by_one_is_enough(
    stream: io.StringIO,
) -> None:
    recorder = RecordingHandler()
    log = get_logger("uvicorn.access.test")
    log.addHandler(recorder)
    try:
        log.info('%s - "%s %s"', "10.0.0.1", "GET", "/v1/x?client_secret=abc&page=2")
        log.info("%s %d", "clean", 200)
    finally:
        log.removeHandler(recorder)

    redacted, clean = recorder.records
    assert redacted.args == ("10.0.0.1", "GET", "/v1/x?client_secret=[REDACTED]&page=2")
    assert clean.args == ("clean", 200)


def test_a_pan_split_across_two_arguments_is_still_masked(stream: io.StringIO) -> None:
    get_logger("t").info("card %s %s", "4242 4242", "4242 4242")

    assert only_line(stream)["message"] == "card [PAN ****4242]"


def test_a_pan_passed_as_an_integer_argument_is_masked(stream: io.StringIO) -> None:
    get_logger("t").info("card %d", int(VISA))

    assert only_line(stream)["message"] == "card [PAN ****4242]"


def test_get_logger_is_the_standard_named_logger() -> None:
    assert get_logger("clearway.x") is logging.getLogger("clearway.x")


def test_an_unknown_level_is_refused_before_anything_changes(stream: io.StringIO) -> None:
    with pytest.raises(ValueError):
        configure_logging("transfer", level="LOUD", stream=io.StringIO())

    get_logger("t").info("still here")

    assert [line["message"] for line in lines(stream)] == ["still here"]
