"""Generated change documents (docs/design.md §10): fresh in the repository, and the
AsyncAPI document covers every event type on its topics."""

from __future__ import annotations

from pathlib import Path

from clearway.shared.schemas import default_registry
from clearway.shared.schemas.asyncapi import document, topics_of
from clearway.shared.versions import CHANGES
from clearway.shared.versions.docs import expected, stale

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_documents_are_fresh():
    files = expected(ROOT)
    assert not stale(files), "run `clearway-versions write`"
    assert {p.name for p in files} >= {"CHANGELOG.md", "asyncapi.json"}
    for change in CHANGES:
        guide = files[ROOT / "docs" / "changes" / f"{change.version}.md"]
        assert change.title in guide and change.description.strip() in guide


def test_a_stale_file_is_reported(tmp_path):
    target = tmp_path / "CHANGELOG.md"
    target.write_text("old")
    assert stale({target: "new", tmp_path / "missing.md": "x"}) == [target, tmp_path / "missing.md"]


def test_asyncapi_has_every_event_type_on_its_topics():
    registry = default_registry()
    doc = document(registry)
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"]: set(c["messages"]) for c in doc["channels"].values()}
    for info in registry.event_types():
        base = info.event_type.replace(".", "_")
        assert f"{base}_v1" in doc["components"]["messages"]
        for topic in topics_of(info.event_type, info.domain, info.changelog):
            # a topic carries the schema major it was made for (consent: v2, ADR 0039)
            on_topic = {m for m in addresses[topic] if m.rpartition("_v")[0] == base}
            assert on_topic, (info.event_type, topic)
    assert addresses["clearway.transfer.intents.v1"] == {"transfer_intent_v1"}
    assert "client_deprecation_digest_v1" in addresses["clearway.transfer.events.v1"]
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]
