"""PostgreSQL metadata: versioned migrations and the queries the registry runs."""
