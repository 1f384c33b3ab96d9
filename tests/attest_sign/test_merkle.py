"""Merkle hashing and proofs against RFC 6962 vectors, a naive RFC oracle and tampering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.tlog.hashing import EMPTY_ROOT, leaf_hash, root_of
from attest.tlog.proofs import (
    ConsistencyProof,
    InclusionProof,
    NodeID,
    ProofError,
    ProofVerificationError,
    perfect_cover,
    plan_consistency,
    plan_inclusion,
    plan_root,
    resolve,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)
from tests.attest_sign import naive_merkle

# Published RFC 6962 test vectors from google/certificate-transparency
# (cpp/merkletree/merkle_tree_test.cc), also in transparency-dev/merkle's testonly data:
# eight leaf inputs, the tree head at each size 0..8, and some proofs (indexes 0-based).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]
]  # fmt: skip
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CT_CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip

HASHES = [leaf_hash(d) for d in CT_LEAVES]


def all_nodes(hashes: list[bytes]) -> dict[NodeID, bytes]:
    """Every perfect subtree hash of a tree, as the store keeps them."""
    nodes: dict[NodeID, bytes] = {}
    level, width = 0, 1
    while width <= len(hashes):
        for index in range(len(hashes) // width):
            nodes[NodeID(level, index)] = naive_merkle.mth(
                hashes[index * width : (index + 1) * width]
            )
        level, width = level + 1, width * 2
    return nodes


def test_tree_heads_match_the_published_roots() -> None:
    assert root_of([]) == EMPTY_ROOT
    for size, expected in enumerate(CT_ROOTS):
        assert root_of(HASHES[:size]).hex() == expected
        assert resolve(plan_root(size), all_nodes(HASHES[:size]))[:1] == (
            [bytes.fromhex(expected)] if size else []
        )


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_inclusion_proofs_match_the_published_vectors(
    index: int, size: int, expected: list[str]
) -> None:
    proof = resolve(plan_inclusion(index, size), all_nodes(HASHES[:size]))
    assert [h.hex() for h in proof] == expected
    verify_inclusion(index, size, HASHES[index], proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "expected"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_published_vectors(
    old: int, new: int, expected: list[str]
) -> None:
    proof = resolve(plan_consistency(old, new), all_nodes(HASHES[:new]))
    assert [h.hex() for h in proof] == expected
    verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new]), proof)


leaves_strategy = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaves=leaves_strategy, data=st.data())
def test_inclusion_agrees_with_the_rfc_definition(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [naive_merkle.leaf(d) for d in leaves]
    size = data.draw(st.integers(1, len(hashes)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    nodes = all_nodes(hashes)
    proof = resolve(plan_inclusion(index, size), nodes)
    assert proof == naive_merkle.path(index, hashes[:size])
    root = naive_merkle.mth(hashes[:size])
    assert resolve(plan_root(size), nodes) == [root]
    assert root_of(hashes[:size]) == root
    verify_inclusion(index, size, hashes[index], proof, root)


@settings(max_examples=150, deadline=None)
@given(leaves=leaves_strategy, data=st.data())
def test_consistency_agrees_with_the_rfc_definition(
    leaves: list[bytes], data: st.DataObject
) -> None:
    hashes = [naive_merkle.leaf(d) for d in leaves]
    new = data.draw(st.integers(1, len(hashes)), label="new")
    old = data.draw(st.integers(0, new), label="old")
    proof = resolve(plan_consistency(old, new), all_nodes(hashes))
    assert proof == naive_merkle.proof(old, hashes[:new])
    verify_consistency(
        old, new, naive_merkle.mth(hashes[:old]), naive_merkle.mth(hashes[:new]), proof
    )


@settings(max_examples=100, deadline=None)
@given(
    leaves=st.lists(st.binary(max_size=4), min_size=2, max_size=40, unique=True),
    data=st.data(),
)
def test_any_flipped_bit_in_an_inclusion_proof_is_rejected(
    leaves: list[bytes], data: st.DataObject
) -> None:
    hashes = [naive_merkle.leaf(d) for d in leaves]
    index = data.draw(st.integers(0, len(hashes) - 1))
    proof = naive_merkle.path(index, hashes)
    root = naive_merkle.mth(hashes)
    if not proof:
        return
    which = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = list(proof)
    bad[which] = bytes(
        b ^ (1 << (bit % 8)) if i == bit // 8 else b for i, b in enumerate(bad[which])
    )
    with pytest.raises(ProofVerificationError):
        verify_inclusion(index, len(hashes), hashes[index], bad, root)
    # a proof for the right leaf cannot be moved to another position either
    other = (index + 1) % len(hashes)
    with pytest.raises(ProofVerificationError):
        verify_inclusion(other, len(hashes), hashes[index], proof, root)


def test_truncated_and_padded_proofs_are_rejected() -> None:
    proof = naive_merkle.path(5, HASHES)
    root = naive_merkle.mth(HASHES)
    with pytest.raises(ProofVerificationError, match="shorter"):
        verify_inclusion(5, 8, HASHES[5], proof[:-1], root)
    with pytest.raises(ProofVerificationError, match="longer"):
        verify_inclusion(5, 8, HASHES[5], [*proof, proof[0]], root)
    with pytest.raises(ProofVerificationError, match="outside"):
        root_from_inclusion(8, 8, HASHES[5], proof)


def test_consistency_with_a_forked_history_is_rejected() -> None:
    forked = [*HASHES[:5], naive_merkle.leaf(b"rewritten"), *HASHES[6:]]
    honest_old_root = naive_merkle.mth(HASHES[:6])
    forked_new_root = naive_merkle.mth(forked)
    proof = naive_merkle.proof(6, forked)
    with pytest.raises(ProofVerificationError, match="old root"):
        verify_consistency(6, 8, honest_old_root, forked_new_root, proof)
    with pytest.raises(ProofVerificationError, match="fork"):
        verify_consistency(8, 8, naive_merkle.mth(HASHES), forked_new_root, [])


def test_perfect_cover_splits_ranges_into_aligned_subtrees() -> None:
    assert perfect_cover(0, 7) == [NodeID(2, 0), NodeID(1, 2), NodeID(0, 6)]
    assert perfect_cover(4, 8) == [NodeID(2, 1)]
    assert perfect_cover(6, 13) == [NodeID(1, 3), NodeID(2, 2), NodeID(0, 12)]
    for node in perfect_cover(6, 13):
        assert node.start % (1 << node.level) == 0


def test_proof_json_round_trips_and_rejects_garbage() -> None:
    proof = InclusionProof(5, 8, tuple(bytes.fromhex(h) for h in CT_INCLUSION[1][2]))
    assert InclusionProof.from_json(proof.to_json()) == proof
    cons = ConsistencyProof(2, 5, tuple(bytes.fromhex(h) for h in CT_CONSISTENCY[2][2]))
    assert ConsistencyProof.from_json(cons.to_json()) == cons
    with pytest.raises(ProofError, match="outside"):
        InclusionProof.from_json({"logIndex": 8, "treeSize": 8, "hashes": []})
    with pytest.raises(ProofError, match="base64"):
        InclusionProof.from_json({"logIndex": 0, "treeSize": 8, "hashes": ["%%"]})
    with pytest.raises(ProofError, match="32"):
        ConsistencyProof.from_json({"oldSize": 1, "newSize": 2, "hashes": ["AAAA"]})
    with pytest.raises(ProofError, match="128"):
        ConsistencyProof.from_json({"oldSize": 1, "newSize": 2, "hashes": ["A" * 43 + "="] * 129})
