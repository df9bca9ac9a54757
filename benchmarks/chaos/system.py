"""The system under fault: a private embedded stack and every service as its own process.

Never the shared development stack: Postgres and a secured Kafka broker are
started under ``.local/chaos-<pid>`` on free ports (``deploy/local/localstack.py``),
durable (fsync and synchronous commit on: an immediate Postgres stop must not lose
an acknowledged commit), and the services run as ``make run`` runs them
(``python -m clearway.<pkg>``), each in its own process group so that a SIGKILL
takes the whole service down at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

import httpx

from clearway.shared.kafka_acl import SERVICES as KAFKA_SERVICES
from clearway.shared.kafka_acl import acl_admin, create_acls, platform_acls, stack_users
from clearway.shared.kafka_link import KafkaLink, KafkaLogin, principal

ROOT = Path(__file__).resolve().parents[2]
#: Started in this order: consent issues every token, the rail before transfer.
SERVICES = ("consent", "rail", "transfer", "webhooks", "audit")
TENANT = "tnt_demo_alpha"


def _localstack() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "chaos_localstack", ROOT / "deploy/local/localstack.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


localstack = _localstack()


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class System:
    """The private stack and the services; every fault the run injects is a method."""

    def __init__(self, base: Path, webhook_schedule: str) -> None:
        self.base = base
        self.local = base / "local"
        self.logs = base / "logs"
        self.ports = {svc: localstack.free_port() for svc in SERVICES}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.webhook_schedule = webhook_schedule
        self.ep = None
        self.users: dict[str, str] = {}
        self._held: dict[str, float] = {}  # service -> not restarted before this time
        self.restarts: Counter[str] = Counter()

    def url(self, svc: str) -> str:
        return f"http://127.0.0.1:{self.ports[svc]}"

    # ------------------------------------------------------------------ stack

    def start_stack(self) -> None:
        self.local.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.ep = localstack.up(self.base / "stack", sasl_users=stack_users())
        self.users = localstack.kafka_users(self.base / "stack") or {}
        asyncio.run(self._grant())

    def link(self, name: str) -> KafkaLink:
        """The broker as ``name`` (a SASL user of the stack)."""
        assert self.ep is not None
        return KafkaLink(
            self.ep.kafka_bootstrap, "SASL_PLAINTEXT", login=KafkaLogin(name, self.users[name])
        )

    async def _grant(self) -> None:
        async with acl_admin(self.link(localstack.KAFKA_ADMIN)) as admin:
            await create_acls(admin, platform_acls())

    def stop_stack(self) -> None:
        localstack.down(self.base / "stack")

    @property
    def database_url(self) -> str:
        assert self.ep is not None
        return str(self.ep.database_url)

    def kill_kafka(self) -> None:
        """SIGKILL the broker: no controlled shutdown, its logs recovered at restart."""
        localstack.stop_kafka(self.base / "stack", signal.SIGKILL)

    def start_kafka(self) -> None:
        assert self.ep is not None
        localstack.start_kafka(
            self.base / "stack", self.ep.kafka_port, self.ep.controller_port, users=self.users
        )

    def restart_postgres_immediate(self) -> None:
        """``pg_ctl -m immediate stop`` (crash recovery at start), then start it again."""
        assert self.ep is not None
        localstack.stop_postgres(self.base / "stack", mode="immediate")
        localstack.start_postgres(self.base / "stack", self.ep.pg_port, tuned_for_tests=False)

    # --------------------------------------------------------------- services

    def env(self, svc: str) -> dict[str, str]:
        assert self.ep is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARWAY_", "SOFTHSM2"))}
        logins = {}
        for name in KAFKA_SERVICES:
            user = principal(name)
            logins[f"CLEARWAY_{name.upper()}_KAFKA_USERNAME"] = user
            logins[f"CLEARWAY_{name.upper()}_KAFKA_PASSWORD"] = self.users[user]
        return (
            env
            | logins
            | {
                "CLEARWAY_DATABASE_URL": self.ep.database_url,
                "CLEARWAY_KAFKA_BOOTSTRAP": self.ep.kafka_bootstrap,
                "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "CLEARWAY_OAUTH_ISSUER": self.url("consent"),
                "CLEARWAY_LOCAL_DIR": str(self.local),
                "CLEARWAY_CONSENT_SEED_DEMO": "1",
                "CLEARWAY_TRANSFER_SEED_DEMO": "1",
                "CLEARWAY_CONSENT_ARGON2_TIME_COST": "1",
                "CLEARWAY_CONSENT_ARGON2_MEMORY_KIB": "8192",
                "CLEARWAY_TRANSFER_RAIL_URL": self.url("rail"),
                "CLEARWAY_TRANSFER_SANDBOX_RAIL_URL": self.url("rail"),
                # a key left in flight by a killed process is taken over after this
                "CLEARWAY_TRANSFER_LOCK_TIMEOUT_S": "5",
                "CLEARWAY_TRANSFER_MAINTENANCE_INTERVAL_S": "2",
                "CLEARWAY_TRANSFER_SWEEP_GRACE_S": "5",
                "CLEARWAY_WEBHOOKS_ALLOW_NETWORKS": "127.0.0.0/8",
                "CLEARWAY_WEBHOOKS_SCHEDULE": self.webhook_schedule,
                "CLEARWAY_WEBHOOKS_BREAKER_COOLDOWN_S": "1",
                "CLEARWAY_WEBHOOKS_BREAKER_MAX_COOLDOWN_S": "4",
                "CLEARWAY_WEBHOOKS_REQUEST_TIMEOUT_S": "5",
                "CLEARWAY_WEBHOOKS_LEASE_S": "10",
                "CLEARWAY_AUDIT_CHECKPOINT_INTERVAL_S": "2",
                f"CLEARWAY_{svc.upper()}_PORT": str(self.ports[svc]),
            }
        )

    def spawn(self, svc: str) -> None:
        out = open(self.logs / f"{svc}.log", "ab")
        self.procs[svc] = subprocess.Popen(
            [sys.executable, "-m", f"clearway.{svc}"],
            env=self.env(svc),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        out.close()

    async def healthy(
        self, svc: str, timeout_s: float = 120.0, supervised: bool = False, path: str = "/healthz"
    ) -> None:
        """Wait for ``path`` to answer 200; a service that exits fails at once unless
        ``supervised`` (then :meth:`supervise` restarts it)."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                proc = self.procs[svc]
                if proc.poll() is not None and not supervised:
                    tail = (self.logs / f"{svc}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{svc} exited with {proc.returncode}:\n{tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url(svc)}{path}")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{svc} not healthy within {timeout_s:.0f} s")

    async def start_services(self) -> None:
        """Consent first (it seeds the clients the others use), then the rest at once;
        each ready (``/readyz``: its topics made, its consumers running), so the load
        starts on a platform that is up, and the faults find it there."""

        async def start(svc: str) -> None:
            self.spawn(svc)
            await self.healthy(svc, path="/readyz")
            log(f"{svc} up on {self.url(svc)}")

        await start(SERVICES[0])
        await asyncio.gather(*(start(svc) for svc in SERVICES[1:]))

    def kill(self, svc: str, down_s: float) -> None:
        """SIGKILL the service's whole process group and reap it; :meth:`supervise`
        starts it again ``down_s`` later."""
        self._held[svc] = time.monotonic() + down_s
        proc = self.procs[svc]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart every service that exited, as a container runtime would (a service
        started while Postgres recovers exits, and is started again)."""
        while not stop.is_set():
            for svc, proc in list(self.procs.items()):
                if proc.poll() is not None and time.monotonic() >= self._held.get(svc, 0.0):
                    self.restarts[svc] += 1
                    self.spawn(svc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    def stop_services(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)

    def log_digest(self, per_service: int = 8) -> str:
        """The last warnings and errors of each service's log (JSON lines), for a
        failed run's report: its cause is usually there."""
        out = []
        for svc in SERVICES:
            path = self.logs / f"{svc}.log"
            if not path.exists():
                continue
            bad = []
            for line in path.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    if line.strip():
                        bad.append(line.strip()[:300])
                    continue
                if isinstance(rec, dict) and rec.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                    bad.append(
                        f"{rec.get('ts')} {rec['level']} {rec.get('logger')}:"
                        f" {str(rec.get('message'))[:240]}"
                    )
            out.append(f"--- {svc}: last {min(per_service, len(bad))} of {len(bad)} warnings")
            out.extend(bad[-per_service:])
        return "\n".join(out)

    def client(self, role: str) -> tuple[str, str]:
        """(client id, secret) of the demo tenant's ``role`` client, as consent seeded it."""
        clients = json.loads((self.local / "dev-clients.json").read_text())
        c = next(c for c in clients if c["client_id"] == f"{TENANT}-{role}")
        return str(c["client_id"]), str(c["client_secret"])
