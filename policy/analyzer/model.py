"""What an image analysis produces: config, final-tree facts, packages, findings.

Everything here is plain data with `to_json`/`from_json`, so the registry can store an
analysis and an auditor can re-evaluate it against another catalog without the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from policy.packages import Package

FindingKind = Literal[
    "limit",  # a bound from AnalysisLimits tripped; analysis incomplete
    "malformed",  # a layer or config is not what its media type says
    "traversal",  # an entry name escapes the root (absolute, `..`)
    "link-escape",  # a hard or symbolic link leads outside the root or through a link
    "corrupt",  # content did not match its digest
    "unsupported",  # a layer media type or database format we cannot read
    "secret",  # a credential in a file, the environment, labels or history
]


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the analyzer noticed while reading; evidence for the criteria."""

    kind: FindingKind
    message: str
    layer: int | None = None
    path: str | None = None
    detail: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(
            kind=data["kind"],
            message=data["message"],
            layer=data.get("layer"),
            path=data.get("path"),
            detail=dict(data.get("detail") or {}),
        )


@dataclass(frozen=True, slots=True)
class FileFact:
    """One path of the final tree worth naming in evidence."""

    path: str
    mode: int
    uid: int
    gid: int
    size: int
    layer: int

    def describe(self) -> str:
        return f"{self.path} (mode {self.mode:o}, uid {self.uid}, layer {self.layer})"


@dataclass(frozen=True, slots=True)
class User:
    """An /etc/passwd entry."""

    name: str
    uid: int
    gid: int
    home: str = ""
    shell: str = ""


@dataclass(frozen=True, slots=True)
class OsRelease:
    """The distribution of the final tree (/etc/os-release and friends)."""

    id: str
    version_id: str = ""
    version_codename: str = ""
    pretty_name: str = ""
    id_like: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of the OCI image config the criteria look at."""

    user: str = ""
    env: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()
    healthcheck: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    history: tuple[str, ...] = ()
    """`created_by` of every history step, in build order."""
    created: str | None = None
    os: str = ""
    architecture: str = ""
    diff_ids: tuple[str, ...] = ()


@dataclass(slots=True)
class LayerInfo:
    """One layer as the analyzer read it."""

    index: int
    digest: str
    media_type: str
    compressed_size: int
    uncompressed_size: int = 0
    entries: int = 0
    complete: bool = False


@dataclass(slots=True)
class TreeSummary:
    """Facts about the final file tree (after whiteouts), bounded in size."""

    files: int = 0
    directories: int = 0
    symlinks: int = 0
    other: int = 0
    total_file_bytes: int = 0
    setuid: list[FileFact] = field(default_factory=list)
    setgid: list[FileFact] = field(default_factory=list)
    capabilities: list[FileFact] = field(default_factory=list)
    world_writable: list[FileFact] = field(default_factory=list)
    package_caches: dict[str, int] = field(default_factory=dict)
    """Cache directory → bytes of files in it (apt archives/lists, apk, pip, npm, …)."""
    package_managers: list[str] = field(default_factory=list)
    remote_access: list[str] = field(default_factory=list)
    init_systems: list[str] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    has_passwd: bool = False
    os: OsRelease | None = None
    truncated: list[str] = field(default_factory=list)
    """Names of lists above that hit `max_listed`."""


@dataclass(slots=True)
class ImageAnalysis:
    """Everything `analyze_image` learnt about one image manifest."""

    manifest_digest: str
    config_digest: str
    config: ImageConfig
    layers: list[LayerInfo]
    tree: TreeSummary
    packages: list[Package]
    findings: list[Finding]
    complete: bool
    analyzer_version: str
    seconds: float = 0.0
    annotations: dict[str, str] = field(default_factory=dict)
    """The image manifest's annotations (OCI labels may live here instead of the config)."""

    @property
    def compressed_size(self) -> int:
        return sum(layer.compressed_size for layer in self.layers)

    @property
    def uncompressed_size(self) -> int:
        return sum(layer.uncompressed_size for layer in self.layers)

    def findings_of(self, *kinds: FindingKind) -> list[Finding]:
        return [f for f in self.findings if f.kind in kinds]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["packages"] = [asdict(p) for p in self.packages]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageAnalysis:
        return analysis_from_json(data)


def _facts(items: list[dict[str, Any]]) -> list[FileFact]:
    return [FileFact(**item) for item in items]


def _tuple_fields(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: tuple(v) if k in names and v is not None else v for k, v in data.items()}


def analysis_from_json(data: dict[str, Any]) -> ImageAnalysis:
    """Rebuild an `ImageAnalysis` from `to_json` output."""
    cfg = _tuple_fields(
        dict(data["config"]),
        (
            "env",
            "exposed_ports",
            "healthcheck",
            "entrypoint",
            "cmd",
            "volumes",
            "history",
            "diff_ids",
        ),
    )
    tree_data = dict(data["tree"])
    os_data = tree_data.pop("os", None)
    tree = TreeSummary(
        **{
            **tree_data,
            "setuid": _facts(tree_data.get("setuid", [])),
            "setgid": _facts(tree_data.get("setgid", [])),
            "capabilities": _facts(tree_data.get("capabilities", [])),
            "world_writable": _facts(tree_data.get("world_writable", [])),
            "users": [User(**u) for u in tree_data.get("users", [])],
            "os": None
            if os_data is None
            else OsRelease(**{**os_data, "id_like": tuple(os_data.get("id_like", ()))}),
        }
    )
    packages = [
        Package(
            **{
                **p,
                "locations": tuple(p.get("locations", ())),
                "licenses": tuple(p.get("licenses", ())),
            }
        )
        for p in data["packages"]
    ]
    return ImageAnalysis(
        manifest_digest=data["manifest_digest"],
        config_digest=data["config_digest"],
        config=ImageConfig(**cfg),
        layers=[LayerInfo(**layer) for layer in data["layers"]],
        tree=tree,
        packages=packages,
        findings=[Finding.from_json(f) for f in data["findings"]],
        complete=data["complete"],
        analyzer_version=data["analyzer_version"],
        seconds=data.get("seconds", 0.0),
        annotations=dict(data.get("annotations") or {}),
    )
