"""The pipeline: quarantine → verify → scan → attest → admit, as durable jobs."""
