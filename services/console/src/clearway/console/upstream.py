"""Calls to the platform's public APIs with the signed-in user's own token (ADR 0045):
the console can never see more than the user may, because every service checks the
token's scopes and tenant itself. Every answer is redacted with the kit's rules
(card numbers, secrets, tokens: docs/design.md §9) before a page can show it.
"""

from __future__ import annotations

from typing import Any

import httpx

from clearway.console.settings import ConsoleSettings
from clearway.shared.context import current_correlation_id
from clearway.shared.http.problems import CORRELATION_HEADER
from clearway.shared.redaction import redact_text, redact_value


class UpstreamError(Exception):
    """A service's refusal (or absence), with what is safe to show."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail


class Upstream:
    def __init__(self, settings: ConsoleSettings, http: httpx.AsyncClient) -> None:
        self.http = http
        self.bases = {
            "transfer": settings.transfer_url.rstrip("/"),
            "webhooks": settings.webhooks_url.rstrip("/"),
            "audit": settings.audit_url.rstrip("/"),
            "consent": settings.issuer,
        }

    async def call(
        self,
        method: str,
        service: str,
        path: str,
        token: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """The redacted JSON answer of ``method path`` at ``service``; ``UpstreamError``
        for any non-2xx answer or an unreachable service."""
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        cid = current_correlation_id()
        if cid:  # the user's action and what it caused share one correlation id
            headers[CORRELATION_HEADER] = cid
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            r = await self.http.request(
                method, self.bases[service] + path, params=query, json=json, headers=headers
            )
        except httpx.HTTPError:
            raise UpstreamError(503, f"The {service} service cannot be reached") from None
        if r.status_code >= 400:
            raise _error(service, r)
        if r.status_code == 204 or not r.content:
            return None
        return redact_value(r.json())

    async def get(self, service: str, path: str, token: str, **params: Any) -> Any:
        return await self.call("GET", service, path, token, params=params)

    async def post(self, service: str, path: str, token: str, json: Any = None) -> Any:
        return await self.call("POST", service, path, token, json=json)


def _error(service: str, r: httpx.Response) -> UpstreamError:
    try:
        doc = r.json()
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    title = str(doc.get("title") or f"The {service} service answered {r.status_code}")
    detail = str(doc.get("detail") or "")
    errors = doc.get("errors")
    if isinstance(errors, list) and errors:
        detail = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors[:3])
    return UpstreamError(r.status_code, redact_text(title), redact_text(detail))
