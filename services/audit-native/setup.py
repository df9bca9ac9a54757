"""Build of the compiled verification loop (ADR 0041) and its libpq reader (ADR 0050); metadata
lives in pyproject.toml."""

import shutil
import subprocess

from setuptools import Extension, setup


def _pq_include() -> str:
    """libpq's header directory (Debian's libpq-dev: /usr/include/postgresql)."""
    if shutil.which("pg_config"):
        return subprocess.run(
            ["pg_config", "--includedir"], check=True, capture_output=True, text=True
        ).stdout.strip()
    return "/usr/include/postgresql"


setup(
    ext_modules=[
        Extension(
            "clearway.audit_native._native",
            ["src/clearway/audit_native/_native.c"],
            depends=["src/clearway/audit_native/_hashing.h"],
            libraries=["crypto"],  # OpenSSL's libcrypto: SHA-256 with SHA-NI where the CPU has it
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=vla"],
        ),
        Extension(
            "clearway.audit_native._copy",
            ["src/clearway/audit_native/_copy.c"],
            depends=["src/clearway/audit_native/_hashing.h"],
            include_dirs=[_pq_include()],
            # libpq receives the COPY, libcrypto hashes it as it arrives (ADR 0050)
            libraries=["pq", "crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=vla"],
        ),
    ]
)
