"""Bundle verification: Zoll's `attest.bundle.verify_bundle` side by side with its peer,
sigstore-python's own `Verifier`, on the same real bundles, offline.

    .venv/bin/python bench/verify_attest.py [ROUNDS]

Prints per-bundle times and the ratio Zoll / sigstore-python (the cost of the stable
reason codes, the signature pre-check and identity recording on top of the peer).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sigstore.models import Bundle
from sigstore.verify import policy

from attest.bundle import verify_bundle
from attest.identity import KeylessIdentity, Signers
from attest.trustroot import TrustMaterial

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sigstore"
CASES = [
    ("bundle.txt", "a@tny.town"),
    ("bundle_v3.txt", "william@yossarian.net"),
    ("staging-rekor-v2.txt", "jku@goto.fi"),
]
ISSUER = "https://github.com/login/oauth"


def timed(fn: object, rounds: int) -> float:
    assert callable(fn)
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds


def main(rounds: int) -> None:
    trust = TrustMaterial.staging()
    verifier = trust.roots[0].verifier
    print(f"{'bundle':<24}{'zoll ms':>10}{'sigstore ms':>14}{'ratio':>8}")
    for name, identity in CASES:
        artifact = (FIXTURES / name).read_bytes()
        raw = next(FIXTURES.glob(f"{name}.sigstore*")).read_bytes()
        signers = Signers((KeylessIdentity(ISSUER, identity),))
        peer_policy = policy.Identity(identity=identity, issuer=ISSUER)

        def ours(raw: bytes = raw, artifact: bytes = artifact, signers: Signers = signers) -> None:
            verify_bundle(raw, artifact=artifact, signers=signers, trust=trust)

        def peer(raw: bytes = raw, artifact: bytes = artifact, pol: object = peer_policy) -> None:
            verifier.verify_artifact(artifact, Bundle.from_json(raw), pol)  # type: ignore[arg-type]

        ours()
        peer()
        a, b = timed(ours, rounds), timed(peer, rounds)
        print(f"{name:<24}{a * 1000:>10.2f}{b * 1000:>14.2f}{a / b:>8.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
