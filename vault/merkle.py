"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs, as pure functions.

Why a Merkle tree beside the hash chain: a chain's head says nothing about a shorter or
rewritten chain unless the auditor kept that exact head. A signed tree head (size, root)
does: a consistency proof shows that the tree of `first` leaves is a prefix of the tree of
`second` leaves, so cutting entries off the end, or rewriting the trail and recomputing
every hash, no longer matches what an auditor saw earlier. An inclusion proof shows one
entry is in a tree of a given root, with log2(n) hashes instead of the whole trail.

Everything here works on lists of leaf hashes (32 bytes each, made by `leaf_hash`):

    leaf hash  = SHA-256(0x00 || leaf bytes)                         (§2.1.1)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256()
    MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of 2 below n

Indices are 0-based as in the RFC (the audit trail's entry n is leaf n - 1). Generation
follows §2.1.3.1 (PATH) and §2.1.4.1 (PROOF/SUBPROOF) literally; verification follows the
iterative algorithms of §2.1.3.2 and §2.1.4.2, which never rebuild the tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes. Iterative (a stack of complete subtrees, merged as
    they fill), so a long trail costs n - 1 node hashes and no recursion."""
    if not leaves:
        return EMPTY_ROOT
    # stack[i] = (height, hash) of complete subtrees, heights strictly decreasing.
    stack: list[tuple[int, bytes]] = []
    for h in leaves:
        height, node = 0, h
        while stack and stack[-1][0] == height:
            node = node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
    # Merge the ragged right edge from the right: that is the RFC's split at k.
    node = stack.pop()[1]
    while stack:
        node = node_hash(stack.pop()[1], node)
    return node


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1, n = len(leaves)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of size {n}")
    return _path(index, leaves)


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _split(len(d))
    if m < k:
        return _path(m, d[:k]) + [root(d[k:])]
    return _path(m - k, d[k:]) + [root(d[:k])]


def consistency_proof(leaves: Sequence[bytes], first: int) -> list[bytes]:
    """PROOF(first, D[n]) of RFC 9162 §2.1.4.1, n = len(leaves); empty for first = 0
    (every tree extends the empty one) and for first = n (the trees must be equal)."""
    n = len(leaves)
    if not 0 <= first <= n:
        raise ValueError(f"a tree of size {first} is not a prefix of one of size {n}")
    if first == 0:
        return []
    return _subproof(first, leaves, True)


def _subproof(m: int, d: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if complete else [root(d)]
    k = _split(n)
    if m <= k:
        return _subproof(m, d[:k], complete) + [root(d[k:])]
    return _subproof(m - k, d[k:], False) + [root(d[:k])]


def _ok_hashes(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` show leaf hash `leaf` at `index` in the tree of
    `size` leaves whose root is `root_hash`?"""
    if not 0 <= index < size or not _ok_hashes(leaf, root_hash, *proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root_hash


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does `proof` show the tree (`first`, `first_root`) is a prefix of
    the tree (`second`, `second_root`)? The RFC's algorithm covers 0 < first < second; the
    two edge cases are decided as its §2.1.4.1 defines them: an empty proof, and for
    first = second equal roots; for first = 0 the empty tree's root."""
    if not 0 <= first <= second or not _ok_hashes(first_root, second_root, *proof):
        return False
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of 2: the first tree is a subtree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0
