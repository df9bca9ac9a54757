"""RFC 6749 §5.2 error responses (the OAuth endpoints speak OAuth, not problem+json)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class OAuthErrorBody(BaseModel):
    """An RFC 6749 §5.2 error response."""

    error: str = Field(description="invalid_request, invalid_client, invalid_grant, …")
    error_description: str


#: The OpenAPI ``responses`` of an OAuth endpoint's errors.
OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OAuthErrorBody, "description": "RFC 6749 §5.2 error"},
    401: {"model": OAuthErrorBody, "description": "Client authentication failed"},
}


class OAuthError(Exception):
    """``error`` is an RFC 6749 / RFC 9126 / RFC 9396 error code."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> JSONResponse:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="clearway", error="invalid_client"'
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers=headers,
        )


def invalid_client(description: str = "client authentication failed") -> OAuthError:
    return OAuthError("invalid_client", description, 401)
