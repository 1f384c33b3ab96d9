"""The HTTP service: OCI Distribution API under /v2, operations endpoints, middleware."""
