"""An existing vault, made by the code before per-camera custody (a master key split 2-of-3),
is upgraded: the database by Alembic, the key store by the one-time `escrow keys migrate`
ceremony with 2 of the old shares; then one of its records opens through the new flow, and
nothing the master key could open is left."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from escrow import sealing
from escrow.trustee import TrusteeKey
from tests import legacy_authority_v1 as v1
from tests.conftest import PASSPHRASE, TRUSTEES, ApiVault
from vault.db import downgrade, upgrade
from vault.keys import KeyStore


def _old_vault(db_url, keys_dir, t0):
    """Authority, epochs and one sealed record exactly as the old code made them."""
    ks = v1.KeyStore(keys_dir)
    shares = ks.init(t0, k=2, n=3, epochs_ahead=2)
    ring = v1.CameraKeyring(base64.b64decode(ks.info()["signing_public_key"]), ks.certificates())
    best = t0 + timedelta(minutes=10)
    key = ring.key_for(best)
    header = sealing.RecordHeader(
        str(uuid.uuid4()), "cam-1", key.cert.epoch_id, best - timedelta(seconds=2), best, best
    )
    crop = b"\xff\xd8\xff old jpeg bytes"
    sealed = key.seal(crop, {"camera_id": "cam-1"}, header)
    engine = sa.create_engine(db_url)
    md = sa.MetaData()
    tables = {n: sa.Table(n, md, autoload_with=engine) for n in ("cameras", "key_epochs")}
    tables["sealed_records"] = sa.Table("sealed_records", md, autoload_with=engine)
    with engine.begin() as c:
        c.execute(tables["cameras"].insert().values(id="cam-1", name=None, created=t0))
        for cert in ks.certificates():
            a, b = cert.window()
            c.execute(
                tables["key_epochs"]
                .insert()
                .values(
                    id=cert.epoch_id,
                    suite=cert.suite,
                    not_before=a,
                    not_after=b,
                    public_key=base64.b64decode(cert.public_key),
                    signature=base64.b64decode(cert.signature),
                    destroyed_at=None,
                )
            )
        c.execute(
            tables["sealed_records"]
            .insert()
            .values(
                id=header.record_id,
                camera_id="cam-1",
                track_id=1,
                first_seen=header.first_seen,
                last_seen=header.last_seen,
                best_time=best,
                quality=-50.0,
                epoch_id=header.epoch_id,
                suite=sealed.suite,
                format_version=header.version,
                sealed_key=sealed.sealed_key,
                nonce=sealed.nonce,
                ciphertext=sealed.ciphertext,
                ciphertext_sha256=hashlib.sha256(sealed.ciphertext).hexdigest(),
                created=t0,
                expires=best + timedelta(hours=72),
                legal_hold=False,
            )
        )
    engine.dispose()
    return shares, header.record_id, crop


def test_an_old_vault_upgrades_and_opens_through_the_new_flow(db_url, tmp_path):
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    downgrade(db_url, "0003")
    keys_dir = tmp_path / "keys"
    shares, record_id, crop = _old_vault(db_url, keys_dir, t0)
    upgrade(db_url, "head")

    env = {
        **os.environ,
        "ESCROW_KEYS_DIR": str(keys_dir),
        "ESCROW_TRUSTEE_PASSPHRASE": PASSPHRASE,
        "ESCROW_AUTHORITY_PASSPHRASE": PASSPHRASE,
    }
    cmd = [sys.executable, "-m", "escrow.cli", "keys", "migrate", "--trustee-dir"]
    cmd += [str(tmp_path / "trustees"), *[f"--trustee-name={n}" for n in TRUSTEES]]
    wrong = subprocess.run([*cmd, "--share", shares[0]], capture_output=True, text=True, env=env)
    assert wrong.returncode == 2 and "2 distinct old shares" in wrong.stderr
    assert (keys_dir / "signing.key.enc").exists()  # a refused ceremony changes nothing
    r = subprocess.run(
        [*cmd, "--share", shares[0], "--share", shares[2]], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    left = {p.name for p in keys_dir.rglob("*")}
    assert not {"master.key", "signing.key.enc"} & left
    assert not any(n.endswith(".key.enc") for n in left)
    # the old shares now rebuild nothing: the files they opened are gone
    assert "format" in KeyStore(keys_dir).info()

    trustee_keys = {
        n: TrusteeKey.load(tmp_path / "trustees" / f"trustee-{i}.key")
        for i, n in enumerate(TRUSTEES, 1)
    }
    api = ApiVault(db_url, tmp_path, keystore=KeyStore(keys_dir), trustee_keys=trustee_keys, t0=t0)
    try:
        w = api.warrant(["cam-1"], t0, t0 + timedelta(hours=1))
        assert w.status_code == 201, w.text
        created = api.request(w.json()["id"], [record_id]).json()
        rid, secret = created["request"]["id"], created["fetch_secret"]
        for t in ("Trustee A", "Trustee B"):
            assert api.approve(t, rid).status_code == 200
        out = api.release(rid, secret)
        assert out.status_code == 200, out.text
        assert base64.b64decode(out.json()["released"][0]["jpeg"]) == crop
    finally:
        api.client.close()
        api.ctx.engine.dispose()
