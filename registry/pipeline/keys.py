"""The pipeline's stages and the keys of their jobs: light, so that commands which only
follow the service's work (`zoll mirror apply --wait`) can name the jobs they wait for."""

from __future__ import annotations

STAGES = ("verify", "scan", "rebuild", "attest", "admit")


def job_key(stage: str, repository: str, digest: str) -> str:
    return f"{stage}:{repository}@{digest}"
