"""Envelope encryption vs raw AES-GCM, same bytes, same run (docs/design.md §9).

Per record:
- raw: AES-256-GCM encrypt + decrypt under one fixed key (no key management);
- envelope: ``Envelope.seal`` (a data key per record, derived from the tenant's
  batch key, which the HSM wraps once per batch: ADR 0016) + ``Envelope.open``
  (batch key from the bounded cache), context bound as AAD;
- envelope read, warm cache: ``open`` only (compared with a raw decrypt of the
  same bytes);
- HSM unwrap, uncached: ``open`` with the cache off (one ``C_Decrypt`` per record).

Runs against SoftHSM2 in a private token directory. Goal: envelope ≥ 25 % of raw.

    .venv/bin/python -m benchmarks.bench_crypto [--records 20000] [--sizes 64,1024,16384]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clearway.shared.crypto import Context, DekCache, Envelope
from clearway.shared.crypto.hsm import HsmProvider
from clearway.shared.crypto.softhsm import DEFAULT_MODULE, ensure_token


def rate(n: int, body: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        body(i)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--sizes", default="64,1024,16384")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-softhsm-"))
    os.environ["SOFTHSM2_CONF"] = str(home / "softhsm2.conf")
    pin = ensure_token(home, "bench")
    provider = HsmProvider("bench", module=DEFAULT_MODULE, token_label="bench", pin=pin)
    provider.ensure()
    n = args.records
    contexts = [Context("bench", "records", "data", str(i), f"ten_{i % 7}") for i in range(n)]
    print(f"SoftHSM2 via python-pkcs11, {n:,} records per figure, 1 process\n")
    header = (
        f"{'bytes':>6} | {'raw AES-GCM enc+dec/s':>22} | {'envelope seal+open/s':>21}"
        f" | {'ratio':>6} | {'open, warm cache/s':>19} | {'vs raw decrypt':>13}"
        f" | {'open, uncached/s':>17}"
    )
    print(header)
    print("-" * len(header))
    rows: list[str] = []
    for size in (int(s) for s in args.sizes.split(",")):
        data = os.urandom(size)
        key = AESGCM(AESGCM.generate_key(256))
        nonce_aad = [(os.urandom(12), c.aad()) for c in contexts]

        def raw(i: int) -> None:
            nonce, aad = nonce_aad[i]
            key.decrypt(nonce, key.encrypt(nonce, data, aad), aad)

        env = Envelope(provider, DekCache(size=n, ttl_s=300))
        blobs: list[bytes] = []

        def sealed(i: int) -> None:
            blob = env.seal(data, contexts[i])
            env.open(blob, contexts[i])
            blobs.append(blob)

        rate(min(n, 2000), raw)  # warm-up
        raw_rate = rate(n, raw)
        sealed_raw = [key.encrypt(nonce, data, aad) for nonce, aad in nonce_aad]
        raw_dec = rate(n, lambda i: key.decrypt(nonce_aad[i][0], sealed_raw[i], nonce_aad[i][1]))
        env_rate = rate(n, sealed)
        warm = rate(n, lambda i: env.open(blobs[i], contexts[i]))
        cold_env = Envelope(provider, DekCache(0))
        cold = rate(n, lambda i: cold_env.open(blobs[i], contexts[i]))
        rows.append(
            f"{size:>6} | {raw_rate:>22,.0f} | {env_rate:>21,.0f} | {env_rate / raw_rate:>5.0%}"
            f" | {warm:>19,.0f} | {warm / raw_dec:>13.0%} | {cold:>17,.0f}"
        )
        print(rows[-1], flush=True)
    batches = len({b[:40] for b in blobs})
    print(f"\nbatch keys wrapped in the HSM for the last {n:,} records: {batches}")


if __name__ == "__main__":
    main()
