"""The dated-version chain of the kit (docs/design.md §10): money conversion, each
version step on its own, and the chain as the edge and the webhooks dispatcher use it."""

from __future__ import annotations

import pytest

from clearway.shared import versions
from clearway.shared.deprecations import DeprecationLog, week_of
from clearway.shared.http.versioning import platform_versions
from clearway.shared.money import money, to_decimal_string, to_minor
from clearway.shared.versions.changes import CHANGES, money_as_object

OLD = {"id": "tr_1", "amount": 12500, "currency": "EUR", "metadata": {"amount": "x"}}
NEW = {"id": "tr_1", "amount": {"value": "125.00", "currency": "EUR"}, "metadata": {"amount": "x"}}


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(12500, "EUR", "125.00"), (1, "EUR", "0.01"), (500, "JPY", "500"), (1234, "KWD", "1.234"),
     (0, "USD", "0.00"), (-250, "EUR", "-2.50")],
)  # fmt: skip
def test_money_converts_exactly_both_ways(minor, currency, text):
    assert to_decimal_string(minor, currency) == text
    assert to_minor(text, currency) == minor
    assert money(minor, currency) == {"value": text, "currency": currency}


@pytest.mark.parametrize("bad", ["1.001", "abc", "1e400000000", "NaN", "Infinity"])
def test_a_value_finer_than_the_currency_or_not_a_number_is_refused(bad):
    with pytest.raises(ValueError):
        to_minor(bad, "EUR")


def test_money_as_object_converts_a_resource_and_the_items_of_a_list():
    assert money_as_object.upgrade(OLD) == NEW
    assert money_as_object.downgrade(NEW) == OLD
    page = {"data": [OLD, OLD], "has_more": False}
    assert money_as_object.upgrade(page) == {"data": [NEW, NEW], "has_more": False}
    assert money_as_object.downgrade(money_as_object.upgrade(page)) == page


def test_money_as_object_leaves_nested_amounts_of_other_resources_alone():
    # A consent's RFC 9396 authorization details: its own shape, in every version.
    consent = {"authorization_details": [{"instructedAmount": {"amount": 1250, "currency": "EUR"}}]}
    assert money_as_object.upgrade(consent) == consent
    assert money_as_object.downgrade(consent) == consent
    breaks = {"run_id": "rec_1", "breaks": [{"amount": 5, "currency": "EUR"}]}
    assert money_as_object.upgrade(breaks) == breaks
    no_currency = {"amount": 3, "note": None}
    assert money_as_object.upgrade(no_currency) == no_currency
    assert money_as_object.downgrade(["x", 1, None]) == ["x", 1, None]


def test_every_step_is_described_dated_in_order_and_round_trips():
    dates = [c.version for c in CHANGES]
    assert dates == sorted(dates) and dates[0] > versions.INITIAL_VERSION
    for change in CHANGES:
        assert change.title and len(change.description) > 80
        assert change.downgrade(change.upgrade(OLD)) == OLD


def test_the_chain_serves_each_version_its_shape():
    assert versions.all_versions() == ["2026-11-01", "2026-12-01"]
    assert versions.CURRENT_VERSION == "2026-12-01"
    assert versions.downgrade(NEW, "2026-11-01") == OLD
    assert versions.downgrade(NEW, "2026-12-01") == NEW
    assert versions.upgrade(OLD, "2026-12-01") == NEW
    assert versions.upgrade(OLD, "2026-11-01") == OLD


def test_platform_versions_pin_and_deprecate():
    v = platform_versions()
    assert v.resolve(None) == "2026-11-01"  # a caller without a pin: tokens from before pinning
    assert v.pinned("2026-12-01") == "2026-12-01"
    assert v.pinned(None) == "2026-11-01"
    assert v.pinned("2025-01-01") == "2026-11-01"  # sunset pins get the oldest served
    assert v.transforms("2026-11-01") and not v.transforms("2026-12-01")
    assert [h for h, _ in v.deprecation_headers("2026-11-01")] == ["Deprecation", "Sunset", "Link"]
    assert v.deprecation_headers("2026-12-01") == []


def test_the_deprecation_log_is_bounded_and_drains():
    log = DeprecationLog(max_keys=2)
    for feature in ("GET /a", "GET /a", "GET /b", "GET /c"):
        log.record("ten_a", "cli_1", "2026-11-01", feature)
    assert log.drain() == {
        ("ten_a", "cli_1", "2026-11-01", "GET /a"): 2,
        ("ten_a", "cli_1", "2026-11-01", "GET /b"): 1,
    }
    assert log.drain() == {}


def test_weeks_start_on_monday():
    from datetime import date

    assert week_of(date(2026, 11, 30)) == date(2026, 11, 30)
    assert week_of(date(2026, 12, 6)) == date(2026, 11, 30)
