"""Build of the compiled verification loop (ADR 0041); metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "clearway.audit_native._native",
            ["src/clearway/audit_native/_native.c"],
            libraries=["crypto"],  # OpenSSL's libcrypto: SHA-256 with SHA-NI where the CPU has it
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=vla"],
        )
    ]
)
