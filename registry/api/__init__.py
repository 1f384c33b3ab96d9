"""The auditor and operator API under /api/v1, described by a generated OpenAPI document."""
