"""Demo accounts for the embedded stack (development only): each demo tenant's
treasury, its demo user's account, and a counterparty known by its IBAN.

The tenants and users are the consent service's demo seed (``clearway.consent.seed``);
the services share no code, so the names are repeated here.
"""

from __future__ import annotations

from clearway.shared.mode import sandbox_twin
from clearway.transfer.domain import Account, Owner
from clearway.transfer.handlers import Core, register_accounts

ALPHA, BETA = "tnt_demo_alpha", "tnt_demo_beta"
DEMO_ACCOUNTS = [
    Account(ALPHA, "acct_alphaTreasury", Owner.TENANT, iban="DE75512108001245126199"),
    Account(ALPHA, "acct_alice", Owner.USER, "usr_alice", "DE89370400440532013000"),
    Account(ALPHA, "acct_landlord", Owner.EXTERNAL, iban="DE02100100109307118603"),
    Account(BETA, "acct_betaTreasury", Owner.TENANT, iban="FR1420041010050500013M02606"),
    Account(BETA, "acct_bob", Owner.USER, "usr_bob", "FR7630006000011234567890189"),
]




def _twin(a: Account) -> Account:
    return Account(sandbox_twin(a.tenant), a.id, a.owner, a.user_id, a.iban)


async def seed(core: Core) -> None:
    """Register the demo accounts, and the same in each tenant's sandbox twin (test
    mode, docs/design.md §10), idempotently."""
    await register_accounts(core, DEMO_ACCOUNTS + [_twin(a) for a in DEMO_ACCOUNTS])
