"""The embedded local stack: a real Postgres cluster and a real Apache Kafka broker.

No Docker here: Postgres runs from Debian's server binaries in a private data
dir, Kafka (KRaft, single node) from the Maven Central jars collected by
``deploy/local/kafka/pom.xml``. Standard library only, so it can run before
anything else is installed.

    python deploy/local/localstack.py up|down|status [--dir .local/stack]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
KAFKA_DIR = HERE / "kafka"
KAFKA_LIBS = HERE / "kafka-libs"
KAFKA_STARTED = "Kafka Server started"
#: The database of each region's services (``CLEARWAY_REGION``); the first is the
#: default region's, which every global service uses too.
REGION_DATABASES = {"eu": "clearway", "us": "clearway_us"}


class StackError(RuntimeError):
    """The stack could not be brought up; the message says which part and why."""


@dataclass
class Endpoints:
    """Where the running stack listens; written to ``<dir>/endpoints.json``."""

    pg_port: int
    kafka_port: int
    controller_port: int

    @property
    def database_url(self) -> str:
        return self.region_database_url("eu")

    def region_database_url(self, region: str) -> str:
        """The database of ``region``'s services (``REGION_DATABASES``)."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{REGION_DATABASES[region]}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(msg: str) -> None:
    print(f"[localstack] {msg}", flush=True)


# ---------------------------------------------------------------- Postgres


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not found and shutil.which("initdb"):
        return Path(shutil.which("initdb") or "").resolve().parent
    if not found:
        _install_apt("postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not found:
        raise StackError("Postgres server binaries not found and could not be installed")
    return Path(found[0]).parent


def _install_apt(*packages: str) -> None:
    if os.geteuid() != 0:
        raise StackError(f"missing {packages}; install them (apt-get install {' '.join(packages)})")
    _log(f"installing {' '.join(packages)} from Debian")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def _pg_user() -> str | None:
    """Postgres refuses to run as root: run it as the ``postgres`` system user then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return "postgres"


def _as_pg(cmd: list[str], user: str | None, **kw: object) -> subprocess.CompletedProcess[bytes]:
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload,no-any-return]


def start_postgres(base: Path, port: int, tuned_for_tests: bool) -> None:
    bindir = pg_bindir()
    data = base / "pg" / "data"
    sock = base / "pg" / "sock"
    user = _pg_user()
    sock.mkdir(parents=True, exist_ok=True)
    if user:
        info = pwd.getpwnam(user)
        for p in (base / "pg", sock):
            os.chown(p, info.pw_uid, info.pw_gid)
        _make_traversable(base)
    if not (data / "PG_VERSION").exists():
        _log(f"initdb {data}")
        _as_pg(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            user,
            stdout=subprocess.DEVNULL,
        )
    opts = [
        f"-p {port}",
        "-c listen_addresses=127.0.0.1",
        f"-k {sock}",
        "-c max_connections=300",
        "-c shared_buffers=256MB",
    ]
    if tuned_for_tests:
        # Test clusters are thrown away: durability buys nothing there.
        opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    logf = base / "pg" / "postgres.log"
    _as_pg(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(logf),
            "-o",
            " ".join(opts),
            "-w",
            "-t",
            "60",
            "start",
        ],
        user,
        stdout=subprocess.DEVNULL,
    )
    out = subprocess.run(
        [
            str(bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-tAc",
            "select version()",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    _log(f"Postgres ready on 127.0.0.1:{port}: {out}")
    # one database per region (docs/design.md §9): in production each region is its
    # own cluster (ADR 0032); locally two databases of one cluster stand for them
    for dbname in REGION_DATABASES.values():
        exists = subprocess.run(
            [
                str(bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-tAc",
                f"select 1 from pg_database where datname='{dbname}'",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    dbname,
                ],
                check=True,
            )


def _make_traversable(path: Path) -> None:
    for p in [path, *path.parents]:
        with contextlib.suppress(OSError):
            mode = p.stat().st_mode
            if not mode & 0o001:
                os.chmod(p, mode | 0o001)


def stop_postgres(base: Path, mode: str = "fast") -> None:
    """Stop the cluster under ``base``; ``mode`` is pg_ctl's shutdown mode (``immediate``:
    no checkpoint, crash recovery at the next start, as after a power loss of the
    server process)."""
    data = base / "pg" / "data"
    if not (data / "postmaster.pid").exists():
        return
    with contextlib.suppress(subprocess.CalledProcessError, StackError):
        _as_pg(
            [str(pg_bindir() / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"],
            _pg_user(),
            stdout=subprocess.DEVNULL,
        )


# ------------------------------------------------------------------- Kafka


def ensure_kafka_libs() -> Path:
    if not glob.glob(str(KAFKA_LIBS / "kafka_2.13-*.jar")):
        if not shutil.which("mvn"):
            _install_apt("maven")
        _log("collecting Kafka jars from Maven Central")
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA_DIR / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={KAFKA_LIBS}",
            ],
            check=True,
        )
    return KAFKA_LIBS


def _java() -> str:
    java = shutil.which("java")
    if not java:
        _install_apt("openjdk-17-jre-headless")
        java = shutil.which("java")
    if not java:
        raise StackError("java not found")
    return java


#: The broker's own principal (super user): the controller and inter-broker links,
#: and the administration of topics, credentials and ACLs.
KAFKA_ADMIN = "admin"
#: SASL mechanism of the client listener (RFC 7677 SCRAM-SHA-256; credentials live in
#: the cluster metadata, added at format time).
SCRAM = "SCRAM-SHA-256"


def _jaas(module: str, user: str, password: str, **extra: str) -> str:
    fields = " ".join(
        f'{k}="{v}"' for k, v in {"username": user, "password": password, **extra}.items()
    )
    return f"org.apache.kafka.common.security.{module} required {fields};"


def _security_properties(users: dict[str, str]) -> list[str]:
    """SASL/SCRAM on the client listener, PLAIN (static, the broker alone) on the
    controller listener, the StandardAuthorizer denying what no ACL allows."""
    admin = users[KAFKA_ADMIN]
    return [
        "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT",
        "inter.broker.listener.name=CLIENT",
        f"sasl.enabled.mechanisms={SCRAM}",
        f"sasl.mechanism.inter.broker.protocol={SCRAM}",
        f"listener.name.client.{SCRAM.lower()}.sasl.jaas.config="
        + _jaas("scram.ScramLoginModule", KAFKA_ADMIN, admin),
        # SCRAM credentials live in the metadata the controller serves, so the
        # controller listener authenticates with PLAIN against this file instead.
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "listener.name.controller.plain.sasl.jaas.config="
        + _jaas("plain.PlainLoginModule", KAFKA_ADMIN, admin, **{f"user_{KAFKA_ADMIN}": admin}),
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{KAFKA_ADMIN}",
        "allow.everyone.if.no.acl.found=false",
    ]


def kafka_users(base: Path) -> dict[str, str] | None:
    """The SCRAM users of a secured broker under ``base`` (name -> password), if any."""
    f = base / "kafka" / "users.json"
    return json.loads(f.read_text()) if f.exists() else None


def start_kafka(
    base: Path,
    port: int,
    controller_port: int,
    timeout: float = 90.0,
    users: dict[str, str] | None = None,
) -> None:
    """Start a single-node KRaft broker under ``base``.

    With ``users`` (name -> password, ``admin`` among them) it is secured: SASL/SCRAM
    clients only and ACLs enforced (``admin`` is the super user); the users are kept
    in ``<base>/kafka/users.json`` (mode 0600). Without, it is open PLAINTEXT.
    """
    libs = ensure_kafka_libs()
    kdir = base / "kafka"
    kdir.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    listener = "CLIENT" if users else "PLAINTEXT"
    security = (
        _security_properties(users)
        if users
        else ["listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"]
    )
    props.touch(mode=0o600)
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"listeners={listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners={listener}://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                *security,
                f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
                f"log.dirs={kdir / 'data'}",
                "num.partitions=3",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "delete.topic.enable=true",
                "",
            ]
        )
    )
    if users:
        secrets = kdir / "users.json"
        secrets.touch(mode=0o600)
        secrets.write_text(json.dumps(users))
    cp = f"{libs}/*"
    java = _java()
    if not (kdir / "data" / "meta.properties").exists():
        cluster = (
            subprocess.run(
                [java, "-cp", cp, "kafka.tools.StorageTool", "random-uuid"],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        subprocess.run(
            [
                java,
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster,
                "-c",
                str(props),
                "--standalone",
                *(
                    arg
                    for name, password in (users or {}).items()
                    for arg in ("--add-scram", f"{SCRAM}=[name={name},password={password}]")
                ),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    logf = kdir / "kafka.log"
    offset = logf.stat().st_size if logf.exists() else 0
    out = open(logf, "ab")
    proc = subprocess.Popen(
        [
            java,
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            "-cp",
            cp,
            "kafka.Kafka",
            str(props),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (kdir / "kafka.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"Kafka exited with {proc.returncode}; see {logf}")
        with open(logf, "rb") as f:
            f.seek(offset)
            for line in f.read().decode(errors="replace").splitlines():
                if KAFKA_STARTED in line:
                    _log(f"Kafka broker says: {line.strip()}")
                    return
        time.sleep(0.2)
    proc.kill()
    raise StackError(f"Kafka did not start within {timeout}s; see {logf}")


def stop_kafka(base: Path, sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop the broker under ``base`` (``SIGKILL``: killed, no controlled shutdown)."""
    pidf = base / "kafka" / "kafka.pid"
    if not pidf.exists():
        return
    pid = int(pidf.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
        for _ in range(150):
            # a broker started by this process stays a zombie until reaped here
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    pidf.unlink(missing_ok=True)


# ------------------------------------------------------------------ stack


def load(base: Path) -> Endpoints | None:
    f = base / "endpoints.json"
    return Endpoints(**json.loads(f.read_text())) if f.exists() else None


def _alive(base: Path) -> bool:
    pidf = base / "kafka" / "kafka.pid"
    if not pidf.exists() or not (base / "pg" / "data" / "postmaster.pid").exists():
        return False
    try:
        os.kill(int(pidf.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def new_kafka_users(names: list[str]) -> dict[str, str]:
    """Fresh random passwords for ``names``: generated per stack, never built in."""
    return {name: secrets.token_urlsafe(24) for name in names}


def up(
    base: Path,
    ports: Endpoints | None = None,
    tuned_for_tests: bool = False,
    sasl_users: list[str] | None = None,
) -> Endpoints:
    """Bring Postgres and Kafka up under ``base`` (idempotent) and return their endpoints.

    ``sasl_users`` (``admin`` among them) secures the broker with SASL/SCRAM and ACLs,
    each user with a generated password (read them with :func:`kafka_users`).
    """
    base = base.resolve()
    base.mkdir(parents=True, exist_ok=True)
    formatted = (base / "kafka" / "data" / "meta.properties").exists()
    if sasl_users and formatted and kafka_users(base) is None:
        raise StackError(
            f"the broker under {base} was created without SASL users; drop it with"
            f" `python deploy/local/localstack.py clean --dir {base}` (its data goes too)"
        )
    current = load(base)
    if current and _alive(base):
        _log(f"already running: {current}")
        return current
    down(base)
    ports = ports or Endpoints(free_port(), free_port(), free_port())
    start_postgres(base, ports.pg_port, tuned_for_tests)
    try:
        # a stack formatted before keeps its users: their credentials are in its metadata
        users = (kafka_users(base) or new_kafka_users(sasl_users)) if sasl_users else None
        start_kafka(base, ports.kafka_port, ports.controller_port, users=users)
    except Exception:
        stop_postgres(base)
        raise
    (base / "endpoints.json").write_text(json.dumps(asdict(ports)))
    return ports


def down(base: Path) -> None:
    base = base.resolve()
    stop_kafka(base)
    stop_postgres(base)
    (base / "endpoints.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "status", "env", "clean", "libs"])
    ap.add_argument("--dir", default=str(ROOT / ".local" / "stack"))
    ap.add_argument("--pg-port", type=int, default=55432)
    ap.add_argument("--kafka-port", type=int, default=59092)
    ap.add_argument("--controller-port", type=int, default=59093)
    a = ap.parse_args(argv)
    base = Path(a.dir)
    try:
        if a.command == "up":
            ep = up(base, Endpoints(a.pg_port, a.kafka_port, a.controller_port))
            print(f"CLEARWAY_DATABASE_URL={ep.database_url}")
            print(f"CLEARWAY_KAFKA_BOOTSTRAP={ep.kafka_bootstrap}")
        elif a.command == "libs":
            _log(f"Kafka jars in {ensure_kafka_libs()}")
        elif a.command == "down":
            down(base)
            _log("stopped")
        elif a.command == "clean":
            down(base)
            shutil.rmtree(base, ignore_errors=True)
        elif a.command == "env":
            ep = load(base)
            if not ep:
                return 1
            print(f"export CLEARWAY_DATABASE_URL={ep.database_url}")
            print(f"export CLEARWAY_KAFKA_BOOTSTRAP={ep.kafka_bootstrap}")
        else:
            ep = load(base)
            state = "up" if ep and _alive(base) else "down"
            print(f"postgres+kafka: {state}" + (f" ({ep})" if ep else ""))
            return 0 if state == "up" else 3
    except (StackError, subprocess.CalledProcessError) as e:
        print(f"[localstack] FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
