"""Key providers and the envelope against a real SoftHSM2 token (docs/design.md §9)."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from pkcs11 import Attribute
from pkcs11 import exceptions as p11

from clearway.shared.crypto import Context, DekCache, Envelope, RecordUnreadable
from clearway.shared.crypto.envelope import kek_version
from clearway.shared.crypto.hsm import HsmProvider
from clearway.shared.crypto.keyring import KeyringProvider
from clearway.shared.crypto.keys import KeyProvider, KeyUnavailable
from clearway.shared.crypto.settings import KeySettings
from clearway.shared.crypto.softhsm import DEFAULT_MODULE, ensure_token
from clearway.shared.settings import PlatformSettings, SettingsError

CTX = Context("webhooks", "endpoint_secrets", "sealed", "ep_1", "tenant_a")


def hsm(softhsm: Path) -> HsmProvider:
    name = f"t{uuid.uuid4().hex[:8]}"  # one token per session: keys differ by name
    pin = ensure_token(softhsm, "clearway")
    provider = HsmProvider(name, module=DEFAULT_MODULE, token_label="clearway", pin=pin)
    provider.ensure()
    return provider


@pytest.fixture(params=["hsm", "keyring"])
def provider(request: pytest.FixtureRequest, softhsm: Path, tmp_path: Path) -> KeyProvider:
    if request.param == "hsm":
        return hsm(softhsm)
    p = KeyringProvider(f"t{uuid.uuid4().hex[:8]}", tmp_path)
    p.ensure()
    return p


def test_kek_objects_are_sensitive_and_not_extractable(softhsm: Path) -> None:
    provider = hsm(softhsm)
    provider.create_version()
    for version in provider.versions():
        key = provider.kek_object(version)
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        with pytest.raises(p11.AttributeSensitive):
            key[Attribute.VALUE]


def test_seal_open_round_trip(provider: KeyProvider) -> None:
    env = Envelope(provider)
    blob = env.seal(b"whsec_abc", CTX)
    assert b"whsec_abc" not in blob
    assert env.open(blob, CTX) == b"whsec_abc"
    # a cold cache unwraps through the provider
    assert Envelope(provider, DekCache(0)).open(blob, CTX) == b"whsec_abc"


@pytest.mark.parametrize(
    "other",
    [
        Context("webhooks", "endpoint_secrets", "sealed", "ep_2", "tenant_a"),  # moved row
        Context("webhooks", "endpoint_secrets", "sealed", "ep_1", "tenant_b"),  # moved tenant
        Context("webhooks", "endpoint_secrets", "other", "ep_1", "tenant_a"),  # column
        Context("consent", "endpoint_secrets", "sealed", "ep_1", "tenant_a"),  # service
    ],
)
def test_altered_context_or_moved_ciphertext_fails(provider: KeyProvider, other: Context) -> None:
    env = Envelope(provider)
    blob = env.seal(b"secret", CTX)
    with pytest.raises(RecordUnreadable) as e:
        env.open(blob, other)
    assert e.value.record == str(other)
    assert "secret" not in str(e.value).replace(str(other), "")


def test_truncated_blob_and_wrong_version_name_the_record(provider: KeyProvider) -> None:
    env = Envelope(provider, DekCache(0))
    blob = env.seal(b"secret", CTX)
    for cut in (0, 3, 7, 20, len(blob) - 20, len(blob) - 1):
        with pytest.raises(RecordUnreadable) as e:
            env.open(blob[:cut], CTX)
        assert e.value.record == str(CTX)
    version_at = 5 + len(provider.name.encode())
    wrong = bytearray(blob)
    wrong[version_at + 3] += 7  # a version that never existed
    with pytest.raises(RecordUnreadable, match="unknown or destroyed") as e:
        env.open(bytes(wrong), CTX)
    assert e.value.record == str(CTX)
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    with pytest.raises(RecordUnreadable, match="does not authenticate"):
        env.open(bytes(flipped), CTX)


def test_relabelled_version_does_not_unwrap(provider: KeyProvider) -> None:
    env = Envelope(provider, DekCache(0))
    blob = env.seal(b"secret", CTX)
    provider.create_version()
    version_at = 5 + len(provider.name.encode())
    relabelled = bytearray(blob)
    relabelled[version_at + 3] += 1  # claims the new version
    with pytest.raises(RecordUnreadable, match="does not authenticate"):
        env.open(bytes(relabelled), CTX)


def test_rotation_rewrap_and_destroy(provider: KeyProvider) -> None:
    env = Envelope(provider, DekCache(0))
    blobs = [env.seal(f"secret {i}".encode(), CTX) for i in range(20)]
    old = env.primary
    new = provider.create_version()
    assert env.refresh() == new
    rewrapped = [env.rewrap(b) for b in blobs]
    assert all(r is not None and kek_version(r) == new for r in rewrapped)
    assert all(r[-28:] == b[-28:] for r, b in zip(rewrapped, blobs, strict=True) if r)
    assert env.rewrap(rewrapped[0] or b"") is None  # already under the primary
    provider.destroy_version(old)
    assert provider.versions() == [new]
    assert [env.open(r or b"", CTX) for r in rewrapped] == [
        f"secret {i}".encode() for i in range(20)
    ]
    with pytest.raises(RecordUnreadable, match="unknown or destroyed"):
        env.open(blobs[0], CTX)


def test_unreachable_hsm_is_key_unavailable(softhsm: Path) -> None:
    with pytest.raises(KeyUnavailable, match="nosuchtoken"):
        HsmProvider("svc", module=DEFAULT_MODULE, token_label="nosuchtoken", pin="x").ensure()
    with pytest.raises(KeyUnavailable, match="not found"):
        HsmProvider("svc", module="/nonexistent/libpkcs11.so", token_label="x", pin="x").ensure()
    with pytest.raises(KeyUnavailable, match="PIN"):
        HsmProvider("svc", module=DEFAULT_MODULE, token_label="clearway", pin="wrong").ensure()


class _Keyed(KeySettings):
    service = "keyed"


def test_production_refuses_the_keyring_and_requires_the_pin() -> None:
    env = {"CLEARWAY_ENV": "production", "CLEARWAY_KEYED_KEY_PROVIDER": "keyring"}
    with pytest.raises(SettingsError) as e:
        _Keyed.from_env(env)
    assert "CLEARWAY_KEYED_KEY_PROVIDER" in e.value.problems
    assert "CLEARWAY_KEYED_HSM_PIN" in e.value.problems
    ok = _Keyed.from_env(
        {
            **env,
            "CLEARWAY_KEYED_KEY_PROVIDER": "hsm",
            "CLEARWAY_KEYED_HSM_PIN": "1234",
            "CLEARWAY_KEYED_DB_PASSWORD": "x",
            "CLEARWAY_KEYED_CURSOR_KEY": base64.b64encode(b"c" * 32).decode(),
        }
    )
    assert ok.key_provider == "hsm"
    assert _Keyed(platform=PlatformSettings()).key_provider == "hsm"


def test_key_unavailable_is_a_503_dependency() -> None:
    from clearway.shared.http.problems import unavailable_dependency

    down = KeyUnavailable("HSM token 'clearway' unavailable (DeviceRemoved)")
    assert unavailable_dependency(RuntimeError("wrapped").with_traceback(None)) is None
    try:
        raise RuntimeError("sealing failed") from down
    except RuntimeError as e:
        assert unavailable_dependency(e) is down
