"""Envelope encryption vs raw AES-GCM, same bytes, same run (docs/design.md §9).

Per record:
- raw: AES-256-GCM encrypt + decrypt under one fixed key (no key management);
- envelope: ``Envelope.seal`` (a data key per record, derived from the tenant's
  batch key, which the HSM wraps once per batch: ADR 0016) + ``Envelope.open``,
  context bound as AAD, with the service's default :class:`DekCache` (ADR 0031):
  the open finds the record's key among the recently sealed ones; the hit rate and
  the keys held are printed;
- the same without record keys in the cache (``records=0``): every open derives;
- open only, batch key cached, record key not (compared with a raw decrypt);
- HSM unwrap, uncached: ``open`` with the cache off (one ``C_Decrypt`` per record).

Rates are records per CPU second of this process (one thread, no I/O but the HSM's
in-process library), so other work on a shared machine does not count; the ratio of
wall-clock rates is printed too. Raw and envelope run in alternating rounds, so both
see the same machine. Runs against SoftHSM2 in a private token directory.
Goal: envelope seal+open ≥ 25 % of raw.

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

from benchmarks.common import emit
from clearway.shared.crypto import Context, DekCache, Envelope
from clearway.shared.crypto.hsm import HsmProvider
from clearway.shared.crypto.softhsm import DEFAULT_MODULE, ensure_token

ROUNDS = 5


def rates(
    n: int, bodies: dict[str, Callable[[int], object]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Records per CPU second and per wall-clock second of each body over ``n``
    records, in alternating rounds."""
    cpu, wall = dict.fromkeys(bodies, 0.0), dict.fromkeys(bodies, 0.0)
    step = max(n // ROUNDS, 1)
    for first in range(0, n, step):
        for name, body in bodies.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for i in range(first, min(first + step, n)):
                body(i)
            cpu[name] += time.process_time() - start_cpu
            wall[name] += time.perf_counter() - start
    return {k: n / s for k, s in cpu.items()}, {k: n / s for k, s in wall.items()}


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
    defaults = DekCache()
    print(
        f"SoftHSM2 via python-pkcs11, {n:,} records per figure, 1 process, DEK cache: "
        f"{defaults.size:,} batch keys, {defaults.records:,} record keys, {defaults.ttl_s:.0f} s\n"
    )
    header = (
        f"{'bytes':>6} | {'raw enc+dec/s':>13} | {'envelope seal+open/s':>20} | {'ratio':>5}"
        f" | {'record-key hits':>15} | {'keys held':>9} | {'no record keys/s':>16} | {'ratio':>5}"
        f" | {'open, batch key cached/s':>24} | {'vs raw dec':>10} | {'open, HSM unwrap/s':>18}"
        f" | {'ratio (wall clock)':>18}"
    )
    print(header)
    print("-" * len(header))
    figures: dict[str, float] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        data = os.urandom(size)
        key = AESGCM(AESGCM.generate_key(256))
        nonce_aad = [(os.urandom(12), c.aad()) for c in contexts]

        def raw(i: int) -> None:
            nonce, aad = nonce_aad[i]
            key.decrypt(nonce, key.encrypt(nonce, data, aad), aad)

        env = Envelope(provider, DekCache())
        bare = Envelope(provider, DekCache(records=0))

        def sealed(i: int) -> None:
            env.open(env.seal(data, contexts[i]), contexts[i])

        def sealed_bare(i: int) -> None:
            bare.open(bare.seal(data, contexts[i]), contexts[i])

        for i in range(min(n, 2000)):  # warm-up
            raw(i)
        first, first_wall = rates(n, {"raw": raw, "env": sealed, "bare": sealed_bare})
        cache = env.cache
        hits = cache.record_hits / max(cache.record_hits + cache.record_misses, 1)
        held = f"{len(cache)}+{cache.record_keys()}"

        sealed_raw = [key.encrypt(nonce, data, aad) for nonce, aad in nonce_aad]
        blobs = [bare.seal(data, context) for context in contexts]
        reader = Envelope(provider, DekCache(records=0))
        for blob, context in zip(blobs[:: max(n // 100, 1)], contexts[:: max(n // 100, 1)]):
            reader.open(blob, context)  # unwraps the batch keys once
        cold_env = Envelope(provider, DekCache(0))
        second, _ = rates(
            n,
            {
                "raw_dec": lambda i: key.decrypt(nonce_aad[i][0], sealed_raw[i], nonce_aad[i][1]),
                "warm": lambda i: reader.open(blobs[i], contexts[i]),
                "cold": lambda i: cold_env.open(blobs[i], contexts[i]),
            },
        )
        print(
            f"{size:>6} | {first['raw']:>13,.0f} | {first['env']:>20,.0f}"
            f" | {first['env'] / first['raw']:>5.0%} | {hits:>15.1%} | {held:>9}"
            f" | {first['bare']:>16,.0f} | {first['bare'] / first['raw']:>5.0%}"
            f" | {second['warm']:>24,.0f} | {second['warm'] / second['raw_dec']:>10.0%}"
            f" | {second['cold']:>18,.0f} | {first_wall['env'] / first_wall['raw']:>18.0%}",
            flush=True,
        )
        figures |= {
            f"raw_{size}_per_s": first["raw"],
            f"envelope_{size}_per_s": first["env"],
            f"open_warm_{size}_per_s": second["warm"],
            f"raw_decrypt_{size}_per_s": second["raw_dec"],
            f"open_hsm_{size}_per_s": second["cold"],
        }
    batches = len({b[:40] for b in blobs})
    print(
        f"\nkeys held: batch keys + record keys after the seal+open run."
        f"\nbatch keys wrapped in the HSM for the last {n:,} records: {batches}"
    )
    emit("crypto", figures)


if __name__ == "__main__":
    main()
