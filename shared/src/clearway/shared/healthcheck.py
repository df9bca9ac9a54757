"""``clearway-healthcheck [service]``: the container image's ``HEALTHCHECK``.

One image runs every service (the command picks it), so the probe finds the
service from the environment: the one service whose ``CLEARWAY_<SVC>_PORT`` or
``_HOST`` is set, unless named on the command line. It asks that service's
``/healthz`` (liveness: the process answers; readiness stays with the
orchestrator's ``/readyz`` probe) on the address the service binds, the loopback
address when it binds every interface. Exit status 0: healthy; 1: not.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points

from clearway.shared.http.health import HEALTH_PATH
from clearway.shared.settings import ServiceSettings

__all__ = ["main", "probe_url"]

#: the entry points naming each service's settings class (docs/configuration.md)
ENTRY_POINTS = "clearway.settings"
TIMEOUT_S = 2.0
#: addresses meaning "every interface": probed on the loopback address of the family
_ANY = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104


def _configured(environ: Mapping[str, str]) -> list[str]:
    names = {ep.name for ep in entry_points(group=ENTRY_POINTS)}
    return sorted(
        name
        for name in names
        if f"CLEARWAY_{name.upper()}_PORT" in environ or f"CLEARWAY_{name.upper()}_HOST" in environ
    )


def probe_url(settings_cls: type[ServiceSettings], environ: Mapping[str, str]) -> str:
    """The ``/healthz`` URL of the service of ``settings_cls`` as ``environ`` configures it."""
    host_field, port_field = settings_cls.model_fields["host"], settings_cls.model_fields["port"]
    host = environ.get(settings_cls.env_name("host"), host_field.default)
    port = int(environ.get(settings_cls.env_name("port"), port_field.default))
    host = _ANY.get(host, host)
    if ":" in host:  # an IPv6 literal (RFC 3986 §3.2.2)
        host = f"[{host}]"
    return f"http://{host}:{port}{HEALTH_PATH}"


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    names = args[:1] or _configured(env)
    if len(names) != 1:
        print(
            "clearway-healthcheck: name the service (none or several have"
            f" CLEARWAY_<SVC>_PORT set: {', '.join(names) or 'none'})",
            file=sys.stderr,
        )
        return 1
    found = [ep for ep in entry_points(group=ENTRY_POINTS) if ep.name == names[0]]
    if not found:
        print(f"clearway-healthcheck: no service {names[0]!r}", file=sys.stderr)
        return 1
    url = probe_url(found[0].load(), env)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # noqa: S310 (http only)
            healthy = answer.status == 200
    except OSError as e:
        print(f"clearway-healthcheck: {url}: {e}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
