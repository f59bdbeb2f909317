"""Sealing, keys and shares: real face crops round-trip; every tamper case is refused."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from vault import crypto
from vault.keys import (
    CameraKeyring,
    EpochCertificate,
    KeyRefused,
    KeyStore,
    KeyStoreError,
    combine_master,
)

NOW = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)


@pytest.fixture(params=["x25519", "mlkem768-x25519"])
def authority(request, tmp_path):
    ks = KeyStore(tmp_path / "keys")
    shares = ks.init(NOW, suite=request.param, epochs_ahead=2, k=2, n=3)
    cam = tmp_path / "camera" / "keyring.json"
    cam.parent.mkdir()
    cam.write_text(json.dumps(ks.camera_keyring()))
    return ks, shares, CameraKeyring.load(cam), cam


@pytest.fixture(scope="module")
def crops(celeba_dir):
    return [(celeba_dir / f"{i:06d}.jpg").read_bytes() for i in range(1, 6)]


def header(epoch_id, rid="rec-1", t=NOW):
    return crypto.RecordHeader(rid, "cam-A", epoch_id, t - timedelta(seconds=3), t, t)


def test_real_crops_round_trip(authority, crops):
    ks, shares, ring, _ = authority
    key = ring.key_for(NOW)
    master = ks.master_from(shares[:2])
    priv = ks.epoch_private_key(master, key.cert.epoch_id)
    for i, jpeg in enumerate(crops):
        meta = {"track": i, "quality": 1234.5, "box": [1, 2, 3, 4]}
        sealed = key.seal(jpeg, meta, header(key.cert.epoch_id, f"rec-{i}"))
        assert jpeg not in sealed.ciphertext and b"\xff\xd8\xff" not in sealed.ciphertext
        assert crypto.open(sealed, priv) == (jpeg, meta)


def test_every_tamper_case_is_an_integrity_error(authority, crops):
    ks, shares, ring, _ = authority
    key = ring.key_for(NOW)
    master = ks.master_from(shares[:2])
    priv = ks.epoch_private_key(master, key.cert.epoch_id)
    a = key.seal(crops[0], {}, header(key.cert.epoch_id, "rec-a"))
    b = key.seal(crops[1], {}, header(key.cert.epoch_id, "rec-b"))

    def flip(blob: bytes, i: int) -> bytes:
        return blob[:i] + bytes([blob[i] ^ 1]) + blob[i + 1 :]

    h = a.header
    cases = {
        "ciphertext bit": dataclasses.replace(a, ciphertext=flip(a.ciphertext, 40)),
        "tag bit": dataclasses.replace(a, ciphertext=flip(a.ciphertext, len(a.ciphertext) - 1)),
        "nonce bit": dataclasses.replace(a, nonce=flip(a.nonce, 0)),
        "sealed key bit": dataclasses.replace(a, sealed_key=flip(a.sealed_key, 5)),
        "ciphertext moved": dataclasses.replace(a, ciphertext=b.ciphertext, nonce=b.nonce),
        "sealed key moved": dataclasses.replace(a, sealed_key=b.sealed_key),
        "record id": dataclasses.replace(a, header=dataclasses.replace(h, record_id="x")),
        "camera id": dataclasses.replace(a, header=dataclasses.replace(h, camera_id="cam-B")),
        "capture time": dataclasses.replace(
            a, header=dataclasses.replace(h, best_time=h.best_time + timedelta(seconds=1))
        ),
        "format version": dataclasses.replace(a, header=dataclasses.replace(h, version=2)),
        "epoch id": dataclasses.replace(a, header=dataclasses.replace(h, epoch_id="other")),
    }
    for name, bad in cases.items():
        with pytest.raises(crypto.IntegrityError):
            crypto.open(bad, priv)
            pytest.fail(name)
    other_epoch = ring.key_for(NOW + timedelta(days=1)).cert.epoch_id
    with pytest.raises(crypto.IntegrityError):
        crypto.open(a, ks.epoch_private_key(master, other_epoch))
    assert crypto.open(a, priv)[0] == crops[0]  # the untouched record still opens


def test_camera_refuses_unsigned_forged_or_expired_keys(authority, tmp_path):
    ks, shares, ring, cam = authority
    # a key for a moment no epoch covers: the camera is out of keys
    with pytest.raises(KeyRefused, match="out of keys"):
        ring.key_for(NOW + timedelta(days=30))
    # a certificate whose public key was swapped (an attacker's key) fails the signature
    d = json.loads(cam.read_text())
    other = KeyStore(tmp_path / "attacker")
    other.init(NOW, suite=ks.info()["suite"], epochs_ahead=1, dev=True)
    d["epochs"][0]["public_key"] = other.camera_keyring()["epochs"][0]["public_key"]
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(d))
    with pytest.raises(KeyRefused, match="not signed"):
        CameraKeyring.load(forged).key_for(NOW)
    # unsigned
    d["epochs"][0]["signature"] = ""
    forged.write_text(json.dumps(d))
    with pytest.raises(KeyRefused):
        CameraKeyring.load(forged).key_for(NOW)
    # sealing a record whose capture time lies outside the key's epoch is refused
    key = ring.key_for(NOW)
    late = header(key.cert.epoch_id, t=NOW + timedelta(days=1))
    with pytest.raises(KeyRefused, match="not valid"):
        key.seal(b"x", {}, late)


def test_camera_configuration_holds_nothing_that_opens(authority):
    ks, shares, ring, cam = authority
    text = cam.read_text()
    master = ks.master_from(shares[:2])
    secrets = [master, *(p.read_bytes() for p in ks.epochs_dir.glob("*.key.enc"))]
    from vault.keys import _b64

    for c in ks.certificates():
        priv = ks.epoch_private_key(master, c.epoch_id)
        raw = priv.private_bytes_raw() if hasattr(priv, "private_bytes_raw") else None
        if raw:
            secrets.append(raw)
    for s in secrets:
        assert s.hex() not in text and _b64(s) not in text
    assert set(json.loads(text)) == {"format", "authority_public_key", "epochs"}
    assert all(
        set(e) == {f.name for f in dataclasses.fields(EpochCertificate)}
        for e in json.loads(text)["epochs"]
    )


def test_shamir_k_of_n(tmp_path):
    ks = KeyStore(tmp_path / "k")
    shares = ks.init(NOW, epochs_ahead=1, k=3, n=5)
    assert len(shares) == 5
    masters = {ks.master_from(list(c)) for c in itertools.combinations(shares, 3)}
    assert len(masters) == 1  # any 3 of 5 give the same key, which the store accepts
    for c in itertools.combinations(shares, 2):
        with pytest.raises(KeyStoreError, match="needed"):
            ks.master_from(list(c))
        # and combining too few shares directly gives some other key
        assert combine_master(list(c)) not in masters
    wrong = shares[0][:-4] + ("0000" if not shares[0].endswith("0000") else "1111")
    with pytest.raises(KeyStoreError, match="wrong master key"):
        ks.master_from([wrong, shares[1], shares[2]])
    with pytest.raises(KeyStoreError, match="twice"):
        ks.master_from([shares[0], shares[0], shares[1]])
    with pytest.raises(KeyStoreError, match="production mode"):
        ks.master_from(None)


def test_shredding_makes_the_epoch_unopenable(authority, crops):
    ks, shares, ring, _ = authority
    key = ring.key_for(NOW)
    sealed = key.seal(crops[0], {}, header(key.cert.epoch_id))
    master = ks.master_from(shares[:2])
    assert ks.shred(key.cert.epoch_id)
    with pytest.raises(KeyStoreError, match="destroyed"):
        ks.epoch_private_key(master, key.cert.epoch_id)
    assert not ks.shred(key.cert.epoch_id)
    assert sealed.ciphertext  # the ciphertext itself is untouched but now unreadable
