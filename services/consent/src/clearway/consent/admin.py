"""Operator CLI: ``python -m clearway.consent.admin <command> --reason "…"``.

It calls the consent service's admin routes with an admin-scoped access token
(``--token`` / ``CLEARWAY_ADMIN_TOKEN``, or one fetched with ``--client-id`` and
``--client-secret`` / ``CLEARWAY_ADMIN_CLIENT_SECRET``). Every action needs a reason
and is emitted as a ``consent.admin_action`` event for the audit trail.

    rotate-keys                          publish a new signing key (platform:keys; throttled)
    disable-client CLIENT_ID             no new tokens, existing ones refused (admin:clients)
    rotate-client-secret CLIENT_ID [--overlap-seconds N]   prints the new secret once
    revoke-consent CONSENT_ID            (admin:consents)
    clients-on-version VERSION           clients still pinned to a dated API version
                                         (admin:clients; no reason needed: it only reads)

Client commands act within the caller's tenant; with ``--platform`` a platform
operator (``platform:clients``) acts on any tenant's client.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx

from clearway.shared.settings import PlatformSettings


def _token(args: argparse.Namespace, scope: str) -> str:
    if args.token:
        return str(args.token)
    secret = args.client_secret or os.environ.get("CLEARWAY_ADMIN_CLIENT_SECRET")
    if not (args.client_id and secret):
        raise SystemExit("an admin token is required: --token, or --client-id and --client-secret")
    response = httpx.post(
        f"{args.issuer}/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(args.client_id, secret),
        timeout=10,
    )
    if response.status_code != 200:
        raise SystemExit(f"cannot get an admin token: {response.text}")
    return str(response.json()["access_token"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m clearway.consent.admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--issuer", default=PlatformSettings.from_env().oauth_issuer)
    ap.add_argument("--token", default=os.environ.get("CLEARWAY_ADMIN_TOKEN"))
    ap.add_argument("--client-id")
    ap.add_argument("--client-secret")
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("rotate-keys", "disable-client", "rotate-client-secret", "revoke-consent"):
        p = sub.add_parser(name)
        if name != "rotate-keys":
            p.add_argument("target")
        p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
        p.add_argument("--approver", help="who approved it, if someone else")
        if name == "rotate-client-secret":
            p.add_argument("--overlap-seconds", type=int)
        if name in ("disable-client", "rotate-client-secret"):
            p.add_argument(
                "--platform", action="store_true", help="as a platform operator, any tenant"
            )
    p = sub.add_parser("clients-on-version")
    p.add_argument("target", metavar="VERSION")
    p.add_argument("--platform", action="store_true", help="as a platform operator, every tenant")
    args = ap.parse_args(argv)
    if args.command == "clients-on-version":
        return _clients_on_version(args)
    body: dict[str, object] = {"reason": args.reason, "approver": args.approver}
    route, scope = {
        "rotate-keys": ("/v1/platform/keys/rotation", "platform:keys"),
        "disable-client": ("/v1/admin/clients/{t}/disable", "admin:clients"),
        "rotate-client-secret": ("/v1/admin/clients/{t}/secret", "admin:clients"),
        "revoke-consent": ("/v1/admin/consents/{t}/revocation", "admin:consents"),
    }[args.command]
    if getattr(args, "platform", False):
        route, scope = route.replace("/v1/admin/", "/v1/platform/"), "platform:clients"
    if args.command == "rotate-client-secret" and args.overlap_seconds is not None:
        body["overlap_seconds"] = args.overlap_seconds
    path = route.format(t=getattr(args, "target", ""))
    response = httpx.post(
        f"{args.issuer}{path}",
        json=body,
        headers={"Authorization": f"Bearer {_token(args, scope)}"},
        timeout=30,
    )
    print(json.dumps(response.json(), indent=2))
    return 0 if response.is_success else 1


def _clients_on_version(args: argparse.Namespace) -> int:
    """Every page of ``GET /v1/{admin,platform}/clients?api_version=…``, one client a line."""
    route, scope = "/v1/admin/clients", "admin:clients"
    if args.platform:
        route, scope = "/v1/platform/clients", "platform:clients"
    headers = {"Authorization": f"Bearer {_token(args, scope)}"}
    params: dict[str, str] = {"api_version": args.target, "limit": "100"}
    while True:
        response = httpx.get(f"{args.issuer}{route}", params=params, headers=headers, timeout=30)
        if not response.is_success:
            print(json.dumps(response.json(), indent=2))
            return 1
        page = response.json()
        for c in page["data"]:
            print(f"{c['client_id']}\t{c['tenant']}\t{c['status']}\t{c['name']}")
        if not page["has_more"]:
            return 0
        params["cursor"] = page["next_cursor"]


if __name__ == "__main__":
    sys.exit(main())
