"""Zoll's transparency log: an append-only RFC 6962/9162 Merkle tree with signed checkpoints.

Pure parts (hashing, proofs, signed notes, checkpoints, entry encoding) work offline so an
auditor can verify without Zoll; `attest.tlog.store` keeps the tree in PostgreSQL.
"""
