"""The partner event catalog comes from the schema registry."""

from __future__ import annotations

from clearway.shared.schemas import default_registry
from clearway.webhooks.catalog import catalog, markdown


def test_the_catalog_has_every_registered_event_type_with_schema_and_changelog():
    types = {t.event_type for t in default_registry().event_types()}
    entries = {e["type"]: e for e in catalog()}
    assert set(entries) == types
    assert all(e["schema"]["type"] == "object" for e in entries.values())


def test_the_markdown_page_documents_every_event_type():
    page = markdown()
    for t in default_registry().event_types():
        assert f"## `{t.event_type}`" in page
