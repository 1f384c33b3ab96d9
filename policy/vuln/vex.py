"""VEX statements from CSAF 2.0 VEX and OpenVEX documents, applied to findings.

A statement says, for a vulnerability and a set of products (purls, CPEs), whether
they are affected. Zoll matches statement products to packages by purl (CPE where
simple) and vulnerabilities by id or alias; the latest statement wins, and its
status and justification are written onto the finding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from policy.packages import VulnFinding
from policy.vuln.errors import VexFormatError
from policy.vuln.osv import parse_time
from policy.vuln.purl import product_matches

VexStatus = Literal["not_affected", "fixed", "under_investigation", "affected"]
MAX_VEX_BYTES = 64 * 1024 * 1024

_CSAF_STATUS: dict[str, VexStatus] = {
    "known_not_affected": "not_affected",
    "fixed": "fixed",
    "first_fixed": "fixed",
    "known_affected": "affected",
    "first_affected": "affected",
    "last_affected": "affected",
    "under_investigation": "under_investigation",
}
_OPENVEX_STATUS: dict[str, VexStatus] = {
    "not_affected": "not_affected",
    "affected": "affected",
    "fixed": "fixed",
    "under_investigation": "under_investigation",
}


@dataclass(frozen=True, slots=True)
class VexStatement:
    vulnerability: str
    aliases: tuple[str, ...]
    products: tuple[str, ...]  # purls or CPEs
    status: VexStatus
    justification: str | None
    timestamp: datetime | None
    document: str

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.vulnerability, *self.aliases)


@dataclass(frozen=True, slots=True)
class VexDocument:
    id: str
    format: Literal["csaf", "openvex"]
    timestamp: datetime | None
    statements: tuple[VexStatement, ...]
    content_hash: str


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise VexFormatError(f"{what} must be an object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise VexFormatError(f"{what} must be a list")
    return value


def _time(value: object, what: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_time(value, what, "VEX")
    except ValueError as exc:
        raise VexFormatError(str(exc)) from None


def _helper_ids(product: dict[str, Any]) -> list[str]:
    helper = product.get("product_identification_helper")
    if not isinstance(helper, dict):
        return []
    return [v for k in ("purl", "cpe") if isinstance(v := helper.get(k), str) and v]


def _csaf_products(tree: dict[str, Any]) -> dict[str, list[str]]:
    """product_id → identifiers, from branches, full_product_names and relationships."""
    found: dict[str, list[str]] = {}

    def add(product: object) -> None:
        if isinstance(product, dict) and isinstance(pid := product.get("product_id"), str):
            found.setdefault(pid, []).extend(_helper_ids(product))

    stack = list(_list(tree.get("branches"), "product_tree.branches"))
    while stack:
        branch = _obj(stack.pop(), "branch")
        add(branch.get("product"))
        stack.extend(_list(branch.get("branches"), "branch.branches"))
    for product in _list(tree.get("full_product_names"), "product_tree.full_product_names"):
        add(product)
    for rel in _list(tree.get("relationships"), "product_tree.relationships"):
        rel = _obj(rel, "relationship")
        full = rel.get("full_product_name")
        add(full)
        if isinstance(full, dict) and isinstance(pid := full.get("product_id"), str):
            component = rel.get("product_reference")
            if not found.get(pid) and isinstance(component, str):
                found[pid] = list(found.get(component, []))
    return found


def _csaf_justification(vuln: dict[str, Any], pid: str, groups: dict[str, set[str]]) -> str | None:
    for flag in _list(vuln.get("flags"), "flags"):
        if not isinstance(flag, dict):
            continue
        members = set(_list(flag.get("product_ids"), "flag.product_ids"))
        for gid in _list(flag.get("group_ids"), "flag.group_ids"):
            members |= groups.get(gid, set())
        if (not members or pid in members) and isinstance(flag.get("label"), str):
            return str(flag["label"])
    for threat in _list(vuln.get("threats"), "threats"):
        if (
            isinstance(threat, dict)
            and threat.get("category") == "impact"
            and pid in _list(threat.get("product_ids"), "threat.product_ids")
        ):
            return str(threat.get("details", "")) or None
    return None


def parse_csaf(doc: dict[str, Any], content_hash: str) -> VexDocument:
    document = _obj(doc.get("document"), "document")
    tracking = _obj(document.get("tracking", {}), "document.tracking")
    doc_id = str(tracking.get("id") or content_hash)
    stamp = _time(tracking.get("current_release_date"), "tracking.current_release_date")
    products = _csaf_products(_obj(doc.get("product_tree", {}), "product_tree"))
    groups: dict[str, set[str]] = {}
    for group in _list(
        _obj(doc.get("product_tree", {}), "product_tree").get("product_groups"), "product_groups"
    ):
        if isinstance(group, dict) and isinstance(group.get("group_id"), str):
            groups[group["group_id"]] = set(_list(group.get("product_ids"), "group.product_ids"))
    statements = []
    for i, vuln in enumerate(_list(doc.get("vulnerabilities"), "vulnerabilities")):
        vuln = _obj(vuln, f"vulnerabilities[{i}]")
        ids = [vuln["cve"]] if isinstance(vuln.get("cve"), str) else []
        ids += [
            entry["text"]
            for entry in _list(vuln.get("ids"), "ids")
            if isinstance(entry, dict) and isinstance(entry.get("text"), str)
        ]
        if not ids:
            raise VexFormatError(f"vulnerabilities[{i}] has neither cve nor ids")
        status_map = _obj(vuln.get("product_status", {}), f"vulnerabilities[{i}].product_status")
        for category, pids in status_map.items():
            status = _CSAF_STATUS.get(category)
            if status is None:
                continue  # "recommended" names products, it states nothing
            for pid in _list(pids, f"product_status.{category}"):
                refs = products.get(pid, [])
                if not refs:
                    continue
                statements.append(
                    VexStatement(
                        vulnerability=ids[0],
                        aliases=tuple(ids[1:]),
                        products=tuple(dict.fromkeys(refs)),
                        status=status,
                        justification=_csaf_justification(vuln, pid, groups)
                        if status == "not_affected"
                        else None,
                        timestamp=stamp,
                        document=doc_id,
                    )
                )
    return VexDocument(doc_id, "csaf", stamp, tuple(statements), content_hash)


def _openvex_ids(product: object) -> list[str]:
    if isinstance(product, str):
        return [product]
    if not isinstance(product, dict):
        return []
    refs = [product["@id"]] if isinstance(product.get("@id"), str) else []
    identifiers = product.get("identifiers")
    if isinstance(identifiers, dict):
        refs += [v for v in identifiers.values() if isinstance(v, str)]
    return refs


def parse_openvex(doc: dict[str, Any], content_hash: str) -> VexDocument:
    doc_id = str(doc.get("@id") or content_hash)
    stamp = _time(doc.get("timestamp"), "timestamp")
    statements = []
    for i, st in enumerate(_list(doc.get("statements"), "statements")):
        st = _obj(st, f"statements[{i}]")
        vuln = st.get("vulnerability")
        if isinstance(vuln, str):
            name, aliases = vuln, []
        elif isinstance(vuln, dict) and isinstance(vuln.get("name"), str):
            name = vuln["name"]
            aliases = [a for a in _list(vuln.get("aliases"), "aliases") if isinstance(a, str)]
        else:
            raise VexFormatError(f"statements[{i}].vulnerability is missing")
        status = _OPENVEX_STATUS.get(str(st.get("status")))
        if status is None:
            raise VexFormatError(
                f"statements[{i}].status {st.get('status')!r} is not an OpenVEX status"
            )
        refs: list[str] = []
        for product in _list(st.get("products"), f"statements[{i}].products"):
            subs = product.get("subcomponents") if isinstance(product, dict) else None
            if isinstance(subs, list) and subs:
                for sub in subs:
                    refs += _openvex_ids(sub)
            else:
                refs += _openvex_ids(product)
        justification = st.get("justification") or st.get("impact_statement")
        statements.append(
            VexStatement(
                vulnerability=name,
                aliases=tuple(aliases),
                products=tuple(dict.fromkeys(refs)),
                status=status,
                justification=str(justification) if justification else None,
                timestamp=_time(st.get("timestamp"), f"statements[{i}].timestamp") or stamp,
                document=doc_id,
            )
        )
    return VexDocument(doc_id, "openvex", stamp, tuple(statements), content_hash)


def parse_vex(raw: bytes) -> VexDocument:
    """Detect the format (CSAF 2.0 or OpenVEX) and parse the document."""
    content_hash = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise VexFormatError(f"not valid JSON: {exc}") from None
    doc = _obj(data, "VEX document")
    context = doc.get("@context")
    if isinstance(context, str) and "openvex" in context:
        return parse_openvex(doc, content_hash)
    document = doc.get("document")
    if isinstance(document, dict) and str(document.get("csaf_version", "")).startswith("2."):
        return parse_csaf(doc, content_hash)
    raise VexFormatError(
        "neither an OpenVEX (@context) nor a CSAF 2.x (document.csaf_version) document"
    )


def load_vex(path: str | Path) -> VexDocument:
    """Read and parse a VEX file of bounded size (blocking: call in a thread)."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_VEX_BYTES:
            raise VexFormatError(f"{file}: larger than {MAX_VEX_BYTES} bytes")
        raw = file.read_bytes()
    except OSError as exc:
        raise VexFormatError(f"{file}: unreadable ({exc.strerror or exc})") from None
    try:
        return parse_vex(raw)
    except VexFormatError as exc:
        raise VexFormatError(f"{file}: {exc}") from None


def apply_vex(
    findings: Sequence[VulnFinding], statements: Iterable[VexStatement]
) -> list[VulnFinding]:
    """Write the latest matching statement's status onto each finding.

    "Latest" is the newest timestamp; among equal (or missing) timestamps the statement
    given last wins, so a later document overrides an earlier one.
    """
    by_id: dict[str, list[tuple[int, VexStatement]]] = {}
    for position, statement in enumerate(statements):
        for vid in statement.ids:
            by_id.setdefault(vid.upper(), []).append((position, statement))
    out = []
    for finding in findings:
        candidates = [
            (s.timestamp.timestamp() if s.timestamp else float("-inf"), position, s)
            for vid in dict.fromkeys(v.upper() for v in (finding.id, *finding.aliases))
            for position, s in by_id.get(vid, ())
            if any(product_matches(ref, finding.package) for ref in s.products)
        ]
        if not candidates:
            out.append(finding)
            continue
        latest = max(candidates, key=lambda c: (c[0], c[1]))[2]
        out.append(
            dataclasses.replace(
                finding, vex_status=latest.status, vex_justification=latest.justification
            )
        )
    return out
