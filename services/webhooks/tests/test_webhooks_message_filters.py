"""GET /v1/messages filtered by event type and a created-time window, composing with the
cursor paging: each filter is bound into the cursor (docs/design.md §13)."""

from __future__ import annotations

from typing import Any

import pytest

from clearway.shared.events import new_event
from clearway.shared.schemas import default_registry

from .conftest import TENANT

pytestmark = pytest.mark.integration


def purged(i: int) -> Any:
    return new_event(
        type="platform.records_purged",
        source="/tests",
        aggregate_id=f"purge_filters_{i}",
        aggregate_version=1,
        data={
            "service": "tests",
            "record_class": "things",
            "count": i,
            "cutoff": "2026-01-01T00:00:00Z",
            "retention_days": 30.0,
            "at": "2026-01-02T00:00:00Z",
        },
        dataschema=default_registry().get("platform.records_purged", 1).dataschema,
        correlation_id=f"corr_purge_{i}",
        tenant=TENANT,
    )


async def test_messages_filter_by_event_type_and_time_window_and_page_with_the_cursor(
    service_factory, settings, publish, make_event, eventually
):
    # no dispatcher: the messages stay pending, only the fan-out writes them
    quiet = settings.replace(run_dispatcher=False, run_relay=False)
    service = await service_factory(quiet)
    await service.create_endpoint("http://127.0.0.1:9/hook")

    async def listed(**params: Any) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        params.setdefault("limit", 2)
        while True:
            r = await service.http.get("/v1/messages", params=params, headers=service.auth)
            assert r.status_code == 200, r.text
            seen += r.json()["data"]
            if not r.json()["has_more"]:
                return seen
            params["cursor"] = r.json()["next_cursor"]

    first = [make_event(i, run="filters1") for i in range(3)]
    await publish(first)
    await eventually(lambda: _count(listed, 3))
    later = [make_event(i, run="filters2") for i in range(2)] + [purged(1), purged(2)]
    await publish(later)
    await eventually(lambda: _count(listed, 7))

    every = await listed()
    assert [m["created_at"] for m in every] == sorted(m["created_at"] for m in every)
    by_event = {m["event_id"]: m for m in every}
    tests = await listed(event_type="platform.test_event")
    assert {m["event_id"] for m in tests} == {e.id for e in first + later[:2]}
    assert {m["event_id"] for m in await listed(event_type="platform.records_purged")} == {
        e.id for e in later[2:]
    }
    assert await listed(event_type="transfer.settled") == []

    boundary = min(by_event[e.id]["created_at"] for e in later)
    after = await listed(created_after=boundary)
    assert {m["event_id"] for m in after} == {e.id for e in later}  # inclusive
    before = await listed(created_before=boundary)
    assert {m["event_id"] for m in before} == {e.id for e in first}  # exclusive
    both = await listed(event_type="platform.test_event", created_after=boundary, limit=1)
    assert {m["event_id"] for m in both} == {e.id for e in later[:2]}

    newest = await listed(order="desc", limit=3)
    assert [m["id"] for m in newest] == [m["id"] for m in reversed(every)]

    # a cursor is good for its own filters only
    r = await service.http.get(
        "/v1/messages",
        params={"event_type": "platform.test_event", "limit": 1},
        headers=service.auth,
    )
    cursor = r.json()["next_cursor"]
    for other in ({"event_type": "platform.records_purged"}, {"created_after": boundary}, {}):
        r = await service.http.get(
            "/v1/messages", params={**other, "cursor": cursor}, headers=service.auth
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.cursor"

    for params, field in (
        ({"created_after": boundary, "created_before": boundary}, "query.created_before"),
        ({"created_after": "2026-01-01T00:00:00"}, "query.created_after"),  # no offset
        ({"created_before": "yesterday"}, "query.created_before"),
        ({"created_before": "0"}, "query.created_before"),  # not Unix seconds: RFC 3339
        ({"created_after": "1.5e9"}, "query.created_after"),
        ({"order": "sideways"}, "query.order"),
    ):
        r = await service.http.get("/v1/messages", params=params, headers=service.auth)
        assert r.status_code == 422, params
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == [field]


async def _count(listed: Any, n: int) -> bool:
    return len(await listed()) >= n
