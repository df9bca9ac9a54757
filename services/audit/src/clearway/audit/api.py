"""HTTP API: search, verification, checkpoints and proofs (scope ``audit:read``).

``GET /v1/audit/keys`` is public on purpose: like a JWKS, the checkpoint
verification keys are what outside verifiers need before they hold a token.
Taking a checkpoint on demand needs ``audit:admin``; platform operators search any
tenant's records with ``platform:audit``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request, Response, Security
from pydantic import BaseModel, ConfigDict

from clearway.audit import handlers, jobs
from clearway.audit.api_docs import (
    AuditRecord,
    AuditRecordList,
    Checkpoint,
    CheckpointKeys,
    ConsistencyProof,
    InclusionProof,
    VerificationJob,
    VerificationReport,
)
from clearway.audit.merkle import Pruned
from clearway.shared.auth import Principal, require_platform_scope, require_scope
from clearway.shared.http import (
    PageRequest,
    ProblemError,
    documented,
    invalid_field,
    page_request,
)
from clearway.shared.http.params import Rfc3339

router = APIRouter(prefix="/v1/audit")
READ = Security(require_scope("audit:read"))
ADMIN = Security(require_scope("audit:admin"))
OPERATOR = Security(require_platform_scope("platform:audit"))


def _record_json(row: Any) -> dict[str, Any]:
    doc = json.loads(row["content"])
    doc["position"] = row["position"]
    doc["leaf_hash"] = bytes(row["leaf_hash"]).hex()
    return doc


async def _conn(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; a handler's ``NotFound`` becomes the one 404 here."""
    async with request.app.state.pool.acquire() as conn:
        try:
            yield conn
        except handlers.NotFound as e:
            raise ProblemError(404, "not-found", "Not found", str(e)) from None


CONN = Depends(_conn)

# Problems particular to these routes (the kit declares the common ones, docs/design.md §10).
RUNNING = {"description": "A verification of this tenant is running (`verification-running`)"}
THROTTLED = {"description": "Too many verifications; see `Retry-After`"}
NO_VERIFICATION = {"description": "No verification has finished yet"}
NO_CHECKPOINT = {"description": "No signed checkpoint (of this tree size) yet"}
CORRUPTED = {"description": "The log does not verify (`log-corrupted`)"}
PROOF_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such record for the tenant, or no checkpoint of that size"},
    409: {"description": "Not yet covered by a checkpoint, or the log does not verify"},
    410: {"description": "Pruned by retention (`pruned`)"},
}


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise invalid_field(
            ("query", name), "needs a time zone (RFC 3339, e.g. 2026-01-01T00:00:00Z)", "timezone"
        )
    return value


Text = Annotated[str | None, Query(min_length=1, max_length=200)]
#: a W3C trace id (Trace Context §3.2.2.3: 32 lowercase hex digits)
TraceId = Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")]
#: log positions and tree sizes are Postgres bigints: a larger number is a 422, not a 500
BIGINT_MAX = 2**63 - 1


Timestamp = Annotated[Rfc3339 | None, Query()]


@router.get(
    "/records",
    response_model=None,
    responses=documented(AuditRecordList, "A page of records."),
)
async def search_records(
    principal: Principal = READ,
    correlation_id: Text = None,
    actor: Text = None,
    resource: Text = None,
    action: Text = None,
    trace_id: TraceId = None,
    since: Timestamp = None,
    until: Timestamp = None,
    page: PageRequest = Depends(page_request),
    conn: asyncpg.Connection = CONN,
) -> dict[str, Any]:
    """Records of the caller's tenant in time order; ``next_cursor`` pages on."""
    filters = _filters(correlation_id, actor, resource, action, trace_id, since, until)
    return await _search(conn, principal.tenant, filters, page)


@router.get(
    "/tenants/{tenant}/records",
    response_model=None,
    responses=documented(AuditRecordList, "A page of the tenant's records."),
)
async def search_tenant_records(
    tenant: Annotated[str, Path(min_length=1, max_length=200)],
    principal: Principal = OPERATOR,
    correlation_id: Text = None,
    actor: Text = None,
    resource: Text = None,
    action: Text = None,
    trace_id: TraceId = None,
    since: Timestamp = None,
    until: Timestamp = None,
    page: PageRequest = Depends(page_request),
    conn: asyncpg.Connection = CONN,
) -> dict[str, Any]:
    """Platform operators: any tenant's records, searched like the tenant's own view
    (the breach drill verifies its steps here, docs/design.md §9)."""
    filters = _filters(correlation_id, actor, resource, action, trace_id, since, until)
    return await _search(conn, tenant, filters, page)


def _filters(
    correlation_id: str | None,
    actor: str | None,
    resource: str | None,
    action: str | None,
    trace_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    since, until = _aware("since", since), _aware("until", until)
    if since and until and since >= until:
        raise invalid_field(("query", "until"), "must be later than since", "range")
    return {
        "correlation_id": correlation_id,
        "actor": actor,
        "resource": resource,
        "action": action,
        "trace_id": trace_id,
        "since": since,
        "until": until,
    }


async def _search(
    conn: asyncpg.Connection, tenant: str | None, filters: dict[str, Any], page: PageRequest
) -> dict[str, Any]:
    rows = await handlers.search_records(
        conn,
        tenant,
        filters,
        after=page.after(tenant or "", filters),
        limit=page.fetch_limit,
    )
    return page.page(
        rows,
        tenant=tenant or "",
        filters=filters,
        position=lambda r: (r["occurred_at"], r["position"]),
        render=_record_json,
    )


@router.get(
    "/records/{position}",
    response_model=None,
    responses=documented(AuditRecord, "The record."),
)
async def get_record(
    position: Annotated[int, Path(ge=0, le=BIGINT_MAX)],
    principal: Principal = READ,
    conn: asyncpg.Connection = CONN,
) -> Any:
    return _record_json(await handlers.get_record(conn, principal.tenant, position))


class VerificationRequest(BaseModel):
    model_config = ConfigDict(
        strict=True,  # ``"no"`` or ``0`` is not a ``full`` flag
        json_schema_extra={"examples": [{"full": False}]},
    )

    full: bool = False
    """Hash every record again, not only those after the last verified checkpoint."""


@router.post(
    "/verifications",
    status_code=202,
    response_model=None,
    responses={
        **documented(VerificationJob, "Queued; follow it at `Location`.", 202),
        409: RUNNING,
        429: THROTTLED,
    },
)
async def start_verification(
    request: Request,
    response: Response,
    body: VerificationRequest | None = None,
    principal: Principal = READ,
) -> dict[str, Any]:
    """Start a verification job of the log (one at a time per tenant, rate-limited)."""
    full = body is not None and body.full
    if full and "audit:admin" not in principal.scopes:
        raise ProblemError(
            403, "insufficient-scope", "Full runs need audit:admin", "Ask for an incremental run."
        )
    runner: jobs.VerificationRunner = request.app.state.verifications
    try:
        job = await runner.start(principal.tenant or "", principal.subject, full=full)
    except jobs.VerificationBusy as e:
        raise ProblemError(
            409,
            "verification-running",
            "A verification is already running",
            f"Verification {e.job_id} has not finished; follow it instead.",
            headers={"Location": f"{router.prefix}/verifications/{e.job_id}"},
            job_id=e.job_id,
        ) from None
    except jobs.VerificationThrottled as e:
        raise ProblemError(
            429,
            "too-many-verifications",
            "Too many verification requests",
            f"Try again in {e.retry_after} s.",
            headers={"Retry-After": str(e.retry_after)},
        ) from None
    response.headers["Location"] = f"{router.prefix}/verifications/{job['id']}"
    return job


@router.get(
    "/verifications/{job_id}",
    response_model=None,
    responses=documented(VerificationJob, "The job."),
)
async def get_verification(
    job_id: Annotated[str, Path(max_length=64)], request: Request, principal: Principal = READ
) -> dict[str, Any]:
    """A verification job's state, progress and, once done, its report."""
    try:
        return await request.app.state.verifications.get(principal.tenant or "", job_id)
    except jobs.JobNotFound:
        raise ProblemError(404, "not-found", "Not found", "No such verification.") from None


#: RFC 9745 §2.1: since when ``GET /verify`` is deprecated (2026-11-01, when verification
#: became a job), a structured-field Date
VERIFY_DEPRECATED = "@1793491200"


@router.get(
    "/verify",
    deprecated=True,
    response_model=None,
    responses={
        **documented(VerificationReport, "The latest finished verification's report."),
        404: NO_VERIFICATION,
    },
)
async def verify(request: Request, response: Response, principal: Principal = READ) -> Any:
    """Deprecated: the latest finished verification job of the caller's tenant (it no
    longer verifies inline; start one with ``POST /v1/audit/verifications``)."""
    response.headers["Deprecation"] = VERIFY_DEPRECATED
    response.headers["Link"] = f'<{router.prefix}/verifications>; rel="successor-version"'
    try:
        job = await request.app.state.verifications.latest(principal.tenant or "")
    except jobs.JobNotFound:
        raise ProblemError(
            404,
            "not-found",
            "No verification yet",
            "Start one with POST /v1/audit/verifications.",
            headers={"Deprecation": VERIFY_DEPRECATED},
        ) from None
    return job["result"]


@router.get(
    "/checkpoints/latest",
    response_model=None,
    responses={**documented(Checkpoint, "The latest signed checkpoint."), 404: NO_CHECKPOINT},
)
async def latest_checkpoint(
    principal: Principal = READ, conn: asyncpg.Connection = CONN
) -> dict[str, Any]:
    return (await handlers.get_checkpoint(conn)).checkpoint.as_json()


@router.post(
    "/checkpoints",
    status_code=201,
    response_model=None,
    responses={**documented(Checkpoint, "Signed.", 201), 409: CORRUPTED},
)
async def take_checkpoint(request: Request, principal: Principal = ADMIN) -> dict[str, Any]:
    try:
        cp = await handlers.take_checkpoint(
            request.app.state.signer_pool,
            request.app.state.keyring,
            announce=request.app.state.announce,
        )
    except handlers.LogCorrupted as e:
        raise _corrupted(e) from None
    return cp.as_json()


def _corrupted(e: handlers.LogCorrupted) -> ProblemError:
    return ProblemError(
        409, "log-corrupted", "The log does not verify", str(e), position=e.position
    )


@router.get(
    "/proofs/inclusion",
    response_model=None,
    responses={**documented(InclusionProof, "The proof."), **PROOF_PROBLEMS},
)
async def inclusion(
    position: Annotated[int, Query(ge=0, le=BIGINT_MAX)],
    tree_size: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    principal: Principal = READ,
    conn: asyncpg.Connection = CONN,
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of one of the caller's tenant's records against a signed
    checkpoint of the one global log: the audit path holds hashes only, never another
    tenant's record."""
    cp = await handlers.get_checkpoint(conn, tree_size)
    record = await handlers.get_record(conn, principal.tenant, position)
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
    except handlers.LogCorrupted as e:
        raise _corrupted(e) from None
    return {
        "position": position,
        "tree_size": cp.checkpoint.tree_size,
        "leaf": record["content"],  # the exact bytes hashed (UTF-8): check it yourself
        "leaf_hash": proof.leaf_hash.hex(),
        "audit_path": [h.hex() for h in proof.path],
        "checkpoint": cp.checkpoint.as_json(),
    }


@router.get(
    "/proofs/consistency",
    response_model=None,
    responses={**documented(ConsistencyProof, "The proof."), **PROOF_PROBLEMS},
)
async def consistency(
    first: Annotated[int, Query(ge=1, le=BIGINT_MAX)],
    second: Annotated[int, Query(ge=1, le=BIGINT_MAX)],
    principal: Principal = READ,
    conn: asyncpg.Connection = CONN,
) -> dict[str, Any]:
    """RFC 9162 consistency proof between two signed checkpoints."""
    if first > second:
        raise invalid_field(("query", "first"), "must not exceed second", "range")
    a, b = await handlers.get_checkpoint(conn, first), await handlers.get_checkpoint(conn, second)
    try:
        proof = await handlers.prove_consistency(conn, a.checkpoint, b.checkpoint)
    except Pruned as e:
        raise ProblemError(410, "pruned", "Pruned by retention", str(e)) from None
    except handlers.LogCorrupted as e:
        raise _corrupted(e) from None
    return {
        "first": a.checkpoint.as_json(),
        "second": b.checkpoint.as_json(),
        "consistency_path": [h.hex() for h in proof],
    }


@router.get(
    "/keys",
    response_model=None,
    responses=documented(CheckpointKeys, "The checkpoint keys."),
)
async def keys(request: Request) -> dict[str, Any]:
    """Public: the Ed25519 keys checkpoints are signed with (RFC 8037 JWK Set)."""
    jwks: dict[str, Any] = request.app.state.keyring.public_jwks()
    return jwks
