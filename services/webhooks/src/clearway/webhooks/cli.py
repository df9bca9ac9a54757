"""``python -m clearway.webhooks.cli``: re-delivery from the command line, over the HTTP API.

    python -m clearway.webhooks.cli replay --endpoint ep_… --since 2026-01-01T00:00:00Z \\
        --until 2026-01-02T00:00:00Z --status failed [--dry-run]
    python -m clearway.webhooks.cli rerun rpl_…
    python -m clearway.webhooks.cli resend msg_…

The token (scope ``webhooks:replay`` and ``webhooks:read``) comes from
``--token`` or ``$CLEARWAY_TOKEN``; the service from ``--url`` or
``$CLEARWAY_WEBHOOKS_URL`` (default http://127.0.0.1:8002).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import httpx
from tqdm import tqdm


def _client(args: argparse.Namespace) -> httpx.Client:
    token = args.token or os.environ.get("CLEARWAY_TOKEN")
    if not token:
        raise SystemExit("a token is needed: --token or $CLEARWAY_TOKEN")
    return httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _check(r: httpx.Response) -> dict[str, Any]:
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise SystemExit(f"error {r.status_code}: {detail}")
    data: dict[str, Any] = r.json()
    return data


def follow(client: httpx.Client, job: dict[str, Any], poll_s: float = 0.5) -> dict[str, Any]:
    """Show a job's progress until it is done; returns the final job."""
    with tqdm(total=job["total"], unit="msg", desc=job["id"]) as bar:
        while True:
            bar.total = max(job["total"], job["processed"])
            bar.n = job["processed"]
            bar.set_postfix(queued=job["queued"], skipped=job["skipped"])
            bar.refresh()
            if job["state"] == "done":
                return job
            time.sleep(poll_s)
            job = _check(client.get(f"/v1/replays/{job['id']}"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="clearway-webhooks", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--url", default=os.environ.get("CLEARWAY_WEBHOOKS_URL", "http://127.0.0.1:8002")
    )
    ap.add_argument("--token")
    sub = ap.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="re-queue an endpoint's messages by time range and status")
    rp.add_argument("--endpoint", required=True)
    rp.add_argument("--since", required=True)
    rp.add_argument("--until", required=True)
    rp.add_argument("--status", choices=["failed", "skipped", "all"], default="failed")
    rp.add_argument("--dry-run", action="store_true")
    rr = sub.add_parser("rerun", help="run a replay job again (safe: no double delivery)")
    rr.add_argument("job")
    rs = sub.add_parser("resend", help="resend one message")
    rs.add_argument("message")
    args = ap.parse_args(argv)
    with _client(args) as client:
        if args.command == "resend":
            msg = _check(client.post(f"/v1/messages/{args.message}/resend"))
            print(f"{msg['id']} queued ({msg['status']})")
            return 0
        if args.command == "rerun":
            job = _check(client.post(f"/v1/replays/{args.job}/run"))
        else:
            job = _check(
                client.post(
                    "/v1/replays",
                    json={
                        "endpoint_id": args.endpoint,
                        "since": args.since,
                        "until": args.until,
                        "status": args.status,
                        "dry_run": args.dry_run,
                    },
                )
            )
        job = follow(client, job)
        verb = "would re-queue" if job["dry_run"] else "re-queued"
        print(
            f"{job['id']}: {verb} {job['queued']} of {job['processed']} message(s),"
            f" skipped {job['skipped']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
