"""CloudEvents in Kafka binary mode: a command's bearer token travels in one header."""

from __future__ import annotations

from dataclasses import replace

from clearway.shared.events import AUTHORIZATION_HEADER, Event, new_event


def _intent() -> Event:
    return new_event(
        type="transfer.intent", source="/tests", aggregate_id="int_1", aggregate_version=1, data={}
    )


def test_a_bearer_token_round_trips_and_is_never_printed() -> None:
    ev = replace(_intent(), authorization="eyJ.a.b")
    headers = ev.headers()
    assert (AUTHORIZATION_HEADER, b"Bearer eyJ.a.b") in headers
    assert Event.from_kafka(headers, ev.body()).authorization == "eyJ.a.b"
    assert "eyJ" not in repr(ev)


def test_an_event_without_a_token_has_no_authorization_header() -> None:
    ev = _intent()
    assert AUTHORIZATION_HEADER not in dict(ev.headers())
    assert Event.from_kafka(ev.headers(), ev.body()).authorization is None


def test_only_the_bearer_scheme_counts_as_a_token() -> None:
    base = _intent().headers()
    for value, token in [(b"bearer t.o.k", "t.o.k"), (b"Basic dXNlcg==", None), (b"Bearer ", None)]:
        got = Event.from_kafka([*base, (AUTHORIZATION_HEADER, value)], b"{}").authorization
        assert got == token, value


def test_a_records_kafka_timestamp_is_kept_and_kafkas_none_is_none() -> None:
    ev = _intent()
    read = Event.from_kafka(ev.headers(), ev.body(), timestamp_ms=1_700_000_000_123)
    assert read.record_timestamp_ms == 1_700_000_000_123
    assert read == Event.from_kafka(ev.headers(), ev.body())  # transport, not the event
    assert Event.from_kafka(ev.headers(), ev.body(), timestamp_ms=-1).record_timestamp_ms is None
