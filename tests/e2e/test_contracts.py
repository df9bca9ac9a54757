"""Each service's published contract holds: schemathesis against its own OpenAPI.

Every service is built by its own bootstrap, served by uvicorn on 127.0.0.1 with
its lifespan (real Postgres and Kafka of this test), and ``st run`` (the
schemathesis CLI, as an integrator would run it) fuzzes every documented
operation with a token holding every scope the service's routes declare
(``route_scopes``; a client of the operator tenant when there are ``/v1/platform``
routes). The five checks must find nothing: no 5xx, only documented status codes
and media types, bodies matching their schemas, and invalid input refused.

Bounded for CI: a fixed seed (a failure reproduces with the printed command), a
few examples per operation, and a time budget per service; the stateful phase
(chains of calls through links) is not run: no operation declares OpenAPI links,
so it would only repeat the fuzzing phase. No check is excluded, and one
operation: the sandbox rail's ``PUT /v1/faults``, whose purpose is to make the
rail drop responses, crash and fail (fuzzed, it would turn every later charge
into a deliberate 5xx); its own tests are in services/sandbox-rail/tests
(docs/design.md §10, ADR 0035).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from clearway.shared.auth import PLATFORM_TENANT, route_scopes
from clearway.shared.testing.helpers import eventually, serve
from clearway.shared.testing.issuer import TestIssuer
from tests.e2e.apps import ISSUER, RESOURCE_SERVICES, consent_app, consent_token

pytestmark = pytest.mark.integration

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
SEED = 1515
MAX_EXAMPLES = 8
# Seconds of fuzzing per service: with start-up, six services take ~90 s of CI.
TIME_BUDGET_S = 6
SERVICES = sorted([*RESOURCE_SERVICES, "consent"])
#: operations left out, per service (see the module docstring)
EXCLUDED = {"rail": ["--exclude-path", "/v1/faults"]}


async def no_dns(host: str, port: int) -> list[str]:
    raise OSError(f"{host} is not resolved in this test")


def build(service: str, platform, issuer: TestIssuer, tmp: Path) -> FastAPI:
    if service == "consent":
        return consent_app(platform, issuer, tmp)
    return RESOURCE_SERVICES[service](platform, issuer, tmp)


def token(service: str, app: FastAPI, issuer: TestIssuer) -> str:
    """A token with every scope the service's routes require."""
    scopes = set().union(*route_scopes(app).values())
    tenant = PLATFORM_TENANT if any(s.startswith("platform:") for s in scopes) else "tnt_contract"
    if service == "consent":
        # a seeded client of that tenant: the documented example creates a consent for it
        return consent_token(app, scopes, tenant, client_id="clearway-operator")
    return issuer.token(
        sub="usr_contract_check",
        client_id="cli_contract_check",
        scopes=sorted(scopes),
        audience=f"clearway-{service}",
        tenant=tenant,
        ttl_s=600,
    )


async def schemathesis(
    url: str, bearer: str, workdir: Path, extra: list[str]
) -> tuple[int | None, str]:
    st = Path(sys.executable).with_name("st")
    args = [
        str(st),
        "run",
        f"{url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(TIME_BUDGET_S),
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--no-shrink",
        "--request-timeout",
        "10",
        "--header",
        f"Authorization: Bearer {bearer}",
        *extra,
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIME_BUDGET_S * 6 + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.parametrize("service", SERVICES)
async def test_service_honours_its_openapi_contract(service, platform, tmp_path):
    issuer = TestIssuer(ISSUER)
    app = build(service, platform, issuer, tmp_path)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually(ready, timeout=60)
        if service == "webhooks":
            # Fuzzed endpoint URLs name random hosts: none may reach a real DNS resolver
            # (traffic stays on this machine), so every name is one that does not resolve.
            app.state.guard.resolver = no_dns
        code, output = await schemathesis(
            url, token(service, app, issuer), tmp_path, EXCLUDED.get(service, [])
        )
    print(output)
    assert code == 0, output[-20000:]
