"""Support and regulators query the trail over HTTP; proofs check out client-side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clearway.audit.merkle import verify_consistency, verify_inclusion
from clearway.audit.signing import Checkpoint
from clearway.shared.auth import route_scopes
from clearway.shared.events import event_id
from clearway.shared.testing.helpers import eventually

from .conftest import audit_topic, event, read_events

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def flow(corr: str, tenant: str = "tn_1") -> dict[str, list]:
    """One transfer's events across services, with their own event times."""
    user = {"subject": "user_ann", "client_id": "app_mobile", "delegation": []}
    kw = {"correlation_id": corr, "tenant": tenant}
    return {
        "consent": [
            event(
                "consent",
                "authorised",
                f"cns_{corr}",
                1,
                {"actor": user, "reason": "pay rent", "approver": "user_ann"},
                time=at(0),
                **kw,
            ),
        ],
        "transfer": [
            event("transfer", "created", f"tr_{corr}", 1, {"actor": user}, time=at(1), **kw),
            event("transfer", "submitted", f"tr_{corr}", 2, {}, time=at(2), **kw),
            event("transfer", "settled", f"tr_{corr}", 3, {}, time=at(3), **kw),
        ],
        "webhooks": [
            event("webhooks", "attempt_failed", f"msg_{corr}", 1, {}, time=at(4), **kw),
            event("webhooks", "delivered", f"msg_{corr}", 2, {}, time=at(5), **kw),
        ],
    }


async def ingest_flows(s, *flows) -> int:
    total = 0
    # Publish the webhook attempts first: arrival order is not time order.
    for domain in ("webhooks", "transfer", "consent"):
        for f in flows:
            await s.publish(domain, *f[domain])
            total += len(f[domain])

    async def all_in() -> bool:
        return await s.count() == total

    await eventually(all_in)
    return total


async def test_a_correlation_id_returns_the_whole_flow_in_time_order(audit_service):
    s = audit_service
    await ingest_flows(s, flow("corr_a"), flow("corr_b"), flow("corr_x", tenant="tn_2"))
    async with s.client() as c:
        r = await c.get("/v1/audit/records", params={"correlation_id": "corr_a"})
    assert r.status_code == 200, r.text
    items = r.json()["data"]
    assert [i["type"] for i in items] == [
        "consent.authorised",
        "transfer.created",
        "transfer.submitted",
        "transfer.settled",
        "webhooks.attempt_failed",
        "webhooks.delivered",
    ]
    assert {i["source"] for i in items} == {"/consent", "/transfer", "/webhooks"}
    assert items[4]["outcome"] == "failure" and items[0]["reason"] == "pay rent"
    assert r.json()["next_cursor"] is None and r.json()["has_more"] is False


async def test_a_trace_id_finds_the_records_of_its_trace_and_nothing_of_another_tenant(
    audit_service,
):
    s = audit_service
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = f"00-{trace}-00f067aa0ba902b7-01"
    mine, theirs = flow("corr_t"), flow("corr_u", tenant="tn_2")
    mine["transfer"] = [
        event(
            "transfer",
            "created",
            "tr_t",
            1,
            {},
            time=at(1),
            correlation_id="corr_t",
            tenant="tn_1",
            traceparent=traced,
        )
    ]
    theirs["transfer"] = [
        event(
            "transfer",
            "created",
            "tr_u",
            1,
            {},
            time=at(1),
            correlation_id="corr_u",
            tenant="tn_2",
            traceparent=traced,
        )
    ]
    await ingest_flows(s, mine, theirs)
    async with s.client() as c:
        r = await c.get("/v1/audit/records", params={"trace_id": trace})
        bad = await c.get("/v1/audit/records", params={"trace_id": "not-a-trace"})
    assert r.status_code == 200, r.text
    assert [(i["resource"], i["trace_id"]) for i in r.json()["data"]] == [("tr_t", trace)]
    assert bad.status_code == 422


async def test_search_by_actor_resource_and_time_range_pages_with_a_cursor(audit_service):
    s = audit_service
    await ingest_flows(s, flow("corr_a"), flow("corr_b"))
    async with s.client() as c:
        by_actor = (await c.get("/v1/audit/records", params={"actor": "user_ann"})).json()
        assert len(by_actor["data"]) == 4
        by_resource = (await c.get("/v1/audit/records", params={"resource": "tr_corr_b"})).json()
        assert [i["type"].split(".")[1] for i in by_resource["data"]] == [
            "created",
            "submitted",
            "settled",
        ]
        window = {"since": at(1).isoformat(), "until": at(3).isoformat()}
        in_range = (await c.get("/v1/audit/records", params=window)).json()["data"]
        assert sorted(i["type"] for i in in_range) == sorted(
            ["transfer.created", "transfer.submitted"] * 2
        )
        seen, cursor, pages = [], None, 0
        while pages < 20:
            params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/v1/audit/records", params=params)).json()
            seen += page["data"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert pages == 3 and len(seen) == 12
    keys = [(i["occurred_at"], i["position"]) for i in seen]
    assert keys == sorted(keys) and len(set(keys)) == 12


async def test_tenants_never_see_each_others_records(audit_service):
    s = audit_service
    await ingest_flows(s, flow("corr_a"), flow("corr_x", tenant="tn_2"))
    async with s.client(s.token(tenant="tn_2")) as c:
        mine = (await c.get("/v1/audit/records", params={"correlation_id": "corr_x"})).json()
        theirs = (await c.get("/v1/audit/records", params={"correlation_id": "corr_a"})).json()
        assert len(mine["data"]) == 6 and theirs["data"] == []
        pos = await s.admin.fetchval("SELECT position FROM records WHERE tenant = 'tn_1' LIMIT 1")
        assert (await c.get(f"/v1/audit/records/{pos}")).status_code == 404


async def test_a_platform_operator_searches_any_tenants_records(audit_service):
    s = audit_service
    await ingest_flows(s, flow("corr_a"), flow("corr_x", tenant="tn_2"))
    route = "/v1/audit/tenants/tn_2/records"
    operator = s.token(scopes=("platform:audit",), tenant="tnt_platform")
    async with s.client(operator) as c:
        found = (await c.get(route, params={"correlation_id": "corr_x"})).json()
        assert len(found["data"]) == 6 and {d["tenant"] for d in found["data"]} == {"tn_2"}
        assert (await c.get(route, params={"correlation_id": "corr_a"})).json()["data"] == []
        assert (await c.get("/v1/audit/records")).status_code == 403  # not audit:read
    # the scope alone is not enough: only the operator tenant's clients act on others
    async with s.client(s.token(scopes=("platform:audit",), tenant="tn_1")) as c:
        refused = await c.get(route)
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"].endswith("/platform-operator-only")


@pytest.mark.parametrize(
    "params, status, field",
    [
        ({"limit": 0}, 422, "query.limit"),
        ({"limit": 10_000}, 422, "query.limit"),
        ({"since": "yesterday"}, 422, "query.since"),
        ({"since": "2026-01-02T00:00:00"}, 422, "query.since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422, "query.until"),
        ({"cursor": "%%%not-a-cursor"}, 422, "query.cursor"),
    ],
)
async def test_bad_search_parameters_get_a_problem_naming_the_field(
    audit_service, params, status, field
):
    async with audit_service.client() as c:
        r = await c.get("/v1/audit/records", params=params)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/validation-error") and r.json()["correlation_id"]
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_every_route_declares_its_scope_and_tokens_are_required(audit_service):
    s = audit_service
    scopes = route_scopes(s.app)
    assert scopes[("GET", "/v1/audit/records")] == {"audit:read"}
    assert scopes[("GET", "/v1/audit/tenants/{tenant}/records")] == {"platform:audit"}
    assert scopes[("GET", "/v1/audit/verify")] == {"audit:read"}
    assert scopes[("POST", "/v1/audit/verifications")] == {"audit:read"}
    assert scopes[("GET", "/v1/audit/verifications/{job_id}")] == {"audit:read"}
    assert scopes[("POST", "/v1/audit/checkpoints")] == {"audit:admin"}
    assert scopes[("GET", "/v1/audit/keys")] == set()  # public, like a JWKS
    async with s.client("not-a-token") as c:
        assert (await c.get("/v1/audit/records")).status_code == 401
    async with s.client(s.token(scopes=("payments:read",))) as c:
        assert (await c.get("/v1/audit/records")).status_code == 403
        assert (await c.post("/v1/audit/checkpoints")).status_code == 403


async def finished(c, location: str):
    job = (await c.get(location)).json()
    return job if job["state"] in ("done", "error") else None


async def test_verify_and_proofs_over_http_check_out_against_the_published_keys(audit_service):
    s = audit_service
    await ingest_flows(s, flow("corr_a"))
    admin = s.client(s.token(scopes=("audit:read", "audit:admin")))
    async with admin as c:
        first = (await c.post("/v1/audit/checkpoints")).json()
        await ingest_flows(s, flow("corr_a"), flow("corr_b"))  # republished flow adds nothing
        second = (await c.post("/v1/audit/checkpoints")).json()
        assert (first["tree_size"], second["tree_size"]) == (6, 12)
        started = await c.post("/v1/audit/verifications", json={"full": True})
        assert started.status_code == 202, started.text
        job = await eventually(lambda: finished(c, started.headers["location"]))
        report = job["result"]
        assert report["ok"] and report["tree_size"] == 12 and report["checkpoints_checked"] == 2
        assert job["progress"]["records_checked"] == 12 and job["progress"]["fraction"] == 1
        # The old route no longer verifies inline: it shows the latest job's report.
        old = await c.get("/v1/audit/verify")
        assert old.json() == report and old.headers["deprecation"] == "@1793491200"
        keys = (await c.get("/v1/audit/keys")).json()["keys"]
        assert first["key_id"] in {k["kid"] for k in keys}
        proof = (await c.get("/v1/audit/proofs/inclusion", params={"position": 7})).json()
        cons = (
            await c.get("/v1/audit/proofs/consistency", params={"first": 6, "second": 12})
        ).json()
        bad = await c.get("/v1/audit/proofs/consistency", params={"first": 12, "second": 6})
        assert bad.status_code == 422
        missing = await c.get("/v1/audit/proofs/inclusion", params={"position": 99})
        assert missing.status_code == 404
    cp = s.app.state.keyring.verifies(
        Checkpoint(
            second["tree_size"],
            bytes.fromhex(second["root_hash"]),
            datetime.fromisoformat(second["issued_at"]),
            second["key_id"],
            __import__("base64").b64decode(second["signature"]),
        )
    )
    assert cp
    assert verify_inclusion(
        7,
        12,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(h) for h in proof["audit_path"]],
        bytes.fromhex(second["root_hash"]),
    )
    # Every signed head is also announced on the audit topic, and not audited itself.
    announced = await read_events(s.settings.platform.kafka, audit_topic(s), 2)
    assert [(e.type, e.data["tree_size"]) for e in announced] == [
        ("audit.checkpoint_signed", 6),
        ("audit.checkpoint_signed", 12),
    ]
    assert announced[1].data["root_hash"] == second["root_hash"]
    # The kit's EventWriter: the platform's source, an id from (log, tree size, type).
    assert {e.source for e in announced} == {"/clearway/audit"}
    assert announced[1].id == event_id("audit_log", 12, "audit.checkpoint_signed")
    assert await s.count() == 12
    assert verify_consistency(
        6,
        12,
        bytes.fromhex(first["root_hash"]),
        bytes.fromhex(second["root_hash"]),
        [bytes.fromhex(h) for h in cons["consistency_path"]],
    )


async def test_verification_requests_are_limited_and_answered_with_problems(audit_service):
    s = audit_service
    await ingest_flows(s, flow("corr_a"))
    async with s.client() as c:
        first = await c.post("/v1/audit/verifications")
        assert first.status_code == 202, first.text
        job = await eventually(lambda: finished(c, first.headers["location"]))
        assert job["ok"] is True and job["full"] is False
        again = await c.post("/v1/audit/verifications")
        assert again.status_code == 429
        assert again.headers["content-type"].startswith("application/problem+json")
        assert 0 < int(again.headers["retry-after"]) <= 60
        full = await c.post("/v1/audit/verifications", json={"full": True})
        assert full.status_code == 403  # a full run needs audit:admin
    # A run still active (here: on another replica) answers 409 with where to look.
    await s.admin.execute(
        "INSERT INTO verification_jobs (id, tenant, requested_by, full_run, state)"
        " VALUES ('vrf_elsewhere', 'tn_3', 'x', false, 'running')"
    )
    async with s.client(s.token(tenant="tn_3")) as c:
        busy = await c.post("/v1/audit/verifications")
        assert busy.status_code == 409 and busy.json()["job_id"] == "vrf_elsewhere"
        assert busy.headers["location"].endswith("/verifications/vrf_elsewhere")
    async with s.client(s.token(tenant="tn_2")) as c:
        assert (await c.get(first.headers["location"])).status_code == 404
        assert (await c.get("/v1/audit/verify")).status_code == 404  # none of its own yet


def _mth_path_root(m: int, n: int, leaf: bytes, path: list[bytes]) -> bytes:
    """The root PATH(m, D[n]) leads to, from the recursive definition of RFC 9162
    §2.1.3.1 (written here from the RFC, independent of clearway.audit.merkle)."""
    import hashlib

    if n == 1:
        assert not path
        return leaf
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two smaller than n
    *inner, sibling = path
    if m < k:
        return hashlib.sha256(b"\x01" + _mth_path_root(m, k, leaf, inner) + sibling).digest()
    return hashlib.sha256(b"\x01" + sibling + _mth_path_root(m - k, n - k, leaf, inner)).digest()


async def test_a_tenants_auditor_proves_its_records_against_the_global_log(audit_service):
    import base64
    import hashlib
    import json

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    s = audit_service
    await ingest_flows(s, flow("corr_a"), flow("corr_x", tenant="tn_2"), flow("corr_b"))
    async with s.client(s.token(scopes=("audit:admin",))) as c:
        assert (await c.post("/v1/audit/checkpoints")).json()["tree_size"] == 18
    async with s.client(s.token(tenant="tn_2")) as c:
        keys = {k["kid"]: k for k in (await c.get("/v1/audit/keys")).json()["keys"]}
        mine = (await c.get("/v1/audit/records", params={"limit": 100})).json()["data"]
        assert len(mine) == 6 and {r["tenant"] for r in mine} == {"tn_2"}
        for record in mine:
            p = (
                await c.get("/v1/audit/proofs/inclusion", params={"position": record["position"]})
            ).json()
            leaf = hashlib.sha256(b"\x00" + p["leaf"].encode()).digest()
            assert json.loads(p["leaf"])["tenant"] == "tn_2"
            assert leaf.hex() == record["leaf_hash"]
            root = _mth_path_root(
                p["position"], p["tree_size"], leaf, [bytes.fromhex(h) for h in p["audit_path"]]
            )
            cp = p["checkpoint"]
            assert root.hex() == cp["root_hash"]
            # The checkpoint is the global one, signed: check it with the published key.
            raw = base64.urlsafe_b64decode(keys[cp["key_id"]]["x"] + "==")
            Ed25519PublicKey.from_public_bytes(raw).verify(
                base64.b64decode(cp["signature"]), cp["signed_note"].encode()
            )
            assert cp["signed_note"].split("\n")[1:3] == [
                "18",
                base64.b64encode(root).decode(),
            ]
        # Another tenant's record: neither the record nor a proof of it.
        theirs = await s.admin.fetchval(
            "SELECT position FROM records WHERE tenant = 'tn_1' LIMIT 1"
        )
        assert (await c.get(f"/v1/audit/records/{theirs}")).status_code == 404
        r = await c.get("/v1/audit/proofs/inclusion", params={"position": theirs})
        assert r.status_code == 404 and "tn_1" not in r.text
