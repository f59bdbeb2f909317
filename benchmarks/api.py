"""The vault API over real HTTP (uvicorn in a thread, httpx): sealed records ingested per
second in batches of 50 (20 KB crops), beside the peer it wraps, `vault.store.put` of the same
batches in-process, measured in the same run; and the latency of a full opening (request,
two trustees' approvals, each fetching the review and unsealing their share of the epoch key
on their side, release of 10 records).

    .venv/bin/python benchmarks/api.py [--n 2000] [--db sqlite|postgresql] [--pg URL]
"""

from __future__ import annotations

import argparse
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

from escrow import sealing
from escrow.keyring import CameraKeyring
from escrow.sealing import to_wire
from escrow.trustee import approval_body
from policies.schema import load_policy
from vault import store, tokens
from vault.api import VaultContext, create_app
from vault.db import downgrade, make_engine, session_factory, upgrade
from vault.keys import KeyStore

CROP, BATCH = 20 * 1024, 50
PASSPHRASE = "bench passphrase"
CAMERA = "bench-cam"


def sealed(key, n: int, t0: datetime, camera: str):
    out = []
    for i in range(n):
        t = t0 + timedelta(milliseconds=i)
        h = sealing.RecordHeader(str(uuid.uuid4()), camera, key.cert.epoch_id, t, t, t)
        out.append((key.seal(os.urandom(CROP), {"i": i}, h), i, 1.0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # a 2-of-3 authority; the camera's epochs (current and next) issued with its signing key
    ks = KeyStore(tmp / "keys")
    trustees = ks.init(t0, [(f"trustee-{i}", PASSPHRASE) for i in (1, 2, 3)], 2, PASSPHRASE)
    ks.issue_epochs(ks.authority_signer(PASSPHRASE), CAMERA, t0, 2)
    ring = CameraKeyring(ks.authority_public_raw(), ks.certificates(CAMERA), CAMERA)
    key = ring.key_for(t0 + timedelta(minutes=1), CAMERA)
    urls = {
        "peer": f"sqlite:///{tmp / 'peer.db'}" if args.db == "sqlite" else args.pg,
        "api": f"sqlite:///{tmp / 'api.db'}" if args.db == "sqlite" else args.pg,
    }
    result: dict = {"db": args.db, "records": args.n, "crop_bytes": CROP, "batch": BATCH}

    # the peer: store.put in-process, same batches
    if args.db == "postgresql":
        downgrade(args.pg, "base")  # a previous run that died half-way
    upgrade(urls["peer"])
    eng = make_engine(urls["peer"])
    factory = session_factory(eng)
    with factory.begin() as s:
        store.register_epochs(s, ks.certificates(CAMERA))
    items = sealed(key, args.n, t0 + timedelta(minutes=1), CAMERA)
    t = time.perf_counter()
    for i in range(0, len(items), BATCH):
        store.put(factory, items[i : i + BATCH], t0, t0 + timedelta(hours=72))
    result["peer_store_put_rec_per_s"] = round(args.n / (time.perf_counter() - t))
    eng.dispose()
    if args.db == "postgresql":
        downgrade(args.pg, "base")

    # the API under uvicorn
    upgrade(urls["api"])
    ctx = VaultContext(make_engine(urls["api"]), ks, load_policy())
    signer = ks.authority_signer(PASSPHRASE)  # signs the judge's and trustees' tokens
    _, cam = tokens.create(ctx.factory, "camera", CAMERA, t0)
    who = {
        "judge": tokens.create(ctx.factory, "judge", "judge-bench", t0, signer=signer)[1],
        "investigator": tokens.create(ctx.factory, "investigator", "investigator-bench", t0)[1],
    }
    # trustees 1 and 2: a token that speaks for trustee i, and trustee i's own key
    approvers = [
        (
            tokens.create(ctx.factory, "trustee", t.name, t0, trustee_index=t.index, signer=signer)[
                1
            ],
            t,
        )
        for t in trustees[:2]
    ]
    sock = socket.socket()  # handed to uvicorn bound: never let go and bound again
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), port=port, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    items = sealed(key, args.n, t0 + timedelta(minutes=2), CAMERA)
    wires = [to_wire(sd, tr, q, key.cert.key_sha256) for sd, tr, q in items]
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
                "cameras": [CAMERA],
                "window_start": t0.isoformat(),
                "window_end": (t0 + timedelta(hours=1)).isoformat(),
                "not_before": datetime.now(UTC).isoformat(),
                "not_after": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            },
        ).json()
        ids = [wr["record_id"] for wr in wires[:10]]
        times, trustee_side = [], []
        for _ in range(5):
            t = time.perf_counter()
            made = c.post(
                "/requests",
                headers=h(who["investigator"]),
                json={"warrant_id": w["id"], "record_ids": ids, "reason": "bench"},
            ).json()
            rid = made["request"]["id"]
            for tok, trustee in approvers:  # what `escrow request approve` does
                review = c.get(f"/requests/{rid}/review", headers=h(tok))
                review.raise_for_status()
                ts = time.perf_counter()
                body = approval_body(review.json(), trustee, PASSPHRASE)
                trustee_side.append(time.perf_counter() - ts)
                c.post(f"/requests/{rid}/approvals", headers=h(tok), json=body).raise_for_status()
            out = c.post(
                f"/requests/{rid}/release",
                headers=h(who["investigator"]),
                json={"fetch_secret": made["fetch_secret"]},
            )
            out.raise_for_status()
            assert len(out.json()["released"]) == 10
            times.append(time.perf_counter() - t)
        result["opening_10_records_ms_median"] = round(sorted(times)[2] * 1000, 1)
        # of which each approval's work on the trustee's machine (checks, passphrase unlock
        # of the trustee key, unsealing and resealing the share)
        result["approval_trustee_side_ms_median"] = round(
            sorted(trustee_side)[len(trustee_side) // 2] * 1000, 1
        )
    server.should_exit = True
    ctx.engine.dispose()
    if args.db == "postgresql":
        downgrade(args.pg, "base")
    result["api_vs_peer"] = round(
        result["api_ingest_rec_per_s"] / result["peer_store_put_rec_per_s"], 2
    )
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
