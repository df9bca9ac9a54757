"""The rail's HTTP API. It stands in for an external bank; like a bank's API it
accepts only authenticated callers: every route needs a short-lived service token
(RFC 9068, audience ``clearway-rail``) from the consent service, with ``rail:charges``
to charge, ``rail:settlements`` for the settlement report and ``rail:sandbox`` for
the sandbox tools (faults, forgetting a charge) (docs/design.md §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, Security
from pydantic import BaseModel, ConfigDict, Field

from clearway.rail import handlers
from clearway.rail.domain import FaultPlan, InvalidCharge, card_used
from clearway.rail.faults import FaultState
from clearway.shared.auth import require_scope
from clearway.shared.http import ProblemError, accepts_card_numbers, documented, invalid_field

router = APIRouter(prefix="/v1")
CHARGES = Security(require_scope("rail:charges"))
SETTLEMENTS = Security(require_scope("rail:settlements"))
SANDBOX = Security(require_scope("rail:sandbox"))
CHARGE_EXAMPLE = {
    "reference": "CWN5QXHJ2M4RZKD7W3TB6YPAE2LFGSUC4V",
    "amount": 12500,
    "currency": "EUR",
    "source": "acct_1JqB3cPayer",
    "destination": "acct_9xZpQPayee",
}
CARD_EXAMPLE = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "brand": "visa"}


class CardIn(BaseModel):
    """The card of a card charge, as the payer's bank would receive it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CARD_EXAMPLE]})
    number: str = Field(pattern=r"^[0-9]{13,19}$")
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=2000, le=2099)
    brand: str = Field(pattern=r"^[a-z]{2,20}$")


class ChargeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CHARGE_EXAMPLE]})
    reference: str = Field(min_length=1, max_length=35)
    amount: int = Field(gt=0, strict=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    source: str = Field(min_length=1, max_length=80)
    destination: str = Field(min_length=1, max_length=80)
    card: CardIn | None = None
    """A card charge: ``source`` is then the payer's card token; the rail keeps only the
    card's brand and last four digits."""


class FaultRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # ``false`` is not a rate
        json_schema_extra={"examples": [{"latency_ms": 200, "error_rate": 0.1}]},
    )
    latency_ms: int = 0
    error_rate: float = 0.0
    lose_response_rate: float = 0.0
    crash_rate: float = 0.0


class CardKept(BaseModel):
    brand: str
    last4: str


class Charge(BaseModel):
    """A charge (``store.charge_json``): settled at once unless the sandbox declines it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **CHARGE_EXAMPLE,
                    "charge_id": "ch_7e6d5c4b3a291807f6e5d4c3b2a19087",
                    "status": "settled",
                    "created_at": "2026-12-03T09:15:02.004321+00:00",
                    "card": None,
                }
            ]
        }
    )
    reference: str
    charge_id: str
    amount: int
    currency: str
    source: str
    destination: str
    status: str = Field(description="`settled` or `declined`.")
    created_at: datetime
    card: CardKept | None = Field(description="What the rail keeps of a card charge's card.")


class SettlementReport(BaseModel):
    """Settled charges by reference (a bank's settlement file, not the list shape)."""

    data: list[Charge]
    next_after: str | None = Field(description="Pass as `after` for more; null at the end.")


class Faults(BaseModel):
    """The fault plan in force and how many faults of each kind were injected."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "plan": {
                        "latency_ms": 200,
                        "error_rate": 0.1,
                        "lose_response_rate": 0.0,
                        "crash_rate": 0.0,
                    },
                    "injected": {"none": 17, "error": 2, "lose_response": 0, "crash": 0},
                }
            ]
        }
    )
    plan: FaultRequest
    injected: dict[str, int]


def _invalid(e: InvalidCharge) -> ProblemError:
    return invalid_field(e.field, e.reason)


@router.post(
    "/charges",
    status_code=201,
    dependencies=[CHARGES],
    response_model=None,
    responses={
        201: {"model": Charge, "description": "Charged."},
        200: {"model": Charge, "description": "The charge already made under this reference"},
    },
    openapi_extra=accepts_card_numbers("card.number"),
)
async def create_charge(body: ChargeRequest, request: Request, response: Response) -> dict:
    """Charge once per reference: a repeated reference answers 200 with the existing charge."""
    try:
        card = card_used(body.card.number, body.card.brand) if body.card else None
        result, created = await handlers.create_charge(
            request.app.state.pool,
            body.reference,
            body.amount,
            body.currency,
            body.source,
            body.destination,
            card,
        )
    except InvalidCharge as e:
        raise _invalid(e) from None
    if not created:
        response.status_code = 200
    return result


@router.get(
    "/charges/{reference}",
    dependencies=[CHARGES],
    response_model=None,
    responses=documented(Charge, "The charge."),
)
async def get_charge(reference: str, request: Request) -> dict:
    found = await handlers.get_charge(request.app.state.pool, reference)
    if found is None:
        raise ProblemError(
            404, "charge-not-found", "Charge not found", "No charge has this reference."
        )
    return found


@router.delete("/charges/{reference}", status_code=204, dependencies=[SANDBOX])
async def forget_charge(reference: str, request: Request) -> Response:
    """Sandbox tool: forget a charge, so reconciliation has something missing to find."""
    if not await handlers.forget_charge(request.app.state.pool, reference):
        raise ProblemError(
            404, "charge-not-found", "Charge not found", "No charge has this reference."
        )
    return Response(status_code=204)


@router.get(
    "/settlement-report",
    dependencies=[SETTLEMENTS],
    response_model=None,
    responses=documented(SettlementReport, "Settled charges."),
)
async def settlement_report(
    request: Request,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """Settled charges by reference; follow ``next_after`` until it is null.

    Deliberately not the Clearway list shape: this imitates an external bank's
    settlement file, which the transfer service's reconciliation reads as a bank's.
    """
    items = await handlers.settlement_report(request.app.state.pool, after, limit)
    next_after = items[-1]["reference"] if len(items) == limit else None
    return {"data": items, "next_after": next_after}


@router.put(
    "/faults", dependencies=[SANDBOX], response_model=None, responses=documented(Faults, "Set.")
)
async def set_faults(body: FaultRequest, request: Request) -> dict[str, Any]:
    """Switch fault injection (tests call this per test)."""
    try:
        plan = FaultPlan(**body.model_dump())
    except InvalidCharge as e:
        raise _invalid(e) from None
    state: FaultState = request.app.state.faults
    state.plan = plan
    return {"plan": body.model_dump(), "injected": state.injected}


@router.get(
    "/faults",
    dependencies=[SANDBOX],
    response_model=None,
    responses=documented(Faults, "The plan in force."),
)
async def get_faults(request: Request) -> dict[str, Any]:
    state: FaultState = request.app.state.faults
    return {"plan": vars(state.plan), "injected": state.injected}
