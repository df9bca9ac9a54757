"""The Transfer aggregate: every move of its state machine, the events it records, versions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clearway.shared.actor import Actor
from clearway.transfer.domain import (
    InvalidTransition,
    Status,
    Transfer,
    TransferCanceled,
    TransferCreated,
    TransferFailed,
    TransferRequest,
    TransferSettled,
    TransferSubmitted,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
ALICE = Actor("usr_alice", "cli_mobile", ("usr_ops",))


def new_transfer() -> Transfer:
    request = TransferRequest(
        amount=12500,
        currency="EUR",
        source="acct_payer",
        destination="acct_payee",
        description="Invoice 1142",
        metadata={"order": "ord_1"},
    )
    return Transfer.create(
        tenant="ten_a",
        client_id="cli_mobile",
        reference="CWREF",
        fingerprint="fp",
        request=request,
        actor=ALICE,
        now=NOW,
        correlation_id="corr_1",
    )


def in_status(status: Status) -> Transfer:
    """A transfer driven to ``status`` the allowed way, with its events collected."""
    t = new_transfer()
    if status is Status.CANCELED:
        t.cancel(ALICE)
    elif status is not Status.PENDING:
        t.submit()
        if status is Status.SETTLED:
            t.settle("ch_1")
        elif status is Status.FAILED:
            t.fail("declined")
    t.collect_events()
    return t


MOVES = {
    Status.SUBMITTED: lambda t: t.submit(),
    Status.SETTLED: lambda t: t.settle("ch_1"),
    Status.FAILED: lambda t: t.fail("declined"),
    Status.CANCELED: lambda t: t.cancel(ALICE),
}
ALLOWED = {
    (Status.PENDING, Status.SUBMITTED),
    (Status.PENDING, Status.CANCELED),
    (Status.SUBMITTED, Status.SETTLED),
    (Status.SUBMITTED, Status.FAILED),
}
EVENT_OF = {
    Status.SUBMITTED: TransferSubmitted,
    Status.SETTLED: TransferSettled,
    Status.FAILED: TransferFailed,
    Status.CANCELED: TransferCanceled,
}


def test_a_new_transfer_is_pending_at_version_1_and_has_recorded_its_creation():
    t = new_transfer()
    assert t.id.startswith("tr_") and (t.status, t.version) == (Status.PENDING, 1)
    assert t.saved_version == 0  # no row yet
    [created] = t.events
    assert created == TransferCreated(
        transfer_id=t.id,
        version=1,
        tenant="ten_a",
        correlation_id="corr_1",
        reference="CWREF",
        amount=12500,
        currency="EUR",
        status=Status.PENDING,
        source="acct_payer",
        destination="acct_payee",
        description="Invoice 1142",
        actor=ALICE,
    )


@pytest.mark.parametrize(("start", "wanted"), sorted(ALLOWED))
def test_each_allowed_move_changes_status_bumps_the_version_and_records_one_event(start, wanted):
    t = in_status(start)
    version = t.version
    MOVES[wanted](t)
    assert t.status is wanted and t.version == version + 1
    assert t.saved_version == version  # what the store's optimistic check compares with
    [event] = t.events
    assert type(event) is EVENT_OF[wanted]
    assert event.type == f"transfer.{wanted.value}"
    assert (event.transfer_id, event.version, event.status) == (t.id, t.version, wanted)
    assert (event.tenant, event.correlation_id, event.reference) == ("ten_a", "corr_1", "CWREF")
    assert (event.amount, event.currency) == (12500, "EUR")


FORBIDDEN = [(s, w) for s in Status for w in MOVES if (s, w) not in ALLOWED]


@pytest.mark.parametrize(("start", "wanted"), FORBIDDEN)
def test_every_other_move_is_refused_and_changes_nothing(start, wanted):
    t = in_status(start)
    before = (t.status, t.version, t.rail_charge_id, t.failure_reason)
    with pytest.raises(InvalidTransition) as e:
        MOVES[wanted](t)
    assert (e.value.current, e.value.wanted) == (start, wanted)
    assert (t.status, t.version, t.rail_charge_id, t.failure_reason) == before
    assert t.events == []


def test_the_forbidden_list_covers_cancel_after_submission_and_every_final_state():
    assert (Status.SUBMITTED, Status.CANCELED) in FORBIDDEN
    assert (Status.PENDING, Status.SETTLED) in FORBIDDEN
    for final in (Status.SETTLED, Status.FAILED, Status.CANCELED):
        assert {w for s, w in FORBIDDEN if s is final} == set(MOVES)


def test_the_events_carry_what_their_wire_events_need():
    t = new_transfer()
    t.submit()
    t.settle("ch_42")
    created, submitted, settled = t.collect_events()
    assert [e.version for e in (created, submitted, settled)] == [1, 2, 3]
    assert settled.rail_charge_id == "ch_42" and t.rail_charge_id == "ch_42"
    failed = in_status(Status.SUBMITTED)
    failed.fail("declined by the rail (charge ch_9)")
    assert failed.events[0].reason == "declined by the rail (charge ch_9)"
    assert failed.failure_reason == "declined by the rail (charge ch_9)"
    canceled = in_status(Status.PENDING)
    canceled.cancel(Actor("usr_bob", "cli_web"))
    assert canceled.events[0].actor == Actor("usr_bob", "cli_web")


def test_collecting_events_empties_them_so_a_save_writes_each_once():
    t = new_transfer()
    t.submit()
    assert [e.type for e in t.collect_events()] == ["transfer.created", "transfer.submitted"]
    assert t.collect_events() == [] and t.saved_version == t.version == 2


def test_a_settled_transfer_posts_balanced_legs_from_source_to_destination():
    legs = in_status(Status.SETTLED).postings()
    assert {(p.account, p.leg, p.amount) for p in legs} == {
        ("acct_payer", "debit", -12500),
        ("acct_payee", "credit", 12500),
    }
