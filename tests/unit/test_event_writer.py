"""EventWriter's pure part: ids, source, context, schema lookups, validation."""

from __future__ import annotations

import pytest

from clearway.shared.actor import Actor
from clearway.shared.context import correlation
from clearway.shared.event_writer import EventWriter
from clearway.shared.events import event_id
from clearway.shared.schemas import (
    SchemaRegistry,
    SchemaValidationError,
    UnknownSchemaError,
    default_registry,
)
from clearway.shared.telemetry import setup_tracing, tracer

TYPE = "platform.test_event"


class CountingRegistry(SchemaRegistry):
    def __init__(self) -> None:
        base = default_registry()
        super().__init__(base.schemas_dir, {(s.event_type, s.major): s for s in base.schemas()})
        self.lookups = 0

    def get(self, event_type, major):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return super().get(event_type, major)


def test_source_topic_and_deterministic_id():
    writer = EventWriter("audit", topic_prefix="t123.")
    assert writer.source == "/clearway/audit"
    assert writer.topic == "t123.clearway.audit.events.v1"
    a = writer.event(TYPE, subject="thing_1", version=3, data={"id": "thing_1", "amount": 1})
    b = writer.event(TYPE, subject="thing_1", version=3, data={"id": "thing_1", "amount": 1})
    assert a.id == b.id == event_id("thing_1", 3, TYPE)
    assert a.subject == "thing_1" and a.key == b"thing_1"
    assert a.dataschema == "schemas/platform/platform.test_event/v1"
    other = writer.event(TYPE, subject="thing_1", version=4, data={"id": "thing_1", "amount": 1})
    assert other.id != a.id


def test_the_id_can_come_from_another_aggregate_than_the_subject():
    writer = EventWriter("transfer")
    ev = writer.event(
        TYPE, subject="tr_1", aggregate="msg_9", version=1, data={"id": "tr_1", "amount": 1}
    )
    assert ev.subject == "tr_1" and ev.id == event_id("msg_9", 1, TYPE)


def test_context_fills_correlation_causation_tenant_and_trace_unless_given():
    setup_tracing("tests")
    writer = EventWriter("webhooks")
    data = {"id": "x", "amount": 1}
    with (
        correlation("corr_1", "ten_1", causation_id="evt_cause"),
        tracer("t").start_as_current_span("s"),
    ):
        ev = writer.event(TYPE, subject="x", version=1, data=data)
        given = writer.event(
            TYPE,
            subject="x",
            version=1,
            data=data,
            correlation_id="corr_2",
            causation_id="evt_2",
            tenant="ten_2",
        )
    assert (ev.correlation_id, ev.causation_id, ev.tenant) == ("corr_1", "evt_cause", "ten_1")
    assert ev.traceparent and ev.traceparent.startswith("00-")
    assert (given.correlation_id, given.causation_id, given.tenant) == ("corr_2", "evt_2", "ten_2")
    outside = writer.event(TYPE, subject="x", version=1, data=data)
    assert outside.correlation_id is None and outside.causation_id is None


def test_each_schema_is_looked_up_once():
    registry = CountingRegistry()
    writer = EventWriter("audit", registry=registry)
    for v in range(5):
        writer.check(writer.event(TYPE, subject="x", version=v, data={"id": "x", "amount": v}))
    assert registry.lookups == 1


def test_check_validates_fills_defaults_and_names_the_field():
    writer = EventWriter("audit")
    ok = writer.check(writer.event(TYPE, subject="x", version=1, data={"id": "x", "amount": 5}))
    assert ok.data == {"id": "x", "amount": 5, "note": None}
    bad = writer.event(TYPE, subject="x", version=1, data={"id": "x", "amount": "5"})
    with pytest.raises(SchemaValidationError) as err:
        writer.check(bad)
    assert err.value.field_path == "amount"
    with pytest.raises(UnknownSchemaError):
        writer.event("platform.no_such_event", subject="x", version=1, data={})


def test_events_not_built_by_the_writer_are_refused():
    mine = EventWriter("audit").event(TYPE, subject="x", version=1, data={"id": "x", "amount": 1})
    with pytest.raises(ValueError, match="EventWriter"):
        EventWriter("consent").check(mine)


def test_the_actor_is_recorded_in_the_data():
    writer = EventWriter("webhooks")
    ev = writer.event(
        "webhooks.admin_action",
        subject="ep_1",
        version=1,
        data={"action": "endpoint.created", "resource": "ep_1"},
        actor=Actor("user_1", "cli_1", ("support_7",)),
    )
    checked = writer.check(ev)
    assert Actor.from_data(checked.data["actor"]) == Actor("user_1", "cli_1", ("support_7",))
