"""The long-lived things the pipeline stages need, built once per worker process.

The signing key, the transparency log and its attestation ledger, sigstore trust roots,
trust policies, vulnerability data, and the criteria catalog of each namespace.

The verification stack (sigstore with TUF, securesystemslib and, where installed, boto3;
in-toto) is loaded at the first verification, through `PipelineServices.verify_image`
and `trust_material`: it costs a process ~25 MiB and most of its start, and a registry
that only stores and serves images, or whose pipeline has nothing to verify, never needs
it. Nothing imported at this module's level may bring it in (tests/registry/
test_server_imports.py). A
fingerprint over the inputs that decide an image's fate (trust policy, catalog,
vulnerability data) tells when earlier results are stale and must be re-evaluated.

The stages work on the registry through a pool of their own whose commits do not wait for
the disk (unless `pipeline.synchronous_commit`): a database crash may lose the last
moments of that work, and the jobs, whose completion is lost with it, do it again. The
transparency log and its attestation ledger keep the registry's durable pool: nothing
that was logged is ever taken back (docs/pipeline.md, "Durability").
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import socket
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from attest.policy_document import PolicyDocument
from attest.servicekeys import ServiceKeyring, ServiceKeySettings
from attest.statements import Verifier
from attest.tlog.ledger import AttestationLedger
from attest.tlog.store import TransparencyLog
from attest.trust_policy import TrustPolicyError, TrustPolicySet
from policy.admission import AdmissionRule
from policy.analyzer import ANALYZER_VERSION, LayerCache
from policy.catalog import Catalog, load_catalog
from policy.chart.analysis import CHART_ANALYZER_VERSION
from policy.vuln import VulnStore
from registry import __version__
from registry.config import Config, ConfigError, NamespaceRule
from registry.db.pool import create_pool
from registry.federation.service import Federation
from registry.http.state import Registry
from registry.mirror.copy import Copier
from registry.mirror.upstream import Upstreams
from registry.pipeline.jobs import JobQueue
from registry.pipeline.trust import PolicyInForce, load_policy
from registry.pipeline.vulndata import vuln_data
from registry.pipeline.workload import Workload
from registry.uploads import UploadService

if TYPE_CHECKING:
    from attest.results import VerificationResult
    from attest.trust_policy import TrustPolicy
    from attest.trustroot import TrustMaterial
    from registry.oci.digest import Digest
    from registry.oci.reader import ContentReader

ZOLL_VERIFIER_ID = "https://zoll.dev/verifier"


def keyring_settings(config: Config) -> ServiceKeySettings:
    key = config.attest.key
    return ServiceKeySettings(
        algorithm=key.algorithm,
        key_file=key.file,
        key_password=key.password.encode() if key.password else None,
        pkcs11_uri=key.pkcs11_uri,
        pkcs11_module=key.pkcs11_module,
        pkcs11_pin=key.pkcs11_pin,
    )


def log_origin(config: Config) -> str:
    if config.attest.log_origin:
        return config.attest.log_origin
    host = urllib.parse.urlsplit(config.http.public_url or "").hostname
    return f"{host or 'localhost'}/zoll"


def public_base(config: Config) -> str:
    """The URL clients reach this registry at (`http.public_url`, else host and port)."""
    if config.http.public_url:
        return config.http.public_url.rstrip("/")
    host = config.http.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the address, not binding
        host = socket.getfqdn()
    return f"http://{f'[{host}]' if ':' in host else host}:{config.http.port}"


def registry_host(config: Config) -> str:
    """`host[:port]` of image references on this registry (what VSAs name)."""
    return urllib.parse.urlsplit(public_base(config)).netloc


def load_trusted_roots(config: Config) -> TrustMaterial:
    """The roots keyless signatures may chain to (`attest.trusted_roots`), or a
    `ConfigError` naming the key. Loads sigstore."""
    from attest.trustroot import TrustMaterial, TrustRootError

    try:
        trust = TrustMaterial.resolve(config.attest.trusted_roots[0])
        for spec in config.attest.trusted_roots[1:]:
            trust = trust + TrustMaterial.resolve(spec)
    except TrustRootError as exc:
        raise ConfigError(f"attest.trusted_roots: {exc}") from exc
    return trust


def _load_verification(config: Config) -> TrustMaterial:
    import attest.verify  # noqa: F401  (the rest of the stack, off the event loop too)

    return load_trusted_roots(config)


def load_trust(config: Config) -> None:
    """Check the trusted roots and the trust policy file load, or raise a `ConfigError`
    naming the key: `zoll serve` calls this before it starts anything, so a broken file is
    a clear message, not a worker's traceback."""
    load_trusted_roots(config)
    try:
        load_policy(config.attest.trust_policy)
    except (TrustPolicyError, OSError) as exc:
        raise ConfigError(f"attest.trust_policy: {exc}") from exc


@dataclass
class PipelineServices:
    registry: Registry
    keyring: ServiceKeyring
    log: TransparencyLog
    ledger: AttestationLedger
    trust_policy: PolicyInForce
    """Replaced as a whole by a reload (`reload_trust_policy`)."""
    vulns: VulnStore
    jobs: JobQueue
    copier: Copier
    upstreams: Upstreams
    workload: Workload
    """What analyses may cost, per image and per pusher (registry/pipeline/workload.py)."""
    layers: LayerCache = field(default_factory=LayerCache)
    """Layer analyses shared by the images of this worker (base layers are read once)."""
    federation: Federation | None = None
    """Identity, peers, witness and cosigning (registry/federation)."""
    _catalogs: dict[str, Catalog] = field(default_factory=dict)
    _relaxed_pool: asyncpg.Pool | None = None
    _trust: TrustMaterial | None = None
    _trust_loading: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def config(self) -> Config:
        return self.registry.config

    @property
    def trust_policies(self) -> TrustPolicySet | None:
        return self.trust_policy.policies

    @property
    def trust_policy_sha256(self) -> str:
        """Of the policy document in force (`none`): what verification summaries name."""
        return self.trust_policy.sha256

    @property
    def trust_policy_document(self) -> PolicyDocument | None:
        """What `trust_policy_sha256` is the digest of: served to auditors by that digest."""
        return self.trust_policy.document

    async def reload_trust_policy(self) -> tuple[PolicyInForce, PolicyInForce]:
        """Read the trust policy file again; (before, after). A file that is not a valid
        policy raises TrustPolicyError or OSError, and the policy in force stays."""
        before = self.trust_policy
        self.trust_policy = await asyncio.to_thread(load_policy, self.config.attest.trust_policy)
        await self._remember_policy()
        return before, self.trust_policy

    async def _remember_policy(self) -> None:
        """Every policy ever in force stays retrievable by its digest (VSAs name it)."""
        document = self.trust_policy.document
        if document is not None:
            await self.log.pool.execute(
                """INSERT INTO trust_policy_documents (sha256, document) VALUES ($1, $2)
                   ON CONFLICT (sha256) DO NOTHING""",
                document.sha256,
                document.raw,
            )

    async def trust_material(self) -> TrustMaterial:
        """The trusted roots, loaded at the first call in this process together with the
        rest of the verification stack, in a thread: importing it takes a moment the
        event loop must not wait for."""
        async with self._trust_loading:
            if self._trust is None:
                self._trust = await asyncio.to_thread(_load_verification, self.config)
            return self._trust

    async def verify_image(
        self, reader: ContentReader, digest: Digest, policy: TrustPolicy
    ) -> VerificationResult:
        """`attest.verify.verify_image` against the trusted roots; the first call loads
        the verification stack (this module's docstring)."""
        trust = await self.trust_material()
        from attest.verify import verify_image  # imported by trust_material

        return await verify_image(reader, digest, policy, trust)

    @property
    def verifier(self) -> Verifier:
        return Verifier(ZOLL_VERIFIER_ID, {"zoll": __version__})

    def catalog(self, rule: NamespaceRule) -> Catalog:
        """The criteria catalog of a namespace (built-in, plus its override files)."""
        if rule.prefix not in self._catalogs:
            self._catalogs[rule.prefix] = load_catalog([str(p) for p in rule.catalog])
        return self._catalogs[rule.prefix]

    def admission_rule(self, rule: NamespaceRule) -> AdmissionRule:
        return AdmissionRule(
            mode="enforce" if rule.admission == "off" else rule.admission,
            fail_on=rule.fail_on,
            waive=frozenset(rule.waive),
        )

    async def fingerprint(self, rule: NamespaceRule, repository: str) -> str:
        """Changes whenever the trust policy of the repository (what it says, or which
        one applies), the catalog, the vulnerability data, the analyzers (a fix in how
        layers or charts are read) or this registry's names (which decide where a chart's
        images come from) do."""
        data = await self.vulns.fingerprint()
        parts = [
            ANALYZER_VERSION,
            CHART_ANALYZER_VERSION,
            ",".join(self.config.charts.names(self.config.http.public_url)),
            self.trust_policy.digest_for(repository),
            self.catalog(rule).digest,
            data.digest,
            str(rule.require_verification),
            rule.fail_on,
            ",".join(sorted(rule.waive)),
        ]
        if rule.vuln_max_age_days is not None:  # data growing too old re-judges the images
            fresh = (await vuln_data(self.vulns)).problem(rule.vuln_max_age_days) is None
            parts.append(f"vulnerability data within {rule.vuln_max_age_days} days: {fresh}")
        return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @classmethod
    async def open(cls, registry: Registry) -> PipelineServices:
        config = registry.config
        durable = registry.pool
        relaxed = None
        if config.relaxed_pipeline:
            assert config.database.dsn, "open_registry refuses a config without one"
            relaxed = await create_pool(
                config.database.dsn,
                min_size=min(config.database.pool_min, config.pipeline_pool_max),
                max_size=config.pipeline_pool_max,
                durable=False,
            )
            uploads = UploadService(relaxed, registry.driver, registry.budget, config.uploads)
            registry = dataclasses.replace(registry, pool=relaxed, uploads=uploads)
        try:
            return await cls._open(registry, durable, relaxed)
        except BaseException:
            if relaxed is not None:
                await relaxed.close()
            raise

    @classmethod
    async def _open(
        cls, registry: Registry, durable: asyncpg.Pool, relaxed: asyncpg.Pool | None
    ) -> PipelineServices:
        config = registry.config
        keyring = await asyncio.to_thread(
            ServiceKeyring.load_or_create, config.data_dir, keyring_settings(config)
        )
        log = TransparencyLog(durable, keyring.signer, log_origin(config))
        policy = await asyncio.to_thread(load_policy, config.attest.trust_policy)
        services = cls(
            registry=registry,
            keyring=keyring,
            log=log,
            ledger=AttestationLedger(log),
            trust_policy=policy,
            vulns=VulnStore(durable),
            jobs=JobQueue(
                registry.pool,
                lease_seconds=config.pipeline.lease_seconds,
                max_attempts=config.pipeline.max_attempts,
            ),
            copier=Copier(registry),
            upstreams=Upstreams(),
            workload=Workload(registry.pool, config.pipeline),
            federation=await Federation.open(config, durable, keyring, log, registry.driver),
            _relaxed_pool=relaxed,
        )
        await services._remember_policy()
        for rule in [*config.namespaces, config.namespace("")]:  # load catalogs off the loop
            await asyncio.to_thread(services.catalog, rule)
        return services

    async def aclose(self) -> None:
        try:
            await self.upstreams.aclose()
            if self.federation is not None:
                await self.federation.aclose()
            self.keyring.close()
        finally:
            if self._relaxed_pool is not None:
                await self._relaxed_pool.close()


SERVICES = web.AppKey("pipeline_services", PipelineServices)


def services_of(request: web.Request) -> PipelineServices:
    """The pipeline services of this worker (attestation keys, log, trust material)."""
    services = request.app.get(SERVICES)
    if services is None:
        from registry.api.router import ApiError

        raise ApiError(503, "Attestation services are not running in this process")
    return services
