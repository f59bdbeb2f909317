"""Sealed records stored per second (20 KB crops; batches of 100 and one per transaction) on
SQLite and PostgreSQL, open latency p50/p99, and the sealing cost beside a raw AES-256-GCM
baseline measured in the same run. Opening needs the epoch's private key, which exists only
as trustees' shares: it is rebuilt once from two of them (as a release does) before timing.

    .venv/bin/python benchmarks/vault_ingest.py [--n 5000] [--pg URL]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from escrow import sealing
from escrow.keyring import CameraKeyring
from escrow.sealing import load_private, unseal_share
from escrow.trustee import share_aad
from vault import store
from vault.db import downgrade, make_engine, session_factory, upgrade
from vault.keys import KeyStore, combine_secret

CROP = 20 * 1024
NOW = datetime.now(UTC)
PASSPHRASE = "bench passphrase"
CAMERA = "bench-cam"


def rebuild(ks: KeyStore, trustees: list, epoch_id: str):
    """An epoch's private key from the first two trustees' shares (as in benchmarks/release.py):
    each unseals their share with their own key, the shares are combined."""
    cert, doc, suite = ks.certificate(epoch_id), ks.shares(epoch_id), ks.info()["suite"]
    shares = []
    for key in trustees[:2]:
        sealed = base64.b64decode(doc["sealed_shares"][str(key.index)])
        aad = share_aad(ks.fingerprint, cert, key.index)
        shares.append((key.index, unseal_share(key.unlock(PASSPHRASE), suite, sealed, aad)))
    return load_private(suite, combine_secret(shares))


def per_second(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t)


def sealed_items(key, n: int):
    for i in range(n):
        t = NOW + timedelta(milliseconds=i)
        h = sealing.RecordHeader(str(uuid.uuid4()), CAMERA, key.cert.epoch_id, t, t, t)
        yield key.seal(os.urandom(CROP), {"track": i}, h), i, 1.0


def bench_db(url: str, ks: KeyStore, trustees: list, key, n: int) -> dict:
    upgrade(url)
    eng = make_engine(url)
    factory = session_factory(eng)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates(CAMERA))
    exp = NOW + timedelta(hours=72)
    t = time.perf_counter()
    batch: list = []
    for item in sealed_items(key, n):
        batch.append(item)
        if len(batch) == 100:
            store.put(factory, batch, NOW, exp)
            batch = []
    if batch:
        store.put(factory, batch, NOW, exp)
    batched = n / (time.perf_counter() - t)
    m = max(200, n // 10)
    t = time.perf_counter()
    for item in sealed_items(key, m):
        store.put(factory, [item], NOW, exp)
    single = m / (time.perf_counter() - t)
    with eng.connect() as c:
        ids = [r[0] for r in c.execute(sa.text("SELECT id FROM sealed_records"))]
    priv = rebuild(ks, trustees, key.cert.epoch_id)
    lat = []
    for rid in random.Random(0).sample(ids, 300):
        t = time.perf_counter()
        sealing.open(store.get(factory, rid), priv)
        lat.append((time.perf_counter() - t) * 1000)
    eng.dispose()
    downgrade(url, "base")
    return {
        "batch_100_records_per_s": round(batched),
        "single_records_per_s": round(single),
        "open_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "open_ms_p99": round(float(np.percentile(lat, 99)), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ks = KeyStore(tmp / "keys")
    trustees = ks.init(
        NOW, [(f"trustee-{i}", PASSPHRASE) for i in (1, 2, 3)], 2, PASSPHRASE, dev=True
    )
    ks.issue_epochs(ks.authority_signer(PASSPHRASE), CAMERA, NOW, 1)
    (tmp / "ring.json").write_text(json.dumps(ks.camera_keyring(CAMERA)))
    key = CameraKeyring.load(tmp / "ring.json").key_for(NOW, CAMERA)

    crop = os.urandom(CROP)
    aes = AESGCM(AESGCM.generate_key(bit_length=256))
    h = sealing.RecordHeader("r", CAMERA, key.cert.epoch_id, NOW, NOW, NOW)
    print(f"crop size {CROP} bytes, suite {key.cert.suite}")
    raw = per_second(lambda: aes.encrypt(os.urandom(12), crop, b"a"), 5000)
    sealed = per_second(lambda: key.seal(crop, {}, h), 2000)
    print(f"raw AES-256-GCM encrypt of one crop (baseline): {raw:>8.0f} /s")
    print(f"seal (fresh data key + AES-256-GCM + HPKE):     {sealed:>8.0f} /s")

    results = {"sqlite": bench_db(f"sqlite:///{tmp / 'vault.db'}", ks, trustees, key, a.n)}
    try:
        with sa.create_engine(a.pg).connect():
            pass
        downgrade(a.pg, "base")  # a previous run that died half-way
        results["postgresql"] = bench_db(a.pg, ks, trustees, key, a.n)
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL skipped: {exc.__class__.__name__}")
    for db, r in results.items():
        print(
            f"{db:<10s} sealed+stored: {r['batch_100_records_per_s']:>6} rec/s in batches of 100, "
            f"{r['single_records_per_s']:>5} rec/s one per transaction; open p50 "
            f"{r['open_ms_p50']} ms, p99 {r['open_ms_p99']} ms"
        )


if __name__ == "__main__":
    main()
