"""The right edge of a growing tree: what an append needs to know, and what it creates.

For a tree of `size` leaves the frontier is the list of perfect subtrees covering
[0, size) (one per set bit of `size`). Appending a leaf merges equal-height subtrees
like a binary counter; every merge completes a node that the store keeps forever.
So an append touches O(log n) stored hashes, never the leaves.
"""

from __future__ import annotations

from collections.abc import Sequence

from attest.tlog.hashing import node_hash
from attest.tlog.proofs import NodeID, fold, perfect_cover


def frontier_ids(size: int) -> list[NodeID]:
    return perfect_cover(0, size)


class CompactRange:
    """Frontier hashes of a tree, appendable in memory."""

    def __init__(self, size: int, frontier: Sequence[tuple[NodeID, bytes]]) -> None:
        expected = frontier_ids(size)
        if [node for node, _ in frontier] != expected:
            raise ValueError(f"frontier for size {size} must be exactly {expected}")
        self.size = size
        self._stack = list(frontier)

    def append(self, leaf: bytes) -> list[tuple[NodeID, bytes]]:
        """Add a leaf hash; return the internal nodes (level ≥ 1) it completes."""
        created = []
        node, value = NodeID(0, self.size), leaf
        while self._stack and self._stack[-1][0].level == node.level:
            left, left_hash = self._stack.pop()
            node, value = NodeID(node.level + 1, left.index // 2), node_hash(left_hash, value)
            created.append((node, value))
        self._stack.append((node, value))
        self.size += 1
        return created

    def frontier(self) -> list[tuple[NodeID, bytes]]:
        """The perfect subtrees covering [0, size): what to keep to resume appending."""
        return list(self._stack)

    def root(self) -> bytes:
        return fold([value for _, value in self._stack])
