"""The AsyncAPI 3.0 document of Clearway's Kafka topics, generated from ``schemas/``.

One channel per topic, one message per event type and major version with its
JSON Schema payload and the CloudEvents binary-mode headers (docs/design.md §3).
A schema's ``CHANGELOG.md`` names the topics it is published on (a backticked
``clearway.….v<N>``), a major on the topics of its own major; otherwise
``platform.*`` events (v1, written by the kit's jobs in every service) appear on every
service's events topic, whatever that topic's major (``events_topic``), and any other
on ``clearway.<domain>.events.v1``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from clearway.shared.events import events_topic
from clearway.shared.schemas.registry import SchemaRegistry

#: Services that publish events (each on its ``events_topic``).
PUBLISHERS = ("audit", "consent", "transfer", "vault", "webhooks")
_TOPIC = re.compile(r"`(clearway\.[a-z_]+\.[a-z]+\.v\d+)`")

HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes in Kafka binary mode, plus W3C trace context.",
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "Deterministic event id (evt_…)."},
        "ce_source": {"type": "string", "description": "Producing service, /clearway/<svc>."},
        "ce_type": {"type": "string", "description": "The event type."},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "Aggregate id (also the key)."},
        "ce_dataschema": {"type": "string", "description": "schemas/<domain>/<type>/v<N>."},
        "content-type": {"type": "string", "const": "application/json"},
        "ce_correlationid": {"type": "string"},
        "ce_causationid": {"type": "string"},
        "ce_tenant": {"type": "string"},
        "traceparent": {"type": "string", "description": "W3C Trace Context."},
        "tracestate": {"type": "string"},
    },
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"],
}


def topics_of(event_type: str, domain: str, changelog: str) -> list[str]:
    """The topics an event type is published on (see the module docstring)."""
    named = sorted(set(_TOPIC.findall(changelog)))
    if named:
        return named
    if domain == "platform":
        return [events_topic(svc) for svc in PUBLISHERS]
    return [f"clearway.{domain}.events.v1"]


def _id(name: str) -> str:
    """An AsyncAPI object id (letters, digits, ``_`` and ``-``) for a dotted name."""
    return name.replace(".", "_")


def _payload(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("$schema", "$comment")}


def document(registry: SchemaRegistry) -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a dict (sorted, so the rendering is stable)."""
    channels: dict[str, dict[str, Any]] = {}
    messages: dict[str, Any] = {}
    for info in sorted(registry.event_types(), key=lambda t: t.event_type):
        for major, schema in sorted(info.json_schemas.items()):
            name = _id(f"{info.event_type}.v{major}")
            messages[name] = {
                "name": info.event_type,
                "title": f"{info.event_type} v{major}",
                "summary": info.doc,
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
                "payload": _payload(schema),
                "bindings": {"kafka": {"key": {"type": "string", "description": "Aggregate id."}}},
            }
            for topic in topics_of(info.event_type, info.domain, info.changelog):
                if info.domain != "platform" and not topic.endswith(f".v{major}"):
                    continue
                channel = channels.setdefault(_id(topic), {"address": topic, "messages": {}})
                channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    operations = {
        f"receive_{cid}": {
            "action": "receive",
            "summary": f"Consume {c['address']} (an ACL grants each principal its topics).",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in sorted(c["messages"])],
        }
        for cid, c in sorted(channels.items())
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Clearway events",
            "version": "1",
            "description": "Generated from `schemas/` by `clearway-versions write`; do not edit."
            " Topic names get the deployment's CLEARWAY_TOPIC_PREFIX in front. Keys are"
            " aggregate ids, values the event data as JSON (docs/events.md).",
        },
        "defaultContentType": "application/json",
        "channels": dict(sorted(channels.items())),
        "operations": operations,
        "components": {"messages": messages, "schemas": {"CloudEventHeaders": HEADERS}},
    }


def render(registry: SchemaRegistry) -> str:
    """``document`` as the committed JSON text."""
    return json.dumps(document(registry), indent=2, ensure_ascii=False) + "\n"
