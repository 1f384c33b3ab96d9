"""One typed configuration: a YAML file overlaid with `ZOLL_*` environment variables.

Nested keys use double underscores in the environment: `ZOLL_STORAGE__S3__BUCKET=zoll`
sets `storage.s3.bucket`. Everything is validated at start; errors name the key and say
what is wrong, so a typo never becomes a silent default.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "ZOLL_"


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HTTPConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="worker processes sharing the port")
    public_url: str | None = Field(
        None, description="external base URL, e.g. https://zoll.example.org (for redirects)"
    )
    max_manifest_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    shutdown_timeout: float = Field(10.0, ge=0)
    header_timeout: float = Field(
        20.0, gt=0, description="seconds a client has to send a request's headers"
    )
    idle_timeout: float = Field(
        60.0,
        gt=0,
        description="seconds a client may send nothing while its body is awaited, or take "
        "nothing of a response; slow transfers that progress are never cut",
    )
    keepalive_timeout: float = Field(
        60.0, gt=0, description="seconds an idle keep-alive connection stays open"
    )
    max_connections_per_address: int = Field(
        256, ge=1, description="open connections per client address and worker process"
    )
    max_connections: int = Field(10000, ge=1, description="open connections per worker process")


PIPELINE_CONNECTIONS_PER_JOB = 4
"""A pipeline job holds at most this many connections at once (parallel copies, a batch)."""
CONNECTIONS_FOR_TOOLS = 12
"""Connections left for the supervisor's start-up work and command-line tools."""


class DatabaseConfig(_Section):
    dsn: str | None = Field(None, description="PostgreSQL DSN; none starts an embedded server")
    pool_min: int = Field(
        8, ge=1, description="connections each process opens at start (a pipeline burst needs ~8)"
    )
    pool_max: int = Field(20, ge=1)


class S3Config(_Section):
    endpoint: str | None = Field(None, description="S3 endpoint URL; none starts SeaweedFS")
    bucket: str = "zoll"
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    prefix: str = ""
    part_size: int = Field(16 * 1024 * 1024, ge=5 * 1024 * 1024, le=5 * 1024 * 1024 * 1024)
    parts_in_flight: int = Field(2, ge=1, le=16)
    connect_timeout: float = Field(5.0, gt=0, description="seconds to connect to the store")
    read_timeout: float = Field(
        15.0, gt=0, description="seconds the store may stay silent within one call"
    )
    max_attempts: int = Field(3, ge=1, le=10, description="tries per call (retries + 1)")
    redirect: bool = Field(False, description="answer blob GETs with 307 to presigned URLs")
    redirect_min_size: int = Field(1024 * 1024, ge=0)
    presign_seconds: int = Field(900, ge=60, le=7 * 24 * 3600)
    create_bucket: bool = True


class FilesystemConfig(_Section):
    root: Path | None = Field(None, description="defaults to <data_dir>/blobs")


class StorageConfig(_Section):
    driver: Literal["s3", "filesystem"] = "s3"
    s3: S3Config = S3Config()
    filesystem: FilesystemConfig = FilesystemConfig()
    buffer_budget: int = Field(
        64 * 1024 * 1024,
        ge=4 * 1024 * 1024,
        description="bytes of upload data a process may hold in memory at once",
    )
    buffer_wait: float = Field(
        30.0, gt=0, description="seconds an upload waits for buffer memory before a 503"
    )
    timeout: float = Field(
        30.0,
        gt=0,
        description="seconds a storage call may take (a read: until its first byte) before "
        "the request gets a 503; longer than sending one S3 part takes",
    )
    idle_timeout: float = Field(
        30.0, gt=0, description="seconds a blob read may wait for its next chunk"
    )
    probe_timeout: float = Field(2.0, gt=0, description="seconds /readyz waits for storage")
    stall_cooldown: float = Field(
        5.0,
        ge=0,
        description="seconds requests fail at once after a storage call missed its deadline, "
        "before the store is tried again",
    )


class UploadConfig(_Section):
    session_expiry: float = Field(3600, ge=60, description="seconds of inactivity")
    empty_session_expiry: float = Field(
        600, ge=60, description="seconds a session that never received a byte is kept"
    )
    expire_interval: float = Field(
        60, ge=1, description="how often each worker looks for expired sessions"
    )
    lease_seconds: float = Field(60, ge=5, description="how long a request owns a session")
    max_sessions_per_principal: int = Field(
        200, ge=1, description="open upload sessions one user or robot may have (429 beyond)"
    )
    max_sessions_per_repository: int = Field(
        1000, ge=1, description="open upload sessions per repository (429 beyond)"
    )


class GCConfig(_Section):
    enabled: bool = True
    interval: float = Field(3600, ge=1)
    grace_period: float = Field(
        24 * 3600, ge=0, description="never collect content used more recently than this"
    )
    untagged_manifests: bool = True
    duty_cycle: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of its run a collection works; it rests the remainder, so the "
        "store and the database serve pushes and pulls in between (1: never rests)",
    )
    deep_sweep_interval: float = Field(
        7 * 24 * 3600,
        ge=0,
        description="how often a collection also lists the whole store for objects nothing "
        "records (0: every collection); the other sweeps never list it",
    )


class KeyConfig(_Section):
    """Zoll's attestation signing key: generated into the data folder unless configured."""

    algorithm: Literal["ecdsa-p256", "ed25519"] = "ecdsa-p256"
    file: Path | None = Field(None, description="PEM private key to sign with")
    password: str | None = Field(None, description="password of the PEM key")
    pkcs11_uri: str | None = Field(None, description="RFC 7512 URI of an HSM key")
    pkcs11_module: str | None = None
    pkcs11_pin: str | None = None


class AttestConfig(_Section):
    key: KeyConfig = KeyConfig()
    log_origin: str | None = Field(
        None, description="origin line of transparency-log checkpoints (default: host/zoll)"
    )
    trusted_roots: list[str] = Field(
        default_factory=lambda: ["public-good"],
        description="sigstore trust roots: public-good, staging, or trusted_root.json paths",
    )
    trust_policy: Path | None = Field(
        None, description="YAML trust policies per repository (docs/verification.md)"
    )


class NamespaceRule(_Section):
    """What Zoll does with images under a repository-name prefix (longest prefix wins)."""

    prefix: str = Field(..., description='repository name prefix, e.g. "opendesk/"; "" = all')
    evaluate: bool = Field(True, description="run verification and hardening checks")
    admission: Literal["enforce", "warn", "off"] = Field(
        "off", description="enforce: only admitted images can be pulled by tag or digest"
    )
    require_verification: bool = Field(
        True, description="admission also needs the trust policy to pass"
    )
    fail_on: Literal["critical", "high", "medium", "low"] = "high"
    waive: list[str] = Field(default_factory=list, description="criterion ids not to enforce")
    rebuild: Literal["off", "attempt", "require", "prefer"] = Field(
        "off",
        description="rebuild images from source: attempt (report), require (admission "
        "needs a bit-for-bit reproduction) or prefer (a rebuild that differs becomes the "
        "sovereign copy: once admitted, the upstream's tags point at it)",
    )
    catalog: list[Path] = Field(default_factory=list, description="criteria override files")
    allow_artifact_types: list[str] = Field(
        default_factory=list,
        description="artifact types the pipeline does not judge that an enforce namespace "
        "still serves (exact media types, or patterns like application/vnd.example.*); "
        "signatures, attestations and SBOMs about an image need no entry",
    )
    vuln_max_age_days: int | None = Field(
        None,
        ge=1,
        description="admit only images checked against vulnerability data at most this many "
        "days old (since the last successful zoll vulndb import); without data, none",
    )


class UpstreamCredentials(_Section):
    """Credentials for an upstream registry; secrets come from the environment or an
    auth.json file, never from the configuration itself."""

    username: str | None = None
    password_env: str | None = Field(None, description="environment variable with the password")
    auth_file: Path | None = Field(None, description="docker/podman auth.json")


class PullThroughRule(_Section):
    """Repositories under `prefix` are fetched from `upstream` on their first pull."""

    prefix: str = Field(..., description='e.g. "mirror/docker.io/"', min_length=1)
    upstream: str = Field(..., description='registry host, e.g. "docker.io" or "ghcr.io"')
    insecure: bool = Field(False, description="plain HTTP upstream (loopback tests only)")
    credentials: UpstreamCredentials | None = None
    tag_ttl: float = Field(
        300,
        ge=0,
        description="seconds a cached tag is served before the upstream is asked (HEAD) "
        "whether it moved; 0: on every pull. An unreachable upstream serves the cached tag",
    )


class QuotaRule(_Section):
    """How many bytes each user or robot may push into repositories under `prefix`."""

    prefix: str = Field(..., description='repository name prefix, e.g. "team-a/"; "" = all')
    bytes_per_principal: int = Field(..., ge=0, description="blob bytes each principal may push")


class AnalysisConfig(_Section):
    """What analysing one image may cost, and one pusher's images per hour (a layer that
    expands 840-fold within the other limits must not cost the pipeline minutes)."""

    max_seconds: float = Field(300.0, gt=0, description="wall-clock seconds per image")
    max_expanded_bytes: int = Field(
        16 * 1024**3, ge=1, description="decompressed layer bytes per image"
    )
    max_ratio: int = Field(
        100, ge=2, description="decompressed / compressed bytes of a layer past ratio_floor"
    )
    ratio_floor: int = Field(
        256 * 1024**2, ge=0, description="bytes a layer may expand to before max_ratio counts"
    )
    max_entries: int = Field(1_000_000, ge=1, description="tar entries per image")
    pusher_seconds_per_hour: float = Field(
        3600.0, gt=0, description="analysis seconds the images of one pusher may take per hour"
    )
    pusher_expanded_bytes_per_hour: int = Field(
        64 * 1024**3, ge=1, description="decompressed bytes of one pusher's images per hour"
    )


class PipelineConfig(_Section):
    enabled: bool = True
    concurrency: int = Field(2, ge=1, le=64, description="pipeline jobs per worker process")
    max_attempts: int = Field(5, ge=1)
    lease_seconds: float = Field(600, ge=10)
    poll_seconds: float = Field(2, gt=0)
    reevaluate_interval: float = Field(
        3600, ge=1, description="how often to look for changed policies or vulnerability data"
    )
    analysis: AnalysisConfig = AnalysisConfig()
    synchronous_commit: bool = Field(
        False,
        description="true: pipeline jobs wait for every commit to reach the disk, as pushes "
        "do (slower; see docs/pipeline.md, Durability)",
    )


class RateLimitConfig(_Section):
    """Failed-login back-off, shared by all workers and instances (see docs/auth.md).

    Successful logins and token requests are never throttled."""

    failed_logins: int = Field(
        10, ge=1, description="failed logins an address or user name may have before a lockout"
    )
    lockout: float = Field(
        30.0, gt=0, description="seconds of the first lockout; each further failure doubles it"
    )
    max_lockout: float = Field(900.0, gt=0, description="the longest lockout, in seconds")
    failure_memory: float = Field(
        3600.0, gt=0, description="seconds after the last failure until the count starts over"
    )


class AuthConfig(_Section):
    enabled: bool = Field(True, description="false: no authentication (trusted networks only)")
    service: str = Field("zoll", min_length=1, description="token audience (`service=`)")
    issuer: str = Field("zoll", min_length=1)
    realm: str | None = Field(
        None, description="token endpoint URL; default <http.public_url or request host>/token"
    )
    token_ttl: int = Field(300, ge=30, le=3600, description="seconds a token stays valid")
    token_algorithm: Literal["ES256", "EdDSA"] = "ES256"  # noqa: S105 (not a secret)
    session_ttl: float = Field(
        8 * 3600, ge=60, description="seconds a web page login lasts (docs/ui.md)"
    )
    keys_dir: Path | None = Field(None, description="token signing keys; default <data_dir>/auth")
    key_max_age: float = Field(
        90 * 24 * 3600, ge=3600, description="seconds before a signing key is replaced"
    )
    bootstrap_admin: bool = Field(
        True, description="create `admin` with a printed random password on first start"
    )
    scrypt_log2_n: int = Field(15, ge=10, le=20, description="scrypt cost (2^n)")
    kdf_concurrency: int = Field(2, ge=1, le=16, description="password hashes at once")
    principal_cache: float = Field(
        5.0, ge=0, description="seconds a worker trusts its copy of a principal's grants"
    )
    basic_cache: float = Field(
        60.0, ge=0, description="seconds a verified Basic credential skips the slow hash"
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="request bodies other than blobs and manifests"
    )
    public_metrics: bool = Field(False, description="serve /metrics without credentials")
    limits: RateLimitConfig = RateLimitConfig()
    denial_window: float = Field(
        60.0, gt=0, description="seconds over which repeated refusals become one audit event"
    )
    denial_events: int = Field(
        100, ge=1, description="refusal events per window and worker before they are only counted"
    )


class PeerConfig(_Section):
    """Another Zoll node, pinned by its keys (what `zoll peers add` stores in the database
    can also be written here; the configuration wins on a name)."""

    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    url: str = Field(..., description="the node's base URL, e.g. https://zoll.land.example")
    log_origin: str
    log_key: str = Field(..., description="signed-note verifier key of its log checkpoints")
    witness_key: str = Field(..., description="its witness cosigner key (vkey, type 0x04)")
    attestation_keys: list[str] = Field(
        default_factory=list, description="PEM public keys its statements are signed with"
    )
    insecure: bool = Field(False, description="plain HTTP (loopback tests only)")
    credentials: UpstreamCredentials | None = None
    witness: bool = Field(True, description="ask this node to cosign our checkpoints")


class FollowRule(_Section):
    """Replicate what `peer` admits in repositories matching `repositories` (globs), and
    judge it here again before admitting it."""

    peer: str
    repositories: list[str] = Field(default_factory=lambda: ["*"])


class FederationConfig(_Section):
    name: str | None = Field(
        None, description="this node's name (default: the log origin's host)", max_length=64
    )
    peers: list[PeerConfig] = Field(default_factory=list)
    follow: list[FollowRule] = Field(default_factory=list)
    poll_seconds: float = Field(10.0, gt=0, description="how often to read followed logs")
    witness_seconds: float = Field(
        10.0, gt=0, description="how often to ask witnesses to cosign the latest checkpoint"
    )
    witness_timeout: float = Field(10.0, gt=0, description="seconds per witness request")
    witness_key_file: Path | None = Field(
        None,
        description="this node's Ed25519 witness key (PEM); default "
        "<data_dir>/federation/witness-ed25519.pem, made at first start. Every instance of "
        "one node (one database) must use the same key",
    )


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ChartsConfig(_Section):
    """How Helm charts are judged (docs/charts.md)."""

    registry_names: list[str] = Field(
        default_factory=list,
        description="names clusters pull this registry's images under (host or host:port); "
        "images of a chart from these names are 'from this registry'. Default: the host of "
        "http.public_url",
    )
    render_seconds: float = Field(60, gt=0, description="time Helm may take to render one chart")
    render_memory_mib: int = Field(
        2048, ge=256, description="address space of the child process that renders a chart"
    )

    def names(self, public_url: str | None) -> tuple[str, ...]:
        if self.registry_names:
            return tuple(self.registry_names)
        host = urllib.parse.urlsplit(public_url or "").netloc
        return (host,) if host else ()


class Config(_Section):
    data_dir: Path = Path("zoll-data")
    http: HTTPConfig = HTTPConfig()
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    uploads: UploadConfig = UploadConfig()
    gc: GCConfig = GCConfig()
    log: LogConfig = LogConfig()
    attest: AttestConfig = AttestConfig()
    pipeline: PipelineConfig = PipelineConfig()
    charts: ChartsConfig = ChartsConfig()
    namespaces: list[NamespaceRule] = Field(default_factory=list)
    pull_through: list[PullThroughRule] = Field(default_factory=list)
    quotas: list[QuotaRule] = Field(
        default_factory=list, description="per-principal storage quotas per namespace"
    )
    auth: AuthConfig = AuthConfig()
    federation: FederationConfig = FederationConfig()
    delete_enabled: bool = True

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.database.pool_min > self.database.pool_max:
            raise ValueError("database.pool_min must not exceed database.pool_max")
        prefixes = [rule.prefix for rule in self.namespaces]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("namespaces: each prefix may appear once")
        quota_prefixes = [rule.prefix for rule in self.quotas]
        if len(set(quota_prefixes)) != len(quota_prefixes):
            raise ValueError("quotas: each prefix may appear once")
        s3 = self.storage.s3
        if s3.endpoint and bool(s3.access_key) != bool(s3.secret_key):
            raise ValueError("storage.s3.access_key and secret_key must be set together")
        return self

    @property
    def blob_root(self) -> Path:
        return self.storage.filesystem.root or self.data_dir / "blobs"

    @property
    def pipeline_pool_max(self) -> int:
        """Connections the pipeline's own pool may hold (docs/pipeline.md, Durability)."""
        return min(
            self.database.pool_max, PIPELINE_CONNECTIONS_PER_JOB * self.pipeline.concurrency + 2
        )

    @property
    def relaxed_pipeline(self) -> bool:
        """The pipeline commits through a pool of its own that does not wait for the disk."""
        return self.pipeline.enabled and not self.pipeline.synchronous_commit

    def connections_needed(self) -> int:
        """PostgreSQL connections `zoll serve` may hold at its peak, with room for tools."""
        per_worker = self.database.pool_max + 1  # + the pipeline runner's LISTEN connection
        if self.relaxed_pipeline:
            per_worker += self.pipeline_pool_max
        return self.http.workers * per_worker + CONNECTIONS_FOR_TOOLS

    def pull_through_rule(self, repository: str) -> PullThroughRule | None:
        for rule in self.pull_through:
            if repository.startswith(rule.prefix) and len(repository) > len(rule.prefix):
                return rule
        return None

    def quota(self, repository: str) -> QuotaRule | None:
        """The quota rule with the longest prefix matching `repository`, if any."""
        matching = [q for q in self.quotas if repository.startswith(q.prefix)]
        return max(matching, key=lambda q: len(q.prefix), default=None)

    def namespace(self, repository: str) -> NamespaceRule:
        """The rule with the longest prefix matching `repository` (default: evaluate, no
        admission control)."""
        best: NamespaceRule | None = None
        for rule in self.namespaces:
            if repository.startswith(rule.prefix) and (
                best is None or len(rule.prefix) > len(best.prefix)
            ):
                best = rule
        return best or NamespaceRule(prefix="")

    @property
    def auth_keys_dir(self) -> Path:
        return self.auth.keys_dir or self.data_dir / "auth"


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path)}: {key} is not a section")
        node = child
    node[path[-1]] = value


CLIENT_VARIABLES = frozenset({"ZOLL_CONFIG", "ZOLL_URL", "ZOLL_USER", "ZOLL_PASSWORD"})
"""Read by the commands themselves (which config file; which running service to reach, as
whom), never configuration keys: setting them must not break any command."""


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in CLIENT_VARIABLES:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        value = yaml.safe_load(raw) if raw else raw  # "true", "5", "[a, b]" become typed
        _set_path(tree, path, value)
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Read YAML (if any), apply `ZOLL_*` variables then explicit overrides; validate."""
    env = os.environ if environ is None else environ
    if path is None and env.get("ZOLL_CONFIG"):
        path = Path(env["ZOLL_CONFIG"])
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must contain a mapping at the top level")
        data = loaded
    data = _merge(data, _env_overrides(env))
    data = _merge(data, overrides or {})
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "config"
            problems.append(f"  {where}: {err['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None
