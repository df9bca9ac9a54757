"""HTTP entrypoints: parse, authorise, call one handler, map the result."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request, Security
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from clearway.shared.actor import Actor
from clearway.shared.auth import Principal, require_scope
from clearway.shared.http import (
    FieldError,
    Money,
    PageRequest,
    ProblemError,
    ValidationProblem,
    invalid_field,
    page_of,
    page_request,
)
from clearway.transfer.domain import (
    AUTHORISED,
    ConsentState,
    InvalidField,
    InvalidTransition,
    Refused,
    Status,
    TransferRequest,
)
from clearway.transfer.handlers import (
    Core,
    InitiateTransfer,
    KeyInFlight,
    KeyReused,
    Outcome,
    TransferNotFound,
    cancel_transfer,
    get_transfer,
    initiate_transfer,
)
from clearway.transfer.handlers import (
    list_transfers as transfer_page,  # the route keeps the name (OpenAPI operationId)
)
from clearway.transfer.vault_client import UnknownCardToken

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])
ACCOUNT = r"^acct_[A-Za-z0-9]{1,64}$"
ACCOUNT_OR_TOKEN = r"^(acct|tok)_[A-Za-z0-9]{1,64}$"  # noqa: S105 (a card token id pattern)
KEY = r"^[\x21-\x7e]{1,255}$"

EXAMPLE = {
    "amount": 12500,
    "currency": "EUR",
    "source": "acct_1JqB3cPayer",
    "destination": "acct_9xZpQPayee",
    "description": "Invoice 2026-1142",
    "metadata": {"order_id": "ord_4471"},
}


class TransferIn(BaseModel):
    """A transfer request; the source may be a card *token* (``tok_…``), never a card
    (the kit's edge refuses card numbers anywhere in the request, docs/design.md §9)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})
    amount: StrictInt = Field(gt=0, description="Positive integer, minor units.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")
    source: str = Field(pattern=ACCOUNT_OR_TOKEN, description="Account id or card token.")
    destination: str = Field(pattern=ACCOUNT, description="Account id.")
    description: str | None = Field(default=None, max_length=140)
    metadata: dict[str, Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict, max_length=20
    )


# The shape of ``handlers.transfer_view`` at the current dated version, for the document
# only (routes answer the view as it is); the document of each older version is derived
# from it by the version steps' ``downgrade_schema`` (docs/design.md §10).
class Transfer(BaseModel):
    """A transfer: money from `source` to `destination` under a stable `reference`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "tr_019a2b3c4d5e8f1e2d3c4b5a69788796a5b4",
                    "reference": "CWN5QXHJ2M4RZKD7W3TB6YPAE2LFGSUC4V",
                    "status": "pending",
                    "amount": {"value": "125.00", "currency": "EUR"},
                    "source": EXAMPLE["source"],
                    "destination": EXAMPLE["destination"],
                    "description": EXAMPLE["description"],
                    "metadata": EXAMPLE["metadata"],
                    "failure_reason": None,
                    "created_at": "2026-12-03T09:15:00.123456Z",
                }
            ]
        }
    )
    id: str
    reference: str = Field(description="Stable per Idempotency-Key; the rail's end-to-end id.")
    status: Status
    amount: Money
    source: str
    destination: str
    description: str | None
    metadata: dict[str, str]
    failure_reason: str | None = Field(description="Why the rail refused it, once failed.")
    created_at: datetime


TransferList = page_of(Transfer, "TransferList")
# Routes answer ``transfer_view`` dictionaries as they are (``response_model=None``).
ONE = {"model": Transfer, "description": "The transfer."}
PAGE = {"model": TransferList, "description": "A page of transfers."}


def _core(request: Request) -> Core:
    return request.app.state.core


def _tenant(principal: Principal) -> str:
    if not principal.tenant:
        raise ProblemError(
            403, "tenant-required", "Tenant required", "The access token carries no tenant."
        )
    return principal.tenant


async def idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> str:
    if key is None:
        raise ProblemError(
            400,
            "idempotency-key-missing",
            "Idempotency-Key required",
            "POST /v1/transfers needs an Idempotency-Key header.",
        )
    if not re.fullmatch(KEY, key):
        raise ProblemError(
            400,
            "idempotency-key-invalid",
            "Invalid Idempotency-Key",
            "The Idempotency-Key must be 1-255 visible ASCII characters.",
        )
    return key


def _answer(outcome: Outcome) -> Response:
    """The stored bytes as they are: a replay is byte for byte the first answer."""
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return Response(outcome.content, outcome.status_code, headers, media_type="application/json")


@router.post(
    "",
    status_code=201,
    responses={
        201: {"model": Transfer, "description": "Created, or the replay of the first answer."},
        409: {"description": "In flight"},
        422: {"description": "Invalid or reused"},
    },
)
async def create_transfer(
    request: Request,
    principal: Annotated[Principal, Security(require_scope("payments:initiate"))],
    key: Annotated[str, Depends(idempotency_key)],
    body: Annotated[TransferIn, Body(openapi_examples={"sepa": {"value": EXAMPLE}})],
) -> Response:
    """Initiate a transfer, once per ``Idempotency-Key`` (per tenant and client)."""
    tenant = _tenant(principal)
    try:
        transfer = TransferRequest(**body.model_dump())
    except InvalidField as e:
        raise invalid_field(e.field, e.reason) from None
    cmd = InitiateTransfer(
        tenant,
        principal.client_id,
        key,
        transfer,
        Actor.from_principal(principal),
        request.state.correlation_id,
        consent=_bound_consent(principal),
    )
    try:
        outcome = await initiate_transfer(_core(request), cmd)
    except Refused as e:
        raise refusal(e) from None
    except KeyInFlight as e:
        raise ProblemError(
            409,
            "request-in-flight",
            "Request in flight",
            "A request with this Idempotency-Key is still being processed; retry later.",
            headers={"Retry-After": str(e.retry_after)},
        ) from None
    except UnknownCardToken:
        raise invalid_field("source", "no card with this token exists for your tenant") from None
    except KeyReused:
        raise ValidationProblem(
            FieldError("header.idempotency-key", "reused", "reuse"),
            type_slug="idempotency-key-reused",
            title="Idempotency-Key reused",
            detail="This Idempotency-Key was already used with a different request.",
        ) from None
    return _answer(outcome)


def _bound_consent(principal: Principal) -> ConsentState | None:
    """The consent as the token states it (RFC 9396 ``authorization_details``): the
    issuer mints such a token only from an ``Authorised`` consent, never past its
    expiry (docs/design.md §7)."""
    if principal.consent_id is None:
        return None
    return ConsentState(
        principal.consent_id,
        principal.tenant or "",
        principal.subject,
        AUTHORISED,
        principal.authorization_details,
        principal.expires_at,
    )


def refusal(e: Refused) -> ProblemError:
    """403 problem naming why and, where one is at fault, the field (RFC 9457)."""
    titles = {
        "consent-consumed": "Consent already used",
        "consent-mismatch": "Transfer does not match the consent",
        "consent-not-authorised": "Consent is not authorised",
        "consent-required": "Consent required",
        "source-not-permitted": "Source account not permitted",
    }
    extensions: dict[str, Any] = {}
    detail = e.reason
    if e.field is not None:
        extensions["errors"] = [{"field": e.field, "message": e.reason, "type": e.slug}]
        detail = f"Field '{e.field}': {e.reason}."
    if e.status is not None:
        extensions["consent_status"] = e.status
    return ProblemError(403, e.slug, titles.get(e.slug, "Forbidden"), detail, **extensions)


@router.get("/{transfer_id}", response_model=None, responses={200: ONE})
async def read_transfer(
    transfer_id: str,
    request: Request,
    principal: Annotated[Principal, Security(require_scope("payments:read"))],
) -> dict[str, Any]:
    try:
        return await get_transfer(_core(request), _tenant(principal), transfer_id)
    except TransferNotFound:
        raise _not_found() from None


@router.get("", response_model=None, responses={200: PAGE})
async def list_transfers(
    request: Request,
    principal: Annotated[Principal, Security(require_scope("payments:read"))],
    page: Annotated[PageRequest, Depends(page_request)],
    reference: str | None = None,
) -> dict[str, Any]:
    """Transfers of the caller's tenant, oldest first; pass ``next_cursor`` as
    ``cursor`` for the next page."""
    return await transfer_page(_core(request), _tenant(principal), reference, page)


@router.post("/{transfer_id}/cancel", response_model=None, responses={200: ONE})
async def cancel(
    transfer_id: str,
    request: Request,
    principal: Annotated[Principal, Security(require_scope("payments:cancel"))],
) -> dict[str, Any]:
    """Cancel a transfer that was not submitted yet; repeating it answers the same."""
    try:
        return await cancel_transfer(
            _core(request), _tenant(principal), transfer_id, Actor.from_principal(principal)
        )
    except TransferNotFound:
        raise _not_found() from None
    except InvalidTransition as e:
        raise ProblemError(
            409,
            "transfer-not-cancelable",
            "Transfer cannot be canceled",
            f"The transfer is {e.current}; only pending transfers can be canceled.",
        ) from None


def _not_found() -> ProblemError:
    return ProblemError(
        404,
        "transfer-not-found",
        "Transfer not found",
        "No transfer with this id exists for your tenant.",
    )
