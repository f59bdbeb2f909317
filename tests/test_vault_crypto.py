"""Sealing, keys and shares: real face crops round-trip; every tamper case is refused; an
epoch key exists only as k-of-n shares sealed to the trustees, and a shred ends it."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from escrow import sealing
from escrow.keyring import CameraKeyring, EpochCertificate
from escrow.sealing import (
    KeyRefused,
    KeyStoreError,
    generate_keypair,
    open_with_passphrase,
    public_of,
    unseal_share,
)
from escrow.trustee import share_aad, share_digest
from tests.conftest import PASSPHRASE, epoch_key, make_authority, trustee_shares
from vault.keys import KeyStore, combine_secret, split_secret

NOW = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)


@pytest.fixture(params=["x25519", "mlkem768-x25519"])
def authority(request, tmp_path):
    """2 of 3 trustees; two epochs each of cam-A and cam-B; cam-A's keyring on disk."""
    ks, keys = make_authority(
        tmp_path / "keys", NOW, cameras=("cam-A", "cam-B"), epochs=2, k=2, suite=request.param
    )
    cam = tmp_path / "camera" / "keyring.json"
    cam.parent.mkdir()
    cam.write_text(json.dumps(ks.camera_keyring("cam-A")))
    return ks, list(keys.values()), CameraKeyring.load(cam), cam


@pytest.fixture(scope="module")
def crops(celeba_dir):
    return [(celeba_dir / f"{i:06d}.jpg").read_bytes() for i in range(1, 6)]


def header(epoch_id, rid="rec-1", t=NOW, camera="cam-A"):
    return sealing.RecordHeader(rid, camera, epoch_id, t - timedelta(seconds=3), t, t)


def test_real_crops_round_trip(authority, crops):
    ks, trustees, ring, _ = authority
    key = ring.key_for(NOW, "cam-A")
    priv = epoch_key(ks, trustees[:2], key.cert.epoch_id)
    for i, jpeg in enumerate(crops):
        meta = {"track": i, "quality": 1234.5, "box": [1, 2, 3, 4]}
        sealed = key.seal(jpeg, meta, header(key.cert.epoch_id, f"rec-{i}"))
        assert jpeg not in sealed.ciphertext and b"\xff\xd8\xff" not in sealed.ciphertext
        assert sealing.open(sealed, priv) == (jpeg, meta)


def test_every_tamper_case_is_an_integrity_error(authority, crops):
    ks, trustees, ring, _ = authority
    key = ring.key_for(NOW, "cam-A")
    priv = epoch_key(ks, trustees[1:], key.cert.epoch_id)
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
        with pytest.raises(sealing.IntegrityError):
            sealing.open(bad, priv)
            pytest.fail(name)
    # the key of the camera's next epoch, and another camera's key of the same moment
    other_epoch = ring.key_for(NOW + timedelta(days=1), "cam-A").cert.epoch_id
    with pytest.raises(sealing.IntegrityError):
        sealing.open(a, epoch_key(ks, trustees[:2], other_epoch))
    cam_b = CameraKeyring(ks.authority_public_raw(), ks.certificates("cam-B"), "cam-B")
    other_camera = cam_b.key_for(NOW, "cam-B").cert.epoch_id
    assert other_camera != key.cert.epoch_id
    with pytest.raises(sealing.IntegrityError):
        sealing.open(a, epoch_key(ks, trustees[:2], other_camera))
    assert sealing.open(a, priv)[0] == crops[0]  # the untouched record still opens


def test_camera_refuses_unsigned_forged_or_expired_keys(authority, tmp_path):
    ks, _, ring, cam = authority
    # a key for a moment no epoch covers: the camera is out of keys
    with pytest.raises(KeyRefused, match="out of keys"):
        ring.key_for(NOW + timedelta(days=30), "cam-A")
    # a certificate whose public key was swapped (an attacker's key) fails the signature
    d = json.loads(cam.read_text())
    other = KeyStore(tmp_path / "attacker")
    other.init(NOW, [("Mallory", PASSPHRASE)], 1, PASSPHRASE, suite=ks.info()["suite"], dev=True)
    other.issue_epochs(other.authority_signer(PASSPHRASE), "cam-A", NOW, 1)
    d["epochs"][0]["public_key"] = other.camera_keyring("cam-A")["epochs"][0]["public_key"]
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(d))
    with pytest.raises(KeyRefused, match="not signed"):
        CameraKeyring.load(forged).key_for(NOW, "cam-A")
    # unsigned
    d["epochs"][0]["signature"] = ""
    forged.write_text(json.dumps(d))
    with pytest.raises(KeyRefused):
        CameraKeyring.load(forged).key_for(NOW, "cam-A")
    # a whole certificate of another authority, validly signed by it
    d = json.loads(cam.read_text())
    d["epochs"] = other.camera_keyring("cam-A")["epochs"]
    forged.write_text(json.dumps(d))
    with pytest.raises(KeyRefused, match="not signed"):
        CameraKeyring.load(forged).key_for(NOW, "cam-A")
    # cam-A's certificate relabelled as cam-B's: the camera id is under the signature
    d = json.loads(cam.read_text())
    d["camera_id"] = "cam-B"
    for e in d["epochs"]:
        e["camera_id"] = "cam-B"
    forged.write_text(json.dumps(d))
    with pytest.raises(KeyRefused, match="not signed"):
        CameraKeyring.load(forged).key_for(NOW, "cam-B")
    # a camera never uses another camera's key: not from its keyring, not to seal its records
    with pytest.raises(KeyRefused, match="out of keys"):
        ring.key_for(NOW, "cam-B")
    cam_b = CameraKeyring(ks.authority_public_raw(), ks.certificates("cam-B"), "cam-B")
    b_key = cam_b.key_for(NOW, "cam-B")
    with pytest.raises(KeyRefused, match="belongs to camera cam-B"):
        b_key.seal(b"x", {}, header(b_key.cert.epoch_id, camera="cam-A"))
    # sealing a record whose capture time lies outside the key's epoch is refused
    key = ring.key_for(NOW, "cam-A")
    late = header(key.cert.epoch_id, t=NOW + timedelta(days=1))
    with pytest.raises(KeyRefused, match="not valid"):
        key.seal(b"x", {}, late)
    # a record of another epoch is refused by this epoch's key
    with pytest.raises(KeyRefused, match="is for epoch"):
        key.seal(b"x", {}, header("cam-A@20261125T0000Z"))


def test_camera_configuration_holds_nothing_that_opens(authority):
    ks, trustees, ring, cam = authority
    text = cam.read_text()
    secrets = [
        (ks.root / "release.key").read_bytes(),
        ks.authority_signer(PASSPHRASE).private_bytes_raw(),
        *(open_with_passphrase(t.sealed_private, PASSPHRASE, t.purpose()) for t in trustees),
    ]
    for c in ks.certificates():  # every camera's epochs, not only this camera's
        shares = trustee_shares(ks, trustees, c.epoch_id)
        raw = combine_secret(shares[:2])
        assert public_of(c.suite, raw) == base64.b64decode(c.public_key)
        secrets += [raw, *(share for _, share in shares)]
    for s in secrets:
        assert s.hex() not in text and base64.b64encode(s).decode() not in text
    ring_doc = json.loads(text)
    assert set(ring_doc) == {
        "format",
        "camera_id",
        "authority_public_key",
        "authority_fingerprint",
        "epochs",
    }
    assert all(
        set(e) == {f.name for f in dataclasses.fields(EpochCertificate)} for e in ring_doc["epochs"]
    )
    # only this camera's own certificates
    assert ring_doc["camera_id"] == "cam-A" and len(ring_doc["epochs"]) == 2
    assert {e["camera_id"] for e in ring_doc["epochs"]} == {"cam-A"}
    assert {c.epoch_id for c in ring.certs} == {c.epoch_id for c in ks.certificates("cam-A")}


@pytest.mark.parametrize("suite", ["x25519", "mlkem768-x25519"])
def test_split_secret_any_k_of_n_rebuild_fewer_do_not(suite):
    priv, pub = generate_keypair(suite)
    assert len(priv) == {"x25519": 32, "mlkem768-x25519": 96}[suite]
    shares = split_secret(priv, 3, 5)
    assert [i for i, _ in shares] == [1, 2, 3, 4, 5]
    assert all(len(s) == len(priv) and s != priv for _, s in shares)
    for m in (3, 4, 5):  # any 3, 4 or all 5 of the 5 shares, in any order
        for c in itertools.combinations(shares, m):
            for subset in (list(c), list(reversed(c))):
                got = combine_secret(subset)
                assert got == priv and public_of(suite, got) == pub
    for m in (1, 2):  # too few shares give some other key, never this one
        for c in itertools.combinations(shares, m):
            got = combine_secret(list(c))
            assert got != priv and public_of(suite, got) != pub
    # one altered share rebuilds a wrong key, caught by its public key (a byte in the
    # middle: X25519 ignores the few clamped bits of a private key)
    (i, s), rest = shares[0], shares[1:3]
    bad = combine_secret([(i, s[:8] + bytes([s[8] ^ 0x55]) + s[9:]), *rest])
    assert bad != priv and public_of(suite, bad) != pub
    # shares of two different splits of the same key do not mix
    again = split_secret(priv, 3, 5)
    assert combine_secret([shares[0], shares[1], again[2]]) != priv
    with pytest.raises(KeyStoreError, match="twice"):
        combine_secret([shares[0], shares[0], shares[1]])
    with pytest.raises(KeyStoreError, match="malformed"):
        combine_secret([shares[0], (shares[1][0], shares[1][1][:-16]), shares[2]])
    for bad in [(priv, 0, 5), (priv, 6, 5), (priv[:-1], 2, 3), (b"", 1, 1)]:
        with pytest.raises(ValueError):
            split_secret(*bad)


def test_trustee_shares_k_of_n(tmp_path):
    """At the key store: 3 of 5 trustees rebuild an epoch's key from the shares sealed to
    them, any 3; 2 do not. A share opens only with its trustee's key, for its epoch."""
    ks = KeyStore(tmp_path / "k")
    names = [f"T{i}" for i in range(1, 6)]
    trustees = ks.init(NOW, [(n, f"pass {n}") for n in names], 3, PASSPHRASE)
    assert [t.index for t in trustees] == [1, 2, 3, 4, 5]
    assert len(ks.info()["trustees"]) == 5 and ks.info()["threshold"] == 3
    certs = ks.issue_epochs(ks.authority_signer(PASSPHRASE), "cam-A", NOW, 2)
    cert, other = certs
    doc = ks.shares(cert.epoch_id)
    assert set(doc["sealed_shares"]) == set(doc["share_digests"]) == {"1", "2", "3", "4", "5"}
    privs = [t.unlock(f"pass {t.name}") for t in trustees]
    shares = []
    for t, p in zip(trustees, privs, strict=True):
        sealed = base64.b64decode(doc["sealed_shares"][str(t.index)])
        share = unseal_share(p, "x25519", sealed, share_aad(ks.fingerprint, cert, t.index))
        assert share_digest(cert, t.index, share) == doc["share_digests"][str(t.index)]
        shares.append((t.index, share))
        # not with another trustee's key, not as another trustee's or another epoch's share
        wrong_key = privs[t.index % 5]
        with pytest.raises(KeyStoreError, match="not yours"):
            unseal_share(wrong_key, "x25519", sealed, share_aad(ks.fingerprint, cert, t.index))
        with pytest.raises(KeyStoreError, match="not yours"):
            unseal_share(p, "x25519", sealed, share_aad(ks.fingerprint, cert, t.index % 5 + 1))
        with pytest.raises(KeyStoreError, match="not yours"):
            unseal_share(p, "x25519", sealed, share_aad(ks.fingerprint, other, t.index))
    want = base64.b64decode(cert.public_key)
    keys = {combine_secret(list(c)) for c in itertools.combinations(shares, 3)}
    assert len(keys) == 1 and public_of("x25519", keys.pop()) == want
    for c in itertools.combinations(shares, 2):
        assert public_of("x25519", combine_secret(list(c))) != want
    # a share of the epoch's neighbour does not stand in for one of its own
    theirs = ks.shares(other.epoch_id)["sealed_shares"]["3"]
    neighbour = unseal_share(
        privs[2], "x25519", base64.b64decode(theirs), share_aad(ks.fingerprint, other, 3)
    )
    assert public_of("x25519", combine_secret([shares[0], shares[1], (3, neighbour)])) != want
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        trustees[0].unlock(PASSPHRASE)


def test_shredding_makes_the_epoch_unopenable(authority, crops):
    ks, trustees, ring, _ = authority
    key = ring.key_for(NOW, "cam-A")
    epoch = key.cert.epoch_id
    sealed = key.seal(crops[0], {}, header(epoch))
    assert sealing.open(sealed, epoch_key(ks, trustees[:2], epoch))[0] == crops[0]
    shares_file = ks.epochs_dir / "cam-A" / f"{epoch.rpartition('@')[2]}.shares.json"
    old = json.loads(shares_file.read_bytes())["sealed_shares"]
    assert ks.shred(epoch)
    assert not shares_file.exists()
    with pytest.raises(KeyStoreError, match="destroyed"):
        ks.shares(epoch)
    with pytest.raises(KeyStoreError, match="destroyed"):  # not even all n trustees together
        epoch_key(ks, trustees, epoch)
    # no copy of the sealed shares is left anywhere in the key store
    everything = b"".join(p.read_bytes() for p in ks.root.rglob("*") if p.is_file())
    assert not any(blob.encode() in everything for blob in old.values())
    assert not ks.shred(epoch)
    assert ks.certificate(epoch).epoch_id == epoch  # the public half stays
    assert sealed.ciphertext  # the ciphertext itself is untouched but now unreadable
    # the camera's other epochs and the other camera's keys are untouched
    nxt = ring.key_for(NOW + timedelta(days=1), "cam-A")
    later = nxt.seal(crops[1], {}, header(nxt.cert.epoch_id, t=NOW + timedelta(days=1)))
    assert sealing.open(later, epoch_key(ks, trustees[1:], nxt.cert.epoch_id))[0] == crops[1]
    for c in ks.certificates("cam-B"):
        assert epoch_key(ks, trustees[:2], c.epoch_id)
