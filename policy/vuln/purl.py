"""Just enough Package URL (purl) and CPE handling to match VEX products to packages."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from policy.packages import Package

_CASE_INSENSITIVE = {"deb", "apk", "npm", "pypi", "github", "bitbucket", "golang", "rpm"}


@dataclass(frozen=True, slots=True)
class Purl:
    type: str
    namespace: str
    name: str
    version: str | None
    qualifiers: tuple[tuple[str, str], ...]


def parse_purl(text: str) -> Purl | None:
    """Parse `pkg:type/namespace/name@version?qualifiers#subpath`; None if it is not one."""
    if not text.startswith("pkg:"):
        return None
    rest = text[4:].lstrip("/")
    rest = rest.split("#", 1)[0]
    rest, _, query = rest.partition("?")
    qualifiers = []
    for pair in query.split("&") if query else ():
        key, _, value = pair.partition("=")
        if key and value:
            qualifiers.append((key.lower(), unquote(value)))
    path, at, version = rest.rpartition("@") if "@" in rest.rsplit("/", 1)[-1] else (rest, "", "")
    parts = [unquote(p) for p in path.split("/") if p]
    if len(parts) < 2:
        return None
    kind = parts[0].lower()
    name, namespace = parts[-1], "/".join(parts[1:-1])
    if kind in _CASE_INSENSITIVE or kind == "pypi":
        name, namespace = name.lower(), namespace.lower()
    if kind == "pypi":
        name = name.replace("_", "-")
    return Purl(kind, namespace, name, unquote(version) if at else None, tuple(sorted(qualifiers)))


def purl_matches(reference: str, package: Package) -> bool:
    """Does a VEX product purl name this package?

    A purl without version covers every version; qualifiers in the reference must
    agree with the package's. For distribution packages the source package name is
    accepted too, since advisories and VEX statements are often written per source.
    """
    want, have = parse_purl(reference), parse_purl(package.purl)
    if want is None or have is None:
        return False
    names = {have.name}
    if package.source_name and want.type in ("deb", "apk", "rpm"):
        names.add(package.source_name.lower())
    if want.type != have.type or want.namespace != have.namespace or want.name not in names:
        return False
    if want.version is not None and want.version != (have.version or package.version):
        return False
    have_q = dict(have.qualifiers)
    return all(have_q.get(k) == v for k, v in want.qualifiers)


def cpe_matches(reference: str, package: Package) -> bool:
    """Simple CPE 2.2/2.3 matching: the product field names the package, version agrees."""
    if reference.startswith("cpe:2.3:"):
        fields = reference.split(":")
        product, version = (fields[4], fields[5]) if len(fields) > 5 else ("", "")
    elif reference.startswith("cpe:/"):
        fields = reference[5:].split(":")
        product = fields[2] if len(fields) > 2 else ""
        version = fields[3] if len(fields) > 3 else "*"
    else:
        return False
    names = {package.name.lower(), package.advisory_name.lower()}
    if product.replace("\\", "").lower() not in names:
        return False
    return version in ("*", "-", "") or version.replace("\\", "") == package.version


def product_matches(reference: str, package: Package) -> bool:
    if reference.startswith("pkg:"):
        return purl_matches(reference, package)
    return cpe_matches(reference, package)
