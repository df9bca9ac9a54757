"""A receiver that keeps failing fires ClearwayWebhookFailureRate for its endpoint
(deploy/prometheus/alerts.yaml, docs/runbooks/webhook-failures.md)."""

from __future__ import annotations

import pytest

from clearway.shared.testing.alerts import Series, assert_fires, samples, scrape

pytestmark = pytest.mark.integration


async def test_an_endpoint_that_keeps_failing_fires_the_webhook_failure_alert(
    service, receiver_factory, publish, make_event, eventually
):
    receiver = await receiver_factory(lambda req, n: (500, {}, b"down"))
    endpoint = await service.create_endpoint(receiver.url)
    labels = {"endpoint": endpoint["id"], "outcome": "failure"}
    assert not samples(await scrape(service.app), "clearway_webhook_attempts_total", **labels)

    await publish([make_event(1, run="alert")])
    attempts = len(service.settings.schedule)  # one message, every step of its schedule

    async def exhausted() -> bool:
        found = samples(await scrape(service.app), "clearway_webhook_attempts_total", **labels)
        return bool(found) and found[0].value == attempts

    await eventually(exhausted)
    [after] = samples(await scrape(service.app), "clearway_webhook_attempts_total", **labels)
    # A receiver that stays down fails as often every minute (growth), per endpoint.
    assert_fires(
        "ClearwayWebhookFailureRate",
        [Series(None, after, growth=after.value, scrape_labels={"job": "webhooks"})],
        {"job": "webhooks", "endpoint": endpoint["id"]},
    )
