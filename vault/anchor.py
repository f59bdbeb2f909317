"""The audit trail anchored outside the database: signed checkpoints and a witness file.

The hash chain (vault/audit.py) catches an edit in the middle, but not a cut tail or a
consistent rewrite (remove two entries, renumber, recompute every hash): whoever can write
the database can make a shorter or different chain that verifies. So the same entries are
also the leaves of an RFC 9162 Merkle tree (vault/merkle.py), and the vault signs
checkpoints of it, (log id, tree size, root, time), with an Ed25519 key that lives in the
key store directory, not in the database. An auditor appends checkpoints to a witness file
they keep (one JSON line each; the first checkpoint's key is pinned): a later trail must
still hold the first `size` entries of the last checkpoint, with the same root, or it was
cut or rewritten. Inclusion proofs show one entry is in a signed tree without the others.

Leaf n (0-based n - 1 in the tree) is the canonical JSON of entry n: [id, time (UTC,
microseconds, as the chain encodes it), actor, action, detail, chain hash].
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from escrow.canonical import canonical_json, iso_utc  # the chain's own encodings
from vault import merkle
from vault.models import AuditEntry
from vault.refusals import Refused

FORMAT = "keyframe-escrow-checkpoint/1"
KEY_FILE = "audit-checkpoint.key"
_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,15}(Z|[+-][0-9]{2}:[0-9]{2})$")


class AnchorBroken(Exception):
    """The trail, or the witness file, fails a check: it was cut, rewritten or forged."""


class WitnessUnreadable(Exception):
    """The witness file is missing or not one checkpoint per line."""


class ProofRefused(Refused):
    """A proof the API cannot give (no such entry or tree size)."""


# --- the checkpoint key ---------------------------------------------------------------


class CheckpointKey:
    """The Ed25519 key that signs checkpoints: `audit-checkpoint.key` (0600) in the key
    store directory, created on first use. Kept out of the database on purpose: someone
    who can rewrite the trail there must not be able to sign a checkpoint of the rewrite.
    It signs nothing but checkpoints, so it needs neither the master key nor trustees."""

    def __init__(self, keys_dir: Path):
        self.path = Path(keys_dir) / KEY_FILE

    def private(self) -> ed25519.Ed25519PrivateKey:
        if not self.path.exists():
            self._create()
        return ed25519.Ed25519PrivateKey.from_private_bytes(self.path.read_bytes())

    def public_raw(self) -> bytes:
        return self.private().public_key().public_bytes_raw()

    def _create(self) -> None:
        """Write a new key to a temporary 0600 file and link it into place: a second
        process racing to create it keeps the first one's key, never half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(ed25519.Ed25519PrivateKey.generate().private_bytes_raw())
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: keep its key
                os.link(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


# --- checkpoints ----------------------------------------------------------------------


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def log_id(public_raw: bytes) -> str:
    """The log's id: SHA-256 of its public key, as Certificate Transparency names logs."""
    return hashlib.sha256(public_raw).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head. `time` is kept as the exact string that was signed."""

    log_id: str
    size: int
    root: str
    time: str
    key: str
    signature: str
    format: str = FORMAT

    def body(self) -> bytes:
        """What is signed: one field a line, so no two checkpoints share an encoding."""
        return f"{self.format}\n{self.log_id}\n{self.size}\n{self.root}\n{self.time}\n".encode()

    def to_json(self) -> str:
        return canonical_json(asdict(self)).decode()

    @classmethod
    def from_dict(cls, d: object) -> Checkpoint:
        """Parse strictly: every field present, of its type and shape; nothing else."""
        want = {"format", "log_id", "size", "root", "time", "key", "signature"}
        if not isinstance(d, dict) or set(d) != want:
            raise ValueError(f"a checkpoint has exactly the fields {sorted(want)}")
        if d["format"] != FORMAT:
            raise ValueError(f"unknown checkpoint format {d['format']!r}")
        if not isinstance(d["size"], int) or isinstance(d["size"], bool) or d["size"] < 0:
            raise ValueError("size must be a non-negative integer")
        for name in ("log_id", "root"):
            if not isinstance(d[name], str) or len(d[name]) != 64 or d[name] != d[name].lower():
                raise ValueError(f"{name} must be 64 lower-case hex digits")
            bytes.fromhex(d[name])
        for name, n in (("key", 32), ("signature", 64)):
            try:
                ok = len(base64.b64decode(d[name], validate=True)) == n
            except (binascii.Error, TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"{name} must be {n} bytes, base64")
        if not isinstance(d["time"], str) or not _TIME.match(d["time"]):
            raise ValueError("time must be an ISO 8601 time with its offset")
        return cls(**d)

    def signed_by(self, public_raw: bytes) -> bool:
        """Is this checkpoint signed by `public_raw`, under that key's log id?"""
        if base64.b64decode(self.key) != public_raw or self.log_id != log_id(public_raw):
            return False
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(public_raw).verify(
                base64.b64decode(self.signature), self.body()
            )
        except (InvalidSignature, ValueError):
            return False
        return True


def sign(key: CheckpointKey, size: int, root: bytes, now: datetime) -> Checkpoint:
    sk = key.private()
    pub = sk.public_key().public_bytes_raw()
    unsigned = Checkpoint(log_id(pub), size, root.hex(), iso_utc(now), _b64(pub), "")
    return Checkpoint(**{**asdict(unsigned), "signature": _b64(sk.sign(unsigned.body()))})


# --- the trail as leaves --------------------------------------------------------------


def leaf_bytes(e: AuditEntry) -> bytes:
    return canonical_json([e.id, iso_utc(e.at), e.actor, e.action, e.detail, e.hash])


def _entries(s: Session, size: int | None = None) -> list[AuditEntry]:
    q = select(AuditEntry).order_by(AuditEntry.id)
    return list(s.scalars(q if size is None else q.limit(size)))


def leaves(factory: sessionmaker[Session], size: int | None = None) -> list[bytes]:
    """Leaf hashes of the first `size` entries in id order (all entries if None)."""
    with factory() as s:
        return [merkle.leaf_hash(leaf_bytes(e)) for e in _entries(s, size)]


def checkpoint(
    factory: sessionmaker[Session], key: CheckpointKey, now: datetime, size: int | None = None
) -> Checkpoint:
    """A signed checkpoint of the trail's first `size` entries (default: all)."""
    hashes = leaves(factory, size)
    if size is not None and size > len(hashes):
        raise ProofRefused(f"the trail has {len(hashes)} entries, not {size}", 404)
    return sign(key, len(hashes), merkle.root(hashes), now)


@dataclass(frozen=True)
class InclusionProof:
    entry: AuditEntry
    leaf: str
    leaf_index: int
    tree_size: int
    proof: list[str]
    checkpoint: Checkpoint


def inclusion(
    factory: sessionmaker[Session],
    key: CheckpointKey,
    now: datetime,
    entry: int,
    size: int | None = None,
) -> InclusionProof:
    """Entry `entry` (its id), with the audit path to the root of the tree of `size` entries
    and a signed checkpoint of that tree."""
    with factory() as s:
        rows = _entries(s, size)
    if size is not None and size > len(rows):
        raise ProofRefused(f"the trail has {len(rows)} entries, not {size}", 404)
    index = next((i for i, e in enumerate(rows) if e.id == entry), None)
    if index is None:
        raise ProofRefused(f"no entry {entry} in the tree of {len(rows)} entries", 404)
    hashes = [merkle.leaf_hash(leaf_bytes(e)) for e in rows]
    return InclusionProof(
        entry=rows[index],
        leaf=leaf_bytes(rows[index]).decode(),
        leaf_index=index,
        tree_size=len(rows),
        proof=[h.hex() for h in merkle.inclusion_proof(hashes, index)],
        checkpoint=sign(key, len(rows), merkle.root(hashes), now),
    )


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    proof: list[str]
    checkpoint: Checkpoint


def consistency(
    factory: sessionmaker[Session],
    key: CheckpointKey,
    now: datetime,
    first: int,
    second: int | None = None,
) -> ConsistencyProof:
    """Proof that the tree of `first` entries is a prefix of the tree of `second` (default:
    all), with a signed checkpoint of the second."""
    hashes = leaves(factory, second)
    if second is not None and second > len(hashes):
        raise ProofRefused(f"the trail has {len(hashes)} entries, not {second}", 404)
    if first > len(hashes):
        raise ProofRefused(f"first ({first}) is larger than second ({len(hashes)})", 404)
    proof = merkle.consistency_proof(hashes, first)
    return ConsistencyProof(
        first,
        len(hashes),
        [h.hex() for h in proof],
        sign(key, len(hashes), merkle.root(hashes), now),
    )


def verify_inclusion(
    leaf: bytes, index: int, proof: list[str], cp: Checkpoint, public_raw: bytes
) -> bool:
    """A client's check of an inclusion proof: `leaf` (the canonical bytes) at `index` in
    the tree of checkpoint `cp`, and `cp` signed by the key the client pinned."""
    if not (
        isinstance(index, int)
        and not isinstance(index, bool)
        and isinstance(proof, list)
        and all(isinstance(h, str) for h in proof)
    ):
        return False  # a proof read from JSON may hold anything
    try:
        path = [bytes.fromhex(h) for h in proof]
        root = bytes.fromhex(cp.root)
    except ValueError:
        return False
    return cp.signed_by(public_raw) and merkle.verify_inclusion(
        index, cp.size, merkle.leaf_hash(leaf), path, root
    )


# --- the witness file -----------------------------------------------------------------


def read_witness(path: Path) -> list[Checkpoint]:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError as exc:
        raise WitnessUnreadable(f"no witness file {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessUnreadable(f"cannot read witness file {path}: {exc}") from exc
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(Checkpoint.from_dict(json.loads(line)))
        except ValueError as exc:  # json.JSONDecodeError is one
            raise WitnessUnreadable(f"{path}:{no}: not a checkpoint ({exc})") from exc
    return out


def check_witness(path: Path, cps: list[Checkpoint]) -> bytes:
    """Every checkpoint signed by the pinned key (the first one's), tree sizes never
    shrinking. -> the pinned public key."""
    if not cps:
        raise WitnessUnreadable(f"no checkpoints in {path}")
    pinned = base64.b64decode(cps[0].key)
    for no, cp in enumerate(cps, 1):
        if not cp.signed_by(pinned):
            raise AnchorBroken(f"checkpoint {no} of {path} is not signed by the pinned key")
        if no > 1 and cp.size < cps[no - 2].size:
            raise AnchorBroken(f"checkpoint {no} of {path} is smaller than the one before")
    return pinned


def check_trail(factory: sessionmaker[Session], path: Path) -> tuple[int, Checkpoint]:
    """Check the witness file, then the trail against its last checkpoint: at least that
    many entries, and the first `size` of them hash to its root.
    -> (number of the checkpoint, the checkpoint)."""
    cps = read_witness(path)
    check_witness(path, cps)
    last, no = cps[-1], len(cps)
    hashes = leaves(factory)
    if len(hashes) < last.size:
        raise AnchorBroken(
            f"the trail has {len(hashes)} entries, checkpoint {no} of {path} saw {last.size}: "
            "entries at the end were removed"
        )
    if merkle.root(hashes[: last.size]).hex() != last.root:
        raise AnchorBroken(
            f"the first {last.size} entries do not hash to the root of checkpoint {no} of "
            f"{path}: the trail was rewritten"
        )
    return no, last


def extend_witness(
    factory: sessionmaker[Session], key: CheckpointKey, now: datetime, path: Path
) -> Checkpoint:
    """Sign a checkpoint of the current trail and append it to the witness file; if the file
    holds checkpoints, first prove (RFC 9162 consistency proof) that the current tree
    extends the last of them, and refuse if not."""
    path = Path(path)
    cps = read_witness(path) if path.exists() else []
    hashes = leaves(factory)
    cp = sign(key, len(hashes), merkle.root(hashes), now)
    if cps:
        pinned = check_witness(path, cps)
        if base64.b64decode(cp.key) != pinned:
            raise AnchorBroken(f"the key store's checkpoint key is not the one {path} pinned")
        last, no = cps[-1], len(cps)
        if len(hashes) < last.size:
            raise AnchorBroken(
                f"the trail has {len(hashes)} entries, checkpoint {no} of {path} saw "
                f"{last.size}: entries at the end were removed"
            )
        proof = merkle.consistency_proof(hashes, last.size)
        first_root = bytes.fromhex(last.root)
        if not merkle.verify_consistency(
            last.size, len(hashes), first_root, bytes.fromhex(cp.root), proof
        ):
            raise AnchorBroken(
                f"the trail is not consistent with checkpoint {no} of {path}: it was rewritten"
            )
    _append(path, cp.to_json())
    return cp


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with os.fdopen(fd, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
