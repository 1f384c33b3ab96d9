"""Handlers of the OCI Distribution API, one module per resource."""
