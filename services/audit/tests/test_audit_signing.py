"""Checkpoints are Ed25519-signed; rotation keeps old checkpoints verifiable (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from clearway.audit.signing import Keyring
from clearway.shared.crypto.signing import KeyringSigningProvider

ROOT = bytes(range(32))
WHEN = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)


def test_a_signed_checkpoint_verifies_and_any_change_breaks_it():
    ring = Keyring.generate()
    cp = ring.sign(10, ROOT, WHEN)
    assert ring.verifies(cp)
    assert cp.issued_at.microsecond == 891000  # the note carries milliseconds
    assert not ring.verifies(replace(cp, tree_size=11))
    assert not ring.verifies(replace(cp, root_hash=bytes(32)))
    assert not ring.verifies(replace(cp, issued_at=datetime(2027, 1, 1, tzinfo=UTC)))


def test_rotation_signs_with_a_new_key_and_old_checkpoints_still_verify():
    ring = Keyring.generate()
    old = ring.sign(1, ROOT, WHEN)
    new_kid = ring.rotate()
    new = ring.sign(2, ROOT, WHEN)
    assert new.key_id == new_kid != old.key_id
    assert ring.verifies(old) and ring.verifies(new)


def test_a_checkpoint_from_an_unknown_key_is_refused():
    mine, theirs = Keyring.generate(), Keyring.generate()
    assert not mine.verifies(theirs.sign(1, ROOT, WHEN))


def test_the_keyring_round_trips_and_publishes_only_public_keys(tmp_path):
    ring = Keyring.generate()
    ring.rotate()
    path = tmp_path / "audit-checkpoint.sig.json"
    ring.provider.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = Keyring(KeyringSigningProvider("audit-checkpoint", tmp_path))
    assert again.active == ring.active
    assert again.verifies(ring.sign(3, ROOT, WHEN))
    jwks = ring.public_jwks()
    assert len(jwks["keys"]) == 2
    assert all(set(k) >= {"kty", "crv", "x", "kid"} and "d" not in k for k in jwks["keys"])
