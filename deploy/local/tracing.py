"""The local Jaeger (docs/design.md §11): a Jaeger v2 binary built from the Go module
proxy (``make jaeger``) that serves the Jaeger UI shipped in ``jaeger/ui/``.

Used by ``platform.py`` (``make run``) and by the Jaeger UI test, which runs its own
instance on free ports next to ``make run``'s. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
JAEGER_BIN = ROOT / ".local" / "bin" / "jaeger"
CONFIG = HERE / "jaeger" / "config.yaml"
#: The Jaeger UI release matching the Go module's backend (see jaeger/ui/NOTICE.md).
UI_ARCHIVE = HERE / "jaeger" / "ui" / "jaeger-ui-v1.76.0-build.tgz"
UI_SHA256 = "2b7d4cfeab9eaf66354203dc42db9c7dae6a892c15efa02fa5e6932b2845bf69"


@dataclass(frozen=True)
class JaegerPorts:
    """Loopback ports of one Jaeger; the defaults are ``make run``'s."""

    ui: int = 16686
    grpc: int = 16685
    otlp_grpc: int = 4317
    otlp_http: int = 4318
    health: int = 13133

    @classmethod
    def free(cls) -> JaegerPorts:
        """Ports nobody listens on now (a test's own Jaeger)."""
        return cls(*(_free_port() for _ in fields(cls)))

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui}"

    @property
    def otlp_endpoint(self) -> str:
        """What services get as ``CLEARWAY_OTLP_ENDPOINT`` (OTLP over HTTP)."""
        return f"http://127.0.0.1:{self.otlp_http}"

    def env(self) -> dict[str, str]:
        """The variables ``jaeger/config.yaml`` reads its ports from."""
        return {
            "CLEARWAY_JAEGER_UI_PORT": str(self.ui),
            "CLEARWAY_JAEGER_GRPC_PORT": str(self.grpc),
            "CLEARWAY_JAEGER_OTLP_GRPC_PORT": str(self.otlp_grpc),
            "CLEARWAY_JAEGER_OTLP_HTTP_PORT": str(self.otlp_http),
            "CLEARWAY_JAEGER_HEALTH_PORT": str(self.health),
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ui_assets(local: Path) -> Path:
    """The Jaeger UI unpacked under ``local`` (once per archive), checked against its
    recorded SHA-256; the folder to give Jaeger as ``ui.assets_path``."""
    target = local / "jaeger-ui" / UI_ARCHIVE.name.removesuffix(".tgz")
    if (target / "index.html").exists():
        return target
    digest = hashlib.sha256(UI_ARCHIVE.read_bytes()).hexdigest()
    if digest != UI_SHA256:
        raise RuntimeError(f"{UI_ARCHIVE} has SHA-256 {digest}, expected {UI_SHA256}")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(UI_ARCHIVE) as tar:
        tar.extractall(staging, filter="data")  # the archive holds build/index.html, build/static
    shutil.rmtree(target, ignore_errors=True)
    (staging / "build").rename(target)
    shutil.rmtree(staging)
    return target


def start(local: Path, ports: JaegerPorts, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start the built Jaeger (in its own session) with the UI and ``ports``."""
    env = {**os.environ, **ports.env(), "CLEARWAY_JAEGER_UI": str(ui_assets(local))}
    return subprocess.Popen(
        [str(JAEGER_BIN), "--config", f"file:{CONFIG}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def ready(ports: JaegerPorts) -> bool:
    """True once Jaeger's health check answers 200 (its pipelines are up)."""
    try:
        url = f"http://127.0.0.1:{ports.health}/status"
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def wait_ready(ports: JaegerPorts, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> bool:
    """Wait (bounded) until Jaeger is ready; False if it exited or took too long."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready(ports):
            return True
        time.sleep(0.2)
    return False
