"""Release of 100 records across 3 cameras and 2 epochs: the time from the last trustee
approval to the crops in the requester's hands, on SQLite and PostgreSQL, through the API
(TestClient, in process). The peer in the same run is the bare cryptography: opening the same
100 sealed records with keys already in memory (what a release must at least cost).

    .venv/bin/python benchmarks/release.py [--pg postgresql+psycopg://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import ApiVault, make_authority  # noqa: E402
from vault.db import downgrade, upgrade  # noqa: E402


def rebuild(ks, keys: dict, epoch_id: str):
    """An epoch's private key from two trustees' shares (the peer only needs it once)."""
    import base64

    from escrow.sealing import load_private, unseal_share
    from escrow.trustee import share_aad
    from tests.conftest import PASSPHRASE
    from vault.keys import combine_secret

    cert, doc, suite = ks.certificate(epoch_id), ks.shares(epoch_id), ks.info()["suite"]
    shares = []
    for key in list(keys.values())[:2]:
        sealed = base64.b64decode(doc["sealed_shares"][str(key.index)])
        aad = share_aad(ks.fingerprint, cert, key.index)
        shares.append((key.index, unseal_share(key.unlock(PASSPHRASE), suite, sealed, aad)))
    return load_private(suite, combine_secret(shares))


def one_run(url: str, root: Path, records: int = 100) -> tuple[float, float]:
    t0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    upgrade(url)
    ks, keys = make_authority(root / "keys", t0, cameras=("cam-1", "cam-2", "cam-3"), epochs=2)
    from vault.api import VaultContext  # noqa: F401  (imported by ApiVault)

    api = ApiVault(url, root, keystore=ks, trustee_keys=keys, t0=t0)
    from vault import tokens

    _, tok = tokens.create(api.ctx.factory, "camera", "cam-3", t0)
    api.tokens["cam-3"] = tok
    ids = []
    for i in range(records):
        cam = ("cam-1", "cam-2", "cam-3")[i % 3]
        t = t0 + timedelta(hours=(0 if i % 2 else 25), minutes=i % 50)
        rec, _ = api.seal(cam, t, track=i + 1)
        assert api.ingest(cam, [rec]).status_code == 200
        ids.append(rec["record_id"])
    w = api.warrant(["cam-1", "cam-2", "cam-3"], t0, t0 + timedelta(days=2), not_before=t0)
    created = api.request(w.json()["id"], ids).json()
    rid, secret = created["request"]["id"], created["fetch_secret"]
    for t in ("Trustee A", "Trustee B"):
        assert api.approve(t, rid).status_code == 200
    start = time.perf_counter()
    out = api.release(rid, secret)
    took = time.perf_counter() - start
    assert out.status_code == 200 and len(out.json()["released"]) == records, out.text

    # the peer: the same records opened with the keys already in memory
    from escrow import sealing
    from vault import store
    from vault.models import SealedRecordRow

    with api.ctx.factory() as s:
        rows = s.query(SealedRecordRow).all()
        sealed = [store.sealed_from_row(r) for r in rows]
    epoch_keys = {e: rebuild(ks, keys, e) for e in {x.header.epoch_id for x in sealed}}
    start = time.perf_counter()
    for x in sealed:
        sealing.open_all(x, epoch_keys[x.header.epoch_id])
    bare = time.perf_counter() - start
    api.client.close()
    api.ctx.engine.dispose()
    return took, bare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    for name in ("sqlite", "postgresql"):
        took, bare = [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/v.db" if name == "sqlite" else args.pg
                if name == "postgresql":
                    downgrade(url, "base")
                a, b = one_run(url, Path(tmp))
                if name == "postgresql":
                    downgrade(url, "base")
                took.append(a)
                bare.append(b)
        print(
            f"{name:<10s} release of 100 records (3 cameras x 2 epochs = 6 keys rebuilt): "
            f"median {statistics.median(took) * 1000:.0f} ms; bare opening of the same "
            f"records with keys in memory: {statistics.median(bare) * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
