"""Run the whole platform locally: the embedded stack plus every service that exists.

    python deploy/local/platform.py up|down|status|show

Services run in the background on fixed loopback ports; logs and pid files go
to the git-ignored ``.local/``. A service is started when its package is
installed (``python -m clearway.<package>`` is its entry point).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LOCAL = ROOT / ".local"
STACK = LOCAL / "stack"
# This file's name shadows the standard library's ``platform`` (imported by uuid, and
# so by aiokafka): its directory leaves the import path and localstack loads by file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("localstack", HERE / "localstack.py")
assert _spec is not None and _spec.loader is not None
localstack = importlib.util.module_from_spec(_spec)
sys.modules["localstack"] = localstack
_spec.loader.exec_module(localstack)
_spec = importlib.util.spec_from_file_location("tracing", HERE / "tracing.py")
assert _spec is not None and _spec.loader is not None
tracing = importlib.util.module_from_spec(_spec)
sys.modules["tracing"] = tracing
_spec.loader.exec_module(tracing)

from clearway.shared.kafka_acl import SERVICES as KAFKA_SERVICES  # noqa: E402
from clearway.shared.kafka_acl import acl_admin, create_acls, platform_acls, stack_users  # noqa: E402
from clearway.shared.kafka_link import KafkaLink, KafkaLogin, principal  # noqa: E402

#: name, python package, port (fixed loopback ports, see README)
SERVICES = [
    ("sandbox-rail", "rail", 8005),
    ("consent", "consent", 8003),
    ("consent-us", "consent", 8103),
    ("vault", "vault", 8006),
    ("vault-us", "vault", 8106),
    ("transfer", "transfer", 8001),
    ("webhooks", "webhooks", 8002),
    ("audit", "audit", 8004),
    # last: it signs users in at consent and reads the others (its client: consent's seed)
    ("console", "console", 8007),
]


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(f"clearway.{package}.__main__") is not None
    except ModuleNotFoundError:
        return False


#: Residency (docs/design.md §9, ADR 0032, ADR 0039): the demo tenant beta lives in
#: region us, every other tenant in eu. The vault holds cards and the consent service
#: users and consents, so they run once per region, each on its region's database and
#: HSM token (its KEK); the consent deployments share the global authorization
#: server's tables (the eu database) and signing token. The other services are global.
TENANT_REGIONS = {"tnt_demo_beta": "us"}
REGIONAL = {
    "vault-us": {
        "CLEARWAY_REGION": "us",
        "CLEARWAY_VAULT_HSM_TOKEN": "clearway-us",
    },
    "consent-us": {
        "CLEARWAY_REGION": "us",
        "CLEARWAY_CONSENT_HSM_TOKEN": "clearway-us",
        "CLEARWAY_CONSENT_SIGNING_HSM_TOKEN": "clearway",
    },
}


def _region_env(name: str, ep: localstack.Endpoints) -> dict[str, str]:
    extra = REGIONAL.get(name, {})
    region = extra.get("CLEARWAY_REGION", "eu")
    env = {**extra, "CLEARWAY_DATABASE_URL": ep.region_database_url(region)}
    if name == "consent-us":  # the issuer's tables: the eu deployment's database
        env["CLEARWAY_CONSENT_GLOBAL_DATABASE_URL"] = ep.database_url
    return env


def _env(ep: localstack.Endpoints, users: dict[str, str]) -> dict[str, str]:
    """The variables every service gets (names: docs/configuration.md): the broker is
    secured, each service logs in as its own principal with its generated password."""
    logins = {
        f"CLEARWAY_{svc.upper()}_KAFKA_PASSWORD": users[principal(svc)] for svc in KAFKA_SERVICES
    }
    return {
        **os.environ,
        "CLEARWAY_DATABASE_URL": ep.database_url,
        "CLEARWAY_KAFKA_BOOTSTRAP": ep.kafka_bootstrap,
        "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        **logins,
        "CLEARWAY_LOCAL_DIR": str(LOCAL),
        "CLEARWAY_TENANT_REGIONS": json.dumps(TENANT_REGIONS),
        "CLEARWAY_CONSENT_SEED_DEMO": "1",
        "CLEARWAY_TRANSFER_SEED_DEMO": "1",
    }


async def _grant(ep: localstack.Endpoints, users: dict[str, str]) -> None:
    """Each service's ACLs (idempotent), as the broker's super user."""
    admin = KafkaLogin(localstack.KAFKA_ADMIN, users[localstack.KAFKA_ADMIN])
    async with acl_admin(KafkaLink(ep.kafka_bootstrap, "SASL_PLAINTEXT", login=admin)) as a:
        await create_acls(a, platform_acls())


def _service_client(pkg: str) -> dict[str, str]:
    """The service's OAuth client secret for internal calls (the transfer service's
    rail tokens), as the consent service seeded it into ``dev-clients.json``."""
    try:
        clients = json.loads((LOCAL / "dev-clients.json").read_text())
    except (OSError, ValueError):
        return {}
    secret = next(
        (c["client_secret"] for c in clients if c.get("client_id") == f"clearway-{pkg}"), None
    )
    return {f"CLEARWAY_{pkg.upper()}_CLIENT_SECRET": secret} if secret else {}


def _pidfile(name: str) -> Path:
    return LOCAL / "run" / f"{name}.pid"


def _running(name: str) -> int | None:
    f = _pidfile(name)
    if not f.exists():
        return None
    try:
        pid = int(f.read_text())
        os.kill(pid, 0)
        return pid
    except (ValueError, ProcessLookupError):
        return None


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


JAEGER = tracing.JaegerPorts()


def _start_jaeger() -> bool:
    """Start Jaeger with its web UI; True when it runs. Built in the background on the
    first run (``make jaeger``, from the Go module proxy): traces start with the next
    ``make run`` after the build."""
    if _running("jaeger-build") or not tracing.JAEGER_BIN.exists():
        _build_jaeger()  # (a binary being linked is not one yet)
        return False
    if not _running("jaeger"):
        log = open(LOCAL / "logs" / "jaeger.log", "ab")
        proc = tracing.start(LOCAL, JAEGER, log)
        _pidfile("jaeger").write_text(str(proc.pid))
        if not tracing.wait_ready(JAEGER, proc):
            print("[platform] jaeger did not start; see .local/logs/jaeger.log", file=sys.stderr)
            return False
    print(f"[platform] jaeger up: UI {JAEGER.ui_url}/ , OTLP {JAEGER.otlp_endpoint}")
    return True


def _build_jaeger() -> None:
    log = LOCAL / "logs" / "jaeger-build.log"
    if _running("jaeger-build"):
        print(f"[platform] jaeger is still being built (log: {log}); tracing is off this time")
        return
    if shutil.which("go") is None:
        print("[platform] tracing is off: Jaeger is built with Go (https://go.dev/dl), not found")
        return
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "jaeger"],
        cwd=ROOT,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _pidfile("jaeger-build").write_text(str(proc.pid))
    print(
        f"[platform] building Jaeger in the background (make jaeger, log: {log}); "
        "tracing is off this time: `make down && make run` once it is built"
    )


def up() -> int:
    ep = localstack.up(STACK, localstack.Endpoints(55432, 59092, 59093), sasl_users=stack_users())
    users = localstack.kafka_users(STACK) or {}
    asyncio.run(_grant(ep, users))
    (LOCAL / "run").mkdir(parents=True, exist_ok=True)
    (LOCAL / "logs").mkdir(parents=True, exist_ok=True)
    traced = _start_jaeger()
    started = []
    for name, pkg, port in SERVICES:
        if not _installed(pkg):
            continue
        if _running(name):
            print(f"[platform] {name} already running")
            continue
        log = open(LOCAL / "logs" / f"{name}.log", "ab")
        # consent starts first and seeds the service clients the others use
        env = (
            _env(ep, users)
            | {f"CLEARWAY_{pkg.upper()}_PORT": str(port)}
            | _service_client(pkg)
            | _region_env(name, ep)
        )
        if traced:
            env["CLEARWAY_OTLP_ENDPOINT"] = JAEGER.otlp_endpoint
        # Local development only: partners' test receivers run on this machine.
        env.setdefault("CLEARWAY_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.0/8")
        proc = subprocess.Popen(
            [sys.executable, "-m", f"clearway.{pkg}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        _pidfile(name).write_text(str(proc.pid))
        started.append((name, port, proc))
        # later services may depend on earlier ones (consent seeds clients): wait
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _healthy(port):
            if proc.poll() is not None:
                print(f"[platform] {name} exited; see .local/logs/{name}.log", file=sys.stderr)
                return 1
            time.sleep(0.3)
        print(f"[platform] {name} {'up' if _healthy(port) else 'NOT healthy'} on 127.0.0.1:{port}")
    return 0


def down() -> int:
    for name, _, _ in [*reversed(SERVICES), ("jaeger", "", 0)]:
        pid = _running(name)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if not _running(name):
                    break
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _pidfile(name).unlink(missing_ok=True)
    localstack.down(STACK)
    print("[platform] down")
    return 0


def status() -> int:
    code = localstack.main(["status", "--dir", str(STACK)])
    for name, pkg, port in SERVICES:
        if not _installed(pkg):
            print(f"{name}: not built yet")
            continue
        state = "healthy" if _healthy(port) else ("running" if _running(name) else "down")
        print(f"{name}: {state} (127.0.0.1:{port})")
    return code


def show() -> int:
    ep = localstack.load(STACK)
    if not ep:
        print("platform is down: make run")
        return 1
    print(f"""
Clearway is up.
  Postgres  {ep.database_url}  (region us: {ep.region_database_url("us")})
  Kafka     {ep.kafka_bootstrap}  (SASL_PLAINTEXT, SCRAM-SHA-256; a principal per service,
            passwords in {STACK / "kafka" / "users.json"})
  Logs      .local/logs/   (make status, make down)""")
    for name, pkg, port in SERVICES:
        if _installed(pkg):
            page = "/" if name == "console" else "/docs"
            print(f"  {name:<12} http://127.0.0.1:{port}{page}")
    if _installed("console"):
        print("  Console sign-in: alice or bob (partners), olga (operator); password demo-password")
    if _running("jaeger"):
        print(f"  Jaeger UI    {JAEGER.ui_url}/   (traces of every service)")
    elif _running("jaeger-build"):
        print(f"  Jaeger       being built: {LOCAL / 'logs' / 'jaeger-build.log'}")
    clients = LOCAL / "dev-clients.json"
    if clients.exists():
        print(f"  Dev OAuth clients: {clients}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("command", choices=["up", "down", "status", "show"])
    cmd = ap.parse_args().command
    try:
        return {"up": up, "down": down, "status": status, "show": show}[cmd]()
    except localstack.StackError as e:
        print(f"[platform] {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
