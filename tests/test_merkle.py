"""vault.merkle against the Certificate Transparency test vectors and, for every tree size
1..40, against a brute-force tree built another way (level by level, an odd last node
promoted: the shape RFC 9162's split produces), every proof, and tampered ones."""

from __future__ import annotations

import hashlib

import pytest

from vault import merkle

# The CT reference leaves (RFC 6962 test data) and the roots of their prefixes 1..8.
CT_DATA = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CT_CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
N = 40
LEAVES = [merkle.leaf_hash(f"entry {i}".encode()) for i in range(N)]


def levels(leaves: list[bytes]) -> list[list[bytes]]:
    """The brute-force tree: every level in full, an unpaired last node carried up as is."""
    out = [list(leaves)]
    while len(out[-1]) > 1:
        lv = out[-1]
        up = [merkle.node_hash(lv[i], lv[i + 1]) for i in range(0, len(lv) - 1, 2)]
        out.append(up + ([lv[-1]] if len(lv) % 2 else []))
    return out


def brute_root(leaves: list[bytes]) -> bytes:
    return levels(leaves)[-1][0] if leaves else hashlib.sha256(b"").digest()


def brute_path(leaves: list[bytes], i: int) -> list[bytes]:
    path = []
    for lv in levels(leaves)[:-1]:
        sibling = i ^ 1
        if sibling < len(lv):
            path.append(lv[sibling])
        i >>= 1
    return path


def hx(hs: list[bytes]) -> list[str]:
    return [h.hex() for h in hs]


def flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def test_hashing_is_rfc_9162s():
    assert merkle.root([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    a, b = LEAVES[:2]
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


def test_ct_reference_vectors():
    leaves = [merkle.leaf_hash(d) for d in CT_DATA]
    assert [merkle.root(leaves[:n]).hex() for n in range(1, 9)] == CT_ROOTS
    for (i, n), want in CT_INCLUSION.items():
        assert hx(merkle.inclusion_proof(leaves[:n], i)) == want
        proof = [bytes.fromhex(h) for h in want]
        assert merkle.verify_inclusion(i, n, leaves[i], proof, bytes.fromhex(CT_ROOTS[n - 1]))
    for (m, n), want in CT_CONSISTENCY.items():
        assert hx(merkle.consistency_proof(leaves[:n], m)) == want
        r1, r2 = bytes.fromhex(CT_ROOTS[m - 1]), bytes.fromhex(CT_ROOTS[n - 1])
        assert merkle.verify_consistency(m, n, r1, r2, [bytes.fromhex(h) for h in want])


def test_root_matches_brute_force_for_all_sizes():
    for n in range(1, N + 1):
        assert merkle.root(LEAVES[:n]) == brute_root(LEAVES[:n]), n


def test_every_inclusion_proof_against_brute_force():
    roots = {n: brute_root(LEAVES[:n]) for n in range(1, N + 1)}
    for n in range(1, N + 1):
        for i in range(n):
            proof = merkle.inclusion_proof(LEAVES[:n], i)
            assert proof == brute_path(LEAVES[:n], i), (i, n)
            assert merkle.verify_inclusion(i, n, LEAVES[i], proof, roots[n]), (i, n)
            # the same proof says nothing about another leaf, index, size or root
            assert not merkle.verify_inclusion(i, n, flip(LEAVES[i]), proof, roots[n])
            assert not merkle.verify_inclusion(i, n, LEAVES[i], proof, flip(roots[n]))
            for j in range(n):
                if j != i:
                    assert not merkle.verify_inclusion(j, n, LEAVES[i], proof, roots[n])
            for m in range(i + 1, N + 1):
                if m != n:
                    assert not merkle.verify_inclusion(i, m, LEAVES[i], proof, roots[m])
            for k in range(len(proof)):
                bad = proof[:k] + [flip(proof[k])] + proof[k + 1 :]
                assert not merkle.verify_inclusion(i, n, LEAVES[i], bad, roots[n])
            assert not merkle.verify_inclusion(i, n, LEAVES[i], proof + [LEAVES[0]], roots[n])
            if proof:
                assert not merkle.verify_inclusion(i, n, LEAVES[i], proof[:-1], roots[n])


def test_every_consistency_proof_against_brute_force():
    roots = {n: brute_root(LEAVES[:n]) for n in range(0, N + 1)}
    for n in range(1, N + 1):
        for m in range(0, n + 1):
            proof = merkle.consistency_proof(LEAVES[:n], m)
            assert merkle.verify_consistency(m, n, roots[m], roots[n], proof), (m, n)
            if m == 0:  # every tree extends the empty one
                continue
            assert not merkle.verify_consistency(m, n, roots[m], flip(roots[n]), proof)
            assert not merkle.verify_consistency(m, n, flip(roots[m]), roots[n], proof)
            # another first size with its own true root: refused
            for m2 in range(1, n + 1):
                if m2 != m:
                    assert not merkle.verify_consistency(m2, n, roots[m2], roots[n], proof)
            # a first tree that differs from the second's prefix in any one leaf: refused
            for j in range(m):
                forked = LEAVES[:j] + [flip(LEAVES[j])] + LEAVES[j + 1 : m]
                assert not merkle.verify_consistency(m, n, brute_root(forked), roots[n], proof)
            for k in range(len(proof)):
                bad = proof[:k] + [flip(proof[k])] + proof[k + 1 :]
                assert not merkle.verify_consistency(m, n, roots[m], roots[n], bad)
            assert not merkle.verify_consistency(m, n, roots[m], roots[n], proof + [LEAVES[0]])
            if proof:
                assert not merkle.verify_consistency(m, n, roots[m], roots[n], proof[:-1])


def test_edges_and_bad_input():
    r4, r5 = merkle.root(LEAVES[:4]), merkle.root(LEAVES[:5])
    assert merkle.verify_consistency(4, 4, r4, r4, [])
    assert not merkle.verify_consistency(4, 4, r4, r5, [])
    assert not merkle.verify_consistency(5, 4, r5, r4, merkle.consistency_proof(LEAVES[:5], 4))
    assert not merkle.verify_consistency(4, 5, r4, r5, [])
    assert not merkle.verify_consistency(0, 5, r4, r5, [])
    assert not merkle.verify_inclusion(5, 5, LEAVES[0], [], r5)
    assert not merkle.verify_inclusion(-1, 5, LEAVES[0], [], r5)
    assert not merkle.verify_inclusion(0, 1, LEAVES[0][:31], [], LEAVES[0][:31])
    with pytest.raises(ValueError):
        merkle.inclusion_proof(LEAVES[:5], 5)
    with pytest.raises(ValueError):
        merkle.consistency_proof(LEAVES[:5], 6)
