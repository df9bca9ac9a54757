"""HTTP API: search, verification, checkpoints and proofs (scope ``audit:read``).

``GET /v1/audit/keys`` is public on purpose: like a JWKS, the checkpoint
verification keys are what outside verifiers need before they hold a token.
Taking a checkpoint on demand needs ``audit:admin``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Security

from clearway.audit import handlers, store
from clearway.audit.merkle import Pruned
from clearway.audit.verification import verify_log
from clearway.shared.auth import Principal, require_scope
from clearway.shared.http import ProblemError

router = APIRouter(prefix="/v1/audit")
READ = Security(require_scope("audit:read"))
ADMIN = Security(require_scope("audit:admin"))
MAX_LIMIT = 500


def _record_json(row: Any) -> dict[str, Any]:
    doc = json.loads(row["content"])
    doc["position"] = row["position"]
    doc["leaf_hash"] = bytes(row["leaf_hash"]).hex()
    return doc


def _encode_cursor(occurred_at: datetime, position: int) -> str:
    raw = json.dumps([occurred_at.isoformat(), position]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, pos = json.loads(raw)
        if not isinstance(pos, int):
            raise ValueError("position")
        return datetime.fromisoformat(when), pos
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ProblemError(
            400,
            "invalid-cursor",
            "Invalid cursor",
            "Field 'cursor' is not a cursor we issued.",
            field="cursor",
        ) from None


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ProblemError(
            422,
            "validation-error",
            "Request validation failed",
            f"Field '{name}' needs a time zone (RFC 3339, e.g. 2026-01-01T00:00:00Z).",
            errors=[{"field": name, "message": "time zone required", "type": "timezone"}],
        )
    return value


Text = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.get("/records")
async def search_records(
    request: Request,
    principal: Principal = READ,
    correlation_id: Text = None,
    actor: Text = None,
    resource: Text = None,
    action: Text = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> dict[str, Any]:
    """Records of the caller's tenant in time order; ``next_cursor`` pages on."""
    since, until = _aware("since", since), _aware("until", until)
    if since and until and since >= until:
        raise ProblemError(
            422,
            "validation-error",
            "Request validation failed",
            "Field 'until' must be later than 'since'.",
            errors=[{"field": "until", "message": "must be later than since", "type": "range"}],
        )
    f = store.SearchFilter(
        tenant=principal.tenant,
        correlation_id=correlation_id,
        actor=actor,
        resource=resource,
        action=action,
        since=since,
        until=until,
        after=_decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    async with request.app.state.pool.acquire() as conn:
        rows = await store.search(conn, f)
    page = rows[:limit]
    nxt = (
        _encode_cursor(page[-1]["occurred_at"], page[-1]["position"]) if len(rows) > limit else None
    )
    return {"items": [_record_json(r) for r in page], "next_cursor": nxt}


@router.get("/records/{position}")
async def get_record(request: Request, position: int, principal: Principal = READ) -> Any:
    async with request.app.state.pool.acquire() as conn:
        row = await store.record_at(conn, position)
    if row is None or row["tenant"] != principal.tenant:
        raise ProblemError(404, "record-not-found", "No such record", f"No record at {position}.")
    return _record_json(row)


@router.get("/verify")
async def verify(request: Request, principal: Principal = READ) -> dict[str, Any]:
    """Recompute the whole log and check every checkpoint (see verification.py)."""
    async with request.app.state.pool.acquire() as conn:
        report = await verify_log(conn, request.app.state.keyring)
    return report.as_json()


@router.get("/checkpoints/latest")
async def latest_checkpoint(request: Request, principal: Principal = READ) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn:
        cp = await store.latest_checkpoint(conn)
    if cp is None:
        raise ProblemError(404, "no-checkpoint", "No checkpoint yet", "No checkpoint was signed.")
    return cp.checkpoint.as_json()


@router.post("/checkpoints", status_code=201)
async def take_checkpoint(request: Request, principal: Principal = ADMIN) -> dict[str, Any]:
    try:
        cp = await handlers.take_checkpoint(
            request.app.state.pool,
            request.app.state.keyring,
            announce=request.app.state.announce,
        )
    except handlers.LogCorrupted as e:
        raise ProblemError(
            409, "log-corrupted", "The log does not verify", str(e), position=e.position
        ) from None
    return cp.as_json()


async def _checkpoint(conn: Any, tree_size: int | None) -> store.StoredCheckpoint:
    cp = await (
        store.checkpoint_at(conn, tree_size) if tree_size else store.latest_checkpoint(conn)
    )
    if cp is None:
        raise ProblemError(
            404,
            "checkpoint-not-found",
            "No such checkpoint",
            f"No checkpoint at tree size {tree_size}." if tree_size else "No checkpoint yet.",
        )
    return cp


@router.get("/proofs/inclusion")
async def inclusion(
    request: Request,
    position: Annotated[int, Query(ge=0)],
    tree_size: Annotated[int | None, Query(ge=1)] = None,
    principal: Principal = READ,
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of one record against a signed checkpoint."""
    async with request.app.state.pool.acquire() as conn:
        cp = await _checkpoint(conn, tree_size)
        row = await store.record_at(conn, position)
        if row is None or row["tenant"] != principal.tenant:
            raise ProblemError(
                404, "record-not-found", "No such record", f"No record at {position}."
            )
        if position >= cp.checkpoint.tree_size:
            raise ProblemError(
                409,
                "not-yet-checkpointed",
                "Record not covered by the checkpoint",
                f"Position {position} is beyond tree size {cp.checkpoint.tree_size}.",
            )
        try:
            proof = await handlers.prove_inclusion(conn, position, cp.checkpoint)
        except Pruned as e:
            raise ProblemError(410, "pruned", "Pruned by retention", str(e)) from None
    return {
        "position": position,
        "tree_size": cp.checkpoint.tree_size,
        "leaf_hash": proof.leaf_hash.hex(),
        "audit_path": [h.hex() for h in proof.path],
        "checkpoint": cp.checkpoint.as_json(),
    }


@router.get("/proofs/consistency")
async def consistency(
    request: Request,
    first: Annotated[int, Query(ge=1)],
    second: Annotated[int, Query(ge=1)],
    principal: Principal = READ,
) -> dict[str, Any]:
    """RFC 9162 consistency proof between two signed checkpoints."""
    if first > second:
        raise ProblemError(
            422,
            "validation-error",
            "Request validation failed",
            "Field 'first' must not exceed 'second'.",
            errors=[{"field": "first", "message": "must not exceed second", "type": "range"}],
        )
    async with request.app.state.pool.acquire() as conn:
        a, b = await _checkpoint(conn, first), await _checkpoint(conn, second)
        try:
            proof = await handlers.prove_consistency(conn, first, second)
        except Pruned as e:
            raise ProblemError(410, "pruned", "Pruned by retention", str(e)) from None
    return {
        "first": a.checkpoint.as_json(),
        "second": b.checkpoint.as_json(),
        "consistency_path": [h.hex() for h in proof],
    }


@router.get("/keys")
async def keys(request: Request) -> dict[str, Any]:
    """Public: the Ed25519 keys checkpoints are signed with (RFC 8037 JWK Set)."""
    jwks: dict[str, Any] = request.app.state.keyring.public_jwks()
    return jwks
