"""The vault API over real HTTP (uvicorn in a thread, httpx): sealed records ingested per
second in batches of 50 (20 KB crops), beside the peer it wraps, `vault.store.put` of the same
batches in-process, measured in the same run; and the latency of a full opening (request,
two approvals, release of 10 records).

    .venv/bin/python benchmarks/api.py [--n 2000] [--db sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from escrow.outbox import to_wire
from policies.model import load_policy
from vault import crypto, store, tokens
from vault.api import VaultContext, create_app
from vault.db import downgrade, make_engine, session_factory, upgrade
from vault.keys import CameraKeyring, KeyStore

CROP, BATCH = 20 * 1024, 50
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def sealed(key, n: int, t0: datetime, camera: str):
    out = []
    for i in range(n):
        t = t0 + timedelta(milliseconds=i)
        h = crypto.RecordHeader(str(uuid.uuid4()), camera, key.cert.epoch_id, t, t, t)
        out.append((key.seal(os.urandom(CROP), {"i": i}, h), i, 1.0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ks = KeyStore(tmp / "keys")
    shares = ks.init(t0, k=2, n=3, epochs_ahead=2)
    ring = CameraKeyring(base64.b64decode(ks.info()["signing_public_key"]), ks.certificates())
    key = ring.key_for(t0 + timedelta(minutes=1))
    urls = {
        "peer": f"sqlite:///{tmp / 'peer.db'}" if args.db == "sqlite" else PG,
        "api": f"sqlite:///{tmp / 'api.db'}" if args.db == "sqlite" else PG,
    }
    result: dict = {"db": args.db, "records": args.n, "crop_bytes": CROP, "batch": BATCH}

    # the peer: store.put in-process, same batches
    upgrade(urls["peer"])
    eng = make_engine(urls["peer"])
    factory = session_factory(eng)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates())
    items = sealed(key, args.n, t0 + timedelta(minutes=1), "bench-cam")
    t = time.perf_counter()
    for i in range(0, len(items), BATCH):
        store.put(factory, items[i : i + BATCH], t0, t0 + timedelta(hours=72))
    result["peer_store_put_rec_per_s"] = round(args.n / (time.perf_counter() - t))
    eng.dispose()
    if args.db == "postgresql":
        downgrade(PG, "base")

    # the API under uvicorn
    upgrade(urls["api"])
    authority = Ed25519PrivateKey.generate()  # signs the judge's and trustees' tokens
    ctx = VaultContext(
        make_engine(urls["api"]), ks, load_policy(), authority_key=authority.public_key()
    )
    _, cam = tokens.create(ctx.factory, "camera", "bench-cam", t0)
    who = {
        "judge": tokens.create(ctx.factory, "judge", "judge-0", t0, signer=authority)[1],
        "investigator": tokens.create(ctx.factory, "investigator", "investigator-1", t0)[1],
    }
    for slot, name, index in (("trustee", "trustee-2", 1), ("trustee2", "trustee-3", 2)):
        _, who[slot] = tokens.create(
            ctx.factory, "trustee", name, t0, signer=authority, trustee_index=index
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    items = sealed(key, args.n, t0 + timedelta(minutes=2), "bench-cam")
    wires = [to_wire(sd, tr, q) for sd, tr, q in items]
    h = lambda tok: {"Authorization": f"Bearer {tok}"}  # noqa: E731
    with httpx.Client(base_url=base, timeout=60) as c:
        t = time.perf_counter()
        for i in range(0, len(wires), BATCH):
            r = c.post("/ingest", json={"records": wires[i : i + BATCH]}, headers=h(cam))
            assert r.status_code == 200, r.text
        result["api_ingest_rec_per_s"] = round(args.n / (time.perf_counter() - t))
        w = c.post(
            "/warrants",
            headers=h(who["judge"]),
            json={
                "case_ref": "bench",
                "legal_basis": "bench",
                "cameras": ["bench-cam"],
                "window_start": t0.isoformat(),
                "window_end": (t0 + timedelta(hours=1)).isoformat(),
                "not_before": datetime.now(UTC).isoformat(),
                "not_after": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            },
        ).json()
        ids = [wr["record_id"] for wr in wires[:10]]
        times = []
        for _ in range(5):
            t = time.perf_counter()
            made = c.post(
                "/requests",
                headers=h(who["investigator"]),
                json={"warrant_id": w["id"], "record_ids": ids, "reason": "bench"},
            ).json()
            rid = made["request"]["id"]
            for tok, share in ((who["trustee"], shares[0]), (who["trustee2"], shares[1])):
                c.post(
                    f"/requests/{rid}/approvals",
                    headers=h(tok),
                    json={"share": share, "request_digest": made["request"]["digest"]},
                ).raise_for_status()
            out = c.post(
                f"/requests/{rid}/release",
                headers=h(who["investigator"]),
                json={"fetch_secret": made["fetch_secret"]},
            )
            out.raise_for_status()
            assert len(out.json()["released"]) == 10
            times.append(time.perf_counter() - t)
        result["opening_10_records_ms_median"] = round(sorted(times)[2] * 1000, 1)
    server.should_exit = True
    ctx.engine.dispose()
    if args.db == "postgresql":
        downgrade(PG, "base")
    result["api_vs_peer"] = round(
        result["api_ingest_rec_per_s"] / result["peer_store_put_rec_per_s"], 2
    )
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
