"""A project-local SoftHSM2 token for development and tests (docs/design.md §9).

SoftHSM2 reads its configuration from ``SOFTHSM2_CONF`` when the PKCS#11 module
is initialised, once per process. :func:`ensure_token` therefore uses the
configuration already named by ``SOFTHSM2_CONF`` when there is one (a test
session's token directory) and otherwise creates ``<local_dir>/softhsm`` and
points ``SOFTHSM2_CONF`` at it. PINs are generated on first use and kept in
``pins/<label>`` (0600) beside the configuration: never compiled in. SoftHSM2
reads its token directory when the module is initialised, so a token must be
initialised before the first key provider of the process opens it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from clearway.shared.crypto.keys import KeyUnavailable

__all__ = ["DEFAULT_MODULE", "ensure_token", "softhsm_home"]

#: Debian's SoftHSM2 PKCS#11 module (package ``softhsm2``).
DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def softhsm_home(local_dir: Path) -> Path:
    """The directory of the SoftHSM2 configuration this process uses (created if absent)."""
    conf = os.environ.get("SOFTHSM2_CONF")
    if conf:
        home = Path(conf).parent
    else:
        home = (local_dir / "softhsm").resolve()
        os.environ["SOFTHSM2_CONF"] = str(home / "softhsm2.conf")
    conf_path = home / "softhsm2.conf"
    if not conf_path.exists():
        (home / "tokens").mkdir(parents=True, exist_ok=True)
        conf_path.write_text(
            f"directories.tokendir = {home / 'tokens'}\n"
            "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
        )
    return home


def _secret_file(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def ensure_token(local_dir: Path, label: str) -> str:
    """Initialise the SoftHSM2 token ``label`` when absent; returns its user PIN.

    Development and tests only: production configures a real HSM's module,
    token and PIN (``CLEARWAY_<SVC>_HSM_*``).
    """
    home = softhsm_home(local_dir)
    pin = _secret_file(home / "pins" / label)
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise KeyUnavailable(
            "softhsm2-util not found: install SoftHSM2 (deploy/local/bootstrap.sh)"
        )
    env = {**os.environ, "SOFTHSM2_CONF": str(home / "softhsm2.conf")}
    listed = subprocess.run(
        [tool, "--show-slots"], env=env, capture_output=True, text=True, check=False
    )
    labels = {
        line.split(":", 1)[1].strip()
        for line in listed.stdout.splitlines()
        if line.strip().startswith("Label:")
    }
    if label not in labels:
        so_pin = _secret_file(home / "pins" / f"{label}.so")
        done = subprocess.run(
            [tool, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise KeyUnavailable(f"softhsm2-util could not initialise token {label!r}")
    return pin
