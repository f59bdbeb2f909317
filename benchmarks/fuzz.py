"""atheris (coverage-guided, libFuzzer) on every parser of untrusted bytes. Each target feeds
the bytes to the parser the way the project reads them and lets only that parser's own error
types through; anything else is a crash (atheris prints it and exits 1).

    python benchmarks/fuzz.py TARGET [-runs=N] [libFuzzer flags...]
    python benchmarks/fuzz.py all [-runs=N]      # each target in its own process, a table

Targets: wire (the sealed-record wire format: the ingest schema and record_from_fields),
keyring (a camera keyring file, its epoch certificates, the keys picked from it), policy (the
policy file), trustee (a trustee's key file, a share sealed to it), review (what a trustee's
client checks before it unseals anything), shares (the key store's shares file of an epoch,
as a review and a release read it), checkpoint (the witness file of signed checkpoints),
proof (an inclusion proof as `escrow audit proof` prints it, checked as a client checks it).

Seeds are valid examples made on the spot (a throwaway authority), so the fuzzer starts from
inputs that reach deep; `tests/test_fuzz_parsers.py` runs a few thousand inputs of each in CI,
the benchmark 10^6 (`-runs=1000000`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402

# third-party code first, uninstrumented: coverage is wanted in the project's parsers
import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: E402, F401
import pydantic  # noqa: E402
import sqlalchemy  # noqa: E402, F401

with atheris.instrument_imports(include=["escrow", "vault", "policies"]):
    from escrow import sealing, trustee
    from escrow.keyring import CameraKeyring
    from escrow.sealing import IntegrityError, KeyRefused, KeyStoreError
    from policies.schema import PolicyError, load_policy
    from vault import anchor, merkle
    from vault.api.schemas import IngestIn
    from vault.keys import KeyStore

PASSPHRASE = "fuzz passphrase"
T0 = datetime(2026, 12, 1, tzinfo=UTC)
# KF_FUZZ_WORK: a folder kept between runs (the throwaway authority is made once in it)
WORK = Path(os.environ.get("KF_FUZZ_WORK") or tempfile.mkdtemp(prefix="kf-fuzz-"))


def _authority() -> tuple[KeyStore, list]:
    """A throwaway production authority with two epochs of one camera (cached in WORK)."""
    ks = KeyStore(WORK / "keys")
    if not (WORK / "keys" / "authority.json").exists():
        keys = ks.init(T0, [("A", PASSPHRASE), ("B", PASSPHRASE)], 2, PASSPHRASE)
        ks.issue_epochs(ks.authority_signer(PASSPHRASE), "cam-1", T0, 2)
        for k in keys:
            k.write(WORK / f"trustee-{k.index}.key")
    keys = [trustee.TrusteeKey.load(WORK / f"trustee-{i}.key") for i in (1, 2)]
    return ks, keys


# --- the targets: (seeds, one input) --------------------------------------------------------


def wire_seeds() -> list[bytes]:
    from escrow.keyring import SealingKey

    ks, _ = _authority()
    cert = ks.certificates("cam-1")[0]
    key = SealingKey(cert, ks.authority_public())
    t = T0 + timedelta(hours=1)
    h = sealing.RecordHeader(
        "00000000-0000-4000-8000-000000000001", "cam-1", cert.epoch_id, t, t, t
    )
    rec = sealing.to_wire(key.seal(b"crop", {"a": 1}, h), 1, -3.5, cert.key_sha256)
    return [json.dumps({"records": [rec]}).encode(), json.dumps({"records": [rec, rec]}).encode()]


def wire(data: bytes) -> None:
    try:
        body = IngestIn.model_validate_json(data)
    except pydantic.ValidationError:
        return
    for rec in body.records:
        sealed = sealing.record_from_fields(dict(rec))
        sealed.header.aad()  # the associated data both layers are bound to


def keyring_seeds() -> list[bytes]:
    ks, _ = _authority()
    return [json.dumps(ks.camera_keyring("cam-1")).encode()]


def keyring(data: bytes) -> None:
    path = WORK / "keyring.json"
    path.write_bytes(data)
    try:
        ring = CameraKeyring.load(path)
    except KeyStoreError:
        return
    for t in (T0 + timedelta(hours=1), T0 + timedelta(days=400)):
        try:
            ring.valid_until(t, "cam-1")
            ring.key_for(t, "cam-1")
        except (KeyRefused, KeyStoreError):
            pass
    for cert in ring.certs:
        with contextlib.suppress(KeyRefused):
            cert.verify(ring.authority)


def policy_seeds() -> list[bytes]:
    return [(ROOT / "policies" / "default.toml").read_bytes()]


def policy(data: bytes) -> None:
    path = WORK / "policy.toml"
    path.write_bytes(data)
    try:
        p = load_policy(path)
    except PolicyError:
        return
    p.retention.for_camera("cam-1")
    p.retention.rule("cam-1")
    p.effective()


def trustee_seeds() -> list[bytes]:
    _authority()
    return [(WORK / "trustee-1.key").read_bytes()]


_TRUSTEE_PRIVATE = None


def trustee_file(data: bytes) -> None:
    """A trustee key file, then a sealed share of it (the bytes again, as the blob)."""
    global _TRUSTEE_PRIVATE
    path = WORK / "trustee-fuzz.key"
    path.write_bytes(data)
    with contextlib.suppress(KeyStoreError):
        trustee.TrusteeKey.load(path)
    ks, keys = _authority()
    if _TRUSTEE_PRIVATE is None:
        _TRUSTEE_PRIVATE = keys[0].unlock(PASSPHRASE)
    cert = ks.certificates("cam-1")[0]
    with contextlib.suppress(KeyStoreError):
        sealing.unseal_share(
            _TRUSTEE_PRIVATE, "x25519", data, trustee.share_aad(ks.fingerprint, cert, 1)
        )


def review_seeds() -> list[bytes]:
    """A review as `GET /requests/{id}/review` sends it to trustee 1 (the fields check reads)."""
    from dataclasses import asdict

    ks, _ = _authority()
    cert = ks.certificates("cam-1")[0]
    doc = ks.shares(cert.epoch_id)
    fields = {
        "id": "req-1",
        "warrant": "w-1",
        "records": ["rec-1"],
        "requester": "Det. Vance",
        "reason": "seen at 14:02",
        "public_key": base64.b64encode(bytes(32)).decode(),
        "created": T0.isoformat(),
    }
    review = {
        "request": {
            "id": "req-1",
            "digest": trustee.digest_of(fields),
            "record_ids": ["rec-1"],
            "reason": "seen at 14:02",
        },
        "warrant": {
            "id": "w-1",
            "window_start": T0.isoformat(),
            "window_end": (T0 + timedelta(days=1)).isoformat(),
            "cameras": ["cam-1"],
        },
        "records": [{"id": "rec-1", "epoch_id": cert.epoch_id}],
        "keys": [
            {
                "certificate": asdict(cert),
                "sealed_share": doc["sealed_shares"]["1"],
                "share_digest": doc["share_digests"]["1"],
            }
        ],
        "digest_fields": fields,
        "authority_public_key": base64.b64encode(ks.authority_public_raw()).decode(),
        "release_public_key": ks.info()["release_public_key"],
        "trustee_index": 1,
    }
    return [json.dumps(review).encode()]


def review(data: bytes) -> None:
    """The review a trustee's client checks before anything is unsealed (the vault's word)."""
    _, keys = _authority()
    try:
        doc = json.loads(data)
    except ValueError:
        return
    try:
        certs = trustee.check(doc, keys[0])
    except trustee.ReviewRejected:
        return
    assert certs  # a review that passes names the keys to unseal


def shares_seeds() -> list[bytes]:
    ks, _ = _authority()
    return [json.dumps(ks.shares(ks.certificates("cam-1")[0].epoch_id)).encode()]


_SHARES_KS = None


def shares(data: bytes) -> None:
    """The shares file of an epoch, read as a review and a release read it."""
    global _SHARES_KS
    ks, keys = _authority()
    cert = ks.certificates("cam-1")[0]
    _, path = ks._paths(cert.epoch_id)
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        try:
            doc = ks.shares(cert.epoch_id)
        except KeyStoreError:
            return
        doc["sealed_shares"].get("1"), doc["share_digests"].get("1")  # vault.openings.review
    finally:
        path.write_bytes(original)


def checkpoint_seeds() -> list[bytes]:
    key = anchor.CheckpointKey(WORK / "keys")
    leaves = [merkle.leaf_hash(b"entry %d" % i) for i in range(5)]
    cps = [anchor.sign(key, n, merkle.root(leaves[:n]), T0) for n in (3, 5)]
    return ["\n".join(c.to_json() for c in cps).encode() + b"\n"]


def checkpoint(data: bytes) -> None:
    path = WORK / "witness.jsonl"
    path.write_bytes(data)
    try:
        cps = anchor.read_witness(path)
        anchor.check_witness(path, cps)
    except (anchor.WitnessUnreadable, anchor.AnchorBroken):
        return


def proof_seeds() -> list[bytes]:
    key = anchor.CheckpointKey(WORK / "keys")
    data = [b"entry %d" % i for i in range(7)]
    leaves = [merkle.leaf_hash(d) for d in data]
    cp = anchor.sign(key, 7, merkle.root(leaves), T0)
    from dataclasses import asdict

    return [
        json.dumps(
            {
                "leaf": base64.b64encode(data[3]).decode(),
                "leaf_index": 3,
                "tree_size": 7,
                "proof": [h.hex() for h in merkle.inclusion_proof(leaves, 3)],
                "checkpoint": asdict(cp),
            }
        ).encode()
    ]


def proof(data: bytes) -> None:
    """What `escrow audit proof` prints, checked as a client checks it: the checkpoint
    parsed strictly (ValueError), then verify_inclusion answers True or False, never raises."""
    try:
        d = json.loads(data)
        cp = anchor.Checkpoint.from_dict(d["checkpoint"])
        leaf = base64.b64decode(d["leaf"], validate=True)
    except (ValueError, KeyError, TypeError):  # the reader's own: not JSON, not an object
        return
    pinned = base64.b64decode(cp.key)
    ok = anchor.verify_inclusion(leaf, d.get("leaf_index"), d.get("proof"), cp, pinned)
    assert ok in (True, False)


TARGETS = {
    "wire": (wire_seeds, wire),
    "keyring": (keyring_seeds, keyring),
    "policy": (policy_seeds, policy),
    "trustee": (trustee_seeds, trustee_file),
    "review": (review_seeds, review),
    "shares": (shares_seeds, shares),
    "checkpoint": (checkpoint_seeds, checkpoint),
    "proof": (proof_seeds, proof),
}
_ = IntegrityError  # the sealing layer's own error, named for readers of the targets


def run_one(name: str, flags: list[str]) -> None:
    seeds, fn = TARGETS[name]
    corpus = Path(tempfile.mkdtemp(prefix=f"corpus-{name}-", dir=WORK))
    for i, s in enumerate(seeds()):
        (corpus / f"seed-{i}").write_bytes(s)
    argv = [sys.argv[0], str(corpus), f"-artifact_prefix={WORK}/", "-max_len=8192", *flags]
    atheris.Setup(argv, fn)
    atheris.Fuzz()


def run_all(flags: list[str]) -> int:
    """Each target in its own process (atheris.Fuzz does not return): a table."""
    worst = 0
    print(f"{'target':<11} {'inputs':>9} {'seconds':>8} result")
    for name in TARGETS:
        t = time.perf_counter()
        r = subprocess.run(
            [sys.executable, __file__, name, *flags], capture_output=True, text=True, check=False
        )
        runs = [ln for ln in r.stderr.splitlines() if ln.startswith("Done ")]
        n = runs[-1].split()[1] if runs else "?"
        err = r.stderr
        crash = err[err.find("=== Uncaught") : err.find("==", err.find("=== Uncaught") + 20)]
        res = "ok" if r.returncode == 0 else "CRASH\n" + (crash or err[-3000:])
        print(f"{name:<11} {n:>9} {time.perf_counter() - t:>8.1f} {res}", flush=True)
        worst = max(worst, r.returncode)
    return worst


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in (*TARGETS, "all"):
        print(f"usage: fuzz.py {{{'|'.join(TARGETS)}|all}} [-runs=N ...]", file=sys.stderr)
        sys.exit(2)
    if sys.argv[1] == "all":
        sys.exit(run_all(sys.argv[2:]))
    os.environ.setdefault("ESCROW_KEYS_DIR", str(WORK / "keys"))
    run_one(sys.argv[1], sys.argv[2:])
