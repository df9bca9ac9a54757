"""Token verification every service relies on: RFC 9068 tokens, scopes, revocation."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Security

from clearway.shared.auth import (
    HttpJwksSource,
    InsufficientScope,
    InvalidToken,
    Principal,
    RevocationSet,
    TokenVerifier,
    apply_record,
    require_scope,
    route_scopes,
)
from clearway.shared.testing.issuer import TestIssuer

AUDIENCE = "clearway-transfer"
PROBLEMS = "https://docs.clearway.dev/problems/"


def mint(issuer: TestIssuer, **overrides: object) -> str:
    """A token for the transfer service, reading ``payments:read``, unless overridden."""
    fields: dict[str, object] = {
        "sub": "usr_alice",
        "client_id": "cli_mobile",
        "scopes": ["payments:read"],
        "audience": AUDIENCE,
        "tenant": "tnt_acme",
        "consent_id": "cns_1",
    }
    fields.update(overrides)
    return issuer.token(**fields)  # type: ignore[arg-type]


def claims_of(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "sub": "usr_alice",
        "client_id": "cli_mobile",
        "scopes": ["payments:read"],
        "audience": AUDIENCE,
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture
def revocations() -> RevocationSet:
    return RevocationSet()


@pytest.fixture
def verifier(issuer: TestIssuer, revocations: RevocationSet) -> TokenVerifier:
    return TokenVerifier(issuer.issuer, AUDIENCE, issuer.jwks(), revocations=revocations)


def transfer_app(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    app.state.token_verifier = verifier

    @app.get("/v1/transfers")
    async def list_transfers(
        principal: Principal = Security(require_scope("payments:read")),
    ) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.post("/v1/transfers")
    async def create_transfer(
        principal: Principal = Security(require_scope("payments:initiate")),
    ) -> dict[str, str]:
        return {"subject": principal.subject}

    audit = APIRouter(prefix="/v1/audit", dependencies=[Security(require_scope("audit:read"))])

    @audit.get("/records")
    async def list_records() -> list[str]:
        return []

    app.include_router(audit)

    @app.get("/health")
    async def health() -> str:
        return "ok"

    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def get_transfers(verifier: TokenVerifier, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client_for(transfer_app(verifier)) as client:
        return await client.get("/v1/transfers", headers=headers)


class JwksServer:
    """A real HTTP server on 127.0.0.1 publishing the issuer's current JWK Set."""

    def __init__(self, issuer: TestIssuer) -> None:
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server(issuer: TestIssuer) -> Iterator[JwksServer]:
    with JwksServer(issuer) as server:
        yield server


# --- a valid token ---------------------------------------------------------------------


async def test_a_valid_token_yields_its_principal(
    issuer: TestIssuer, verifier: TokenVerifier
) -> None:
    details = [{"type": "payment_initiation", "instructedAmount": {"currency": "EUR"}}]
    token = mint(
        issuer,
        scopes=["payments:read", "payments:initiate"],
        extra_claims={"authorization_details": details},
    )

    principal = await verifier.verify(token)

    assert principal.subject == "usr_alice"
    assert principal.client_id == "cli_mobile"
    assert principal.tenant == "tnt_acme"
    assert principal.consent_id == "cns_1"
    assert principal.scopes == frozenset({"payments:read", "payments:initiate"})
    assert principal.jti.startswith("at_")
    assert principal.expires_at > datetime.now(UTC)
    assert [dict(d) for d in principal.authorization_details] == details
    assert principal.claims["iss"] == issuer.issuer


async def test_a_principal_is_frozen(issuer: TestIssuer, verifier: TokenVerifier) -> None:
    principal = await verifier.verify(mint(issuer))
    with pytest.raises(AttributeError):
        principal.subject = "usr_mallory"  # type: ignore[misc]


@pytest.mark.parametrize(
    "variant",
    [
        {"typ": "application/at+jwt"},
        {"typ": "AT+JWT"},
        {"audience": ["clearway-audit", AUDIENCE]},
        {"alg": "EdDSA"},
        {"ttl_s": -10},  # expired ten seconds ago: inside the 30 s leeway for clock skew
    ],
    ids=["media-type-typ", "upper-case-typ", "audience-list", "eddsa", "within-leeway"],
)
async def test_these_tokens_are_accepted_too(
    issuer: TestIssuer, variant: dict[str, object]
) -> None:
    token = mint(issuer, **variant)  # an EdDSA key is generated, so read the JWKS afterwards
    verifier = TokenVerifier(issuer.issuer, AUDIENCE, issuer.jwks())
    assert (await verifier.verify(token)).subject == "usr_alice"


async def test_a_route_answers_a_caller_holding_its_scope(
    issuer: TestIssuer, verifier: TokenVerifier
) -> None:
    response = await get_transfers(verifier, mint(issuer))
    assert response.status_code == 200
    assert response.json() == {"subject": "usr_alice"}


# --- refused tokens ----------------------------------------------------------------------

REFUSED: dict[str, Callable[[TestIssuer], str]] = {
    "expired": lambda i: mint(i, ttl_s=-120),
    "alg-none": lambda i: i.alg_none_token(**claims_of()),
    "hs256-keyed-with-the-public-key": lambda i: i.hs256_token(i.public_key_pem(), **claims_of()),
    "wrong-audience": lambda i: mint(i, audience="clearway-webhooks"),
    "wrong-typ": lambda i: mint(i, typ="JWT"),
    "missing-typ": lambda i: mint(i, typ=None),
    "wrong-issuer": lambda i: mint(i, extra_claims={"iss": "https://evil.example"}),
    "unknown-kid": lambda i: mint(TestIssuer(i.issuer)),
    "known-kid-foreign-key": lambda i: mint(TestIssuer(i.issuer), kid=i.current_kid),
    "not-yet-valid": lambda i: mint(i, extra_claims={"nbf": int(time.time()) + 600}),
    "missing-jti": lambda i: mint(i, extra_claims={"jti": None}),
    "missing-client-id": lambda i: mint(i, client_id=""),
    "tampered-payload": lambda i: tamper(mint(i)),
    "garbage": lambda i: "not-a-jwt",
}


def tamper(token: str) -> str:
    header, _, signature = token.split(".")
    other = TestIssuer().token("usr_mallory", "cli_mobile", ["payments:initiate"], AUDIENCE)
    return ".".join([header, other.split(".")[1], signature])


@pytest.mark.parametrize("make", REFUSED.values(), ids=REFUSED.keys())
async def test_these_tokens_are_refused_with_401(
    issuer: TestIssuer, verifier: TokenVerifier, make: Callable[[TestIssuer], str]
) -> None:
    token = make(issuer)

    with pytest.raises(InvalidToken):
        await verifier.verify(token)
    response = await get_transfers(verifier, token)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    problem = response.json()["detail"]
    assert problem["type"] == PROBLEMS + "invalid-token"
    assert problem["status"] == 401


async def test_the_algorithm_confusion_attacks_are_named_in_the_reason(
    issuer: TestIssuer, verifier: TokenVerifier
) -> None:
    for token, alg in [
        (issuer.alg_none_token(**claims_of()), "none"),
        (issuer.hs256_token(issuer.public_key_pem(), **claims_of()), "HS256"),
    ]:
        with pytest.raises(InvalidToken) as refused:
            await verifier.verify(token)
        assert refused.value.reason == f"alg not allowed: {alg}"


async def test_a_request_without_a_token_gets_a_bare_bearer_challenge(
    verifier: TokenVerifier,
) -> None:
    response = await get_transfers(verifier, None)

    assert response.status_code == 401
    # RFC 6750 §3.1: no error code when the request carried no credentials.
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"]["type"] == PROBLEMS + "invalid-token"


async def test_a_missing_scope_is_refused_with_403_naming_it(
    issuer: TestIssuer, verifier: TokenVerifier
) -> None:
    async with client_for(transfer_app(verifier)) as client:
        response = await client.post(
            "/v1/transfers", headers={"Authorization": f"Bearer {mint(issuer)}"}
        )

    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="payments:initiate"'
    )
    problem = response.json()["detail"]
    assert problem["type"] == PROBLEMS + "insufficient-scope"
    assert problem["title"] == "Insufficient scope"
    assert problem["status"] == 403
    assert "payments:initiate" in problem["detail"]
    assert problem["missing_scopes"] == ["payments:initiate"]


async def test_a_principal_names_every_scope_it_lacks(
    issuer: TestIssuer, verifier: TokenVerifier
) -> None:
    principal = await verifier.verify(mint(issuer))
    with pytest.raises(InsufficientScope) as refused:
        principal.require_scopes("payments:read", "payments:initiate", "audit:read")
    assert refused.value.missing == {"payments:initiate", "audit:read"}


# --- revocation --------------------------------------------------------------------------


async def test_a_token_of_a_revoked_consent_is_refused(
    issuer: TestIssuer, verifier: TokenVerifier, revocations: RevocationSet
) -> None:
    token = mint(issuer, consent_id="cns_42")
    await verifier.verify(token)

    revocations.revoke_consent("cns_42", datetime.now(UTC))

    response = await get_transfers(verifier, token)
    assert response.status_code == 401
    assert response.json()["detail"]["detail"] == "token revoked: consent revoked"
    assert (await get_transfers(verifier, mint(issuer, consent_id="cns_43"))).status_code == 200


async def test_a_revoked_token_is_refused(
    issuer: TestIssuer, verifier: TokenVerifier, revocations: RevocationSet
) -> None:
    token = mint(issuer)
    principal = await verifier.verify(token)

    revocations.revoke_token(principal.jti, principal.expires_at)

    response = await get_transfers(verifier, token)
    assert response.status_code == 401
    assert response.json()["detail"]["detail"] == "token revoked: token revoked"


async def test_every_token_of_a_disabled_client_is_refused(
    issuer: TestIssuer, verifier: TokenVerifier, revocations: RevocationSet
) -> None:
    tokens = [mint(issuer, consent_id=None), mint(issuer, sub="usr_bob")]

    revocations.apply_event(
        "client.disabled", {"client_id": "cli_mobile", "at": datetime.now(UTC).isoformat()}
    )

    for token in tokens:
        response = await get_transfers(verifier, token)
        assert response.status_code == 401
        assert response.json()["detail"]["detail"] == "token revoked: client disabled"
    assert (await get_transfers(verifier, mint(issuer, client_id="cli_web"))).status_code == 200


async def test_after_a_credential_rotation_only_newer_tokens_of_the_client_pass(
    issuer: TestIssuer, verifier: TokenVerifier, revocations: RevocationSet
) -> None:
    rotated_at = datetime.now(UTC) - timedelta(minutes=1)
    older = mint(issuer, extra_claims={"iat": int((rotated_at - timedelta(seconds=5)).timestamp())})
    newer = mint(issuer)

    revocations.apply_event(
        "client.credentials_rotated", {"client_id": "cli_mobile", "at": rotated_at.isoformat()}
    )

    with pytest.raises(InvalidToken, match="client credentials rotated"):
        await verifier.verify(older)
    assert (await verifier.verify(newer)).subject == "usr_alice"


def test_revocation_events_are_understood_and_others_ignored(revocations: RevocationSet) -> None:
    revocations.apply_event(
        "consent.revoked", {"consent_id": "cns_1", "revoked_at": "2030-01-01T00:00:00Z"}
    )
    revocations.apply_event("token.revoked", {"jti": "at_1", "expires_at": time.time() + 60})
    revocations.apply_event("consent.authorised", {"consent_id": "cns_2"})

    assert len(revocations) == 2


def test_a_malformed_revocation_event_is_an_error(revocations: RevocationSet) -> None:
    with pytest.raises(ValueError, match="consent_id"):
        revocations.apply_event("consent.revoked", {"revoked_at": "2030-01-01T00:00:00Z"})
    with pytest.raises(ValueError, match="expires_at"):
        revocations.apply_event("token.revoked", {"jti": "at_1", "expires_at": "yesterday"})


def test_revoked_token_ids_are_pruned_once_their_tokens_are_long_expired() -> None:
    now = [1_000_000.0]
    revocations = RevocationSet(prune_grace_s=300, clock=lambda: now[0])
    revocations.revoke_token("at_old", now[0] - 10)
    revocations.revoke_token("at_new", now[0] + 600)
    assert len(revocations) == 2  # the old one is still inside the grace period

    now[0] += 400
    assert revocations.prune() == 1
    assert len(revocations) == 1


def test_a_kafka_record_is_applied_from_its_ce_type_header(revocations: RevocationSet) -> None:
    body = json.dumps({"consent_id": "cns_9", "revoked_at": "2030-01-01T00:00:00+00:00"})
    headers = [("ce_id", b"evt_1"), ("ce_type", b"consent.revoked")]

    assert apply_record(revocations, headers, body.encode()) is True
    assert apply_record(revocations, [("ce_type", b"consent.authorised")], b"{}") is False
    assert apply_record(revocations, [], b"{}") is False
    with pytest.raises(ValueError):
        apply_record(revocations, [("ce_type", b"token.revoked")], b"\xff not json")
    assert len(revocations) == 1


# --- keys fetched over HTTP ----------------------------------------------------------------


async def test_a_token_signed_by_a_rotated_key_is_accepted_after_one_jwks_refresh(
    issuer: TestIssuer, jwks_server: JwksServer
) -> None:
    source = HttpJwksSource(jwks_server.url, min_refresh_interval_s=0)
    verifier = TokenVerifier(issuer.issuer, AUDIENCE, source)
    old_token = mint(issuer)
    await verifier.verify(old_token)
    assert jwks_server.hits == 1

    issuer.rotate()
    new_token = mint(issuer)

    assert (await verifier.verify(new_token)).subject == "usr_alice"
    assert jwks_server.hits == 2
    assert (await verifier.verify(old_token)).subject == "usr_alice"  # old key still published
    assert jwks_server.hits == 2


async def test_unknown_kids_refresh_the_jwks_at_most_once_per_interval(
    issuer: TestIssuer, jwks_server: JwksServer
) -> None:
    source = HttpJwksSource(jwks_server.url, min_refresh_interval_s=60)
    verifier = TokenVerifier(issuer.issuer, AUDIENCE, source)
    await verifier.verify(mint(issuer))

    for _ in range(5):
        with pytest.raises(InvalidToken, match="unknown kid"):
            await verifier.verify(mint(TestIssuer(issuer.issuer)))

    assert jwks_server.hits == 1


async def test_an_unreachable_issuer_is_a_503_not_a_401(issuer: TestIssuer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    source = HttpJwksSource(f"http://127.0.0.1:{closed_port}/.well-known/jwks.json")
    verifier = TokenVerifier(issuer.issuer, AUDIENCE, source)

    response = await get_transfers(verifier, mint(issuer))

    assert response.status_code == 503
    assert response.json()["detail"]["type"] == PROBLEMS + "auth-unavailable"


# --- routes declare their scopes -----------------------------------------------------------


def test_route_scopes_lists_the_scope_each_route_requires(verifier: TokenVerifier) -> None:
    scopes = route_scopes(transfer_app(verifier))

    assert scopes == {
        ("GET", "/v1/transfers"): {"payments:read"},
        ("POST", "/v1/transfers"): {"payments:initiate"},
        ("GET", "/v1/audit/records"): {"audit:read"},
        ("GET", "/health"): set(),
    }


def test_a_route_cannot_require_no_scope_at_all() -> None:
    with pytest.raises(ValueError):
        require_scope()


async def test_a_cached_verification_still_expires_with_its_token_and_honours_revocation():
    issuer = TestIssuer()
    now = [time.time()]
    revocations = RevocationSet()
    verifier = TokenVerifier(
        issuer.issuer,
        "clearway-transfer",
        issuer.jwks(),
        revocations=revocations,
        clock=lambda: now[0],
    )
    token = issuer.token(
        "usr_1", "cli_1", ["payments:read"], "clearway-transfer", ttl_s=60, consent_id="cns_9"
    )
    assert (await verifier.verify(token)).subject == "usr_1"
    assert (await verifier.verify(token)).subject == "usr_1"  # served from the cache
    revocations.revoke_consent("cns_9", now[0])
    with pytest.raises(InvalidToken, match="revoked"):
        await verifier.verify(token)
    fresh = issuer.token("usr_2", "cli_1", ["payments:read"], "clearway-transfer", ttl_s=60)
    await verifier.verify(fresh)
    now[0] += 60 + verifier.leeway_s + 1
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(fresh)


# --- the cache under concurrency and hostile kids ----------------------------------------


async def test_concurrent_requests_with_a_token_whose_key_was_withdrawn_all_get_401() -> None:
    """Twenty requests racing on one stale cache entry: each a 401, never a KeyError."""
    import asyncio

    from clearway.shared.auth.verify import JWKS_MAX_AGE_S

    issuer = TestIssuer()
    now = [time.time()]
    published = [issuer.jwks()]

    async def source() -> dict:
        await asyncio.sleep(0)  # a real fetch yields to other requests
        return published[0]

    verifier = TokenVerifier(issuer.issuer, AUDIENCE, source, clock=lambda: now[0])
    token = issuer.token("usr_1", "cli_1", ["payments:read"], AUDIENCE, ttl_s=3600)
    await verifier.verify(token)
    published[0] = {"keys": []}  # the issuer withdrew the key
    now[0] += JWKS_MAX_AGE_S + 1

    results = await asyncio.gather(
        *(verifier.verify(token) for _ in range(20)), return_exceptions=True
    )

    assert all(isinstance(r, InvalidToken) for r in results), results


async def test_a_flood_of_unknown_kids_neither_refetches_per_token_nor_flushes_the_cache() -> None:
    issuer = TestIssuer()
    fetches = [0]

    async def source() -> dict:  # a source with no rate limit of its own
        fetches[0] += 1
        return issuer.jwks()

    verifier = TokenVerifier(issuer.issuer, AUDIENCE, source)
    token = issuer.token("usr_1", "cli_1", ["payments:read"], AUDIENCE, ttl_s=3600)
    await verifier.verify(token)
    cached = verifier._verified[token]

    for _ in range(50):
        with pytest.raises(InvalidToken, match="unknown kid"):
            await verifier.verify(mint(TestIssuer(issuer.issuer)))

    assert fetches[0] == 2  # the first load and one unknown-kid refresh
    assert (await verifier.verify(token)).subject == "usr_1"
    assert verifier._verified[token] is cached  # still the cached verification


# --- a time of use in the past (commands judged when they were sent) ---------------------


async def test_a_token_expired_now_is_valid_at_a_time_of_use_when_it_was_live(
    issuer: TestIssuer, verifier: TokenVerifier
) -> None:
    sent = time.time() - 3600
    token = mint(
        issuer, extra_claims={"iat": int(sent) - 60, "nbf": int(sent) - 60, "exp": int(sent) + 240}
    )
    assert (await verifier.verify(token, at=sent)).subject == "usr_alice"
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)  # now, as the HTTP edge asks: expired
    assert (await get_transfers(verifier, token)).status_code == 401
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token, at=sent + 300 + verifier.leeway_s)


async def test_a_time_of_use_before_the_token_was_issued_is_refused_even_when_cached(
    issuer: TestIssuer, verifier: TokenVerifier
) -> None:
    token = mint(issuer)
    await verifier.verify(token)  # now in the cache
    with pytest.raises(InvalidToken, match="issued in the future"):
        await verifier.verify(token, at=time.time() - 600)
    nbf = mint(issuer, extra_claims={"iat": int(time.time()) - 600, "nbf": int(time.time())})
    await verifier.verify(nbf)
    with pytest.raises(InvalidToken, match="not yet valid"):
        await verifier.verify(nbf, at=time.time() - 300)
    assert (await verifier.verify(token, at=time.time())).subject == "usr_alice"


async def test_a_token_revoked_since_its_time_of_use_is_refused(issuer: TestIssuer) -> None:
    # Kept past the token's expiry for as long as a time of use may lie in the past
    # (wiring.verify_tokens(past_use_s=...)): a revoked grant never acts.
    revocations = RevocationSet(prune_grace_s=300 + 86400)
    verifier = TokenVerifier(issuer.issuer, AUDIENCE, issuer.jwks(), revocations=revocations)
    sent = time.time() - 3600
    token = mint(issuer, extra_claims={"iat": int(sent), "nbf": int(sent), "exp": int(sent) + 300})
    principal = await verifier.verify(token, at=sent)
    revocations.revoke_token(principal.jti, principal.expires_at)
    with pytest.raises(InvalidToken, match="token revoked"):
        await verifier.verify(token, at=sent)


async def test_a_token_of_a_withdrawn_key_is_refused_at_any_time_of_use() -> None:
    issuer = TestIssuer()
    old = issuer.current_kid
    jwks = issuer.jwks()
    token = mint(issuer)
    issuer.rotate()
    withdrawn = {"keys": [k for k in issuer.jwks()["keys"] if k["kid"] != old]}
    assert [k["kid"] for k in jwks["keys"]] == [old]
    verifier = TokenVerifier(issuer.issuer, AUDIENCE, withdrawn)
    with pytest.raises(InvalidToken, match="unknown kid"):
        await verifier.verify(token, at=time.time())
