"""Where a service listens (``clearway.shared.serving``), the image's health check
(``clearway.shared.healthcheck``) and the container files' promises.

The server is a real uvicorn in a child process, bound as ``CLEARWAY_<SVC>_HOST``
says; the clients connect over loopback addresses only (127.0.0.0/8 is all loopback
on Linux), which tell a server bound to ``127.0.0.1`` from one bound to another
address or to every interface.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clearway.shared import healthcheck
from clearway.shared.settings import PlatformSettings
from clearway.shared.testing.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]

# A service of its own (``demo``) run through the kit's serve(), as every __main__ does.
SERVER = """
import sys
from clearway.shared.serving import serve
from clearway.shared.settings import ServiceSettings

class DemoSettings(ServiceSettings):
    service = "demo"
    uses_kafka = False

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

serve("demo", DemoSettings.from_env_or_exit(), lambda settings: app)
"""


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def demo_service(host: str) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "CLEARWAY_DEMO_HOST": host, "CLEARWAY_DEMO_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = "127.0.0.1" if host == "0.0.0.0" else host
        for _ in range(150):  # bounded: the server starts in about a second
            if _answers(probe, port):
                break
            assert proc.poll() is None, "the demo service exited"
            time.sleep(0.1)
        else:
            raise AssertionError(f"nothing listens on {host}:{port}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_service_binds_the_address_of_its_host_setting_not_the_loopback():
    with demo_service("127.0.0.2") as port:
        assert _answers("127.0.0.2", port)
        assert not _answers("127.0.0.1", port)


def test_a_service_on_every_interface_answers_on_an_address_other_than_127_0_0_1():
    # what a container needs: published ports and probes arrive on other addresses
    with demo_service("0.0.0.0") as port:
        assert _answers("127.0.0.3", port)
        assert _answers("127.0.0.1", port)


def test_every_service_main_binds_through_the_kit():
    mains = sorted(ROOT.glob("services/*/src/clearway/*/__main__.py"))
    assert len(mains) >= 6
    for main in mains:
        text = main.read_text()
        assert "uvicorn" not in text, f"{main} runs its own server"
        assert "from clearway.shared.serving import serve" in text, main


def test_the_health_check_probes_the_loopback_when_a_service_binds_every_interface():
    rail = next(
        ep.load() for ep in healthcheck.entry_points(group="clearway.settings") if ep.name == "rail"
    )
    url = healthcheck.probe_url(rail, {"CLEARWAY_RAIL_HOST": "0.0.0.0"})
    assert url == "http://127.0.0.1:8005/healthz"
    assert healthcheck.probe_url(rail, {"CLEARWAY_RAIL_HOST": "::"}) == "http://[::1]:8005/healthz"
    env = {"CLEARWAY_RAIL_HOST": "10.0.0.7", "CLEARWAY_RAIL_PORT": "9"}
    assert healthcheck.probe_url(rail, env) == "http://10.0.0.7:9/healthz"


def test_the_health_check_finds_the_service_of_the_container_and_asks_it():
    with demo_service("0.0.0.0") as port:
        # the rail's variables, the demo server's answer: the probe reaches a server
        env = {"CLEARWAY_RAIL_HOST": "0.0.0.0", "CLEARWAY_RAIL_PORT": str(port)}
        assert healthcheck.main([], env) == 0
    assert healthcheck.main([], env) == 1  # nothing listens any more
    assert healthcheck.main([], {}) == 1  # which service? none configured
    two = {"CLEARWAY_RAIL_PORT": "1", "CLEARWAY_AUDIT_PORT": "2"}
    assert healthcheck.main([], two) == 1


def test_the_jwks_url_is_the_issuers_unless_set_apart():
    assert PlatformSettings().jwks_url == "http://127.0.0.1:8003/.well-known/jwks.json"
    inside = PlatformSettings(
        oauth_issuer="https://auth.example/",
        oauth_jwks_url="http://consent:8003/.well-known/jwks.json",
    )
    assert inside.jwks_url == "http://consent:8003/.well-known/jwks.json"
    assert PlatformSettings(oauth_issuer="https://auth.example/").jwks_url == (
        "https://auth.example/.well-known/jwks.json"
    )


def test_the_dockerfile_copies_every_workspace_members_project_file_before_the_sources():
    # the dependency layer needs each member's pyproject.toml, and a member missing
    # from it would fail only at image build time
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    found = (ROOT.glob(f"{m}/pyproject.toml") for m in members["members"])
    projects = {str(p.relative_to(ROOT)) for paths in found for p in paths}
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+/pyproject\.toml) ", dockerfile, re.MULTILINE))
    assert copied == projects
    assert dockerfile.index("--no-install-workspace") < dockerfile.index("COPY services services")
    assert re.search(r"^USER \d+:\d+$", dockerfile, re.MULTILINE), "a numeric user"


@pytest.mark.parametrize("path", ["deploy/containers/podman.sh"])
def test_container_scripts_are_executable(path):
    assert os.access(ROOT / path, os.X_OK)


# Run as a file (spawned workers re-import it): each worker answers with its pid.
WORKERS_SERVER = """
import os
from clearway.shared.serving import serve
from clearway.shared.settings import ServiceSettings

class DemoSettings(ServiceSettings):
    service = "demo"
    uses_kafka = False

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

def build(settings):
    assert settings.cursor_key is not None  # one key drawn by the parent for all workers
    return app

if __name__ == "__main__":
    serve("demo", DemoSettings.from_env_or_exit(), build)
"""


def _pid_answer(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return int(data.rsplit(b"\r\n\r\n", 1)[1])


def test_http_workers_serve_one_port_from_that_many_processes(tmp_path):
    script = tmp_path / "demo_server.py"
    script.write_text(WORKERS_SERVER)
    port = free_port()
    env = {**os.environ, "CLEARWAY_DEMO_PORT": str(port), "CLEARWAY_DEMO_HTTP_WORKERS": "2"}
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        pids: set[int] = set()
        deadline = time.monotonic() + 60  # bounded: two interpreters start in seconds
        while len(pids) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, "the demo service exited"
            try:
                pids.add(_pid_answer(port))
            except OSError:
                time.sleep(0.1)
        assert len(pids) == 2, f"answers came from {pids}"
        assert proc.pid not in pids  # the parent only supervises
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert pids <= {int(k) for k in kids}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
