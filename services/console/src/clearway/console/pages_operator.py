"""Operator pages (docs/console.md): the latest signed audit checkpoint and verification
runs, each service's outbox lag and dead-lettered messages from its ``/metrics``, and
clients still pinned to each dated API version (deprecation usage). Partners get 403."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from clearway.console import health
from clearway.console.sessions import Session
from clearway.console.upstream import UpstreamError
from clearway.console.web import check_csrf, error_page, operator, page, upstream_of
from clearway.shared.versions import SUNSETS, all_versions

router = APIRouter(prefix="/operator", include_in_schema=False)


@router.get("")
async def overview(request: Request, session: Session = Depends(operator)) -> Response:
    up, token = upstream_of(request), session.token or ""
    checkpoint: dict[str, Any] | None = None
    problem = None
    try:
        checkpoint = await up.get("audit", "/v1/audit/checkpoints/latest", token)
    except UpstreamError as e:
        problem = e.title if e.status != 404 else "No signed checkpoint yet."
    services = await health.scrape(up.http, up.bases)
    try:
        dead_letters = (await up.get("webhooks", "/v1/platform/dead-letters", token))["data"]
    except UpstreamError as e:
        dead_letters, problem = [], problem or e.title
    return page(
        request,
        "operator.html",
        title="Operations",
        checkpoint=checkpoint,
        problem=problem,
        services=services,
        dead_letters=dead_letters,
        redriven=request.query_params.get("redriven"),
    )


@router.post("/dead-letters/redrive")
async def redrive(
    request: Request,
    topic: str = Form(""),
    reason: str = Form(""),
    csrf: str = Form(""),
    session: Session = Depends(operator),
) -> Response:
    """Redrive a dead-letter topic into its consumer; the webhooks service audits it with
    the operator's reason."""
    check_csrf(request, session, csrf)
    why = reason.strip()
    if not 3 <= len(why) <= 500:
        return error_page(request, 422, "A reason is needed", "Say why (3 to 500 characters).")
    path = f"/v1/platform/dead-letters/{quote(topic, safe='')}/redrive"
    try:
        done = await upstream_of(request).post(
            "webhooks", path, session.token or "", {"reason": why}
        )
    except UpstreamError as e:
        return error_page(request, e.status if e.status < 500 else 502, e.title, e.detail)
    return RedirectResponse(f"/operator?redriven={int(done['redriven'])}", status_code=303)


@router.post("/verifications")
async def verify(
    request: Request, csrf: str = Form(""), session: Session = Depends(operator)
) -> Response:
    """Start an incremental verification of the audit log (a check, not a change)."""
    check_csrf(request, session, csrf)
    up, token = upstream_of(request), session.token or ""
    try:
        job = await up.post("audit", "/v1/audit/verifications", token, {"full": False})
    except UpstreamError as e:  # 409: one is running; 429: too soon (the detail says)
        return error_page(request, e.status if e.status < 500 else 502, e.title, e.detail)
    return RedirectResponse(f"/operator/verifications/{quote(job['id'])}", status_code=303)


@router.get("/verifications/{job_id}")
async def verification(
    request: Request, job_id: str, session: Session = Depends(operator)
) -> Response:
    path = f"/v1/audit/verifications/{quote(job_id, safe='')}"
    try:
        job = await upstream_of(request).get("audit", path, session.token or "")
    except UpstreamError as e:
        return error_page(request, e.status if e.status < 500 else 502, e.title, e.detail)
    return page(request, "verification.html", title=f"Verification {job['id']}", job=job)


@router.get("/clients")
async def clients(request: Request, session: Session = Depends(operator)) -> Response:
    """Per dated version: its sunset and the clients of every tenant still pinned to it."""
    up, token = upstream_of(request), session.token or ""
    versions = []
    for version in reversed(all_versions()):
        try:
            found = await up.get(
                "consent", "/v1/platform/clients", token, api_version=version, limit=100
            )
        except UpstreamError as e:
            return error_page(request, e.status if e.status < 500 else 502, e.title, e.detail)
        sunset: date | None = SUNSETS.get(version)
        versions.append(
            {
                "version": version,
                "sunset": sunset,
                "clients": found["data"],
                "more": found["has_more"],
            }
        )
    services = await health.scrape(up.http, up.bases)
    deprecated = {f"{s.name}: {k}": v for s in services for k, v in s.deprecated_calls.items()}
    return page(
        request,
        "clients.html",
        title="Clients by API version",
        versions=versions,
        deprecated=deprecated,
    )
