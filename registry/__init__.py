"""Zoll's registry service: OCI Distribution API, storage, metadata, pipeline, CLI."""

__version__ = "0.1.0"
