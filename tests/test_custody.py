"""Key custody attacks, run for real on SQLite and PostgreSQL: what an insider with a database
copy, the fetch secret, one trustee's key or the admin token can open (nothing), races on
max_records, sealed shares left behind, and two API replicas on one database."""

from __future__ import annotations

import base64
import json
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from escrow import sealing
from escrow.sealing import KeyStoreError, load_private, public_of, unb64, unseal_share
from escrow.trustee import approval_aad, share_aad
from tests.conftest import PASSPHRASE, ServeProcess
from vault.keys import combine_secret
from vault.models import Approval, OpeningRequest
from vault.openings import digest


def _stored(api, n, camera="cam-1", minutes=10):
    recs = []
    for i in range(n):
        rec, _ = api.seal(camera, api.t0 + timedelta(minutes=minutes + i), track=i + 1)
        recs.append(rec)
    assert api.ingest(camera, recs).status_code == 200
    return [r["record_id"] for r in recs]


def _request(api, wid, ids):
    created = api.request(wid, ids)
    assert created.status_code == 201, created.text
    return created.json()["request"]["id"], created.json()["fetch_secret"]


def _copy_of_approvals(api, rid) -> list[tuple[int, dict]]:
    """What a database copy (a backup, a replica, a dump) holds of a request's approvals."""
    with api.ctx.factory() as s:
        rows = s.scalars(select(Approval).where(Approval.request_id == rid)).all()
        return [(a.share_index, json.loads(a.sealed_share or b"{}")) for a in rows]


def test_a_database_copy_with_the_fetch_secret_or_one_trustee_key_opens_nothing(api):
    from cryptography.hazmat.primitives.asymmetric import x25519

    mine = _stored(api, 1)
    others = _stored(api, 3, camera="cam-1", minutes=20) + _stored(api, 2, camera="cam-2")
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1), max_records=1).json()["id"]
    rid, secret = _request(api, wid, mine)
    for t in ("Trustee A", "Trustee B"):
        assert api.approve(t, rid).status_code == 200
    copy = _copy_of_approvals(api, rid)  # taken between approval and release
    with api.ctx.factory() as s:
        req = s.get(OpeningRequest, rid)
        req_digest = digest(req)
    fetch_key = x25519.X25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(secret))
    epoch = next(iter(copy[0][1]))
    cert = api.keystore.certificate(epoch)

    # 1. the copy and the fetch secret: the inner layer is sealed to the vault's release key
    guessed_release = x25519.X25519PrivateKey.generate()
    for idx, blobs in copy:
        with pytest.raises(sealing.IntegrityError):
            sealing.open_share_for_release(
                base64.b64decode(blobs[epoch]),
                fetch_key,
                guessed_release,
                approval_aad(rid, req_digest, idx, epoch),
            )
    # 2. the copy and the key store (release key) but no fetch secret
    for idx, blobs in copy:
        with pytest.raises(sealing.IntegrityError):
            sealing.open_share_for_release(
                base64.b64decode(blobs[epoch]),
                x25519.X25519PrivateKey.generate(),
                api.keystore.release_key(),
                approval_aad(rid, req_digest, idx, epoch),
            )
    # the test can fail: with both halves the shares do come out (what the API process sees)
    both = [
        (
            idx,
            sealing.open_share_for_release(
                base64.b64decode(blobs[epoch]),
                fetch_key,
                api.keystore.release_key(),
                approval_aad(rid, req_digest, idx, epoch),
            ),
        )
        for idx, blobs in copy
    ]
    assert public_of("x25519", combine_secret(both)) == unb64(cert.public_key)
    # 3. one trustee's key file: one share of each epoch, k = 2 needed
    a = api.trustee_keys["Trustee A"]
    doc = api.keystore.shares(epoch)
    share_a = unseal_share(
        a.unlock(PASSPHRASE),
        "x25519",
        base64.b64decode(doc["sealed_shares"]["1"]),
        share_aad(api.keystore.fingerprint, cert, 1),
    )
    assert public_of("x25519", combine_secret([(1, share_a)])) != unb64(cert.public_key)
    with pytest.raises(KeyStoreError):  # another trustee's sealed share does not open
        unseal_share(
            a.unlock(PASSPHRASE),
            "x25519",
            base64.b64decode(doc["sealed_shares"]["2"]),
            share_aad(api.keystore.fingerprint, cert, 2),
        )
    # 4. the admin token: no route that opens, reviews or approves
    for method, path in (
        ("POST", "/requests"),
        ("GET", f"/requests/{rid}/review"),
        ("POST", f"/requests/{rid}/approvals"),
        ("POST", f"/requests/{rid}/release"),
    ):
        assert api.call("Admin", method, path, json={}).status_code == 403
    # the real release opens exactly the one record; the others stay sealed
    out = api.release(rid, secret).json()
    assert [c["record_id"] for c in out["released"]] == mine
    assert not set(others) & {c["record_id"] for c in out["released"]}
    assert all(blobs == {} for _, blobs in _copy_of_approvals(api, rid))  # wiped


def test_no_sealed_share_survives_a_release_in_the_sqlite_file_or_its_wal(tmp_path):
    from tests.conftest import ApiVault
    from vault.db import upgrade

    upgrade(f"sqlite:///{tmp_path / 'vault.db'}")
    api = ApiVault(f"sqlite:///{tmp_path / 'vault.db'}", tmp_path)
    try:
        ids = _stored(api, 2)
        wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
        rid, secret = _request(api, wid, ids)
        for t in ("Trustee A", "Trustee C"):
            assert api.approve(t, rid).status_code == 200
        # as stored: base64 inside the approval's JSON
        blobs = [b[:44].encode() for _, d in _copy_of_approvals(api, rid) for b in d.values()]
        assert len(blobs) == 2

        def on_disk() -> bytes:
            return b"".join(p.read_bytes() for p in tmp_path.glob("vault.db*"))

        assert any(b in on_disk() for b in blobs)  # the scan can see them
        assert api.release(rid, secret).status_code == 200
        disk = on_disk()
        assert not any(b in disk for b in blobs)
    finally:
        api.client.close()
        api.ctx.engine.dispose()


def test_the_sweeper_wipes_shares_of_expired_revoked_and_unfetched_requests(api):
    from vault.retention import sweep

    ids = _stored(api, 3)
    window = (api.t0, api.t0 + timedelta(hours=1))
    w_exp = api.warrant(["cam-1"], *window, not_after=api.t0 + timedelta(hours=2)).json()["id"]
    w_rev = api.warrant(["cam-1"], *window).json()["id"]
    w_old = api.warrant(["cam-1"], *window, not_after=api.t0 + timedelta(days=30)).json()["id"]
    reqs = {}
    for name, wid, rec in (("expired", w_exp, ids[0]), ("revoked", w_rev, ids[1])):
        reqs[name], _ = _request(api, wid, [rec])
        assert api.approve("Trustee A", reqs[name]).status_code == 200
    reqs["unfetched"], _ = _request(api, w_old, [ids[2]])
    assert api.approve("Trustee B", reqs["unfetched"]).status_code == 200
    api.call("Judge Ito", "POST", f"/warrants/{w_rev}/revoke", json={"reason": "quashed"})
    assert _copy_of_approvals(api, reqs["revoked"])[0][1] == {}  # revocation wipes at once
    api.clock.advance(hours=3)
    pol = api.ctx.policy
    res = sweep(api.ctx.engine, api.keystore, api.clock(), unfetched_after=timedelta(days=7))
    assert res.expired_requests == [reqs["expired"]]
    assert _copy_of_approvals(api, reqs["expired"])[0][1] == {}
    assert _copy_of_approvals(api, reqs["unfetched"])[0][1] != {}  # still fresh
    api.clock.advance(days=7)
    res = sweep(
        api.ctx.engine, api.keystore, api.clock(), unfetched_after=pol.openings.unfetched_after
    )
    assert res.expired_requests == [reqs["unfetched"]]
    assert _copy_of_approvals(api, reqs["unfetched"])[0][1] == {}
    status = {
        n: api.call("Auditor", "GET", f"/requests/{r}").json()["status"] for n, r in reqs.items()
    }
    assert status == {"expired": "expired", "revoked": "closed", "unfetched": "expired"}
    assert "request.expire" in api.audit_actions()


def test_a_release_that_opens_nothing_is_not_spent(api):
    ids = _stored(api, 1)
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1)).json()["id"]
    rid, secret = _request(api, wid, ids)
    assert api.approve("Trustee A", rid).status_code == 200
    # Trustee B's approval is garbage (a broken client): the key cannot be rebuilt
    body = api.approval("Trustee B", rid)
    body["shares"] = {e: base64.b64encode(b"\0" * 120).decode() for e in body["shares"]}
    assert api.approve("Trustee B", rid, body).status_code == 200
    r = api.release(rid, secret)
    assert r.status_code == 409 and "not spent" in r.json()["detail"]
    assert api.call("Det. Vance", "GET", f"/requests/{rid}").json()["status"] == "pending"
    # a third, good approval: any k valid shares rebuild the key
    assert api.approve("Trustee C", rid).status_code == 200
    out = api.release(rid, secret)
    assert out.status_code == 200 and [c["record_id"] for c in out.json()["released"]] == ids


def test_k_approvals_of_the_right_trustees_are_needed_per_epoch(api):
    """Records of two cameras and two epochs: each (camera, epoch) key needs its own k."""
    ids = _stored(api, 2) + _stored(api, 1, camera="cam-2") + _stored(api, 1, minutes=24 * 60)
    wid = api.warrant(["cam-1", "cam-2"], api.t0, api.t0 + timedelta(days=2)).json()["id"]
    rid, secret = _request(api, wid, ids)
    review = api.call("Trustee A", "GET", f"/requests/{rid}/review").json()
    assert len(review["keys"]) == 3
    assert review["warrant"]["legal_basis"] and review["request"]["reason"]
    for t in ("Trustee B", "Trustee C"):
        assert api.approve(t, rid).status_code == 200
    out = api.release(rid, secret).json()
    assert sorted(c["record_id"] for c in out["released"]) == sorted(ids)


@pytest.mark.parametrize("n", [16])
def test_max_records_holds_under_concurrency(api, n):
    from tests.conftest import LiveServer

    ids = _stored(api, n)
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(hours=1), max_records=1).json()["id"]
    server = LiveServer(api.app)
    codes: list[int] = []
    try:
        import httpx

        barrier = threading.Barrier(n)

        def one(rec_id: str) -> None:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                barrier.wait()
                r = c.post(
                    "/requests",
                    headers=api.h("Det. Vance"),
                    json={"warrant_id": wid, "record_ids": [rec_id], "reason": "race"},
                )
                codes.append(r.status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert codes.count(201) == 1, codes
    assert sorted(set(codes)) == [201, 403], codes
    with api.ctx.factory() as s:
        assert len(s.scalars(select(OpeningRequest)).all()) == 1


def test_two_serve_replicas_on_one_database(api, tmp_path):
    """Request on one `escrow serve` process, approvals on the other, release on either."""
    import httpx

    url = str(api.ctx.engine.url.render_as_string(hide_password=False))
    ids = _stored(api, 2)
    wid = api.warrant(["cam-1"], api.t0, api.t0 + timedelta(days=1)).json()["id"]
    env = {
        **os.environ,
        "ESCROW_DATABASE_URL": url,
        "ESCROW_KEYS_DIR": str(api.keystore.root),
    }
    replicas = []
    try:
        for i in (1, 2):  # started together; each binds a free port and announces it
            replicas.append(ServeProcess(env, tmp_path, "--no-sweep", name=f"replica-{i}"))
        for r in replicas:
            r.ready()
        clients = [httpx.Client(base_url=r.url, timeout=30) for r in replicas]
        for c in clients:
            assert c.get("/health").status_code == 200
        one, two = clients
        created = one.post(
            "/requests",
            headers=api.h("Det. Vance"),
            json={"warrant_id": wid, "record_ids": ids, "reason": "replicas"},
        )
        assert created.status_code == 201, created.text
        rid, secret = created.json()["request"]["id"], created.json()["fetch_secret"]
        from escrow.trustee import approval_body

        for t in ("Trustee A", "Trustee C"):
            review = two.get(f"/requests/{rid}/review", headers=api.h(t)).json()
            body = approval_body(review, api.trustee_keys[t], PASSPHRASE)
            r = two.post(f"/requests/{rid}/approvals", headers=api.h(t), json=body)
            assert r.status_code == 200, r.text
        out = one.post(
            f"/requests/{rid}/release", headers=api.h("Det. Vance"), json={"fetch_secret": secret}
        )
        assert out.status_code == 200, out.text
        assert sorted(c["record_id"] for c in out.json()["released"]) == sorted(ids)
        again = two.post(  # the held answer again: the same crops, nothing opened again
            f"/requests/{rid}/release", headers=api.h("Det. Vance"), json={"fetch_secret": secret}
        )
        assert again.status_code == 200 and again.json() == out.json()
        assert two.post(f"/requests/{rid}/received", headers=api.h("Det. Vance")).is_success
        gone = one.post(
            f"/requests/{rid}/release", headers=api.h("Det. Vance"), json={"fetch_secret": secret}
        )
        assert gone.status_code == 410
        for c in clients:
            c.close()
    finally:
        for r in replicas:
            r.stop(10)


def test_replicas_making_the_vaults_keys_at_once_all_use_the_first(tmp_path, monkeypatch):
    """Replicas starting together on a fresh key store each find no warrant key (and no
    console key) and make one: whichever is written first is the one every replica uses, so a
    warrant one replica signs, the others verify. Before, a second replica replaced the
    first's file after the first had read it, or failed on the first's temporary file (seen
    in the soak: `escrow serve` exited at start)."""
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from tests.conftest import make_authority
    from vault import keys
    from vault.console.session import ConsoleKey

    ks, _ = make_authority(tmp_path / "keys", datetime.now(UTC), cameras=())
    make = {
        "warrant-signing.key": lambda: ed25519.Ed25519PrivateKey.generate().private_bytes_raw(),
        "console-session.key": Fernet.generate_key,
    }
    real, theirs = keys.create_once, {}

    def racing(path, data):  # the other replica writes its key between our check and ours
        theirs[path.name] = make[path.name]()
        real(path, theirs[path.name])
        real(path, data)

    monkeypatch.setattr(keys, "create_once", racing)
    assert ks.warrant_signer().private_bytes_raw() == theirs["warrant-signing.key"]
    assert ConsoleKey(ks.root).raw() == theirs["console-session.key"]
    monkeypatch.undo()
    assert ks.warrant_signer().private_bytes_raw() == theirs["warrant-signing.key"]  # kept
    for name in theirs:
        assert (ks.root / name).stat().st_mode & 0o777 == 0o600
    assert not list(ks.root.glob(".*"))  # no temporary file left behind


def test_a_rebuilt_key_never_reaches_disk_and_epoch_keys_are_per_camera(api):
    """The certificates name their camera; a camera cannot seal to another camera's key."""
    from escrow.keyring import CameraKeyring
    from escrow.sealing import KeyRefused

    ring = CameraKeyring(api.keystore.authority_public_raw(), api.keystore.certificates(), "cam-1")
    assert ring.certs and all(c.camera_id == "cam-1" for c in ring.certs)
    other = api.keystore.certificates("cam-2")[0]
    from escrow.keyring import SealingKey

    key = SealingKey(other, api.keystore.authority_public())
    header = sealing.RecordHeader(
        "00000000-0000-4000-8000-000000000001",
        "cam-1",
        other.epoch_id,
        api.t0,
        api.t0,
        api.t0 + timedelta(minutes=1),
    )
    with pytest.raises(KeyRefused, match="belongs to camera cam-2"):
        key.seal(b"x", {}, header)
    assert load_private  # the module under test exposes no way to read a private epoch key
    assert not hasattr(api.keystore, "epoch_private_key")


def test_an_epoch_key_outlives_its_epoch_while_a_camera_may_still_deliver(api):
    """A camera offline for its whole epoch keeps that epoch's records in its outbox: the
    sweeper must not shred the (empty, ended) epoch before those records could expire."""
    from vault.retention import sweep

    rec, _ = api.seal("cam-1", api.t0 + timedelta(minutes=5))  # sealed, not yet delivered
    keep = api.ctx.policy.retention.for_camera
    api.clock.advance(hours=25)  # the epoch ended; the vault holds nothing of it
    res = sweep(api.ctx.engine, api.keystore, api.clock(), keep_keys_for=keep)
    assert rec["epoch_id"] not in res.shredded
    assert api.ingest("cam-1", [rec]).status_code == 200  # delivered late, still openable
    from vault import store

    store.delete(api.ctx.factory, [rec["record_id"]], "cam-1")
    api.clock.advance(hours=72)  # now no record of that epoch can still be kept anywhere
    res = sweep(api.ctx.engine, api.keystore, api.clock(), keep_keys_for=keep)
    assert rec["epoch_id"] in res.shredded


def test_a_camera_refreshes_its_keyring_before_it_runs_out_and_only_from_its_authority(
    api, tmp_path
):
    from escrow.keyring import CameraKeyring, FreshKeyring
    from escrow.sealing import KeyRefused
    from tests.conftest import make_authority

    ks = api.keystore
    first = ks.certificates("cam-1")[:1]
    ring = CameraKeyring(ks.authority_public_raw(), first, "cam-1")
    other_ks, _ = make_authority(tmp_path / "other", api.t0, cameras=("cam-1",), epochs=5)
    answers = [other_ks.camera_keyring("cam-1"), ks.camera_keyring("cam-1")]
    log: list[str] = []
    fresh = FreshKeyring(ring, "cam-1", fetch=lambda: answers.pop(0), log=log.append, retry_after=0)
    end = first[0].window()[1]
    assert fresh.valid_until(api.t0) == end
    fresh.key_for(api.t0)  # a week's margin: asks, gets another authority's keyring
    assert "not the pinned" in log[-1] and fresh.valid_until(api.t0) == end
    fresh.key_for(api.t0)  # asks again, gets its own authority's three epochs
    assert fresh.valid_until(api.t0) == ks.certificates("cam-1")[-1].window()[1]
    assert (
        fresh.key_for(end + timedelta(hours=1)).cert.epoch_id
        == ks.certificates("cam-1")[1].epoch_id
    )
    with pytest.raises(KeyRefused, match="out of keys"):
        fresh.key_for(end + timedelta(days=30))  # nothing to fetch any more: stops, never plaintext


def test_a_development_authority_opens_nothing_through_the_api(db_url, tmp_path):
    from tests.conftest import ApiVault, make_authority

    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ks, keys = make_authority(tmp_path / "keys", t0, dev=True)
    api = ApiVault(db_url, tmp_path, keystore=ks, trustee_keys=keys, t0=t0)
    try:
        ids = _stored(api, 1)
        wid = api.warrant(["cam-1"], t0, t0 + timedelta(hours=1)).json()["id"]
        rid, _ = _request(api, wid, ids)
        r = api.approve("Trustee A", rid)
        assert r.status_code == 403 and "development authority" in r.json()["detail"]
    finally:
        api.client.close()
        api.ctx.engine.dispose()
