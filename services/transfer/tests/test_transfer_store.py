"""The transfer store: a Transfer round-trips, and a stale one is never saved over a newer row."""

from __future__ import annotations

import pytest

from clearway.shared.actor import Actor
from clearway.transfer import store
from clearway.transfer.domain import Status

pytestmark = pytest.mark.integration


async def test_a_transfer_loaded_twice_is_saved_once_and_the_stale_copy_is_refused(
    start_services, body
):
    async with start_services(run_executor=False) as cw:
        created = (await cw.post("key-stale-copy", body)).json()
        pool = cw.app.state.core.pool
        first = await store.transfer_by_id(pool, created["id"])
        second = await store.transfer_by_id(pool, created["id"])
        assert first is not None and second is not None
        assert (first.status, first.version, first.metadata) == (
            Status.PENDING,
            1,
            body["metadata"],
        )
        assert first.actor == Actor("usr_1", "cli_mobile")

        first.cancel(Actor("usr_1", "cli_mobile"))
        second.submit()
        async with pool.acquire() as conn, conn.transaction():
            await store.save_transfer(conn, first)
        with pytest.raises(store.StaleTransfer):
            async with pool.acquire() as conn, conn.transaction():
                await store.save_transfer(conn, second)

        now = await store.transfer_by_id(pool, created["id"])
        assert now is not None and (now.status, now.version) == (Status.CANCELED, 2)
