"""The scope catalog: every OAuth scope of the platform, named for a financial intent.

This constant is the one source of ``docs/scopes.md`` (``python -m clearway.consent.scopes``
rewrites it; a test fails when the page is stale). A client is registered with only
the scopes it needs; a token's audience follows from the scopes it carries.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from clearway.shared.auth import PLATFORM_TENANT  # the operator's tenant (re-exported)


@dataclass(frozen=True)
class Scope:
    name: str
    audience: str
    description: str
    admin: bool = False
    #: platform-wide reach (operators of ``PLATFORM_TENANT`` only); admin scopes
    #: without it are confined to the caller's tenant
    platform: bool = False
    #: for the platform's own services only (their calls to the rail and the vault,
    #: docs/design.md §7): never granted to a tenant's client through the API
    service: bool = False

    @property
    def reach(self) -> str:
        if self.service:
            return "service"
        return "platform" if self.platform else ("tenant" if self.admin else "")


SCOPES: tuple[Scope, ...] = (
    Scope("payments:initiate", "clearway-transfer", "Create transfers (payment initiation)."),
    Scope("payments:read", "clearway-transfer", "Read transfers and their status."),
    Scope("payments:cancel", "clearway-transfer", "Cancel a pending transfer."),
    Scope("webhooks:endpoints:manage", "clearway-webhooks", "Create, change, delete endpoints."),
    Scope("webhooks:read", "clearway-webhooks", "Read endpoints, messages and attempts."),
    Scope("webhooks:replay", "clearway-webhooks", "Resend messages and start replays."),
    Scope("consents:read", "clearway-consent", "Read the tenant's consents."),
    Scope("consents:write", "clearway-consent", "Create consents for users (partners)."),
    Scope("consents:revoke", "clearway-consent", "Revoke a consent."),
    Scope("audit:read", "clearway-audit", "Read audit records, proofs and verify the chain."),
    Scope("rail:charges", "clearway-rail", "Charge at the rail and read charges.", service=True),
    Scope("rail:settlements", "clearway-rail", "Read the rail's settlement report.", service=True),
    Scope(
        "rail:sandbox",
        "clearway-rail",
        "Sandbox rail tools: faults, forgetting charges.",
        service=True,
    ),
    Scope("cards:tokenize", "clearway-vault", "Tokenize cards and read the tenant's card tokens."),
    Scope(
        "cards:verify",
        "clearway-vault",
        "Check that a card token exists for a tenant.",
        service=True,
    ),
    Scope(
        "cards:detokenize",
        "clearway-vault",
        "Read a card number to submit a payment to the rail (transfer executor only; audited).",
        service=True,
    ),
    Scope(
        "admin:clients",
        "clearway-consent",
        "Disable the tenant's own clients, rotate their secrets.",
        admin=True,
    ),
    Scope("admin:consents", "clearway-consent", "Revoke any consent of the tenant.", admin=True),
    Scope(
        "platform:keys",
        "clearway-consent",
        "Rotate the platform's token-signing keys (throttled, with a reason).",
        admin=True,
        platform=True,
    ),
    Scope(
        "platform:clients",
        "clearway-consent",
        "Disable any tenant's client, rotate its secret.",
        admin=True,
        platform=True,
    ),
    Scope(
        "platform:webhooks",
        "clearway-webhooks",
        "Rotate every webhook secret of any tenant at once (breach containment).",
        admin=True,
        platform=True,
    ),
    Scope(
        "platform:dead-letters",
        "clearway-webhooks",
        "See the webhooks consumer's dead letters (redacted) and redrive them, with a reason.",
        admin=True,
        platform=True,
    ),
    Scope(
        "platform:audit",
        "clearway-audit",
        "Read any tenant's audit records (breach drill verification).",
        admin=True,
        platform=True,
    ),
)

BY_NAME = {s.name: s for s in SCOPES}
ADMIN_SCOPES = frozenset(s.name for s in SCOPES if s.admin)
PLATFORM_SCOPES = frozenset(s.name for s in SCOPES if s.platform)
#: what a tenant's own clients may hold (and a sandbox client be registered with)
TENANT_SCOPES = frozenset(s.name for s in SCOPES if not (s.platform or s.service))
AUDIENCES = frozenset(s.audience for s in SCOPES)

#: Sign-in roles of the platform's console (docs/design.md §7): what a signed-in user's
#: own token may carry. A user of the operator tenant is an operator; any other user
#: is a partner of their own tenant. The console's requested scopes are narrowed to
#: the role's, so a partner never holds a platform scope.
OPERATOR_SIGN_IN = frozenset(
    {"audit:read", "platform:audit", "platform:clients", "platform:dead-letters"}
)
PARTNER_SIGN_IN = frozenset(
    {
        "payments:read",
        "consents:read",
        "audit:read",
        "webhooks:read",
        "webhooks:replay",
        "webhooks:endpoints:manage",
    }
)


def sign_in_scopes(tenant: str) -> frozenset[str]:
    """The scopes a user of ``tenant`` may hold when signed in to the console."""
    return OPERATOR_SIGN_IN if tenant == PLATFORM_TENANT else PARTNER_SIGN_IN


def audiences_for(scopes: frozenset[str] | set[str]) -> list[str]:
    """The services a token carrying ``scopes`` is meant for (its ``aud``)."""
    return sorted({BY_NAME[s].audience for s in scopes if s in BY_NAME})


def render_markdown() -> str:
    """``docs/scopes.md``: the catalog as a table."""
    lines = [
        "# OAuth scope catalog",
        "",
        "Generated from `clearway.consent.scopes.SCOPES` by",
        "`uv run python -m clearway.consent.scopes docs/scopes.md`; do not edit by hand.",
        "",
        "A token's audience (`aud`) is the set of services its scopes belong to,",
        "unless the client narrows it with `resource` (RFC 8707). Admin scopes are",
        "for operators only (the admin CLI); every admin action needs a reason and",
        "is emitted as a `consent.admin_action` event carrying the tenant it touched.",
        "Reach `tenant`: confined to the caller's tenant. Reach `platform`: only",
        f"clients of the operator tenant `{PLATFORM_TENANT}` may hold it. Reach",
        "`service`: for the platform's own services (their calls to the rail and the",
        "vault), never registered for a tenant's client through the API (such as a",
        "test-mode client of a tenant's sandbox twin).",
        "",
        "| scope | audience | reach | grants |",
        "|---|---|---|---|",
    ]
    for s in SCOPES:
        lines.append(f"| `{s.name}` | `{s.audience}` | {s.reach or '-'} | {s.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/scopes.md")
    target.write_text(render_markdown(), encoding="utf-8")
    print(f"wrote {target}")
