"""The shared OCI vocabulary: digests, media types, names, manifests, content readers.

Nothing here imports the rest of the project, so `attest` and `policy` can depend on it.
"""
