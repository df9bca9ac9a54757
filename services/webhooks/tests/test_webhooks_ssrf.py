"""The SSRF guard refuses every non-global address, at creation and again at connect
time, and never tells the tenant which address it found."""

from __future__ import annotations

import aiohttp
import pytest

from clearway.webhooks.dispatcher import describe
from clearway.webhooks.ssrf import SsrfGuard, UnsafeUrl, guarded_session, is_refusal, redact


def resolves_to(mapping):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]

    return resolve


# One row per kind of non-global address: (what, address). Each is refused as a URL
# literal and as the answer of a name.
REFUSED = [
    ("cloud metadata (link-local)", "169.254.169.254"),
    ("RFC 1918 private", "10.1.2.3"),
    ("loopback v4", "127.0.0.1"),
    ("unspecified v4", "0.0.0.0"),
    ("CGNAT", "100.64.0.1"),
    ("multicast v4", "224.0.0.1"),
    ("loopback v6", "::1"),
    ("unspecified v6", "::"),
    ("NAT64 well-known prefix, private IPv4 inside", "64:ff9b::a01:203"),
    ("NAT64 well-known prefix, public IPv4 inside", "64:ff9b::5db8:d822"),
    ("NAT64 local-use prefix", "64:ff9b:1::a01:203"),
    ("6to4, private IPv4 inside", "2002:a01:203::1"),
    ("6to4, public IPv4 inside", "2002:5db8:d822::1"),
    ("IPv4-compatible loopback", "::7f00:1"),
    ("IPv4-compatible private", "::a01:203"),
    ("IPv4-mapped private", "::ffff:10.0.0.1"),
    ("IPv4-mapped loopback", "::ffff:127.0.0.1"),
    ("IPv4-translated (::ffff:0:a.b.c.d)", "::ffff:0:a00:1"),
    ("site-local", "fec0::1"),
    ("unique local", "fd00::1"),
    ("link-local v6", "fe80::1"),
    ("multicast v6", "ff02::1"),
    ("Teredo, private client IPv4 10.0.0.1 inside", "2001:0:a00:1::f5ff:fffe"),
    ("documentation", "2001:db8::1"),
]


@pytest.mark.parametrize(("what", "address"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_a_non_global_address_is_refused_and_not_named(what, address):
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(UnsafeUrl) as as_literal:
        await SsrfGuard().check_url(f"http://{literal}/hook")
    guard = SsrfGuard(resolver=resolves_to({"partner.example.com": [address]}))
    with pytest.raises(UnsafeUrl) as as_name:
        await guard.check_url("https://partner.example.com/hook")
    assert address not in as_name.value.reason, "the tenant must not learn the address"
    assert "partner.example.com" in as_name.value.reason
    assert as_literal.value.reason


async def test_a_name_resolving_to_one_private_address_among_public_ones_is_refused():
    guard = SsrfGuard(resolver=resolves_to({"internal.example.com": ["93.184.216.34", "10.0.0.7"]}))
    with pytest.raises(UnsafeUrl) as refused:
        await guard.check_url("https://internal.example.com/hook")
    assert "10.0.0.7" not in refused.value.reason and "non-public" in refused.value.reason


async def test_public_addresses_pass_and_allow_listed_loopback_passes():
    public = {"v4.example.com": ["93.184.216.34"], "v6.example.com": ["2606:2800:220:1::1"]}
    guard = SsrfGuard(resolver=resolves_to(public))
    assert await guard.check_url("https://v4.example.com/hook")
    assert await guard.check_url("https://v6.example.com/hook")
    assert await SsrfGuard(["127.0.0.0/8"]).check_url("http://127.0.0.1:9/hook")


def test_operators_logs_get_the_address_masked_to_its_network():
    assert redact("10.1.2.3") == "10.1.x.x"
    assert redact("fd00:1:2::3") == "fd00:1:x"


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
        await SsrfGuard(resolver=resolves_to({"example.com": ["93.184.216.34"]})).check_url(url)


async def test_at_connect_time_a_name_now_resolving_to_a_private_address_is_refused(
    receiver_factory,
):
    receiver = await receiver_factory()
    # The name passed the check when the endpoint was created; now it points inside.
    guard = SsrfGuard(resolver=resolves_to({"rebound.example.com": ["127.0.0.1"]}))
    async with guarded_session(guard) as session:
        for url in (f"http://rebound.example.com:{receiver.port}/hook", receiver.url):
            with pytest.raises(aiohttp.ClientError) as refused:
                await session.post(url, data=b"{}")
            assert is_refusal(refused.value)
            # what the attempt log stores for the tenant names no address
            assert "127.0.0.1" not in describe(refused.value, 5)
    assert receiver.requests == []
    allowed = SsrfGuard(["127.0.0.0/8"])
    async with guarded_session(allowed) as session, session.post(receiver.url, data=b"{}") as r:
        assert r.status == 204


async def test_the_422_for_a_refused_url_names_no_address(service):
    # a name the tenant controls resolving to an internal address: the answer must not
    # tell the tenant which one (an internal-DNS oracle)
    service.app.state.guard = SsrfGuard(
        ["127.0.0.0/8"], resolver=resolves_to({"hooks.partner.example": ["10.20.30.40"]})
    )
    r = await service.http.post(
        "/v1/endpoints",
        json={"url": "https://hooks.partner.example/in", "event_types": ["platform.*"]},
        headers=service.auth,
    )
    assert r.status_code == 422, r.text
    assert "10.20" not in r.text and "hooks.partner.example" in r.text
    assert r.headers["content-type"].startswith("application/problem+json")
