"""Mirroring: copy images (with their signatures, attestations and SBOMs) from upstream
registries into Zoll, declaratively (mirror sets) or on demand (pull-through)."""
