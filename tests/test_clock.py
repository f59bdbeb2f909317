"""Clock steps: the vault's injectable clock jumping forward and back by hours across a
retention boundary and an epoch's key-keeping boundary, and a camera's clock stepping across
an epoch boundary. Nothing is erased or shredded before the clock reads its time, a step back
undoes nothing and confuses nothing (the trail's times may run backwards and it still
verifies), retention is counted from the capture, never from the vault's clock, and a camera
never seals to an epoch that does not cover the record's time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from escrow import sealing
from escrow.canonical import as_utc
from escrow.keyring import CameraKeyring
from escrow.sealing import KeyRefused
from vault import audit
from vault.models import AuditEntry, KeyEpoch, SealedRecordRow
from vault.scheduler import sweep_once


def _rows(api) -> dict[str, SealedRecordRow]:
    with api.ctx.factory() as s:
        return {r.id: r for r in s.scalars(select(SealedRecordRow))}


def test_clock_steps_across_a_retention_boundary_erase_nothing_early(api):
    t0 = api.t0
    recs = [api.seal("cam-1", t0 + timedelta(minutes=10 + i), track=i)[0] for i in range(4)]
    assert api.ingest("cam-1", recs).status_code == 200
    expiry = {
        recs[0]["record_id"]: t0 + timedelta(hours=2),
        recs[1]["record_id"]: t0 + timedelta(hours=3),
        recs[2]["record_id"]: t0 + timedelta(hours=3, minutes=1),
        recs[3]["record_id"]: t0 + timedelta(hours=30),
    }
    with api.ctx.factory.begin() as s:
        for rid, exp in expiry.items():
            s.execute(update(SealedRecordRow).where(SealedRecordRow.id == rid).values(expires=exp))
    policy = api.ctx.policy
    steps = [  # hours from t0: forward over a boundary, back before it, and so on
        1.9,
        2.5,
        1.0,
        2.99,
        -4.0,
        3.005,
        3.02,
        0.5,
        29.9,
        -1.0,
        30.1,
    ]
    erased: set[str] = set()
    for i, h in enumerate(steps):
        api.clock.t = now = t0 + timedelta(hours=h)
        other, _ = api.seal("cam-2", t0 + timedelta(minutes=5), track=i)  # an entry at `now`
        assert api.ingest("cam-2", [other]).status_code == 200
        sweep_once(api.ctx.engine, api.keystore, policy, now)
        have = set(_rows(api))
        gone_now = set(expiry) - have - erased
        for rid in gone_now:
            assert expiry[rid] <= now, f"{rid} erased at {now}, it expires {expiry[rid]}"
        assert not erased & have, "an erased record came back"
        due = {rid for rid, exp in expiry.items() if exp <= now}
        assert due <= erased | gone_now, "a record past its retention survived the sweep"
        erased |= gone_now
    assert erased == set(expiry)  # the test can fail: every record was due by the end
    # the trail's times ran backwards with the clock; it still verifies, and each erasure's
    # entry was written at a clock reading past that record's expiry
    assert audit.verify(api.ctx.factory).ok
    with api.ctx.factory() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "sweep.erase")).all()
        ats = [as_utc(e.at) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert any(b < a for a, b in zip(ats, ats[1:], strict=False))
    for e in entries:
        for row in json.loads(e.detail)["rows"]:
            assert as_utc(e.at) >= expiry[row["record"]]


def test_retention_is_counted_from_the_capture_whatever_the_vault_clock_reads(api):
    """The vault's clock stepped a day forward, then a day back: a record's expiry is its
    capture time plus its camera's retention, the same either way."""
    keep = api.ctx.policy.retention.for_camera("cam-1")
    out = {}
    for step in (timedelta(days=1), timedelta(days=-1), timedelta(0)):
        api.clock.t = api.t0 + step
        rec, _ = api.seal("cam-1", api.t0 + timedelta(minutes=30))
        got = api.ingest("cam-1", [rec])
        assert got.status_code == 200, (step, got.text)
        out[step] = as_utc(_rows(api)[rec["record_id"]].expires)
    assert set(out.values()) == {api.t0 + timedelta(minutes=30) + keep}


def test_clock_steps_across_the_key_keeping_boundary_shred_nothing_early(api):
    """cam-2's first epoch has no record; its key may go once the clock reads its end plus the
    camera's retention (a record may still arrive until then). Steps around that instant."""
    policy = api.ctx.policy
    epoch = api.keystore.certificates("cam-2")[0]
    end = epoch.window()[1]
    limit = end + policy.retention.for_camera("cam-2")
    for h in (-0.01, -30.0, -0.001, -5.0):  # hours before the limit, stepping back and forth
        sweep_once(api.ctx.engine, api.keystore, policy, limit + timedelta(hours=h))
        assert api.keystore.shares(epoch.epoch_id)  # still there
    # a late record of that epoch arriving while the vault's clock is stepped back: erased
    # when due, and its key kept until the limit all the same
    api.clock.t = end - timedelta(hours=1)
    rec, _ = api.seal("cam-2", end - timedelta(hours=2))
    assert api.ingest("cam-2", [rec]).status_code == 200
    sweep_once(api.ctx.engine, api.keystore, policy, limit - timedelta(minutes=1))
    assert rec["record_id"] not in _rows(api)
    assert api.keystore.shares(epoch.epoch_id), "shredded before the limit"
    sweep_once(api.ctx.engine, api.keystore, policy, limit + timedelta(hours=1))
    with api.ctx.factory() as s:
        assert s.get(KeyEpoch, epoch.epoch_id).destroyed_at is not None
    api.clock.t = end - timedelta(hours=1)  # the clock steps back: the camera seals to it...
    rec, _ = api.seal("cam-2", end - timedelta(minutes=30))
    r = api.ingest("cam-2", [rec])  # ...and the vault refuses: its key is gone for good
    assert r.status_code == 422 and "destroyed" in r.json()["detail"]


def test_a_camera_whose_clock_steps_never_seals_to_an_expired_epoch(api):
    ks = api.keystore
    ring = CameraKeyring(ks.authority_public_raw(), ks.certificates("cam-1"), "cam-1")
    first_end = ring.certs[0].window()[1]
    last_end = max(c.window()[1] for c in ring.certs)
    # the camera's clock: steps of hours forward and back across the first epoch boundary
    for dh in (-1, 0.5, -0.01, 0, 3, -20, 47.99, -2, 1):
        t = first_end + timedelta(hours=dh)
        key = ring.key_for(t)
        start, end = key.cert.window()
        assert start <= t < end, f"{t}: sealed to {key.cert.epoch_id} ({start}..{end})"
        rec, _ = api.seal("cam-1", t)  # as the camera seals it, posted at once
        assert rec["epoch_id"] == key.cert.epoch_id
        got = api.ingest("cam-1", [rec])
        assert got.status_code == 200, (dh, got.text)
    # a header naming an epoch that ended before the record's time is refused by the key...
    old = ring.key_for(first_end - timedelta(hours=1))
    t = first_end + timedelta(minutes=5)
    header = sealing.RecordHeader(
        "00000000-0000-4000-8000-00000000c10c", "cam-1", old.cert.epoch_id, t, t, t
    )
    with pytest.raises(KeyRefused, match="not valid at"):
        old.seal(b"crop", {}, header)
    # ...and by the vault, whatever a forged client sends
    rec, _ = api.seal("cam-1", first_end - timedelta(minutes=1))
    rec["best_time"] = rec["last_seen"] = t.isoformat()
    r = api.ingest("cam-1", [rec])
    assert r.status_code == 422 and "outside key epoch" in r.json()["detail"]
    # past the last epoch the camera stops: no key, never plaintext
    with pytest.raises(KeyRefused, match="out of keys"):
        ring.key_for(last_end + timedelta(minutes=1))
