"""sigstore-python's private API is used in one module only, for the major version that is
pinned and tested; an upgrade that moves it fails here first."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from sigstore.models import Bundle

from attest.sigstore_private import (
    TESTED_MAJOR,
    bundle_envelope,
    bundle_log_entry,
    bundle_message_signature,
    embedded_trusted_root,
)
from attest.trustroot import TrustMaterial
from tests.attest_verify.conftest import SIGSTORE

ROOT = Path(__file__).resolve().parents[2]
ISOLATED = ROOT / "attest" / "sigstore_private.py"


def private_uses(path: Path) -> list[str]:
    """Imports of `sigstore._…`, the string `sigstore._…` (resources), and `._inner`
    read from anything but `self`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sigstore._"):
            found.append(f"{path.name}:{node.lineno} imports {node.module}")
        elif isinstance(node, ast.Import) and any(
            a.name.startswith("sigstore._") for a in node.names
        ):
            found.append(f"{path.name}:{node.lineno} imports a private sigstore module")
        elif isinstance(node, ast.Constant) and str(node.value).startswith("sigstore._"):
            found.append(f"{path.name}:{node.lineno} names {node.value}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in ("_inner", "_dsse_envelope")
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        ):
            found.append(f"{path.name}:{node.lineno} reads .{node.attr}")
    return found


def test_private_sigstore_uses_live_in_one_module() -> None:
    sources = [
        p
        for folder in ("attest", "registry", "policy", "tests", "bench")
        for p in (ROOT / folder).rglob("*.py")
        if p != ISOLATED and p != Path(__file__).resolve()
    ]
    assert [use for p in sources for use in private_uses(p)] == []
    assert private_uses(ISOLATED)  # the module really is where they went


def test_the_tested_major_version_is_pinned_and_installed() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [pin] = [d for d in project["dependencies"] if re.match(r"sigstore\b(?!-)", d)]
    assert f"<{TESTED_MAJOR + 1}" in pin and f">={TESTED_MAJOR}" in pin, pin
    assert int(version("sigstore").split(".")[0]) == TESTED_MAJOR


def test_the_private_uses_work_on_real_material() -> None:
    for instance in (
        "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
        "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
    ):
        raw = embedded_trusted_root(instance)
        assert json.loads(raw)["mediaType"].startswith("application/vnd.dev.sigstore.trustedroot")
        assert TrustMaterial.from_bytes(raw).roots
    dsse = Bundle.from_json((SIGSTORE / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_bytes())
    envelope = bundle_envelope(dsse)
    assert envelope is not None and envelope.payload_type == "application/vnd.in-toto+json"
    assert envelope.signatures and bundle_message_signature(dsse) is None
    message = Bundle.from_json((SIGSTORE / "bundle_v3.txt.sigstore").read_bytes())
    assert bundle_envelope(message) is None
    signature = bundle_message_signature(message)
    assert signature is not None and signature.signature
    entry = bundle_log_entry(message)
    assert entry.log_index > 0 and len(entry.log_id) == 32
