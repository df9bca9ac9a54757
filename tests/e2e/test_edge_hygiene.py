"""Every route of every service, every string parameter, a NUL byte: 422, never 5xx;
and a card number there, in each of the forms that got past the edge before
(issue 11): 422 ``card-number-refused`` naming it, never echoing it.

Each service's app is built with its bootstrap ``build_app`` and test settings and
started once against the real Postgres and Kafka. Its OpenAPI document drives the
sweep: for every operation and every string parameter in the path, the query, a
header or a JSON or form body (nested fields and list items too), one request
carries a NUL byte in that parameter alone and must be a 422 problem naming it,
without echoing the value. Tokens carry the route's scopes, so authorisation
cannot be what refuses the request. The same running app then serves a real
HTTP server, where a chunked body over the limit, sent without a token, is a 413.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from clearway.shared.auth import route_scopes
from clearway.shared.http import PROBLEM_MEDIA_TYPE
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.testing.helpers import free_port, serve
from clearway.shared.testing.issuer import TestIssuer

pytestmark = pytest.mark.integration

NUL = "\x00"
FORM = "application/x-www-form-urlencoded"
# The requests that were 500s from Postgres before the edge refused control characters.
KNOWN = {
    "transfer": {("GET", "/v1/transfers", "query.reference")},
    "webhooks": {
        ("GET", "/v1/messages", "query.correlation_id"),
        ("POST", "/v1/replays", "endpoint_id"),
    },
    "consent": {("GET", "/v1/consents", "query.subject")},
    "audit": set(),
    "sandbox-rail": set(),
    "vault": set(),
}


@dataclass
class Service:
    app: FastAPI
    token: Callable[[set[str]], str | None]
    max_body_bytes: int = 1024 * 1024
    started: list[Any] = field(default_factory=list)


def transfer(platform, issuer: TestIssuer, tmp: Path) -> Service:
    from clearway.transfer.bootstrap import build_app
    from clearway.transfer.settings import TransferSettings

    app = build_app(
        TransferSettings(
            platform=platform.replace(oauth_issuer=issuer.issuer),
            jwks=issuer.jwks(),
            run_executor=False,
            revocation_feed=False,
            rail_url="http://127.0.0.1:9",
        )
    )
    return Service(app, _issued(issuer, "clearway-transfer"))


def webhooks(platform, issuer: TestIssuer, tmp: Path) -> Service:
    from clearway.webhooks.api import MAX_BODY_BYTES
    from clearway.webhooks.bootstrap import build_app
    from clearway.webhooks.settings import WebhooksSettings

    settings = WebhooksSettings(
        platform=platform.replace(oauth_issuer=issuer.issuer),
        jwks=issuer.jwks(),
        run_dispatcher=False,
    )
    return Service(build_app(settings), _issued(issuer, "clearway-webhooks"), MAX_BODY_BYTES)


def audit(platform, issuer: TestIssuer, tmp: Path) -> Service:
    from clearway.audit.bootstrap import build_app
    from clearway.audit.settings import AuditSettings
    from clearway.audit.signing import Keyring

    settings = AuditSettings(
        platform=platform.replace(oauth_issuer=issuer.issuer),
        jwks=issuer.jwks(),
        keyring=Keyring.generate(),
        checkpoint_interval_s=3600,
        consume=False,
    )
    return Service(build_app(settings), _issued(issuer, "clearway-audit"))


def consent(platform, issuer: TestIssuer, tmp: Path) -> Service:
    from clearway.consent.bootstrap import build_app
    from clearway.consent.settings import ConsentSettings

    settings = ConsentSettings(
        platform=platform.replace(oauth_issuer=f"http://127.0.0.1:{free_port()}", local_dir=tmp),
        argon2_time_cost=1,
        argon2_memory_kib=1024,
    )
    app = build_app(settings)

    def token(scopes: set[str]) -> str:
        # The consent service is the issuer: its tokens are signed with its own key.
        now = int(time.time())
        claims = {
            "iss": settings.issuer,
            "sub": "usr_hygiene",
            "aud": "clearway-consent",
            "client_id": "cli_hygiene",
            "scope": " ".join(sorted(scopes)),
            "tenant": "tnt_hygiene",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": f"at_{uuid.uuid4().hex}",
        }
        return str(app.state.consent.keys.sign(claims))  # in the HSM, as its own tokens

    return Service(app, token)


def rail(platform, issuer: TestIssuer, tmp: Path) -> Service:
    from clearway.rail.bootstrap import build_app
    from clearway.rail.settings import RailSettings

    # The rail stands in for a bank and takes no OAuth token.
    return Service(build_app(RailSettings(platform=platform)), lambda s: None)


def vault(platform, issuer: TestIssuer, tmp: Path) -> Service:
    from clearway.vault.bootstrap import build_app
    from clearway.vault.settings import VaultSettings

    settings = VaultSettings(
        platform=platform.replace(oauth_issuer=issuer.issuer), jwks=issuer.jwks()
    )
    return Service(build_app(settings), _issued(issuer, "clearway-vault"))


SERVICES: dict[str, Callable[..., Service]] = {
    "transfer": transfer,
    "webhooks": webhooks,
    "consent": consent,
    "audit": audit,
    "sandbox-rail": rail,
    "vault": vault,
}


def _issued(issuer: TestIssuer, audience: str) -> Callable[[set[str]], str]:
    def token(scopes: set[str]) -> str:
        return issuer.token(
            sub="usr_hygiene",
            client_id="cli_hygiene",
            scopes=sorted(scopes),
            audience=audience,
            tenant="tnt_hygiene",
        )

    return token


# ------------------------------------------------------------- OpenAPI walking


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    where: str  # path | query | header | cookie | json | form
    loc: tuple[str | int, ...]  # parameter name, or the field's path in the body
    expected: str  # the field the problem must name


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _variants(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(spec, schema)
    found = [schema]
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            found.extend(_variants(spec, sub))
    return found


def _is_string(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    return any(v.get("type") == "string" for v in _variants(spec, schema))


def _string_fields(
    spec: dict[str, Any], schema: dict[str, Any], loc: tuple[str | int, ...] = (), depth: int = 0
) -> Iterator[tuple[str | int, ...]]:
    """Paths of every string a body schema allows: properties, list items, map values."""
    if depth > 5:
        return
    if loc and _is_string(spec, schema):
        yield loc
    for variant in _variants(spec, schema):
        for name, sub in variant.get("properties", {}).items():
            yield from _string_fields(spec, sub, (*loc, name), depth + 1)
        if variant.get("type") == "array" and isinstance(variant.get("items"), dict):
            yield from _string_fields(spec, variant["items"], (*loc, 0), depth + 1)
        extra = variant.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            yield from _string_fields(spec, extra, (*loc, "key"), depth + 1)


def cases(spec: dict[str, Any]) -> list[Case]:
    found: set[Case] = set()
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            method = method.upper()
            for p in op.get("parameters", []):
                where, name = p["in"], p["name"]
                if where == "path" or _is_string(spec, p.get("schema", {})):
                    named = "header.cookie" if where == "cookie" else f"{where}.{name}"
                    if where == "header":
                        named = f"header.{name.lower()}"
                    found.add(Case(method, path, where, (name,), named))
            content = op.get("requestBody", {}).get("content", {})
            for media, body in content.items():
                kind = "form" if media == FORM else "json" if "json" in media else None
                if kind is None:
                    continue
                for loc in _string_fields(spec, body.get("schema", {})):
                    found.add(Case(method, path, kind, loc, ".".join(map(str, loc))))
    return sorted(found, key=lambda c: (c.path, c.method, c.where, str(c.loc)))


def card_fields(spec: dict[str, Any]) -> set[tuple[str, str, str]]:
    """``(method, path, field)`` of the body fields where a route takes a card number
    (``x-clearway-card-fields``, declared with ``accepts_card_numbers``)."""
    return {
        (method.upper(), path, field)
        for path, operations in spec["paths"].items()
        for method, op in operations.items()
        for field in op.get("x-clearway-card-fields", [])
    }


def _nested(loc: tuple[str | int, ...], value: Any) -> Any:
    for part in reversed(loc):
        value = [value] if isinstance(part, int) else {part: value}
    return value


def request_for(
    case: Case, token: str | None, bad: str = f"x{NUL}y", in_path: str = "x%00y"
) -> dict[str, Any]:
    url = case.path
    for name in re.findall(r"\{([^}:]+)[^}]*\}", case.path):
        value = in_path if case.where == "path" and case.loc == (name,) else "id_1"
        url = re.sub(r"\{" + re.escape(name) + r"[^}]*\}", value, url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kw: dict[str, Any] = {"method": case.method, "url": url, "headers": headers}
    if case.where == "query":
        kw["params"] = {case.loc[0]: bad}
    elif case.where == "header":
        headers[str(case.loc[0])] = bad
    elif case.where == "cookie":
        headers["Cookie"] = f"{case.loc[0]}={bad}"
    elif case.where == "json":
        kw["json"] = _nested(case.loc, bad)
    elif case.where == "form":
        kw["data"] = {case.loc[0]: bad}
    return kw


@asynccontextmanager
async def started(svc: Service) -> AsyncIterator[httpx.AsyncClient]:
    app = svc.app
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http,
    ):
        yield http


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_a_nul_byte_in_any_string_parameter_is_a_422_naming_it(service, platform, tmp_path):
    issuer = TestIssuer()
    svc = SERVICES[service](platform, issuer, tmp_path)
    spec = svc.app.openapi()
    swept = cases(spec)
    named = {(c.method, c.path, c.expected) for c in swept}
    assert KNOWN[service] <= named, f"the sweep misses {KNOWN[service] - named}"
    scopes = route_scopes(svc.app)
    failures: list[str] = []
    async with started(svc) as http:
        for case in swept:
            need = set(scopes.get((case.method, case.path), set()))
            token = svc.token(need or {"openid"})
            r = await http.request(**request_for(case, token))
            problem = (
                r.json() if r.headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE) else {}
            )
            got = (problem.get("errors") or [{}])[0].get("field")
            if r.status_code != 422 or got != case.expected or NUL in r.text or "\\u0000" in r.text:
                failures.append(f"{case}: {r.status_code} {got!r} {r.text[:200]}")
        # A real server: a chunked body over the limit, before any token is checked.
        post = next(p for p, ops in spec["paths"].items() if "post" in ops)
        async with serve(svc.app, lifespan="off") as url, httpx.AsyncClient(timeout=30) as real:
            chunk = b"x" * 65536

            async def oversized() -> AsyncIterator[bytes]:
                for _ in range(svc.max_body_bytes // len(chunk) + 2):
                    yield chunk

            post_url = url + re.sub(r"\{[^}]+\}", "id_1", post)
            r = await real.post(
                post_url, content=oversized(), headers={"Content-Type": "application/json"}
            )
            assert "content-length" not in r.request.headers
            assert r.status_code == 413, (post, r.status_code, r.text)
            assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    print(f"{service}: {len(swept)} string parameters swept")
    assert not failures, "\n".join(failures)


# Each format that got past the old raw-text check, and a few an attacker tries next.
PAN = "4111111111111111"
CARD_FORMATS = [
    "card \u0034111111111111111",  # sent as a JSON escape (decoded by the parser)
    f"tok_{PAN}",
    "4111.1111.1111.1111",
    "4111  1111  1111  1111",
    "4111/1111_1111-1111",
    "".join(chr(0xFF10 + int(d)) for d in PAN),  # fullwidth digits
    "4111 1111 1111 1111",
]


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_a_card_number_in_any_string_parameter_is_refused_naming_it(
    service, platform, tmp_path
):
    issuer = TestIssuer()
    svc = SERVICES[service](platform, issuer, tmp_path)
    spec = svc.app.openapi()
    allowed = card_fields(spec)
    swept = [
        c for c in cases(spec) if (c.method, c.path, c.expected) not in allowed or c.where != "json"
    ]
    scopes = route_scopes(svc.app)
    failures: list[str] = []
    async with started(svc) as http:
        for i, case in enumerate(swept):
            need = set(scopes.get((case.method, case.path), set()))
            token = svc.token(need or {"openid"})
            card = CARD_FORMATS[i % len(CARD_FORMATS)]
            if case.where in ("header", "cookie"):  # header values are bytes: ASCII forms
                card = card if card.isascii() else PAN
            if case.where == "path" and "/" in card:  # a slash would make two segments
                card = "4111.1111.1111.1111"
            if case.where == "json" and card.startswith("card \\u"):
                kw = request_for(case, token, "@CARD@")
                kw["content"] = json.dumps(kw.pop("json")).replace("@CARD@", card)
                kw["headers"]["Content-Type"] = "application/json"
            else:
                if case.where == "json":
                    card = card.replace("\\u0034", "4")
                kw = request_for(case, token, card, in_path=quote(card.replace("\\", "")))
            r = await http.request(**kw)
            problem = (
                r.json() if r.headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE) else {}
            )
            got = (problem.get("errors") or [{}])[0].get("field")
            slug = str(problem.get("type", "")).rsplit("/", 1)[-1]
            # the random correlation id may hold "1111" by chance: not an echo
            shown = json.dumps({k: v for k, v in problem.items() if k != "correlation_id"})
            shown = shown if problem else r.text
            leaked = "1111" in shown.replace("****1111", "") or "\uff11" in r.text
            if r.status_code != 422 or slug != "card-number-refused" or got != case.expected:
                failures.append(f"{case} {card!r}: {r.status_code} {got!r} {r.text[:200]}")
            elif leaked:
                failures.append(f"{case}: the number is echoed: {r.text}")
    print(f"{service}: {len(swept)} string parameters swept with card numbers")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------- the independent scanner

SEEDED = ("4111111111111111", "5555555555554444", "378282246310005")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_SCAN_SEPARATORS = re.compile(r"[\s.\-/_\\|,+]+")
_ID_LIKE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\b(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{16,}\b"
    r"|0x[0-9a-fA-F]+"  # trace and span ids as the span exporter writes them
    # the platform's own ids (evt_, corr_, tr_... then hex): a random hex id holds a
    # Luhn-valid run of 13+ digits about once in 500 (seen once in CI, in a span)
    r"|\b[a-z]+_(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{16,}\b"
)
# Its own rules, not the kit's: 13-19 digits, separators of the formats, a
# payment-card first digit (2-6: epoch nanoseconds in spans start with 1), Luhn.
_CANDIDATE = re.compile(r"(?<![0-9])[2-6](?:[ .\-/_]{0,3}[0-9]){12,18}(?![0-9])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def card_numbers_in(text: str) -> list[str]:
    """Card numbers in ``text`` as this scanner sees them (independent of the kit):
    escapes and Unicode digits decoded, ids set aside, then any Luhn-valid 13-19
    digit sequence in the formats of issue 11, and the seeded numbers with every
    separator removed (glued to ids or not)."""
    import unicodedata

    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = unicodedata.normalize("NFKC", text)
    text = _ID_LIKE.sub("x", text)
    found = []
    for m in _CANDIDATE.finditer(text):
        digits = re.sub("[^0-9]", "", m.group())
        if _luhn(digits):
            found.append(digits)
    flat = _SCAN_SEPARATORS.sub("", text)
    found += [pan for pan in SEEDED if pan in flat]
    return found


async def _every_topic(kafka: KafkaLink, prefix: str) -> list[tuple[str, int, int, str]]:
    """``(topic, partition, offset, text)`` of every record on every topic of the run."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        **kafka.client_options(), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[tuple[str, int, int, str]] = []
    try:
        topics = sorted(t for t in await consumer.topics() if t.startswith(prefix))
        if not topics:
            return out
        consumer.subscribe(topics)
        for _ in range(20):  # bounded: until a poll finds nothing new
            batch = await consumer.getmany(timeout_ms=1500, max_records=10_000)
            if not batch and consumer.assignment():
                break
            for records in batch.values():
                for r in records:
                    parts = [r.key or b"", r.value or b""] + [v for _, v in r.headers or ()]
                    text = " ".join(p.decode("utf-8", "replace") for p in parts)
                    out.append((r.topic, r.partition, r.offset, text))
    finally:
        await consumer.stop()
    return out


def _pg_dump_text(dsn: str) -> str:
    """Every schema's data; bytea (hex in the dump) decoded so text stored as bytes is read."""
    import shutil
    import subprocess

    found = shutil.which("pg_dump") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None
    )
    assert found, "pg_dump not found"
    dump = subprocess.run(
        [str(found), "--no-owner", "--data-only", dsn], capture_output=True, text=True, check=True
    ).stdout
    hex_bytea = re.compile(r"\\\\x([0-9a-f]+)")  # COPY text: \\x and the bytes in hex
    decoded = [bytes.fromhex(m.group(1)).decode("latin-1") for m in hex_bytea.finditer(dump)]
    return hex_bytea.sub("<bytea>", dump) + "\n" + "\n".join(decoded)


async def test_no_card_number_anywhere_after_every_format_through_every_edge(
    platform, tmp_path, caplog
):
    """Issue 11's acceptance scan. Every format of the issue goes through every string
    parameter of every service's HTTP edge and onto the intents topic; then Postgres
    (every schema, bytea decoded), every topic of the run (dead letters included), the
    log file and the exported spans hold 0 card numbers. The only records skipped are
    the intents this test wrote itself: the attacker's own input, like its requests."""
    import json as _json
    import logging

    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from clearway.shared.events import new_event
    from clearway.shared.logging import configure_logging
    from clearway.shared.relay import idempotent_producer
    from clearway.shared.schemas import default_registry
    from clearway.shared.telemetry import setup_tracing

    started_at = time.monotonic()
    exporter = InMemorySpanExporter()
    setup_tracing("card-scanner", processors=[SimpleSpanProcessor(exporter)])
    log_file = tmp_path / "services.log"
    log_stream = log_file.open("w")
    # caplog first: it puts back the level it found, which must be the session's own
    # (taken after configure_logging, it would leave the whole session at DEBUG)
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    configure_logging("card-scanner", "DEBUG", stream=log_stream)  # as every service does
    formats = [*CARD_FORMATS, "5555 5555 5555 4444", "3782 822463 10005"]
    seeded: set[tuple[str, int, int]] = set()
    try:
        issuer = TestIssuer()
        for name in sorted(SERVICES):
            svc = SERVICES[name](platform, issuer, tmp_path)
            scopes = route_scopes(svc.app)
            async with started(svc) as http:
                spec = svc.app.openapi()
                allowed = card_fields(spec)  # the vault's and the rail's own card fields
                swept = [
                    c
                    for c in cases(spec)
                    if c.where != "json" or (c.method, c.path, c.expected) not in allowed
                ]
                for i, case in enumerate(swept):
                    token = svc.token(
                        set(scopes.get((case.method, case.path), set())) or {"openid"}
                    )
                    card = formats[i % len(formats)]
                    if case.where in ("header", "cookie", "path"):
                        card = "4111.1111.1111.1111"
                    r = await http.request(**request_for(case, token, card, quote(card)))
                    assert r.status_code == 422, (name, case, r.status_code)
                if name == "transfer":  # intents in every format, while its consumer runs
                    producer = idempotent_producer(platform.kafka)
                    await producer.start()
                    topic = platform.topic("clearway.transfer.intents.v1")
                    try:
                        for i, card in enumerate(formats):
                            ev = new_event(
                                type="transfer.intent",
                                source="/tests/scanner",
                                aggregate_id=f"int_scan{i}",
                                aggregate_version=1,
                                data={
                                    "idempotency_key": f"scan-{i}",
                                    "client_id": "cli_scan",
                                    "amount": 100,
                                    "currency": "EUR",
                                    "source": "acct_a1",
                                    "destination": "acct_b2",
                                    "description": card,
                                    "metadata": {"pan": card},
                                },
                                dataschema=default_registry().get("transfer.intent", 1).dataschema,
                                correlation_id=f"corr_scan{i}",
                                tenant="tnt_hygiene",
                            )
                            meta = await producer.send_and_wait(
                                topic, value=ev.body(), key=ev.key, headers=ev.headers()
                            )
                            seeded.add((topic, meta.partition, meta.offset))
                    finally:
                        await producer.stop()
                    dlt = f"{topic}.transfer-intents.dlt"
                    for _ in range(100):
                        records = await _every_topic(platform.kafka, dlt)
                        if len(records) >= len(formats):
                            break
                        await asyncio.sleep(0.3)
                    assert len(records) == len(formats), "intents not dead-lettered"
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        log_stream.close()
        root.setLevel(level)

    places: dict[str, str] = {
        "postgres": _pg_dump_text(platform.database_url),
        "log file": log_file.read_text(),
        "captured logs": caplog.text,
        "spans": _json.dumps([_json.loads(s.to_json()) for s in exporter.get_finished_spans()]),
    }
    records = await _every_topic(platform.kafka, platform.topic_prefix)
    assert any(t.endswith(".dlt") for t, *_ in records)
    for topic, partition, offset, text in records:
        if (topic, partition, offset) not in seeded:
            places[f"topic {topic}[{partition}]@{offset}"] = text
    leaks = {where: card_numbers_in(text) for where, text in places.items()}
    leaks = {where: found for where, found in leaks.items() if found}
    lines = {  # where each one stands, so a failure says what carried it
        where: [
            places[where][max(0, i - 150) : i + 150]
            for pan in found[:3]
            if (i := places[where].find(pan)) >= 0
        ]
        or [line[:300] for line in places[where].splitlines() if card_numbers_in(line)][:3]
        for where, found in leaks.items()
    }
    assert not leaks, f"card numbers found in {sorted(leaks)}: {lines}"
    # The scanner sees what it must: every format, and the seeded intents it skipped.
    assert all(SEEDED[0] in card_numbers_in(f"x {f} y") for f in CARD_FORMATS)
    skipped = [text for topic, p, o, text in records if (topic, p, o) in seeded]
    assert len(skipped) == len(formats) and all(card_numbers_in(t) for t in skipped)
    print(f"scanned {len(places)} places in {time.monotonic() - started_at:.1f} s")
