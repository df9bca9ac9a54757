"""HTTP conventions every Clearway FastAPI service shares.

``create_app`` installs them all: RFC 9457 problem+json errors, the
``X-Correlation-ID`` edge, dated ``Clearway-Version`` negotiation with
deprecation headers (docs/design.md §10), card numbers refused on decoded
values (docs/design.md §9, ``accepts_card_numbers`` for the one route that takes
them), request metrics and ``/metrics`` (docs/design.md §11),
and the ``/healthz``/``/readyz`` probes.
"""

from clearway.shared.http.app import OPS_PATHS, create_app
from clearway.shared.http.card_guard import accepts_card_numbers
from clearway.shared.http.contract import Money, documented, page_of
from clearway.shared.http.edge import EdgeMiddleware, accept_correlation_id, request_version
from clearway.shared.http.health import ReadinessCheck
from clearway.shared.http.paging import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    CursorCodec,
    CursorError,
    PageRequest,
    list_body,
    page_request,
)
from clearway.shared.http.problems import (
    CORRELATION_HEADER,
    PROBLEM_MEDIA_TYPE,
    FieldError,
    ProblemError,
    ProblemResponse,
    ValidationProblem,
    invalid_field,
    problem_response,
    problem_type_uri,
)
from clearway.shared.http.versioning import (
    VERSION_HEADER,
    ApiVersions,
    Deprecation,
    UnsupportedVersionError,
    platform_versions,
)

__all__ = [
    "CORRELATION_HEADER",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "OPS_PATHS",
    "PROBLEM_MEDIA_TYPE",
    "VERSION_HEADER",
    "ApiVersions",
    "CursorCodec",
    "CursorError",
    "Deprecation",
    "EdgeMiddleware",
    "FieldError",
    "Money",
    "PageRequest",
    "ProblemError",
    "ProblemResponse",
    "ReadinessCheck",
    "UnsupportedVersionError",
    "ValidationProblem",
    "accept_correlation_id",
    "accepts_card_numbers",
    "create_app",
    "documented",
    "invalid_field",
    "list_body",
    "page_of",
    "page_request",
    "platform_versions",
    "problem_response",
    "problem_type_uri",
    "request_version",
]
