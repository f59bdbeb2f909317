"""A soak of the whole vault: camera outboxes sending sealed records to two `escrow serve`
replicas on one PostgreSQL database for minutes, while the replicas' retention sweepers erase
what expires and openings happen (a judge's warrant, an investigator's request, k trustees'
approvals, the release), all over HTTP with the project's own client code.

Why a soak: each test looks at one thing for a moment; what grows over minutes (memory, a
queue, the audit trail, a lock held too long) and what two replicas, their sweepers and the
openings do to each other under a steady load only shows in a long run. Each camera has its
own identity (token, keyring fetched from the vault and pinned by fingerprint), its own
outbox (SQLite) and the outbox's own `Sender`; records are sealed as the capture agent seals
them (`SealingKey.seal`, `escrow.records.put`), from small synthetic crops.

At the end every record a camera made is accounted for: in the vault exactly once, or erased
by a sweep; taken in by one `ingest` audit entry, erased by at most one `sweep.erase` entry;
every release of the run in a `request.release` entry naming its records, every shredded key
in a `sweep.shred` entry, and the trail verifies. It prints records/s, the ingest latency,
errors by kind, each process's memory over the run (first/max/last, and whether it is flat)
and the accounting, and plots throughput and latency over the run (--plot).

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--cameras 16] [--rate 2]
        [--sweep-seconds 60] [--retention-seconds 120] [--openings 3] [--plot soak.png]
        [--json soak.json] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/soak]

The database named by --pg is created if missing and emptied first (migrated down to nothing,
then up). `tests/test_soak.py` runs the same code for ~25 s with 4 cameras.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from escrow import records, sealing  # noqa: E402
from escrow.canonical import utcnow  # noqa: E402
from escrow.client import VaultClient, VaultError  # noqa: E402
from escrow.keyring import CameraKeyring, FreshKeyring  # noqa: E402
from escrow.outbox import Sender, SendReport  # noqa: E402

PASSPHRASE = "soak passphrase"
TRUSTEES = ("Trustee A", "Trustee B", "Trustee C")
RECORD_NS = uuid.UUID("5b0c2a4e-6f4d-4f8e-9d3c-0a1b2c3d4e5f")
# One key epoch per UTC day (the shipped default), issued from yesterday for ten days: the
# cameras' keyrings last past the week before which they would refresh on every record, and
# yesterday's epoch, ended and empty, is shredded by the first sweep (a `sweep.shred` entry).
EPOCH_DAYS_BACK, EPOCHS = 1, 10
UUID_IN_PATH = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ACCESS_STATUS = re.compile(r'"[A-Z]+ (\S+) HTTP/[0-9.]+" (\d{3})')


@dataclass
class SoakConfig:
    """One soak run; the defaults are the full soak's but for the database and work folder."""

    pg_url: str
    workdir: Path
    cameras: int = 16
    seconds: float = 600.0
    rate: float = 2.0  # records per second per camera (Poisson arrivals)
    sweep_seconds: int = 60
    retention_seconds: int = 120
    openings: int = 3
    open_records: int = 5  # records asked for in each opening
    sample_seconds: float = 5.0  # memory samples
    drain_seconds: float = 120.0  # the outboxes' last drain after the load stops
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))


# --- what every HTTP call did ---------------------------------------------------------------


class Stats:
    """Every API call's outcome and time, every acknowledged record's delivery time: the
    figures and the plot are computed from these at the end. Thread-safe."""

    def __init__(self) -> None:
        self.start()
        self.lock = threading.Lock()
        # flat arrays of doubles, not lists of tuples: the soak's own bookkeeping must not
        # show as growth of the cameras' memory (16 bytes a record)
        self.ingest_t, self.ingest_s = array("d"), array("d")  # POST /ingest: end, seconds
        self.acked_t, self.acked_s = array("d"), array("d")  # when; sealed -> acknowledged
        self.errors: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.server_errors = 0  # 5xx seen by a client

    def start(self) -> None:
        """Time 0 of the figures and the plot (the load's start), on both clocks."""
        self.t0, self.wall0 = time.monotonic(), utcnow()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def call(self, method: str, path: str, took: float, exc: VaultError | None) -> None:
        what = f"{method} {UUID_IN_PATH.sub('/{id}', path)}"
        with self.lock:
            self.calls[what] += 1
            if exc is None:
                if what == "POST /ingest":
                    self.ingest_t.append(self.now())
                    self.ingest_s.append(took)
                return
            if exc.status == 0:
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
                kind = f"unreachable ({cause}) {what}"
            else:
                kind = f"{exc.status} {what}"
            self.errors[kind] += 1
            self.server_errors += exc.status >= 500

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] += 1

    def delivered(self, latencies: list[float]) -> None:
        t = self.now()
        with self.lock:
            self.acked_t.extend([t] * len(latencies))
            self.acked_s.extend(latencies)


class TimedClient(VaultClient):
    """The project's VaultClient, each call timed and its failure counted by kind."""

    def __init__(self, url: str, token: str, stats: Stats, timeout: float = 60.0):
        super().__init__(url, token, timeout=timeout)
        self.stats = stats

    def call(self, method: str, path: str, json: Any = None, params: dict | None = None) -> Any:
        start = time.monotonic()
        try:
            out = super().call(method, path, json=json, params=params)
        except VaultError as exc:
            self.stats.call(method, path, time.monotonic() - start, exc)
            raise
        self.stats.call(method, path, time.monotonic() - start, None)
        return out


class CameraClient(TimedClient):
    """A camera's client: an acknowledged record's delay from its sealing is noted too."""

    def __init__(self, url: str, token: str, stats: Stats, sealed_at: dict[str, float]):
        super().__init__(url, token, stats)
        self.sealed_at = sealed_at

    def ingest(self, recs: list[dict]) -> dict:
        out = super().ingest(recs)
        now = time.monotonic()
        lat = [now - t for rid in out["stored"] if (t := self.sealed_at.pop(rid, None))]
        self.stats.delivered(lat)
        return out


# --- the vault: authority, database, two replicas ------------------------------------------


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process (Linux /proc), None once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Replica:
    """`escrow serve --port 0 --port-file F`, as an operator runs it (sweeper on): the port is
    the one the server bound, read from its port file."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path):
        self.name = name
        self.port_file, self.log = workdir / f"{name}.port", workdir / f"{name}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "escrow.cli", "serve", "--port", "0"]
                + ["--port-file", str(self.port_file)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.url = ""

    def ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s: {self.tail()}")
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{int(self.port_file.read_text())}"

    def tail(self, n: int = 5) -> str:
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_counts(self) -> dict[str, Any]:
        """From its log: answers by status class, 5xx by path, error lines, tracebacks."""
        text = self.log.read_text(errors="replace")
        statuses: Counter[str] = Counter()
        five: Counter[str] = Counter()
        for path, status in ACCESS_STATUS.findall(text):
            statuses[status[0] + "xx"] += 1
            if status.startswith("5"):
                five[f"{status} {UUID_IN_PATH.sub('/{id}', path.split('?')[0])}"] += 1
        return {
            "answers": dict(sorted(statuses.items())),
            "5xx": dict(five),
            "error_lines": sum(line.startswith("ERROR") for line in text.splitlines()),
            "tracebacks": text.count("Traceback"),
            "sweeps_logged": text.count("retention sweep:"),
        }


def fresh_database(url: str) -> None:
    """Create the database if the server lacks it, then empty and migrate it: every soak
    starts from nothing."""
    import sqlalchemy as sa

    from vault.db import downgrade, upgrade

    target = sa.engine.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            exists = c.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database}
            ).scalar()
            if not exists:
                name = target.database.replace('"', '""')
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    downgrade(url, "base")
    upgrade(url, "head")


@dataclass
class Vault:
    """What the soak set up: the authority (its trustees' keys), the people's tokens, the
    replicas."""

    keys_dir: Path
    fingerprint: str
    trustee_keys: dict[str, Any]
    tokens: dict[str, str]
    replicas: list[Replica]


def set_up_vault(cfg: SoakConfig, camera_ids: list[str]) -> Vault:
    """The ceremony (`escrow keys init` + `keys issue`), the people's tokens (`escrow tokens
    create`, signed by the authority where the role needs it), the policy, two replicas."""
    from vault import tokens
    from vault.db import make_engine, session_factory
    from vault.keys import KeyStore

    t0 = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    start = t0 - timedelta(days=EPOCH_DAYS_BACK)
    ks = KeyStore(cfg.workdir / "keys")
    keys = ks.init(start, [(n, PASSPHRASE) for n in TRUSTEES], 2, PASSPHRASE)
    signer = ks.authority_signer(PASSPHRASE)
    for cam in camera_ids:
        ks.issue_epochs(signer, cam, start, EPOCHS)
    policy = cfg.workdir / "policy.toml"
    policy.write_text(
        "# the soak's policy: short retention, a frequent sweep\n"
        f'[retention]\ndefault = "{cfg.retention_seconds}s"\n'
        '[openings]\nthreshold = 2\ntrustees = 3\nunfetched_after = "7d"\n'
        '[legal_hold]\nafter_warrant = "30d"\n'
        f'[sweep]\nevery = "{cfg.sweep_seconds}s"\nbatch = 1000\n'
    )
    engine = make_engine(cfg.pg_url)
    factory = session_factory(engine)
    now = utcnow()
    made = {}
    for name, role, index in [
        ("Judge Ito", "judge", None),
        ("Det. Vance", "investigator", None),
        ("Trustee A", "trustee", 1),
        ("Trustee B", "trustee", 2),
        ("Auditor", "auditor", None),
        ("Admin", "admin", None),
    ]:
        sign = signer if role in tokens.PRIVILEGED else None
        made[name] = tokens.create(factory, role, name, now, trustee_index=index, signer=sign)[1]
    engine.dispose()
    env = {
        **os.environ,
        "ESCROW_DATABASE_URL": cfg.pg_url,
        "ESCROW_KEYS_DIR": str(ks.root),
        "ESCROW_POLICY": str(policy),
    }
    replicas = [Replica(f"replica-{i}", env, cfg.workdir) for i in (1, 2)]
    try:
        for r in replicas:
            r.ready()
    except BaseException:
        for r in replicas:
            r.stop()
        raise
    return Vault(ks.root, ks.fingerprint, dict(zip(TRUSTEES, keys, strict=True)), made, replicas)


# --- the cameras ------------------------------------------------------------------------------


def synthetic_crop(rng: np.random.Generator, seq: int) -> bytes:
    """A small face-like JPEG (a head, two eyes, the record's number), a few KB as the
    agent's crops are: no real face is needed to seal, send, keep and open one."""
    import cv2

    h, w = int(rng.integers(80, 140)), int(rng.integers(64, 112))
    img = np.full((h, w, 3), rng.integers(40, 200, 3), np.uint8)
    skin = tuple(int(v) for v in rng.integers(90, 230, 3))
    cv2.ellipse(img, (w // 2, h // 2), (w // 3, h // 2 - 6), 0, 0, 360, skin, -1)
    for dx in (-w // 7, w // 7):
        cv2.circle(img, (w // 2 + dx, h // 2 - h // 8), max(2, w // 18), (30, 30, 30), -1)
    cv2.putText(img, str(seq), (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


@dataclass(frozen=True, slots=True)
class Made:
    """What a camera made of a record: 16-byte SHA-256 prefixes of its crop and its
    ciphertext, enough to tell any two apart and small enough (~0.2 KB a record with its id)
    that the soak's own bookkeeping does not show as the cameras' memory growth."""

    crop: bytes
    ciphertext: bytes


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]


class Camera:
    """One camera: its token, its keyring fetched from the vault (GET /keyring) and pinned to
    the authority's fingerprint, its outbox (SQLite) and the outbox's Sender."""

    def __init__(
        self, cam_id: str, url: str, token: str, fingerprint: str, cfg: SoakConfig, stats: Stats
    ):
        self.id, self.cfg, self.stats = cam_id, cfg, stats
        self.rng = np.random.default_rng(int(hashlib.sha256(cam_id.encode()).hexdigest()[:8], 16))
        folder = cfg.workdir / "cameras" / cam_id
        self.engine = records.make_engine(f"sqlite:///{folder / 'outbox.db'}")
        records.create_schema(self.engine)
        self.factory = records.session_factory(self.engine)
        self.sealed_at: dict[str, float] = {}
        self.client = CameraClient(url, token, stats, self.sealed_at)
        ring = CameraKeyring.from_dict(self.client.keyring())
        if ring.authority_fingerprint != fingerprint:
            raise RuntimeError(f"{cam_id}: the vault's keyring is another authority's")
        ring = CameraKeyring(ring.authority_raw, ring.certs, cam_id)
        self.keyring = FreshKeyring(ring, cam_id, self.client.keyring)
        self.registered: set[str] = set()
        self.sender = Sender(self.factory, self.client)
        self.made: dict[str, Made] = {}
        self.seq = 0
        self.failures = 0

    def seal_one(self) -> None:
        """What the capture agent does when a track ends: seal its best crop to the epoch key
        of its time and commit it to the outbox in one transaction."""
        now = utcnow()
        first, best = now - timedelta(seconds=2), now - timedelta(seconds=1)
        key = self.keyring.key_for(best)
        if key.cert.epoch_id not in self.registered:
            with self.factory.begin() as s:
                records.register_epochs(s, [key.cert])
            self.registered.add(key.cert.epoch_id)
        self.seq += 1
        rid = str(uuid.uuid5(RECORD_NS, f"{self.id}|soak|{self.seq}"))  # as the agent derives it
        crop = synthetic_crop(self.rng, self.seq)
        quality = float(self.rng.uniform(3000, 6000))
        header = sealing.RecordHeader(rid, self.id, key.cert.epoch_id, first, now, best)
        meta = {
            "camera_id": self.id,
            "track_id": self.seq,
            "first_seen": first.isoformat(),
            "last_seen": now.isoformat(),
            "best_time": best.isoformat(),
            "quality": round(quality, 3),
            "frames": 25,
        }
        sealed = key.seal(crop, meta, header)
        expires = records.expires_at(best, timedelta(seconds=self.cfg.retention_seconds))
        # noted before the commit (the sender may send it at once), forgotten if it fails:
        # a record is "made" once it is in the outbox
        self.sealed_at[rid] = time.monotonic()
        self.made[rid] = Made(digest(crop), digest(sealed.ciphertext))
        try:
            records.put(self.factory, [(sealed, self.seq, quality)], now, expires)
        except BaseException:
            self.sealed_at.pop(rid, None)
            self.made.pop(rid, None)
            raise

    def produce(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.seal_one()
            except Exception as exc:  # noqa: BLE001 - counted and reported, the soak goes on
                self.failures += 1
                self.stats.error(f"camera seal/store: {type(exc).__name__}: {exc}"[:120])
            stop.wait(float(self.rng.exponential(1.0 / self.cfg.rate)))

    def send(self, stop: threading.Event, deadline: float | None = None) -> SendReport:
        """The outbox's Sender, as `escrow capture` runs it beside the agent. It retries what
        the vault answers; anything else it raises would end a camera's sending for good, so
        it is counted (an error of the run) and the Sender started again."""
        while True:
            try:
                return self.sender.run(stop, deadline=deadline)
            except Exception as exc:  # noqa: BLE001 - counted: the soak reports it
                self.stats.error(f"camera sender raised {type(exc).__name__}: {exc}"[:120])
                if deadline is None and stop.wait(1.0):
                    return self.sender.report
                if deadline is not None:
                    if time.monotonic() > deadline:
                        self.sender.report.waiting = self.sender.waiting()
                        return self.sender.report
                    time.sleep(1.0)

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()


# --- the openings ---------------------------------------------------------------------------


def opening(
    n: int,
    cams: list[Camera],
    people: dict[str, list[TimedClient]],
    vault: Vault,
    window: timedelta,
    open_records: int,
) -> dict:
    """One opening as the people make it, over both replicas: the judge issues a warrant for
    two cameras' last `window`, the investigator lists its records and asks for some, two
    trustees each review the request and approve with their own key (unsealing their shares on
    their side, escrow.trustee), the investigator fetches the crops; each crop is compared with
    what its camera sealed."""
    from escrow.trustee import approval_body

    a, b = n % 2, (n + 1) % 2  # replica indexes: each step alternates
    chosen = [cams[(2 * n) % len(cams)], cams[(2 * n + 1) % len(cams)]]
    now = utcnow()
    start = time.monotonic()
    w = people["judge"][a].create_warrant(
        f"SOAK-{n + 1}",
        "soak: order of the court",
        sorted({c.id for c in chosen}),
        now - window,
        now,
        not_after=now + timedelta(days=1),
        not_before=now,
    )
    listed = people["investigator"][b].warrant_records(w["id"])
    ids = [r["id"] for r in listed][:open_records]
    if not ids:  # the cameras' records of the last `window` have not reached the vault
        raise RuntimeError(f"no record in scope of warrant {w['id']} ({window} back)")
    created = people["investigator"][a].create_request(w["id"], ids, f"soak opening {n + 1}")
    rid, secret = created["request"]["id"], created["fetch_secret"]
    for who, idx in (("Trustee A", a), ("Trustee B", b)):
        client = people[who][idx]
        review = client.review(rid)
        client.approve(rid, approval_body(review, vault.trustee_keys[who], PASSPHRASE))
    out = people["investigator"][b].release(rid, secret)
    people["investigator"][b].received(rid)  # the vault erases the answer it held
    took = time.monotonic() - start
    got = {c["record_id"]: c for c in out["released"]}
    sealed = {r: m for r in got for c in chosen if (m := c.made.get(r))}  # producers run on
    wrong = [
        r
        for r, crop in got.items()
        if r not in sealed or digest(base64.b64decode(crop["jpeg"])) != sealed[r].crop
    ]
    return {
        "n": n + 1,
        "warrant": w["id"],
        "request": rid,
        "records": sorted(ids),
        "released": len(got),
        "released_ids": sorted(got),
        "withheld": out["withheld"],
        "crops_not_as_sealed": wrong,
        "seconds": round(took, 3),
        "at": None,
    }


# --- the run ------------------------------------------------------------------------------------


def run(cfg: SoakConfig) -> dict:
    """Set up, load for cfg.seconds, drain, stop, account: every figure (print_result's)."""
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    camera_ids = [f"cam-{i:02d}" for i in range(1, cfg.cameras + 1)]
    fresh_database(cfg.pg_url)
    cfg.log(f"soak: database {cfg.pg_url} emptied; starting two replicas")
    vault = set_up_vault(cfg, camera_ids)
    stats = Stats()
    cams: list[Camera] = []
    threads: list[threading.Thread] = []
    stop_making, stop_sending, stop_all = threading.Event(), threading.Event(), threading.Event()
    memory: list[tuple[float, dict[str, float]]] = []
    openings: list[dict] = []
    result: dict[str, Any] = {}
    people_clients: list[TimedClient] = []
    try:
        urls = [r.url for r in vault.replicas]
        people = {
            who: [TimedClient(u, vault.tokens[name], stats) for u in urls]
            for who, name in (
                ("judge", "Judge Ito"),
                ("investigator", "Det. Vance"),
                ("Trustee A", "Trustee A"),
                ("Trustee B", "Trustee B"),
                ("auditor", "Auditor"),
                ("admin", "Admin"),
            )
        }
        people_clients = [c for cs in people.values() for c in cs]
        for i, cam_id in enumerate(camera_ids):  # the admin registers each and makes its token
            admin = people["admin"][i % 2]
            admin.add_camera(cam_id, f"soak camera {i + 1}")
            token = admin.create_token(cam_id)["token"]
            cams.append(Camera(cam_id, urls[i % 2], token, vault.fingerprint, cfg, stats))
        processes = {r.name: r.proc.pid for r in vault.replicas} | {"cameras": os.getpid()}

        def sample() -> None:
            while True:
                got = {k: rss_mib(pid) for k, pid in processes.items()}
                memory.append((stats.now(), {k: v for k, v in got.items() if v is not None}))
                if stop_all.wait(cfg.sample_seconds):
                    return

        def open_now() -> None:
            window = timedelta(seconds=min(60.0, cfg.retention_seconds / 2))
            for n in range(cfg.openings):
                at = cfg.seconds * (n + 1) / (cfg.openings + 1)
                if stop_making.wait(max(0.0, at - stats.now())):
                    return
                try:
                    o = opening(n, cams, people, vault, window, cfg.open_records)
                    o["at"] = round(stats.now(), 1)
                    openings.append(o)
                except Exception as exc:  # noqa: BLE001 - a failed opening is a finding
                    openings.append({"n": n + 1, "failed": f"{type(exc).__name__}: {exc}"[:200]})
                    stats.error(f"opening failed: {type(exc).__name__}")

        stats.start()
        cfg.log(
            f"soak: {cfg.cameras} cameras at {cfg.rate:g} records/s each for {cfg.seconds:.0f} s "
            f"on {urls[0]} and {urls[1]}"
        )
        threads = [threading.Thread(target=sample, daemon=True)]
        threads += [threading.Thread(target=c.produce, args=(stop_making,)) for c in cams]
        senders = [threading.Thread(target=c.send, args=(stop_sending,)) for c in cams]
        opener = threading.Thread(target=open_now)
        for t in [*threads, *senders, opener]:
            t.start()
        deadline = stats.t0 + cfg.seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 10.0))
            cfg.log(f"soak: {stats.now():.0f} s, {sum(len(c.made) for c in cams)} records made")
        load_seconds = stats.now()
        stop_making.set()
        for t in threads[1:]:
            t.join()
        opener.join()
        stop_sending.set()
        for t in senders:
            t.join()

        # the last drain, every outbox at once, as `escrow capture` ends its run
        reports = {}

        def drain(c: Camera) -> None:
            reports[c.id] = c.send(stop_sending, deadline=time.monotonic() + cfg.drain_seconds)

        drains = [threading.Thread(target=drain, args=(c,)) for c in cams]
        for t in drains:
            t.start()
        for t in drains:
            t.join()
        drained_at = stats.now()
        try:  # as an auditor asks for it
            verdict = people["auditor"][0].audit_verify()
        except VaultError as exc:
            verdict = {"ok": False, "entries": 0, "reason": f"GET /audit/verify: {exc}"}
        stop_all.set()
        result = {
            "config": {
                "cameras": cfg.cameras,
                "seconds": cfg.seconds,
                "rate_per_camera": cfg.rate,
                "sweep_seconds": cfg.sweep_seconds,
                "retention_seconds": cfg.retention_seconds,
                "openings": cfg.openings,
                "replicas": len(vault.replicas),
                "database": "postgresql",
            },
            "load_seconds": round(load_seconds, 1),
            "drain_seconds": round(drained_at - load_seconds, 1),
            "outboxes": {
                "waiting": sum(r.waiting for r in reports.values()),
                "refused": {k: r.refused for k, r in reports.items() if r.refused},
            },
            "audit_verify": verdict,
            "openings": openings,
        }
    finally:
        stop_making.set()
        stop_sending.set()
        stop_all.set()
        rcs = {r.name: r.stop() for r in vault.replicas}
        for c in cams:
            c.close()
        for c in people_clients:
            c.close()
    result["replicas"] = {r.name: {"exit": rcs[r.name], **r.log_counts()} for r in vault.replicas}
    result |= figures(stats, memory, cfg)
    made = {rid: m for c in cams for rid, m in c.made.items()}
    result["accounting"] = account(cfg.pg_url, made, openings)
    sweeps = [(t - stats.wall0).total_seconds() for t in result["accounting"].pop("sweep_times")]
    result["timeline"] = timeline(stats, memory, openings, sweeps)
    result["made"] = made  # not in the JSON: the test checks the accounting with it
    return result


# --- the figures --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def memory_summary(memory: list[tuple[float, dict[str, float]]]) -> dict[str, dict]:
    """Per process: first, max and last RSS; flat when the median of the run's last quarter
    is within 5% (or 8 MiB) of the median of its second quarter (the first quarter is
    warm-up: caches, connection pools and the first sweep fill it)."""
    out = {}
    names = sorted({k for _, d in memory for k in d})
    for name in names:
        series = [(t, d[name]) for t, d in memory if name in d]
        values = [v for _, v in series]
        n = len(values)
        second = values[n // 4 : max(n // 2, n // 4 + 1)]
        last = values[(3 * n) // 4 :] or values[-1:]
        growth = statistics.median(last) - statistics.median(second)
        out[name] = {
            "first_mib": round(values[0], 1),
            "max_mib": round(max(values), 1),
            "last_mib": round(values[-1], 1),
            "growth_mib": round(growth, 1),
            "flat": growth <= max(0.05 * statistics.median(second), 8.0),
            "samples": n,
        }
    return out


def figures(stats: Stats, memory: list, cfg: SoakConfig) -> dict:
    lat, delivery = list(stats.ingest_s), list(stats.acked_s)
    load = [t for t in stats.acked_t if t <= cfg.seconds]
    return {
        "records_acknowledged": len(stats.acked_t),
        "records_per_s": round(len(load) / cfg.seconds, 1),
        "ingest_calls": len(lat),
        "ingest_latency_ms": {
            "p50": round(pct(lat, 50) * 1000, 1) if lat else None,
            "p99": round(pct(lat, 99) * 1000, 1) if lat else None,
            "max": round(max(lat) * 1000, 1) if lat else None,
        },
        "delivery_latency_s": {  # sealed in the outbox -> acknowledged by the vault
            "p50": round(pct(delivery, 50), 3) if delivery else None,
            "p99": round(pct(delivery, 99), 3) if delivery else None,
        },
        "calls": dict(sorted(stats.calls.items())),
        "errors": dict(stats.errors.most_common()),
        "client_5xx": stats.server_errors,
        "memory": memory_summary(memory),
    }


def timeline(stats: Stats, memory: list, openings: list[dict], sweeps: list[float]) -> dict:
    """Throughput and latency per bin (about 120 bins a run), memory samples, and when sweeps
    and releases happened: what the plot draws, and the JSON keeps."""
    end = max([*stats.acked_t, *stats.ingest_t, 1.0])
    step = max(1.0, round(end / 120))
    # a bin's rate is over the time it covers: the last one, cut short where the run ended,
    # only if it covers half a bin (a sliver would show a rate of a handful of records)
    bins = int(end // step) + (end % step >= step / 2)
    acked = np.zeros(bins)
    for t in stats.acked_t:
        if int(t // step) < bins:
            acked[int(t // step)] += 1
    lat: list[list[float]] = [[] for _ in range(bins)]
    for t, d in zip(stats.ingest_t, stats.ingest_s, strict=True):
        if int(t // step) < bins:
            lat[int(t // step)].append(d * 1000)
    return {
        "bin_seconds": step,
        "t": [round(i * step, 1) for i in range(bins)],
        "records_per_s": [round(v / min(step, end - i * step), 2) for i, v in enumerate(acked)],
        "ingest_p50_ms": [round(pct(x, 50), 1) if x else None for x in lat],
        "ingest_p99_ms": [round(pct(x, 99), 1) if x else None for x in lat],
        "memory": [{"t": round(t, 1), **{k: round(v, 1) for k, v in d.items()}} for t, d in memory],
        "sweeps": sweeps,
        "releases": [o["at"] for o in openings if o.get("at") is not None],
    }


def account(url: str, made: dict[str, Made], openings: list[dict]) -> dict:
    """Every record each camera made against the vault's rows and its audit trail: lost (in
    neither the vault nor an erasure), duplicated (taken in twice, erased twice, or erased
    and stored again), unaudited (no ingest entry; a release of the run or a shredded key
    without its entry), and rows the cameras never made or whose bytes changed."""
    from sqlalchemy import select

    from vault.db import make_engine, session_factory
    from vault.models import AuditEntry, KeyEpoch, SealedRecordRow

    engine = make_engine(url)
    factory = session_factory(engine)
    ingested: Counter[str] = Counter()
    erased: Counter[str] = Counter()
    releases: dict[str, list[str]] = {}
    shred_entries: Counter[str] = Counter()
    repeated = erase_entries = entries = 0
    sweeps: list[datetime] = []
    with factory() as s:
        rows = dict(s.execute(select(SealedRecordRow.id, SealedRecordRow.ciphertext_sha256)).all())
        destroyed = set(s.scalars(select(KeyEpoch.id).where(KeyEpoch.destroyed_at.is_not(None))))
        q = select(AuditEntry.action, AuditEntry.detail, AuditEntry.at).order_by(AuditEntry.id)
        for action, detail, at in s.execute(q.execution_options(yield_per=2000)):
            entries += 1
            if action == "ingest":
                d = json.loads(detail)
                ingested.update(d["new"])
                repeated += d["repeated"]
            elif action == "sweep.erase":
                erased.update(json.loads(detail)["records"])
                erase_entries += 1
            elif action == "request.release":
                d = json.loads(detail)
                releases[d["request"]] = sorted(r[0] for r in d["released"])
            elif action == "sweep.shred":
                shred_entries.update(json.loads(detail)["epochs"])
            elif action == "sweep.run":
                sweeps.append(at if at.tzinfo else at.replace(tzinfo=UTC))
    engine.dispose()
    lost = [r for r in made if r not in rows and not erased[r]]
    duplicated = [r for r in made if ingested[r] > 1 or erased[r] > 1 or (r in rows and erased[r])]
    unaudited = [r for r in made if not ingested[r]]
    unaudited += [r for r in rows if r not in made and not ingested[r]]
    released_ok = [o for o in openings if o.get("request")]
    unaudited_releases = [
        o["request"] for o in released_ok if releases.get(o["request"]) != o["released_ids"]
    ]
    # a destroyed key with no (or two) shred entries, or an entry for a key not destroyed
    unaudited_shreds = sorted(e for e in destroyed | set(shred_entries) if shred_entries[e] != 1)
    unaudited_shreds += sorted(e for e in shred_entries if e not in destroyed)
    return {
        "made": len(made),
        "stored": len(rows),
        "erased": sum(1 for r in made if erased[r]),
        "erase_entries": erase_entries,
        "released": sum(o["released"] for o in released_ok),
        "release_entries": len(releases),
        "shredded_epochs": len(destroyed),
        "repeated_sends": repeated,
        "audit_entries": entries,
        "lost": len(lost),
        "duplicated": len(duplicated),
        "unaudited": len(unaudited) + len(unaudited_releases) + len(unaudited_shreds),
        "not_made_by_a_camera": len([r for r in rows if r not in made]),
        "bytes_changed": len(
            [r for r in rows if r in made and bytes.fromhex(rows[r])[:16] != made[r].ciphertext]
        ),
        "examples": {
            "lost": lost[:5],
            "duplicated": duplicated[:5],
            "unaudited": (unaudited + unaudited_releases + unaudited_shreds)[:5],
        },
        "sweep_times": sweeps,  # the sweeps that acted (the plot marks them)
    }


def print_result(r: dict, plot: Path | None) -> None:
    c, a = r["config"], r["accounting"]
    print(
        f"soak: {c['cameras']} cameras x {c['rate_per_camera']:g} records/s, 2 `escrow serve` "
        f"replicas on one PostgreSQL, {r['load_seconds']:.0f} s of load; sweep every "
        f"{c['sweep_seconds']} s, retention {c['retention_seconds']} s, {c['openings']} openings"
    )
    lat, dl = r["ingest_latency_ms"], r["delivery_latency_s"]
    print(f"{'records/s (acknowledged)':<34} {r['records_per_s']:>10}")
    print(
        f"{'ingest latency p50 / p99 (ms)':<34} {lat['p50']:>10} / {lat['p99']} (max {lat['max']})"
    )
    print(f"{'sealed -> acknowledged p50 / p99':<34} {dl['p50']:>10} / {dl['p99']} s")
    print(f"{'last drain after the load':<34} {r['drain_seconds']:>10} s")
    print(
        f"records: {a['made']} made; {a['stored']} in the vault, {a['erased']} erased "
        f"({a['erase_entries']} erase entries), {a['released']} released in "
        f"{a['release_entries']} releases, {a['shredded_epochs']} keys shredded; "
        f"{a['repeated_sends']} sent again after a lost answer"
    )
    print(
        f"LOST {a['lost']}  DUPLICATED {a['duplicated']}  UNAUDITED {a['unaudited']}  "
        f"(not made by a camera {a['not_made_by_a_camera']}, bytes changed {a['bytes_changed']}, "
        f"left in outboxes {r['outboxes']['waiting']})"
    )
    v = r["audit_verify"]
    state = "verifies" if v["ok"] else "BROKEN: " + v["reason"]
    print(f"audit trail: {v['entries']} entries, {state}")
    five = {k: v["5xx"] for k, v in r["replicas"].items()}
    print(f"errors: {json.dumps(r['errors']) if r['errors'] else 'none'}")
    print(f"5xx: {r['client_5xx']} seen by clients; replicas' logs: {json.dumps(five)}")
    for name, rep in r["replicas"].items():
        print(
            f"  {name}: exit {rep['exit']}, answers {json.dumps(rep['answers'])}, "
            f"{rep['error_lines']} ERROR lines, {rep['tracebacks']} tracebacks, "
            f"{rep['sweeps_logged']} sweeps"
        )
    for o in r["openings"]:
        if "failed" in o:
            print(f"  opening {o['n']}: FAILED {o['failed']}")
        else:
            print(
                f"  opening {o['n']} at {o['at']} s: {o['released']} crops released in "
                f"{o.get('seconds', '-')} s (warrant to crops), "
                f"withheld {len(o.get('withheld', {}))}, "
                f"not as sealed {len(o.get('crops_not_as_sealed', []))}"
            )
    print("memory (RSS MiB)          first     max    last  growth  flat")
    for name, m in r["memory"].items():
        print(
            f"  {name:<20} {m['first_mib']:8.0f} {m['max_mib']:7.0f} {m['last_mib']:7.0f} "
            f"{m['growth_mib']:+7.1f}  {'yes' if m['flat'] else 'NO'} ({m['samples']} samples)"
        )
    if plot:
        print(f"plot: {plot}")


def write_plot(r: dict, path: Path) -> None:
    """Throughput, ingest latency and memory over the run; sweeps and releases marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = r["timeline"]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True)
    axes[0].plot(tl["t"], tl["records_per_s"], lw=1)
    axes[0].set_ylabel("records/s acknowledged")
    t50 = [(t, v) for t, v in zip(tl["t"], tl["ingest_p50_ms"], strict=True) if v is not None]
    t99 = [(t, v) for t, v in zip(tl["t"], tl["ingest_p99_ms"], strict=True) if v is not None]
    if t50:
        axes[1].plot(*zip(*t50, strict=True), lw=1, label="p50")
        axes[1].plot(*zip(*t99, strict=True), lw=1, label="p99")
        axes[1].set_yscale("log")
        axes[1].legend(loc="upper right")
    axes[1].set_ylabel(f"POST /ingest ms\n(per {tl['bin_seconds']:g} s)")
    names = sorted({k for m in tl["memory"] for k in m if k != "t"})
    for name in names:
        pts = [(m["t"], m[name]) for m in tl["memory"] if name in m]
        axes[2].plot(*zip(*pts, strict=True), lw=1, label=name)
    axes[2].set_ylabel("RSS MiB")
    axes[2].set_xlabel("seconds")
    axes[2].legend(loc="lower right")
    for ax in axes:
        for t in tl["releases"]:
            ax.axvline(t, color="tab:red", lw=0.8, ls="--")
        for t in tl["sweeps"]:
            ax.axvline(t, color="tab:gray", lw=0.5, ls=":")
    c, a = r["config"], r["accounting"]
    fig.suptitle(
        f"soak: {c['cameras']} cameras, 2 replicas, PostgreSQL; {r['records_per_s']} records/s; "
        f"lost {a['lost']}, duplicated {a['duplicated']}, unaudited {a['unaudited']}\n"
        "dashed red: releases; dotted grey: sweeps that erased or shredded",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fail(msg: str, code: int = 2) -> NoReturn:
    print(f"soak: {msg}", file=sys.stderr)
    sys.exit(code)


class Arguments(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, as the project's commands'."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)")


def main() -> None:
    ap = Arguments(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="load time (default 10)")
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--rate", type=float, default=2.0, help="records/s per camera (default 2)")
    ap.add_argument("--sweep-seconds", type=int, default=60, help="the sweepers' interval")
    ap.add_argument("--retention-seconds", type=int, default=120, help="the policy's retention")
    ap.add_argument("--openings", type=int, default=3, help="openings spread over the run")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/soak")
    ap.add_argument("--plot", type=Path, default=None, help="PNG of throughput and latency")
    ap.add_argument("--json", type=Path, default=None, help="every figure, as JSON")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = ap.parse_args()
    if args.minutes <= 0 or args.cameras < 1 or args.rate <= 0 or args.openings < 0:
        fail("--minutes and --rate must be positive, --cameras at least 1, --openings >= 0")
    if args.sweep_seconds < 1 or args.retention_seconds < 1:
        fail("--sweep-seconds and --retention-seconds must be at least 1")
    if not args.pg.startswith("postgresql"):
        fail(f"--pg must be a PostgreSQL URL (postgresql+psycopg://...), not {args.pg!r}")
    for opt, p in (("--plot", args.plot), ("--json", args.json)):
        if p is not None and not p.resolve().parent.is_dir():
            fail(f"{opt}: no folder {p.resolve().parent}")
    import sqlalchemy as sa

    try:
        probe = sa.create_engine(sa.engine.make_url(args.pg).set(database="postgres"))
        with probe.connect():
            pass
        probe.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is one line
        fail(
            f"PostgreSQL not reachable at {args.pg}: {type(exc).__name__}: {exc}".split("\n")[0], 5
        )

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a run started in the background inherits SIGINT ignored, and a
    # supervisor stops with SIGTERM; either way the replicas are stopped on the way out.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    cfg = SoakConfig(
        args.pg,
        workdir,
        cameras=args.cameras,
        seconds=args.minutes * 60,
        rate=args.rate,
        sweep_seconds=args.sweep_seconds,
        retention_seconds=args.retention_seconds,
        openings=args.openings,
    )
    try:
        r = run(cfg)
    except RuntimeError as exc:  # a replica that would not start, a foreign keyring
        fail(str(exc), 1)
    except KeyboardInterrupt:  # the replicas were stopped on the way out
        fail("interrupted", 130)
    if args.plot:
        write_plot(r, args.plot)
    if args.json:
        kept = {k: v for k, v in r.items() if k != "made"}
        args.json.write_text(json.dumps(kept, indent=1, default=str))
    print_result(r, args.plot)
    a = r["accounting"]
    bad = a["lost"] or a["duplicated"] or a["unaudited"] or r["client_5xx"]
    bad = bad or any(v["5xx"] for v in r["replicas"].values()) or not r["audit_verify"]["ok"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
