"""Embedded backends for the zero-configuration default: PostgreSQL and SeaweedFS S3."""
