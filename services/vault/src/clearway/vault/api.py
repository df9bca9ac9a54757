"""The vault's HTTP API: parse, authorise, call one handler, map the result.

Partners tokenize with ``cards:tokenize`` (their token's tenant owns the card). The
``/internal`` routes serve the platform's own service clients: ``cards:verify`` tells
the transfer service whether a token exists for a tenant, ``cards:detokenize`` (held
by the transfer executor's client alone) hands out the number for the submission to
the rail, and every use or refused attempt is an audit event (docs/design.md §9).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from clearway.shared.actor import Actor
from clearway.shared.auth import Principal, require_scope
from clearway.shared.auth.fastapi import ScopeRequirement
from clearway.shared.auth.principal import InvalidToken
from clearway.shared.http import ProblemError, accepts_card_numbers, documented, invalid_field
from clearway.shared.residency import Residency
from clearway.vault import handlers
from clearway.vault.domain import TOKEN, InvalidCard
from clearway.vault.handlers import CardNotFound, TenantShredded, Vault

# Every route checks the tenant's home region first (docs/design.md §9).
router = APIRouter(
    tags=["cards"],
    responses={421: {"description": "The tenant's cards live in another region (`region`)"}},
)
TENANT = r"^[A-Za-z0-9_\-]{1,64}$"
TokenPath = Annotated[str, Path(pattern=TOKEN.pattern)]
TenantPath = Annotated[str, Path(pattern=TENANT)]
_bearer = HTTPBearer(auto_error=False)
CARD_TOKEN = "tok_QxWvTbNmKpLrSzYaHcJdEfGu"  # noqa: S105 (an example card token)
CARD_EXAMPLE = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030}


class Card(BaseModel):
    """A card as the API shows it (``handlers.card_view``): never the number."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": CARD_TOKEN,
                    "brand": "visa",
                    "bin": "42424242",
                    "last4": "4242",
                    "exp_month": 12,
                    "exp_year": 2030,
                    "fingerprint": "fp_gewkpRmdywciaY0r-j7RNdmK",
                    "created_at": "2026-12-03T09:15:00.123456+00:00",
                }
            ]
        }
    )
    id: str = Field(description="The card token (`tok_`).")
    brand: str
    bin: str = Field(description="The issuer identification number (leading digits).")
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str = Field(description="The same card gives the same fingerprint per tenant.")
    created_at: datetime


class CardNumber(BaseModel):
    """A detokenized card, for the rail submission it was asked for."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": CARD_TOKEN,
                    **CARD_EXAMPLE,
                    "brand": "visa",
                    "holder_name": "Ada Lovelace",
                }
            ]
        }
    )
    id: str
    number: str
    exp_month: int
    exp_year: int
    brand: str
    holder_name: str | None


class CardIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**CARD_EXAMPLE, "holder_name": "Ada Lovelace"}]},
    )
    number: str = Field(min_length=1, max_length=32, description="Card number (PAN).")
    exp_month: StrictInt = Field(description="Expiry month, 1-12.")
    exp_year: StrictInt = Field(description="Expiry year, four digits.")
    holder_name: str | None = Field(default=None, max_length=100)


class DetokenizeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"purpose": "rail_submission", "reference": "CWN5QXHJ2M4RZKD7W3TB6YPAE2LFGSUC4V"}
            ]
        },
    )
    purpose: Literal["rail_submission"]
    reference: str = Field(min_length=1, max_length=35, description="The payment's reference.")


class AuditedScope(ScopeRequirement):
    """``require_scope`` whose 403 is also recorded in the audit trail: a caller
    without ``cards:detokenize`` asking for a card number is worth knowing about."""

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Principal:
        try:
            return await super().__call__(request, credentials)
        except HTTPException as e:
            if e.status_code == 403 and credentials is not None:
                await _record_forbidden(request, credentials.credentials)
            raise


async def _record_forbidden(request: Request, bearer: str) -> None:
    try:
        principal = await request.app.state.token_verifier.verify(bearer)
    except InvalidToken:
        return
    params = request.path_params
    if not _residency(request).serves(str(params.get("tenant"))):
        return  # another region's tenant: nothing is written here (docs/design.md §9)
    token = params.get("token") if TOKEN.fullmatch(str(params.get("token", ""))) else None
    await handlers.record_refusal(
        _vault(request),
        params.get("tenant"),
        token,
        "insufficient_scope",
        None,
        Actor.from_principal(principal),
    )


def _vault(request: Request) -> Vault:
    return request.app.state.vault


def _residency(request: Request) -> Residency:
    return request.app.state.residency


def _tenant(request: Request, principal: Principal) -> str:
    """The caller's tenant, served by this region (else ``WrongRegion``: a 421)."""
    if not principal.tenant:
        raise ProblemError(
            403, "tenant-required", "Tenant required", "The access token carries no tenant."
        )
    _residency(request).check(principal.tenant)
    return principal.tenant


def _in_region(request: Request, tenant: str) -> str:
    """``tenant`` of an internal route, served by this region (else a 421), checked
    before anything is read: its cards live in its region's vault (docs/design.md §9)."""
    _residency(request).check(tenant)
    return tenant


def _offboarded() -> ProblemError:
    # the tenant's keys were destroyed (docs/design.md §9): nothing is sealed or opened
    return ProblemError(
        403,
        "tenant-offboarded",
        "Tenant offboarded",
        "This tenant's card data was destroyed (crypto-shredded); no card can be used.",
    )


def _not_found() -> ProblemError:
    return ProblemError(
        404, "card-not-found", "Card not found", "No card with this token exists for the tenant."
    )


TOKENIZE = Security(require_scope("cards:tokenize"))
VERIFY = Security(require_scope("cards:verify"))
DETOKENIZE = Security(AuditedScope(frozenset({"cards:detokenize"})))


@router.post(
    "/v1/cards",
    status_code=201,
    openapi_extra=accepts_card_numbers("number"),
    response_model=None,
    responses={
        **documented(Card, "Tokenized.", 201),
        **documented(Card, "The same card was tokenized before: its token."),
    },
)
async def create_card(
    body: CardIn,
    request: Request,
    response: Response,
    principal: Annotated[Principal, TOKENIZE],
) -> dict[str, Any]:
    """Tokenize a card for the caller's tenant; the same card again answers 200 with
    its existing token."""
    try:
        card, created = await handlers.tokenize_card(
            _vault(request),
            _tenant(request, principal),
            body.number,
            body.exp_month,
            body.exp_year,
            body.holder_name,
            Actor.from_principal(principal),
        )
    except InvalidCard as e:
        raise invalid_field(e.field, e.reason, "card") from None
    except TenantShredded:
        raise _offboarded() from None
    if not created:
        response.status_code = 200
    return card


@router.get("/v1/cards/{token}", response_model=None, responses=documented(Card, "The card."))
async def read_card(
    token: TokenPath, request: Request, principal: Annotated[Principal, TOKENIZE]
) -> dict[str, Any]:
    """The caller's tenant's card (brand, BIN, last four, expiry; never the number)."""
    try:
        return await handlers.find_card(_vault(request), _tenant(request, principal), token)
    except CardNotFound:
        raise _not_found() from None


@router.get(
    "/internal/v1/tenants/{tenant}/cards/{token}",
    dependencies=[VERIFY],
    response_model=None,
    responses=documented(Card, "The card exists for the tenant."),
)
async def verify_card(tenant: TenantPath, token: TokenPath, request: Request) -> dict[str, Any]:
    """Whether ``token`` is a card of ``tenant`` (platform services only)."""
    try:
        return await handlers.find_card(_vault(request), _in_region(request, tenant), token)
    except CardNotFound:
        raise _not_found() from None


@router.post(
    "/internal/v1/tenants/{tenant}/cards/{token}/detokenize",
    response_model=None,
    responses=documented(CardNumber, "The card, number included."),
)
async def detokenize(
    tenant: TenantPath,
    token: TokenPath,
    body: DetokenizeIn,
    request: Request,
    principal: Annotated[Principal, DETOKENIZE],
) -> dict[str, Any]:
    """The card number, for the submission of payment ``reference`` to the rail only;
    every call is an audit event naming the caller and the reference."""
    try:
        return await handlers.detokenize_card(
            _vault(request),
            _in_region(request, tenant),
            token,
            body.purpose,
            body.reference,
            Actor.from_principal(principal),
        )
    except CardNotFound:
        raise _not_found() from None
    except TenantShredded:
        raise _offboarded() from None
