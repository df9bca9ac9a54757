"""Dated versions on the transfer API (docs/design.md §10): two clients pinned to two
versions read the same transfer in two shapes, a header overrides the pin, an unknown
version is a 400, and calls on the deprecated version are signalled, counted and
digested for the client; each version's answers match the OpenAPI document published
for it, and not the other's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from jsonschema import Draft202012Validator
from prometheus_client import REGISTRY

from clearway.shared.versions import VERSION_CLAIM
from clearway.shared.versions.openapi import for_version

pytestmark = pytest.mark.integration

OLD, NEW = "2026-11-01", "2026-12-01"


def pinned(clearway, client_id: str, version: str | None) -> httpx.AsyncClient:
    claims = {VERSION_CLAIM: version} if version else None
    token = clearway.issuer.token(
        sub="usr_1",
        client_id=client_id,
        scopes=("payments:initiate", "payments:read"),
        audience="clearway-transfer",
        tenant="ten_a",
        extra_claims=claims,
    )
    return httpx.AsyncClient(
        base_url=clearway.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )


def deprecated_calls(client: str, feature: str) -> float:
    labels = {"service": "transfer", "client": client, "version": OLD, "feature": feature}
    return REGISTRY.get_sample_value("clearway_deprecated_calls_total", labels) or 0.0


async def test_two_pinned_clients_get_two_shapes_and_a_header_overrides_the_pin(clearway, body):
    async with pinned(clearway, "cli_old", OLD) as old, pinned(clearway, "cli_new", NEW) as new:
        created = await new.post("/v1/transfers", json=body, headers={"Idempotency-Key": "v-1"})
        assert created.status_code == 201, created.text
        assert created.headers["clearway-version"] == NEW
        assert created.json()["amount"] == {"value": "125.00", "currency": "EUR"}
        assert "currency" not in created.json()
        path = f"/v1/transfers/{created.json()['id']}"

        as_old, as_new = await old.get(path), await new.get(path)
        assert as_old.headers["clearway-version"] == OLD
        assert (as_old.json()["amount"], as_old.json()["currency"]) == (12500, "EUR")
        assert as_new.json()["amount"] == {"value": "125.00", "currency": "EUR"}
        assert {k: v for k, v in as_old.json().items() if k not in ("amount", "currency")} == {
            k: v for k, v in as_new.json().items() if k != "amount"
        }
        listed = await old.get("/v1/transfers")
        assert listed.json()["data"][0]["amount"] == 12500  # lists too

        overridden = await old.get(path, headers={"Clearway-Version": NEW})
        assert overridden.headers["clearway-version"] == NEW
        assert overridden.json()["amount"] == {"value": "125.00", "currency": "EUR"}
        assert "deprecation" not in overridden.headers

        back = await new.get(path, headers={"Clearway-Version": OLD})
        assert back.json()["amount"] == 12500

        unknown = await new.get(path, headers={"Clearway-Version": "2025-01-01"})
        assert unknown.status_code == 400
        assert unknown.headers["content-type"].startswith("application/problem+json")
        assert unknown.json()["supported_versions"] == [OLD, NEW]
        assert "clearway-version" not in unknown.headers


def errors(document: dict, path: str, method: str, status: int, body: object) -> list[str]:
    """What is wrong with ``body`` as the answer the document declares."""
    response = document["paths"][path][method]["responses"][str(status)]
    schema = dict(response["content"]["application/json"]["schema"])
    schema["components"] = document["components"]  # where its $refs point
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [e.message for e in validator.iter_errors(body)]


async def test_each_version_answers_as_its_published_document(clearway, body):
    async with httpx.AsyncClient(base_url=clearway.url) as anonymous:
        current = (await anonymous.get("/openapi.json")).json()
    documents = {v: for_version(current, v) for v in (OLD, NEW)}
    async with pinned(clearway, "cli_doc", NEW) as client:
        for version, other in ((OLD, NEW), (NEW, OLD)):
            header = {"Clearway-Version": version}
            created = await client.post(
                "/v1/transfers", json=body, headers={**header, "Idempotency-Key": f"d-{version}"}
            )
            read = await client.get(f"/v1/transfers/{created.json()['id']}", headers=header)
            listed = await client.get("/v1/transfers", headers=header)
            answers = [
                ("/v1/transfers", "post", created),
                ("/v1/transfers/{transfer_id}", "get", read),
                ("/v1/transfers", "get", listed),
            ]
            for path, method, answer in answers:
                assert answer.headers["clearway-version"] == version
                doc, wrong = documents[version], documents[other]
                assert not errors(doc, path, method, answer.status_code, answer.json()), path
                assert errors(wrong, path, method, answer.status_code, answer.json()), path


async def test_the_deprecated_version_is_signalled_counted_and_digested(
    clearway, body, published
):
    feature = "GET /v1/transfers/{transfer_id}"
    async with pinned(clearway, "cli_legacy", OLD) as old, pinned(clearway, "cli_new", NEW) as new:
        created = await new.post("/v1/transfers", json=body, headers={"Idempotency-Key": "v-2"})
        assert "deprecation" not in created.headers
        before = deprecated_calls("cli_legacy", feature)

        r = await old.get(f"/v1/transfers/{created.json()['id']}")

    assert r.status_code == 200
    # RFC 9745: deprecated since its successor shipped, as a structured-field date.
    assert r.headers["deprecation"] == f"@{int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())}"
    assert r.headers["sunset"] == "Wed, 01 Dec 2027 00:00:00 GMT"  # RFC 8594 HTTP-date
    assert r.headers["link"] == '<https://docs.clearway.dev/changes/2026-12-01>; rel="deprecation"'
    assert deprecated_calls("cli_legacy", feature) == before + 1

    digests = clearway.app.state.deprecation_digests
    next_week = datetime.now(UTC).date() + timedelta(days=7)
    assert await digests.send_digests(today=next_week) == 1
    assert await digests.send_digests(today=next_week) == 0  # once per client and week

    [digest] = [e for e in await published() if e.type == "client.deprecation_digest"]
    assert digest.subject == "cli_legacy" and digest.tenant == "ten_a"
    assert digest.data["client_id"] == "cli_legacy"
    assert digest.data["service"] == "transfer"
    [use] = digest.data["uses"]
    assert (use["version"], use["feature"], use["calls"]) == (OLD, feature, 1)
    assert use["sunset"] == "2027-12-01"
