"""A partner's webhook endpoint (docs/console.md): its settings and the rotation of its
signing secret. The partner brings the new secret (ADR 0049): the console passes it
through to the webhooks API once and never shows, stores or logs it; the API returns no
secret for a rotation so made, so the console never holds one it could leak."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from clearway.console.sessions import Session
from clearway.console.upstream import UpstreamError
from clearway.console.web import (
    check_csrf,
    error_page,
    page,
    partner,
    reason_of,
    upstream_failed,
    upstream_of,
)

router = APIRouter(prefix="/webhooks/endpoints", include_in_schema=False)
#: Grace periods offered (seconds → label): how long the old secret keeps signing too.
GRACE = {0: "none: stop signing with the old secret now", 3600: "1 hour", 86400: "24 hours"}
GRACE |= {7 * 86400: "7 days"}
DEFAULT_GRACE = 86400


@router.get("/{endpoint_id}")
async def endpoint(
    request: Request, endpoint_id: str, rotated: str = "", session: Session = Depends(partner)
) -> Response:
    path = f"/v1/endpoints/{quote(endpoint_id, safe='')}"
    try:
        ep = await upstream_of(request).get("webhooks", path, session.token or "")
    except UpstreamError as e:
        return upstream_failed(request, e)
    return page(
        request,
        "endpoint.html",
        title=f"Endpoint {ep['id']}",
        endpoint=ep,
        grace=GRACE,
        default_grace=DEFAULT_GRACE,
        rotated=rotated[:40],
    )


@router.post("/{endpoint_id}/secret")
async def rotate_secret(
    request: Request,
    endpoint_id: str,
    secret: str = Form(""),
    grace_seconds: str = Form(str(DEFAULT_GRACE)),
    reason: str = Form(""),
    csrf: str = Form(""),
    session: Session = Depends(partner),
) -> Response:
    """One pass-through of the partner's secret to ``POST …/secret/rotate``; the
    webhooks service checks it (format, length, entropy) and answers which field is
    wrong without echoing it."""
    check_csrf(request, session, csrf)
    why = reason_of(reason)
    if why is None:
        return error_page(request, 422, "A reason is needed", "Say why (3 to 500 characters).")
    grace = {str(seconds): seconds for seconds in GRACE}.get(grace_seconds.strip())
    if grace is None:
        return error_page(request, 422, "Check the grace period", "Choose one of the offered.")
    if not secret.strip():
        return error_page(request, 422, "A secret is needed", "Paste the new whsec_ secret.")
    body = {"secret": secret.strip(), "grace_seconds": grace, "reason": why}
    path = f"/v1/endpoints/{quote(endpoint_id, safe='')}/secret/rotate"
    try:
        done = await upstream_of(request).post("webhooks", path, session.token or "", body)
    except UpstreamError as e:
        return upstream_failed(request, e)
    until = quote(str(done.get("previous_secrets_expire_at", "")))
    return RedirectResponse(
        f"/webhooks/endpoints/{quote(endpoint_id)}?rotated={until}", status_code=303
    )
