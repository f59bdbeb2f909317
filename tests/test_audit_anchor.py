"""The anchored audit trail, on SQLite and PostgreSQL: the attacks the hash chain alone lets
through (a cut tail, a consistent rewrite) are caught against a witness file of signed
checkpoints; altered entries fail their inclusion proofs; checkpoints signed by another key
are refused; an investigator proves through the API that their release was logged, checked
client-side; the checkpoint key is a 0600 file in the key store, not in the database."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from vault import anchor, audit, merkle
from vault.db import make_engine, session_factory
from vault.models import AuditEntry, Base

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
RELEASES = (6, 12, 17)  # ids of the `request.release` entries of the trail below


@pytest.fixture
def trail(db_url, tmp_path):
    """20 entries, three of them releases; a key store dir; a witness file path."""
    eng = make_engine(db_url)
    factory = session_factory(eng)
    for i in range(1, 21):
        action, actor = (
            ("request.release", "investigator:Det. Vance")
            if i in RELEASES
            else (
                "ingest",
                "camera:cam-1",
            )
        )
        audit.record(factory, actor, action, {"n": i}, T + timedelta(seconds=i))
    keys = tmp_path / "keys"
    yield eng, factory, anchor.CheckpointKey(keys), tmp_path / "witness.jsonl"
    eng.dispose()


def cli(db_url: str, key: anchor.CheckpointKey, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ESCROW_DATABASE_URL": db_url,
        "ESCROW_KEYS_DIR": str(key.path.parent),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "escrow.cli", "audit", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)


def one_line_failure(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def sql(eng, stmt: str, **kw) -> None:
    with eng.begin() as c:
        c.execute(sa.text(stmt), kw)


def rewrite_without(eng, factory, drop: set[int]) -> None:
    """The attack the chain cannot see: drop entries, renumber the rest, recompute every
    prev_hash and hash from the genesis on, and put the new trail in place of the old."""
    with factory() as s:
        kept = [
            (e.at, e.actor, e.action, e.detail)
            for e in s.scalars(sa.select(AuditEntry).order_by(AuditEntry.id))
            if e.id not in drop
        ]
    rows, prev = [], audit.GENESIS
    for n, (at, actor, action, detail) in enumerate(kept, 1):
        h = audit.entry_hash(prev, n, at, actor, action, detail)
        rows.append(
            {"id": n, "at": at, "actor": actor, "action": action, "detail": detail}
            | {"prev_hash": prev, "hash": h}
        )
        prev = h
    with eng.begin() as c:
        c.execute(sa.delete(AuditEntry.__table__))
        c.execute(sa.insert(AuditEntry.__table__), rows)


def test_deleting_the_last_entries_fails_verify_checkpoint(trail, db_url):
    eng, factory, key, witness = trail
    r = cli(db_url, key, "checkpoint", "--witness", str(witness))
    assert r.returncode == 0 and "size 20" in r.stdout, r.stderr
    assert anchor.check_trail(factory, witness)[1].size == 20

    sql(eng, "DELETE FROM audit_log WHERE id > 15")
    assert audit.verify(factory).ok  # the chain alone: a shorter chain, self-consistent

    one_line_failure(
        cli(db_url, key, "verify", "--checkpoint", str(witness)),
        "BROKEN",
        "15 entries",
        "removed",
    )
    # and no new checkpoint of the cut trail goes into the witness file
    with pytest.raises(anchor.AnchorBroken, match="removed"):
        anchor.extend_witness(factory, key, T, witness)
    assert len(witness.read_text().splitlines()) == 1


def test_a_consistent_rewrite_fails_verify_checkpoint(trail, db_url):
    eng, factory, key, witness = trail
    anchor.extend_witness(factory, key, T, witness)

    rewrite_without(eng, factory, {RELEASES[0], RELEASES[2]})
    for i in range(3):  # new entries: the trail is now longer than the checkpoint saw
        audit.record(factory, "camera:cam-1", "ingest", {"late": i}, T + timedelta(hours=1))
    v = audit.verify(factory)
    assert v.ok and v.entries == 21  # the chain is fooled: it verifies
    with factory() as s:
        actions = list(s.scalars(sa.select(AuditEntry.action)))
    assert actions.count("request.release") == 1

    one_line_failure(
        cli(db_url, key, "verify", "--checkpoint", str(witness)), "BROKEN", "rewritten"
    )
    # the consistency proof from the witnessed checkpoint fails too
    with pytest.raises(anchor.AnchorBroken, match="not consistent"):
        anchor.extend_witness(factory, key, T, witness)
    assert len(witness.read_text().splitlines()) == 1


def test_an_altered_entry_fails_its_inclusion_proof(trail):
    eng, factory, key, _ = trail
    p = anchor.inclusion(factory, key, T, 12)
    pinned = key.public_raw()
    assert anchor.verify_inclusion(p.leaf.encode(), p.leaf_index, p.proof, p.checkpoint, pinned)

    sql(eng, "UPDATE audit_log SET detail = :d WHERE id = 12", d='{"n":1200}')
    with factory() as s:
        altered = anchor.leaf_bytes(s.get(AuditEntry, 12))
    assert not anchor.verify_inclusion(altered, p.leaf_index, p.proof, p.checkpoint, pinned)
    # a fresh proof of the altered entry does not verify against the checkpoint kept earlier
    q = anchor.inclusion(factory, key, T, 12)
    assert q.leaf.encode() == altered
    assert not anchor.verify_inclusion(altered, q.leaf_index, q.proof, p.checkpoint, pinned)
    # nor does the old proof of the old leaf against the new tree
    assert not anchor.verify_inclusion(p.leaf.encode(), p.leaf_index, p.proof, q.checkpoint, pinned)


def test_a_checkpoint_signed_with_another_key_is_refused(trail, db_url, tmp_path):
    eng, factory, key, witness = trail
    anchor.extend_witness(factory, key, T, witness)
    sql(eng, "DELETE FROM audit_log WHERE id > 15")

    # The forger signs a checkpoint of the cut trail with a key of their own...
    forger = anchor.CheckpointKey(tmp_path / "forger")
    cut = anchor.checkpoint(factory, forger, T + timedelta(hours=1))
    assert cut.signed_by(forger.public_raw()) and cut.size == 15
    original = witness.read_text()
    witness.write_text(original + cut.to_json() + "\n")
    with pytest.raises(anchor.AnchorBroken, match="checkpoint 2 .* not signed by the pinned"):
        anchor.check_trail(factory, witness)
    # nor can `audit checkpoint` add to a witness file holding a forged checkpoint
    one_line_failure(
        cli(db_url, key, "checkpoint", "--witness", str(witness)), "checkpoint 2", "pinned key"
    )

    # ...or claims the pinned key for it: the signature does not verify.
    pinned = key.public_raw()
    claimed = replace(cut, key=base64.b64encode(pinned).decode(), log_id=anchor.log_id(pinned))
    witness.write_text(original + claimed.to_json() + "\n")
    with pytest.raises(anchor.AnchorBroken, match="not signed by the pinned"):
        anchor.check_trail(factory, witness)

    # A key store whose checkpoint key was replaced cannot extend the witness file.
    witness.write_text(original)
    key.path.unlink()
    with pytest.raises(anchor.AnchorBroken, match="not the one .* pinned"):
        anchor.extend_witness(factory, anchor.CheckpointKey(key.path.parent), T, witness)
    assert witness.read_text() == original


def _opened_once(api) -> str:
    """Seal, ingest, warrant, request, two approvals, release: -> the request id."""
    recs = [api.seal("cam-1", api.t0 + timedelta(minutes=10), track=1)[0]]
    assert api.ingest("cam-1", recs).status_code == 200
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
    created = api.request(wid, [recs[0]["record_id"]])
    rid, secret = created.json()["request"]["id"], created.json()["fetch_secret"]
    for trustee in ("Trustee A", "Trustee B"):
        assert api.approve(trustee, rid).status_code == 200
    assert api.release(rid, secret).status_code == 200
    return rid


def test_an_investigator_proves_through_the_api_that_a_release_was_logged(api):
    # the client pins the checkpoint key the first time it sees a checkpoint
    first = api.call("Judge Ito", "GET", "/audit/checkpoint").json()
    pinned = base64.b64decode(first["key"])
    assert anchor.Checkpoint.from_dict(first).signed_by(pinned)

    rid = _opened_once(api)
    with api.ctx.factory() as s:
        entry = s.scalars(
            sa.select(AuditEntry.id).where(AuditEntry.action == "request.release")
        ).one()

    r = api.call("Det. Vance", "GET", "/audit/proof", params={"entry": entry})
    assert r.status_code == 200, r.text
    p = r.json()
    # Client-side: the leaf is the entry, its path leads to the root, the key signed the root.
    leaf = json.loads(p["leaf"])
    assert leaf[0] == entry == p["entry"]["id"] and leaf[3] == "request.release"
    assert json.loads(leaf[4])["request"] == rid == p["entry"]["detail"]["request"]
    cp = anchor.Checkpoint.from_dict(p["checkpoint"])
    assert cp.signed_by(pinned) and cp.size == p["tree_size"] >= entry
    path = [bytes.fromhex(h) for h in p["proof"]]
    leaf_hash = merkle.leaf_hash(p["leaf"].encode())
    assert merkle.verify_inclusion(
        p["leaf_index"], cp.size, leaf_hash, path, bytes.fromhex(cp.root)
    )
    # the tree the client saw first is a prefix of this one (the auditor's consistency proof)
    c = api.call(
        "Auditor", "GET", "/audit/consistency", params={"first": first["size"], "second": cp.size}
    ).json()
    assert anchor.Checkpoint.from_dict(c["checkpoint"]).root == cp.root
    assert merkle.verify_consistency(
        first["size"],
        cp.size,
        bytes.fromhex(first["root"]),
        bytes.fromhex(cp.root),
        [bytes.fromhex(h) for h in c["proof"]],
    )
    # the same proof under a checkpoint signed by another key: refused by the client
    forged = anchor.sign(
        anchor.CheckpointKey(api.keystore.root.parent / "other-keys"),
        cp.size,
        bytes.fromhex(cp.root),
        api.clock(),
    )
    assert not anchor.verify_inclusion(
        p["leaf"].encode(), p["leaf_index"], p["proof"], forged, pinned
    )

    # Another investigator may not read Vance's entry; an auditor may; sizes are checked.
    other = api.call("Det. Okafor", "GET", "/audit/proof", params={"entry": entry})
    assert other.status_code == 403
    assert api.audit_actions()[-1] == "refused"
    assert api.call("Auditor", "GET", "/audit/proof", params={"entry": entry}).status_code == 200
    small = api.call("Auditor", "GET", "/audit/proof", params={"entry": entry, "size": entry - 1})
    assert small.status_code == 404
    big = api.call("Auditor", "GET", "/audit/proof", params={"entry": 1, "size": 10**6})
    assert big.status_code == 404
    past = api.call("Auditor", "GET", "/audit/proof", params={"entry": 1, "size": entry})
    assert past.json()["checkpoint"]["size"] == entry


def test_the_checkpoint_key_is_a_0600_file_in_the_key_store_not_in_the_database(api):
    cp = api.call("Auditor", "GET", "/audit/checkpoint").json()
    path = api.keystore.root / "audit-checkpoint.key"
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert anchor.CheckpointKey(api.keystore.root).public_raw() == base64.b64decode(cp["key"])

    forms = [raw.hex(), base64.b64encode(raw).decode(), repr(raw)]
    with api.ctx.engine.connect() as c:
        for table in Base.metadata.sorted_tables:
            for row in c.execute(sa.select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        assert raw not in bytes(value), table.name
                    else:
                        assert not any(f in str(value) for f in forms), table.name


def test_a_witness_file_that_is_not_checkpoints_is_refused(tmp_path):
    key = anchor.CheckpointKey(tmp_path / "keys")
    good = anchor.sign(key, 3, merkle.root([merkle.leaf_hash(b"x")] * 3), T).to_json()
    witness = tmp_path / "w.jsonl"
    with pytest.raises(anchor.WitnessUnreadable, match="no witness file"):
        anchor.read_witness(witness)
    bad = json.loads(good) | {"size": -1}
    for line in ("not json", "[]", json.dumps(bad), good.replace('"time":"', '"time":"\\n')):
        witness.write_text(good + "\n" + line + "\n")
        with pytest.raises(anchor.WitnessUnreadable, match=r"w\.jsonl:2: not a checkpoint"):
            anchor.read_witness(witness)
    witness.write_text(good + "\n\n" + good + "\n")
    assert len(anchor.read_witness(witness)) == 2
