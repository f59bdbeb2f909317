"""Time to erase 100,000 expired records with the retention sweep, on SQLite and PostgreSQL
(batches from the shipped policy; 2 KB ciphertexts; rows bulk-inserted first, not timed).
Target: under 60 s each on this machine.

    .venv/bin/python benchmarks/sweep.py [--n 100000] [--pg URL]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from escrow.sealing import KeyStoreError
from policies.schema import load_policy
from vault.db import downgrade, make_engine, session_factory, upgrade
from vault.keys import KeyStore
from vault.models import Camera, KeyEpoch, SealedRecordRow
from vault.retention import sweep
from vault.store import register_epochs

T0 = datetime(2026, 11, 24, tzinfo=UTC)
PASSPHRASE = "bench passphrase"


def fill(engine, ks: KeyStore, n: int) -> None:
    factory = session_factory(engine)
    with factory.begin() as s:
        register_epochs(s, ks.certificates("bench"))
        s.add(Camera(id="bench", created=T0))
    epoch = ks.certificates("bench")[0].epoch_id
    blob = os.urandom(2048)
    rows = []
    for i in range(n):
        ct = blob[i % 1024 :] + blob[: i % 1024]
        rows.append(
            dict(
                id=str(uuid.uuid4()),
                camera_id="bench",
                track_id=i,
                first_seen=T0,
                last_seen=T0,
                best_time=T0,
                quality=1.0,
                epoch_id=epoch,
                suite="x25519",
                format_version=1,
                sealed_key=b"k" * 80,
                nonce=b"n" * 12,
                ciphertext=ct,
                ciphertext_sha256=hashlib.sha256(ct).hexdigest(),
                created=T0,
                expires=T0 + timedelta(hours=1),
                legal_hold=False,
            )
        )
    with engine.begin() as c:
        for i in range(0, n, 10_000):
            c.execute(sa.insert(SealedRecordRow), rows[i : i + 10_000])


def bench(url: str, ks: KeyStore, n: int, batch: int) -> tuple[float, int, list[str]]:
    upgrade(url)
    engine = make_engine(url)
    fill(engine, ks, n)
    t = time.perf_counter()
    r = sweep(engine, ks, T0 + timedelta(days=2), batch)
    seconds = time.perf_counter() - t
    with engine.connect() as c:
        left = c.execute(sa.select(sa.func.count()).select_from(SealedRecordRow)).scalar()
        destroyed = c.execute(sa.select(KeyEpoch.id).where(KeyEpoch.destroyed_at.isnot(None)))
        destroyed = [d[0] for d in destroyed]
    assert left == 0 and len(r.erased) == n
    for epoch_id in destroyed:  # the sealed shares, the only way to the key, are gone
        try:
            ks.shares(epoch_id)
        except KeyStoreError:
            continue
        raise AssertionError(f"{epoch_id}: shares still on disk after the shred")
    engine.dispose()
    downgrade(url, "base")
    return seconds, len(r.erased), destroyed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    a = ap.parse_args()
    batch = load_policy().sweep.batch
    tmp = Path(tempfile.mkdtemp())
    for name, url in (("SQLite", f"sqlite:///{tmp / 'vault.db'}"), ("PostgreSQL", a.pg)):
        ks = KeyStore(tmp / f"keys-{name}")
        ks.init(T0, [(f"trustee-{i}", PASSPHRASE) for i in (1, 2, 3)], 2, PASSPHRASE, dev=True)
        ks.issue_epochs(ks.authority_signer(PASSPHRASE), "bench", T0, 1)
        try:
            if url.startswith("postgresql"):
                downgrade(url, "base")  # a previous run that died half-way
            secs, erased, shredded = bench(url, ks, a.n, batch)
        except sa.exc.OperationalError as exc:
            print(f"{name}: skipped ({exc.__class__.__name__})")
            continue
        print(
            f"{name:<10s} erased {erased:,} records in {secs:.1f} s "
            f"({erased / secs:,.0f}/s, batches of {batch}); epoch keys shredded: {shredded}"
        )


if __name__ == "__main__":
    main()
