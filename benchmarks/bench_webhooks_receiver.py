"""The benchmark's webhook receiver: a compiled Go server, so it is not the bottleneck.

``benchmarks/webhooks_receiver/main.go`` answers 204 to every ``POST /hook`` and
keeps the event→receipt latencies (from the ``t0`` the benchmark puts in each
event's ``note``); ``GET /stats`` returns them, ``POST /reset`` clears them.
:func:`compiled_receiver` builds it with ``go build`` and runs it on a free port;
:func:`receiver_capacity` measures it alone with ``hey`` (a compiled load tool,
``go install``-ed on first use into ``.local/bin``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "benchmarks" / "webhooks_receiver"
BIN = ROOT / ".local" / "bin"
HEY = "github.com/rakyll/hey@v0.1.4"
_PIDS: dict[str, int] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build() -> Path:
    BIN.mkdir(parents=True, exist_ok=True)
    out = BIN / "webhooks-receiver"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=SOURCE, check=True)
    return out


@contextlib.contextmanager
def compiled_receiver() -> Iterator[str]:
    """Build and start the Go receiver; yields its base URL (``http://127.0.0.1:<port>``)."""
    port = _free_port()
    proc = subprocess.Popen([str(_build()), f"127.0.0.1:{port}"])
    base = f"http://127.0.0.1:{port}"
    _PIDS[base] = proc.pid
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{base}/stats", timeout=1).read()
                break
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def receiver_pid(base: str) -> int:
    """The process id of the receiver :func:`compiled_receiver` runs at ``base``."""
    return _PIDS[base]


def _hey() -> str:
    found = shutil.which("hey") or (str(BIN / "hey") if (BIN / "hey").exists() else None)
    if found:
        return found
    subprocess.run(["go", "install", HEY], env={**os.environ, "GOBIN": str(BIN)}, check=True)
    return str(BIN / "hey")


def receiver_capacity(base: str, n: int = 20_000, concurrency: int = 64) -> float:
    """Requests/s the receiver answers alone, measured with ``hey`` (keep-alive POSTs)."""
    body = '{"type":"platform.test_event","data":{"note":null}}'
    out = subprocess.run(
        [
            _hey(),
            "-n",
            str(n),
            "-c",
            str(concurrency),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-d",
            body,
            f"{base}/hook",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if match is None:
        raise RuntimeError(f"hey printed no rate: {out[:500]}")
    urllib.request.urlopen(urllib.request.Request(f"{base}/reset", method="POST")).read()
    return float(match.group(1))


if __name__ == "__main__":
    with compiled_receiver() as url:
        print(f"receiver alone (hey): {receiver_capacity(url):,.0f} requests/s")
