"""SIGKILL of the whole camera agent (`escrow capture SOURCE --vault-url URL`, with its
sender thread and whatever processes it starts) at random points of its life, against a
real vault (`escrow serve` in a process of its own), then the same capture started again on
the same file: what `tests/test_kill.py` and `benchmarks/kill_capture.py` share.

Kill points are drawn from a fixed seed and, where the agent says something, triggered by
what it says, not by a time (a loaded machine moves times, not events):

- `starting`: U(0.2, 3) s after the process starts, while it imports torch (nothing is said
  before the keyring is loaded: the one kill point that is a time);
- `loaded`: U(0, 3) s after its "sealing to authority" line (stderr): the detector, the
  scorer and the scoring process start, the source opens;
- `spawned`: U(0, 1.5) s after a worker process of Python's multiprocessing appears below
  it (the scoring process while it imports torch and loads the model: before it watches its
  parent), or after its first stored record if none ever does;
- `sealed`: U(0, 0.5) s after its n-th `--events` line (a record committed to the outbox):
  mid-capture, mid-seal of the next track;
- `posted`: U(0, 0.3) s after the vault logged its n-th answer to POST /ingest this round:
  while the sender deletes what the vault acknowledged, or posts the next batch.

Record ids derive from camera, source and track, so each restart re-seals the tracks it
sealed before: into its outbox (skipped there when still waiting) and from there to a vault
that may already hold them (sealed again, so under other content: the sender must take the
vault's copy as delivered, not keep it forever).

After each kill: every record ever reported sealed is in the outbox or the vault, the vault
holds only records of the clean run's ids, no id was taken in as new twice, and no process
the killed agent started outlives it (each capture runs with a marker in its environment,
which every process it starts inherits; /proc is searched for it: a spawned child reparented
to init has lost its parent's pid, not its environment). At the end a capture that runs
through and `escrow send` leave the outbox empty and the vault holding exactly the clean
run's records, each taken in once, its audit trail intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]  # the checkout whose code is under test
MARK = "ESCROW_KILLTEST_MARK"  # in the environment of every process a capture starts
# A process of a killed agent still alive this long after its death is an orphan left
# behind (it may hold crops in memory). Shorter lives after the death are measured and
# reported (Round.child_exit_s): a spawned scorer killed before its start-up ends lives
# on until then, some seconds on a loaded machine.
GRACE_S = 30.0
CAMERA = "arcade"
PASSPHRASE = "correct horse battery staple"
MODES = ("starting", "loaded", "spawned", "sealed", "posted")


# --- processes ------------------------------------------------------------------------------


def _proc_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]


def descendants(pid: int) -> list[int]:
    """The processes below `pid` now, by parent pid (before it dies: its orphans are
    reparented and lose this link)."""
    parents = {p: st[1] for p in _proc_pids() if (st := _stat(p)) is not None}
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def marked(mark: str) -> list[int]:
    """Live processes whose environment carries MARK=mark: a capture and all it started,
    wherever they have been reparented."""
    needle = f"{MARK}={mark}".encode() + b"\0"
    out = []
    for pid in _proc_pids():
        if pid == os.getpid():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes() + b"\0"
        except OSError:
            continue
        if needle in b"\0" + env and alive(pid):
            out.append(pid)
    return out


def outliving(mark: str, grace: float, since: float | None = None) -> tuple[list[str], float]:
    """Wait until `grace` s after `since` (a time.monotonic() value: the kill; default now)
    for every process carrying `mark` to end. -> (the ones still alive then, as 'pid
    cmdline', each then killed so that it cannot disturb the next round; how long after
    `since` the last one was seen alive)."""
    since = time.monotonic() if since is None else since
    last = since
    while left := marked(mark):
        last = time.monotonic()
        if last - since >= grace:
            break
        time.sleep(0.02)
    orphans = [f"{pid} {cmdline(pid)}" for pid in left]
    for pid in left:  # started by this test's capture: ended by pid, never by name
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 10
    while marked(mark) and time.monotonic() < end:
        time.sleep(0.05)
    return orphans, last - since


class Lines:
    """A pipe's lines as they come, read on a thread (a child blocked on a full pipe would
    never reach the point it is to be killed at), each with when it came."""

    def __init__(self, stream) -> None:
        self.lines: list[tuple[float, str]] = []
        self.done = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def count(self, pred: Callable[[str], bool]) -> int:
        with self._cond:
            return sum(1 for _, ln in self.lines if pred(ln))

    def wait(self, pred: Callable[[str], bool], n: int, timeout: float) -> bool:
        """Until `n` lines in all satisfy `pred`: True, or False once the stream ended or
        `timeout` passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for _, ln in self.lines if pred(ln)) < n:
                left = deadline - time.monotonic()
                if self.done or left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def text(self) -> str:
        with self._cond:
            return "\n".join(ln for _, ln in self.lines)

    def join(self, timeout: float = 10) -> None:
        self._thread.join(timeout)


def escrow_cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "escrow.cli", *map(str, args)]


def base_env() -> dict[str, str]:
    """This environment with this checkout first on the path: the processes run in folders
    of their own, where a relative PYTHONPATH (`.`) finds nothing and an editable install
    of another checkout would be imported instead of the code under test."""
    path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


# --- the vault --------------------------------------------------------------------------------


def is_ingest_answer(line: str) -> bool:
    """uvicorn's access line for an answered POST /ingest (any status)."""
    return '"POST /ingest ' in line


class ServedVault:
    """`escrow serve --port 0 --no-sweep` on `db_url` in a process of its own: it binds a
    free port itself and announces it in its --port-file once it accepts connections (no
    port picked, let go and raced for; tests.conftest.ServeProcess does the same); its
    output (uvicorn's access lines among it) is read as it comes."""

    def __init__(self, db_url: str, keys_dir: Path, log: Path) -> None:
        port_file = log.with_suffix(".port")
        port_file.unlink(missing_ok=True)
        env = {
            **base_env(),
            "ESCROW_KEYS_DIR": str(keys_dir),
            "ESCROW_DATABASE_URL": db_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            escrow_cmd("serve", "--port", 0, "--port-file", port_file, "--no-sweep"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.out = Lines(self.proc.stdout)
        self.log = log
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"escrow serve ended: {self.out.text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"escrow serve did not start: {self.out.text()[-2000:]}")
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}"

    def answers(self) -> int:
        return self.out.count(is_ingest_answer)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.join()
        self.log.write_text(self.out.text())


# --- the camera and its world ---------------------------------------------------------------


@dataclass
class World:
    """An authority with camera `arcade`'s epochs, its keyring file, a vault database with a
    camera token, and the camera's own outbox."""

    root: Path
    db_url: str
    keys_dir: Path
    keyring: Path
    token: str
    outbox_url: str
    clip: Path

    def camera_env(self, vault_url: str, mark: str = "") -> dict[str, str]:
        return {
            **base_env(),
            "ESCROW_DATABASE_URL": self.outbox_url,
            "ESCROW_KEYS_DIR": str(self.root / "no-keys-on-a-camera"),
            "ESCROW_TOKEN": self.token,
            "ESCROW_VAULT_URL": vault_url,
            "PYTHONUNBUFFERED": "1",
            MARK: mark,
        }

    def capture_cmd(self, vault_url: str) -> list[str]:
        return escrow_cmd(
            "capture",
            self.clip,
            "--camera-id",
            CAMERA,
            "--keyring",
            self.keyring,
            "--vault-url",
            vault_url,
            "--events",
            "--json",
            "--send-timeout",
            "30",
        )


def make_world(root: Path, db_url: str, clip: Path) -> World:
    """The authority (2 of 3 trustees, 3 daily epochs of `arcade` from this hour), its
    epochs registered in the already migrated vault database, a camera token."""
    from vault import tokens
    from vault.db import make_engine, session_factory
    from vault.keys import KeyStore

    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ks = KeyStore(root / "keys")
    ks.init(t0, [(f"Trustee {c}", PASSPHRASE) for c in "ABC"], 2, PASSPHRASE)
    ks.issue_epochs(ks.authority_signer(PASSPHRASE), CAMERA, t0, 3)
    keyring = root / "keyring.json"
    keyring.write_text(json.dumps(ks.camera_keyring(CAMERA)))
    engine = make_engine(db_url)
    try:
        _, token = tokens.create(session_factory(engine), "camera", CAMERA, t0)
    finally:
        engine.dispose()
    return World(
        root, db_url, root / "keys", keyring, token, f"sqlite:///{root / 'outbox.db'}", clip
    )


def clean_capture(root: Path, clip: Path) -> set[str]:
    """The record ids of one undisturbed capture of `clip` by camera `arcade`, written
    straight into a vault database of its own under a development authority of its own
    (record ids depend on camera, file and track only, not on the authority)."""
    from vault.keys import KeyStore

    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ks = KeyStore(root / "keys")
    ks.init(t0, [(f"Trustee {c}", PASSPHRASE) for c in "ABC"], 2, PASSPHRASE, dev=True)
    ks.issue_epochs(ks.authority_signer(PASSPHRASE), CAMERA, t0, 3)
    ring = root / "keyring.json"
    ring.write_text(json.dumps(ks.camera_keyring(CAMERA)))
    url = f"sqlite:///{root / 'clean.db'}"
    r = subprocess.run(
        escrow_cmd("capture", clip, "--camera-id", CAMERA, "--keyring", ring, "--json"),
        env={**base_env(), "ESCROW_DATABASE_URL": url, "ESCROW_KEYS_DIR": str(root / "keys")},
        capture_output=True,
        text=True,
        timeout=900,
        cwd=root,
    )
    if r.returncode != 0:
        raise RuntimeError(f"the clean capture failed: {r.stderr[-2000:]}")
    ids = _ids(url, "sealed_records")
    if len(ids) != json.loads(r.stdout)["records"]:
        raise RuntimeError(f"the clean capture stored {len(ids)} records: {r.stdout}")
    return set(ids)


def _ids(url: str, table: str) -> list[str]:
    from escrow.records import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return [row[0] for row in c.execute(sa.text(f"SELECT id FROM {table}"))]  # noqa: S608
    except sa.exc.OperationalError:  # no such table yet: the agent died before creating it
        return []
    finally:
        engine.dispose()


def taken_in(db_url: str) -> list[str]:
    """Every record id the vault's audit trail says it took in as new, in order."""
    from vault.db import make_engine, session_factory
    from vault.models import AuditEntry

    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            rows = s.scalars(sa.select(AuditEntry.detail).where(AuditEntry.action == "ingest"))
            return [rid for d in rows for rid in json.loads(d)["new"]]
    finally:
        engine.dispose()


def audit_verifies(db_url: str) -> bool:
    from vault import audit
    from vault.db import make_engine, session_factory

    engine = make_engine(db_url)
    try:
        return audit.verify(session_factory(engine)).ok
    finally:
        engine.dispose()


# --- the kills ------------------------------------------------------------------------------


@dataclass
class Round:
    mode: str
    n: int
    delay: float
    killed: bool = False
    at_s: float = 0.0  # when the kill landed, seconds after the start
    children: list[str] = field(default_factory=list)  # below the agent just before the kill
    sealed: int = 0  # records it reported stored before dying
    outbox: int = 0  # records waiting after the death
    vault: int = 0  # records in the vault after the death
    child_exit_s: float = 0.0  # how long its processes took to end after the kill
    orphans: list[str] = field(default_factory=list)

    def line(self) -> str:
        what = f"{self.mode}({self.n}, +{self.delay:.2f}s)"
        how = f"killed at {self.at_s:.1f}s" if self.killed else "ran through"
        return (
            f"{what:<22} {how:<17} sealed {self.sealed:>2} "
            f"outbox {self.outbox:>2} vault {self.vault:>2} "
            f"children {self.children} gone {self.child_exit_s:.2f}s after"
            + (f" ORPHANS {self.orphans}" if self.orphans else "")
        )


@dataclass
class KillReport:
    rounds: list[Round] = field(default_factory=list)
    clean: int = 0  # records of the clean run
    lost: set[str] = field(default_factory=set)  # reported sealed, then in neither place
    missing: set[str] = field(default_factory=set)  # of the clean run, not in the vault at the end
    extra: set[str] = field(default_factory=set)  # in the vault, not of the clean run
    duplicated: list[str] = field(default_factory=list)  # taken in as new more than once
    orphans: list[str] = field(default_factory=list)
    outbox_left: int = -1
    audit_ok: bool = False
    final: str = ""  # the last capture's and send's verdicts
    wall_s: float = 0.0

    @property
    def kills(self) -> int:
        return sum(r.killed for r in self.rounds)

    def summary(self) -> str:
        return (
            f"kills {self.kills} of {len(self.rounds)} rounds; lost {len(self.lost)}, "
            f"missing {len(self.missing)}, extra {len(self.extra)}, duplicated "
            f"{len(self.duplicated)}, orphans {len(self.orphans)}; outbox left "
            f"{self.outbox_left}; audit {'verifies' if self.audit_ok else 'BROKEN'}; the "
            f"slowest child gone {max((r.child_exit_s for r in self.rounds), default=0):.2f} "
            "s after its agent's death; "
            f"{self.wall_s:.0f} s"
        )


def draws(seed: int) -> Iterator[tuple[str, int, float]]:
    """Kill points from `seed`: (mode, n, extra delay). The modes come in blocks of five,
    each block in its own random order, so that any run of five rounds or more kills the
    agent at each stage of its life; n and the delay are drawn per round."""
    rnd = random.Random(seed)
    while True:
        for mode in rnd.sample(MODES, len(MODES)):
            if mode == "starting":
                yield mode, 0, rnd.uniform(0.2, 3.0)
            elif mode == "loaded":
                yield mode, 1, rnd.uniform(0.0, 3.0)
            elif mode == "spawned":
                yield mode, 1, rnd.uniform(0.0, 1.5)
            elif mode == "sealed":
                yield mode, rnd.randint(1, 10), rnd.uniform(0.0, 0.5)
            else:
                yield mode, rnd.randint(1, 3), rnd.uniform(0.0, 0.3)


def is_sealed(line: str) -> bool:
    return line.startswith('{"sealed"')


def _sealed_ids(lines: Lines) -> list[str]:
    return [json.loads(ln)["sealed"] for _, ln in list(lines.lines) if is_sealed(ln)]


def _kind(cmd: str) -> str:
    """A process below the agent, in a word or two."""
    if "--multiprocessing-fork" in cmd:
        return "spawned worker"
    if "resource_tracker" in cmd:
        return "resource tracker"
    return cmd[:60]


def _spawned(p: subprocess.Popen, out: Lines, timeout: float) -> bool:
    """Until a worker process of Python's multiprocessing (spawned: `--multiprocessing-fork`
    on its command line; the resource tracker that comes first is not one) runs below `p`
    (True), or `p` reported a record without one (True: an agent of one process), or `p`
    ended (False)."""
    deadline = time.monotonic() + timeout
    while p.poll() is None and time.monotonic() < deadline:
        if any("--multiprocessing-fork" in cmdline(c) for c in descendants(p.pid)):
            return True
        if out.count(is_sealed):
            return True
        time.sleep(0.02)
    return False


def kill_round(
    world: World, vault: ServedVault, mode: str, n: int, delay: float, grace: float
) -> tuple[Round, list[str]]:
    """One capture, killed with SIGKILL at the drawn point (or run through if it ends
    first). -> (the round, the record ids it reported stored)."""
    rnd = Round(mode, n, delay)
    mark = uuid.uuid4().hex
    answered = vault.answers()
    t0 = time.monotonic()
    p = subprocess.Popen(
        world.capture_cmd(vault.url),
        env=world.camera_env(vault.url, mark),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=world.root,
    )
    out, err = Lines(p.stdout), Lines(p.stderr)
    try:
        if mode == "starting":
            hit = p.poll() is None
        elif mode == "loaded":
            hit = err.wait(lambda ln: ln.startswith("sealing to authority"), 1, 600)
        elif mode == "spawned":
            hit = _spawned(p, out, 600)
        elif mode == "sealed":
            hit = out.wait(is_sealed, n, 600)
        else:
            hit = vault.out.wait(is_ingest_answer, answered + n, 600)
        if hit:
            time.sleep(delay)
        if hit and p.poll() is None:
            rnd.children = [_kind(cmdline(c)) for c in descendants(p.pid)]
            p.send_signal(signal.SIGKILL)
            t_end = time.monotonic()
            rnd.killed, rnd.at_s = True, t_end - t0
        p.wait(900)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if not rnd.killed:
        t_end = time.monotonic()
    # before the pipes are read to their end: a child that inherited them keeps them open
    rnd.orphans, rnd.child_exit_s = outliving(mark, grace, since=t_end)
    out.join()
    err.join()
    if not rnd.killed and p.returncode != 0:
        raise RuntimeError(f"capture failed ({p.returncode}): {err.text()[-2000:]}")
    sealed = _sealed_ids(out)
    rnd.sealed = len(sealed)
    return rnd, sealed


def run_kills(
    world: World,
    clean: set[str],
    kills: int,
    seed: int = 26,
    grace: float = GRACE_S,
    log: Callable[[str], None] = lambda m: None,
) -> KillReport:
    """`kills` SIGKILLs of the capture agent at points drawn from `seed`, a restart of the
    same capture after each, `escrow send` half-way, then a capture that runs through and a
    last `escrow send`: what was lost, duplicated, left behind."""
    t_start = time.monotonic()
    report = KillReport(clean=len(clean))
    points = draws(seed)
    reported: set[str] = set()
    vault = ServedVault(world.db_url, world.keys_dir, world.root / "serve.log")
    try:
        while report.kills < kills:
            if len(report.rounds) >= 3 * kills:
                raise RuntimeError(f"only {report.kills} of {len(report.rounds)} rounds killed")
            mode, n, delay = next(points)
            rd, sealed = kill_round(world, vault, mode, n, delay, grace)
            reported |= set(sealed)
            waiting, stored = (
                _ids(world.outbox_url, "sealed_records"),
                _ids(world.db_url, "sealed_records"),
            )
            rd.outbox, rd.vault = len(waiting), len(stored)
            report.rounds.append(rd)
            report.orphans += rd.orphans
            report.lost |= reported - set(waiting) - set(stored)
            report.extra |= set(stored) - clean
            log(f"round {len(report.rounds):>2}: {rd.line()}")
            if report.kills == kills // 2 and rd.killed:
                log(f"escrow send: {_send(world, vault)}")
        r = subprocess.run(
            world.capture_cmd(vault.url),
            env=world.camera_env(vault.url, mark := uuid.uuid4().hex),
            capture_output=True,
            text=True,
            cwd=world.root,
            timeout=900,
        )
        if r.returncode != 0:
            raise RuntimeError(f"the last capture failed ({r.returncode}): {r.stderr[-2000:]}")
        report.orphans += outliving(mark, grace)[0]
        summary = json.loads(r.stdout.splitlines()[-1])
        reported |= {json.loads(ln)["sealed"] for ln in r.stdout.splitlines() if is_sealed(ln)}
        report.final = f"last capture: outbox {summary['outbox']}; escrow send: "
        report.final += _send(world, vault)
        log(report.final)
    finally:
        vault.stop()
    waiting, stored = _ids(world.outbox_url, "sealed_records"), _ids(world.db_url, "sealed_records")
    report.outbox_left = len(waiting)
    report.lost |= reported - set(waiting) - set(stored)
    report.missing = clean - set(stored)
    report.extra |= set(stored) - clean
    new = taken_in(world.db_url)
    report.duplicated = sorted({rid for rid in new if new.count(rid) > 1})
    report.duplicated += [rid for rid in stored if stored.count(rid) > 1]
    report.audit_ok = audit_verifies(world.db_url)
    report.wall_s = time.monotonic() - t_start
    return report


def _send(world: World, vault: ServedVault) -> str:
    """`escrow send` run to its end: its one line."""
    r = subprocess.run(
        escrow_cmd("send", "--timeout", "60"),
        env=world.camera_env(vault.url, uuid.uuid4().hex),
        capture_output=True,
        text=True,
        cwd=world.root,
        timeout=600,
    )
    return (r.stdout.strip() + " " + r.stderr.strip()).strip() + f" (exit {r.returncode})"
