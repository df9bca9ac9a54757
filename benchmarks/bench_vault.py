"""Card vault: tokenize and detokenize rates vs the raw envelope, same run (docs/design.md §9).

Prints, for the same run, against real Postgres and SoftHSM2 in a private token dir:
- tokenize/s: ``handlers.tokenize_card`` (checks, keyed fingerprint, ``Envelope.seal``
  with a fresh data key wrapped in the HSM, insert with dedupe, outbox event in the same
  transaction), distinct cards, ``--concurrency`` at a time;
- its baseline: ``Envelope.seal`` alone of the same plaintext, and the ratio;
- detokenize/s: ``handlers.detokenize_card`` (use counted, ``Envelope.open`` with the
  DEK cache, audit event in the same transaction);
- its baseline: ``Envelope.open`` alone of the same blobs (warm DEK cache), and the ratio.

    .venv/bin/python -m benchmarks.bench_vault [--cards 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.common import emit, fresh_database, stack
from clearway.shared.actor import Actor
from clearway.shared.cards import luhn_valid
from clearway.shared.crypto import Context, DekCache, Envelope
from clearway.shared.crypto.hsm import HsmProvider
from clearway.shared.crypto.softhsm import DEFAULT_MODULE, ensure_token
from clearway.shared.db import create_pool, load_migrations, migrate, service_dsn
from clearway.shared.event_writer import EventWriter
from clearway.vault import handlers
from clearway.vault.bootstrap import MIGRATIONS, SCHEMA, SERVICE
from clearway.vault.domain import CardSecret

TENANT = "ten_bench"


def visa(rng: random.Random) -> str:
    body = "4" + "".join(str(rng.randrange(10)) for _ in range(14))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


async def rate(n: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> float:
    next_i = iter(range(n))

    async def worker() -> None:
        for i in next_i:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


def sync_rate(n: int, op: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        op(i)
    return n / (time.perf_counter() - start)


async def run(admin_url: str, n: int, concurrency: int) -> None:
    db = await fresh_database(admin_url)
    await migrate(
        db,
        schema=SCHEMA,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password="bench",
    )
    pool = await create_pool(
        service_dsn(db, SERVICE, "bench"), schema=SCHEMA, max_size=concurrency + 2
    )
    home = Path(tempfile.mkdtemp(prefix="bench-softhsm-"))
    os.environ["SOFTHSM2_CONF"] = str(home / "softhsm2.conf")
    pin = ensure_token(home, "bench")
    provider = HsmProvider(SERVICE, module=DEFAULT_MODULE, token_label="bench", pin=pin)
    provider.ensure()
    envelope = Envelope(provider, DekCache(size=4 * n, ttl_s=600))
    vault = handlers.Vault(pool, envelope, EventWriter(SERVICE, topic_prefix="bench."))
    vault.fingerprint_key = await handlers.load_fingerprint_key(pool, envelope)
    rng = random.Random(7)
    cards = [visa(rng) for _ in range(n)]
    actor = Actor("cli_bench", "cli_bench", ())
    tokens: list[str] = [""] * n

    async def tokenize(i: int) -> None:
        card, _ = await handlers.tokenize_card(vault, TENANT, cards[i], 12, 2099, None, actor)
        tokens[i] = card["id"]

    async def detokenize(i: int) -> None:
        await handlers.detokenize_card(vault, TENANT, tokens[i], "rail_submission", "CWB", actor)

    secrets = [CardSecret(c).to_bytes() for c in cards]
    contexts = [Context(SERVICE, "cards", "sealed", f"tok_{i}", TENANT) for i in range(n)]
    blobs: list[bytes] = []
    seal_rate = sync_rate(n, lambda i: blobs.append(envelope.seal(secrets[i], contexts[i])))
    open_rate = sync_rate(n, lambda i: envelope.open(blobs[i], contexts[i]))
    tok_rate = await rate(n, concurrency, tokenize)
    detok_rate = await rate(n, concurrency, detokenize)
    await pool.close()
    print(f"{n:,} distinct cards, {concurrency} concurrent requests, SoftHSM2, 1 process\n")
    header = f"{'operation':<12} | {'figure/s':>10} | {'baseline':<28} | {'baseline/s':>10} | ratio"
    print(header)
    print("-" * len(header))
    for name, fig, base_name, base in (
        ("tokenize", tok_rate, "Envelope.seal (same bytes)", seal_rate),
        ("detokenize", detok_rate, "Envelope.open (warm cache)", open_rate),
    ):
        print(f"{name:<12} | {fig:>10,.0f} | {base_name:<28} | {base:>10,.0f} | {fig / base:.0%}")
    emit(
        "vault",
        {
            "tokenize_per_s": tok_rate,
            "seal_per_s": seal_rate,
            "detokenize_per_s": detok_rate,
            "open_per_s": open_rate,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with stack() as (db, _kafka):
        asyncio.run(run(db, args.cards, args.concurrency))


if __name__ == "__main__":
    main()
