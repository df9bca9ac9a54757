"""The SSRF guard refuses non-public addresses at creation and again at connect time."""

from __future__ import annotations

import httpx
import pytest

from clearway.webhooks.ssrf import SsrfGuard, UnsafeUrl, guarded_client


async def resolves_to(mapping):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "https://[::1]/hook",
        "http://127.0.0.1:8080/hook",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://[::ffff:10.0.0.1]/",
        "http://localhost/hook",
    ],
)
async def test_private_link_local_and_loopback_addresses_are_refused(url):
    with pytest.raises(UnsafeUrl):
        await SsrfGuard().check_url(url)


async def test_a_name_resolving_to_a_private_address_is_refused():
    guard = SsrfGuard(
        resolver=await resolves_to({"internal.example.com": ["93.184.216.34", "10.0.0.7"]})
    )
    with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.7"):
        await guard.check_url("https://internal.example.com/hook")


async def test_a_public_name_passes_and_allow_listed_loopback_passes():
    guard = SsrfGuard(resolver=await resolves_to({"partner.example.com": ["93.184.216.34"]}))
    assert await guard.check_url("https://partner.example.com/hook")
    assert await SsrfGuard(["127.0.0.0/8"]).check_url("http://127.0.0.1:9/hook")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "http://user:pw@example.com/",
        "not a url",
        "http:///x",
        "http://x/" + "a" * 3000,
    ],
)
async def test_malformed_urls_are_refused(url):
    with pytest.raises(UnsafeUrl):
        await SsrfGuard(resolver=await resolves_to({"example.com": ["93.184.216.34"]})).check_url(
            url
        )


async def test_at_connect_time_a_name_now_resolving_to_a_private_address_is_refused(
    receiver_factory,
):
    receiver = await receiver_factory()
    # The name passed the check when the endpoint was created; now it points inside.
    guard = SsrfGuard(resolver=await resolves_to({"rebound.example.com": ["127.0.0.1"]}))
    async with guarded_client(guard, timeout_s=5) as client:
        with pytest.raises(httpx.ConnectError, match="ssrf guard"):
            await client.post(f"http://rebound.example.com:{receiver.port}/hook", content=b"{}")
        with pytest.raises(httpx.ConnectError, match="ssrf guard"):
            await client.post(receiver.url, content=b"{}")
    assert receiver.requests == []
    allowed = SsrfGuard(["127.0.0.0/8"])
    async with guarded_client(allowed, timeout_s=5) as client:
        assert (await client.post(receiver.url, content=b"{}")).status_code == 204
