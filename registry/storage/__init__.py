"""Blob storage drivers behind one interface (S3 and filesystem)."""
