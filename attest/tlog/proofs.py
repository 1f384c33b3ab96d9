"""Inclusion and consistency proofs (RFC 9162 §2.1.3–2.1.4): planning and verification.

Proof *generation* never needs the leaves: every proof element is the hash of a range
that splits into perfect, aligned subtrees (`NodeID`s), and the store keeps the hash of
every perfect subtree once it is complete. `plan_*` says which nodes a proof needs;
`resolve` folds their hashes into the proof. Verification is pure and offline.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attest.tlog.hashing import EMPTY_ROOT, HASH_SIZE, largest_power_of_two_below, node_hash

MAX_PROOF_HASHES = 128
"""A proof for any tree below 2**64 leaves has at most 2*64 hashes; more is an attack."""


class ProofError(ValueError):
    """A proof is malformed or asks for something the tree cannot contain."""


class ProofVerificationError(ValueError):
    """A well-formed proof does not prove what it claims; the message says why."""


@dataclass(frozen=True, slots=True, order=True)
class NodeID:
    """The perfect subtree covering leaves [index * 2**level, (index + 1) * 2**level)."""

    level: int
    index: int

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


Plan = list[list[NodeID]]
"""One entry per proof hash: the perfect subtrees whose right-to-left fold is that hash."""


def perfect_cover(start: int, end: int) -> list[NodeID]:
    """Split [start, end) into the largest aligned perfect subtrees, left to right."""
    if not 0 <= start <= end:
        raise ProofError(f"invalid range [{start}, {end})")
    nodes = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << level) > end:
            level -= 1
        nodes.append(NodeID(level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its perfect subtrees (left to right): fold from the right."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def plan_root(size: int) -> Plan:
    """The nodes whose fold is the tree head at `size`."""
    return [perfect_cover(0, size)] if size else []


def _path(m: int, a: int, b: int) -> list[tuple[int, int]]:
    if b - a == 1:
        return []
    k = largest_power_of_two_below(b - a)
    if m - a < k:
        return [*_path(m, a, a + k), (a + k, b)]
    return [*_path(m, a + k, b), (a, a + k)]


def plan_inclusion(index: int, size: int) -> Plan:
    """PATH(index, D[0:size]) as node plans (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    return [perfect_cover(a, b) for a, b in _path(index, 0, size)]


def _subproof(m: int, a: int, b: int, whole: bool) -> list[tuple[int, int]]:
    if m == b:
        return [] if whole else [(a, b)]
    k = largest_power_of_two_below(b - a)
    if m - a <= k:
        return [*_subproof(m, a, a + k, whole), (a + k, b)]
    return [*_subproof(m, a + k, b, False), (a, a + k)]


def plan_consistency(old_size: int, new_size: int) -> Plan:
    """PROOF(old_size, D[0:new_size]) as node plans (RFC 9162 §2.1.4.1)."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    return [perfect_cover(a, b) for a, b in _subproof(old_size, 0, new_size, True)]


def needed_nodes(plan: Plan) -> set[NodeID]:
    return {node for element in plan for node in element}


def resolve(plan: Plan, hashes: Mapping[NodeID, bytes]) -> list[bytes]:
    """Proof hashes from node hashes; a missing node is a store bug, reported clearly."""
    out = []
    for element in plan:
        missing = [n for n in element if n not in hashes]
        if missing:
            raise ProofError(f"the store has no hash for subtree(s) {missing}")
        out.append(fold([hashes[n] for n in element]))
    return out


def _check_hashes(hashes: Iterable[bytes], what: str) -> list[bytes]:
    out = list(hashes)
    if len(out) > MAX_PROOF_HASHES:
        raise ProofError(f"{what} has {len(out)} hashes; no valid proof has more than 128")
    for h in out:
        if len(h) != HASH_SIZE:
            raise ProofError(f"{what} contains a hash of {len(h)} bytes, not {HASH_SIZE}")
    return out


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2), to compare with a head."""
    if not 0 <= index < size:
        raise ProofVerificationError(f"leaf index {index} is outside a tree of size {size}")
    path = _check_hashes(proof, "inclusion proof")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofVerificationError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofVerificationError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofVerificationError unless `leaf` is at `index` in the tree with head `root`."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofVerificationError(
            f"inclusion proof for leaf {index} does not lead to the root of size {size}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofVerificationError unless the tree at new_size extends the one at old_size."""
    path = _check_hashes(proof, "consistency proof")
    if not 0 <= old_size <= new_size:
        raise ProofVerificationError(
            f"a tree of size {new_size} cannot extend one of size {old_size}"
        )
    if old_size == new_size:
        if path:
            raise ProofVerificationError("trees of equal size need an empty proof")
        if old_root != new_root:
            raise ProofVerificationError(f"two different roots for tree size {old_size}: fork")
        return
    if old_size == 0:
        if path:
            raise ProofVerificationError("consistency with the empty tree needs an empty proof")
        if old_root != EMPTY_ROOT:
            raise ProofVerificationError("the old root is not the empty tree's root")
        return
    if not path:
        raise ProofVerificationError("consistency proof is empty")
    if old_size & (old_size - 1) == 0:
        path = [old_root, *path]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofVerificationError("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofVerificationError("consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise ProofVerificationError(
            f"the proof does not reproduce the old root of size {old_size} (a fork, or a bad proof)"
        )
    if sr != new_root:
        raise ProofVerificationError(
            f"the proof does not reproduce the new root of size {new_size}"
        )


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def _unb64_list(value: object, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise ProofError(f"{what} must be a list of base64 hashes")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ProofError(f"{what}[{i}] must be a base64 string")
        try:
            out.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ProofError(f"{what}[{i}] is not valid base64") from exc
    return _check_hashes(out, what)


def _int_field(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"{key} must be a non-negative integer")
    return value


@dataclass(frozen=True)
class InclusionProof:
    """Proof that the leaf at `index` is in the tree of `tree_size` leaves."""

    index: int
    tree_size: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "logIndex": self.index,
            "treeSize": self.tree_size,
            "hashes": [_b64(h) for h in self.hashes],
        }

    @classmethod
    def from_json(cls, obj: object) -> InclusionProof:
        if not isinstance(obj, dict):
            raise ProofError("inclusion proof must be a JSON object")
        index, size = _int_field(obj, "logIndex"), _int_field(obj, "treeSize")
        if index >= size:
            raise ProofError(f"logIndex {index} is outside treeSize {size}")
        return cls(index, size, tuple(_unb64_list(obj.get("hashes"), "hashes")))


@dataclass(frozen=True)
class ConsistencyProof:
    """Proof that the tree of `new_size` leaves extends the tree of `old_size` leaves."""

    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "oldSize": self.old_size,
            "newSize": self.new_size,
            "hashes": [_b64(h) for h in self.hashes],
        }

    @classmethod
    def from_json(cls, obj: object) -> ConsistencyProof:
        if not isinstance(obj, dict):
            raise ProofError("consistency proof must be a JSON object")
        old, new = _int_field(obj, "oldSize"), _int_field(obj, "newSize")
        if old > new:
            raise ProofError(f"oldSize {old} is larger than newSize {new}")
        return cls(old, new, tuple(_unb64_list(obj.get("hashes"), "hashes")))
