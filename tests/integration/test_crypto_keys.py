"""Key providers and the envelope against a real SoftHSM2 token (docs/design.md §9)."""

from __future__ import annotations

import base64
import os
import struct
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import Attribute
from pkcs11 import exceptions as p11

from clearway.shared.crypto import Context, DekCache, Envelope, RecordUnreadable
from clearway.shared.crypto.envelope import BatchPolicy, kek_version
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
    supports_rotated_db_logins = True
    uses_kafka = False  # keys only: no Kafka link to secure


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
            "CLEARWAY_KEYED_DB_LOGINS": "rotated",
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


class _Counting(KeyProvider):
    """Counts the calls reaching a real provider (to see what the batch keys save)."""

    def __init__(self, inner: KeyProvider) -> None:
        super().__init__(inner.name)
        self.inner, self.kind = inner, inner.kind
        self.wraps = self.unwraps = 0

    def versions(self) -> list[int]:
        return self.inner.versions()

    def wrap(self, version: int, data_key: bytes) -> bytes:
        self.wraps += 1
        return self.inner.wrap(version, data_key)

    def unwrap(self, version: int, wrapped: bytes) -> bytes:
        self.unwraps += 1
        return self.inner.unwrap(version, wrapped)

    def create_version(self) -> int:
        return self.inner.create_version()

    def destroy_version(self, version: int) -> None:
        self.inner.destroy_version(version)


def _header_of(blob: bytes) -> bytes:
    n = blob[4]
    return blob[: 11 + n + int.from_bytes(blob[9 + n : 11 + n])]


def test_one_hsm_call_per_batch_never_one_per_record(provider: KeyProvider) -> None:
    counting = _Counting(provider)
    now = [0.0]
    env = Envelope(counting, DekCache(0), BatchPolicy(records=10, seconds=5), clock=lambda: now[0])
    blobs = [env.seal(f"r{i}".encode(), CTX) for i in range(25)]
    assert counting.wraps == 3  # 10 + 10 + 5 records
    assert len({_header_of(b) for b in blobs}) == 3
    assert len({b[len(_header_of(b)) :][:12] for b in blobs}) == 25  # a nonce per record
    now[0] = 6.0  # the batch expired by age
    env.seal(b"late", CTX)
    assert counting.wraps == 4
    other = Context("webhooks", "endpoint_secrets", "sealed", "ep_9", "tenant_b")
    assert _header_of(env.seal(b"x", other)) != _header_of(env.seal(b"y", CTX))  # per tenant
    assert [env.open(b, CTX) for b in blobs] == [f"r{i}".encode() for i in range(25)]


def test_records_of_one_batch_have_independent_keys(provider: KeyProvider) -> None:
    """Swapping the bodies of two records of one batch (same header) does not open:
    each record's data key derives from its own nonce and its context is bound."""
    env = Envelope(provider)
    a = env.seal(b"alpha", CTX)
    b_ctx = Context("webhooks", "endpoint_secrets", "sealed", "ep_2", "tenant_a")
    b = env.seal(b"bravo", b_ctx)
    head = len(_header_of(a))
    assert _header_of(a) == _header_of(b)
    spliced = a[:head] + a[head : head + 12] + b[head + 12 :]  # a's nonce, b's ciphertext
    with pytest.raises(RecordUnreadable, match="does not authenticate"):
        env.open(spliced, b_ctx)


def test_rewrap_costs_one_unwrap_per_batch(provider: KeyProvider) -> None:
    env = Envelope(provider, DekCache(0), BatchPolicy(records=50))
    blobs = [env.seal(f"s{i}".encode(), CTX) for i in range(200)]
    provider.create_version()
    counting = _Counting(provider)
    mover = Envelope(counting, DekCache(0))
    mover.refresh()
    moved = [mover.rewrap(b) for b in blobs]
    assert (counting.unwraps, counting.wraps) == (4, 4)
    assert [mover.open(m or b"", CTX) for m in moved] == [f"s{i}".encode() for i in range(200)]


def test_format_1_records_still_open_and_rewrap(provider: KeyProvider) -> None:
    """Records sealed before batch keys (a data key wrapped by the KEK itself)."""
    env = Envelope(provider, DekCache(0))
    version = env.primary
    dek = AESGCM.generate_key(256)
    wrapped = provider.wrap(version, dek)
    name = provider.name.encode()
    nonce = b"\x01" * 12
    v1 = (
        b"CWE\x01"
        + bytes([len(name)])
        + name
        + struct.pack(">IH", version, len(wrapped))
        + wrapped
        + nonce
        + AESGCM(dek).encrypt(nonce, b"legacy", CTX.aad_v1())
    )
    assert env.open(v1, CTX) == b"legacy"
    with pytest.raises(RecordUnreadable):
        env.open(v1, Context("webhooks", "endpoint_secrets", "sealed", "ep_2", "tenant_a"))
    provider.create_version()
    env.refresh()
    moved = env.rewrap(v1)
    assert moved is not None and kek_version(moved) == version + 1
    assert env.open(moved, CTX) == b"legacy"


def test_a_record_sealed_here_opens_with_its_cached_key_and_still_checks_its_context(
    provider: KeyProvider,
) -> None:
    env = Envelope(provider)
    blobs = [env.seal(f"r{i}".encode(), CTX) for i in range(3)]
    assert [env.open(b, CTX) for b in blobs] == [b"r0", b"r1", b"r2"]
    assert (env.cache.record_hits, env.cache.record_misses) == (3, 0)
    assert env.cache.record_keys() == 3  # one key per record, none shared
    moved = Context("webhooks", "endpoint_secrets", "sealed", "ep_2", "tenant_a")
    with pytest.raises(RecordUnreadable, match="does not authenticate"):
        env.open(blobs[0], moved)
    reader = Envelope(provider)  # another process: derives, then holds the key
    assert reader.open(blobs[1], CTX) == b"r1" and reader.open(blobs[1], CTX) == b"r1"
    assert (reader.cache.record_hits, reader.cache.record_misses) == (1, 1)


def test_destroying_a_kek_version_leaves_no_cached_key_of_it(provider: KeyProvider) -> None:
    env = Envelope(provider)
    old = env.primary
    blob = env.seal(b"secret", CTX)
    assert env.open(blob, CTX) == b"secret"
    provider.create_version()
    env.refresh()
    provider.destroy_version(old)
    env.forget_keys()  # what retire_keks does after destroying versions
    assert env.cache.record_keys() == 0 and len(env.cache) == 0
    with pytest.raises(RecordUnreadable, match="unknown or destroyed"):
        env.open(blob, CTX)


def test_a_forked_child_never_seals_with_its_parents_batch(tmp_path: Path) -> None:
    """Nonces and keys are derived ahead for a batch; a child process (fork) starts
    its own batch rather than take the nonces its parent takes next."""
    provider = KeyringProvider(f"t{uuid.uuid4().hex[:8]}", tmp_path)
    provider.ensure()
    env = Envelope(provider)
    first = env.seal(b"parent 1", CTX)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send one sealed record, then leave without cleanup
        os.close(read)
        os.write(write, env.seal(b"child", CTX))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    second = env.seal(b"parent 2", CTX)
    head = len(_header_of(first))
    assert _header_of(second) == _header_of(first)  # the parent goes on with its batch
    assert _header_of(child) != _header_of(first)  # the child wrapped a batch key of its own
    assert child[head : head + 12] != second[head : head + 12]
    assert env.open(child, CTX) == b"child"
