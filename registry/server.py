"""`zoll serve`: embedded backends, migrations, and worker processes sharing one port.

The supervisor (this process) starts the embedded PostgreSQL and SeaweedFS when no DSN or
S3 endpoint is configured, applies migrations once, then runs the HTTP workers as forked
processes that each bind the port with SO_REUSEPORT so the kernel spreads connections.
On SIGINT/SIGTERM the workers drain and stop first, then the embedded backends.

The supervisor serves nothing, so it loads little: its database work runs in short-lived
children (`run_in_child`), and the workers' code is imported here only when several
workers share it (`load_worker_code`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import gc
import json
import os
import random
import resource
import select
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from registry import local_service, supervision
from registry.config import Config
from registry.embedded.postgres import EmbeddedPostgres
from registry.embedded.seaweedfs import EmbeddedSeaweed
from registry.logs import get_logger
from registry.memory import tune_malloc
from registry.processes import die_with_parent, port_holder, run_in_child, until_single_threaded

if TYPE_CHECKING:
    from registry.http.state import Registry

log = get_logger("zoll.server")


def load_worker_code() -> None:
    """Import what a worker runs: the HTTP application, the registry service, the
    pipeline and federation workers (~20 MiB).

    Where decides the memory (docs/benchmarks.md, "memory: the verification stack loaded
    on first use"): with several workers the supervisor imports it before forking, so
    they share its pages; with one, that worker imports it after the fork, and the
    supervisor, which serves nothing, never holds a copy."""
    import registry.federation.worker
    import registry.gc
    import registry.http.app
    import registry.http.connections
    import registry.pipeline.runner
    import registry.service  # noqa: F401


def _with(config: Config, **sections: dict[str, Any]) -> Config:
    data = config.model_dump()
    for name, values in sections.items():
        node = data
        parts = name.split(".")
        for part in parts:
            node = node[part]
        node.update(values)
    return Config.model_validate(data)


class Supervisor:
    """Owns the embedded backends and the worker processes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._postgres: EmbeddedPostgres | None = None
        self._seaweed: EmbeddedSeaweed | None = None
        self._retry_at: dict[str, float] = {}

    def start_backends(self) -> Config:
        """Start what is not configured externally; return the effective config."""
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        if not config.database.dsn:
            self._postgres = EmbeddedPostgres(config.data_dir / "postgres")
            dsn = self._postgres.start(config.connections_needed())
            config = _with(config, database={"dsn": dsn})
        if config.storage.driver == "s3" and not config.storage.s3.endpoint:
            self._seaweed = EmbeddedSeaweed(config.data_dir / "seaweedfs")
            endpoint = self._seaweed.start()
            config = _with(
                config,
                **{
                    "storage.s3": {
                        "endpoint": endpoint,
                        "access_key": self._seaweed.access_key,
                        "secret_key": self._seaweed.secret_key,
                    }
                },
            )
        return config

    def check_backends(self, states: dict[str, str], publish: Callable[[], None]) -> None:
        """Restart an embedded backend whose process died (killed, crashed), with the same
        data and address, so workers reconnect by themselves. `states` (what /readyz
        shows) says `restarting` while it happens; `publish` makes that visible first."""
        backends: list[tuple[str, EmbeddedPostgres | EmbeddedSeaweed | None]] = [
            ("postgres", self._postgres),
            ("seaweedfs", self._seaweed),
        ]
        now = time.monotonic()
        for name, backend in backends:
            if backend is None:
                continue
            if backend.running():
                if states.get(name) != "ok":
                    states[name] = "ok"
                continue
            if now < self._retry_at.get(name, 0.0):
                continue
            log.error("embedded backend died; restarting it", backend=name)
            states[name] = "restarting: its process died"
            publish()
            try:
                backend.restart()
            except Exception as exc:  # try again after a pause; /readyz says why
                log.exception("embedded backend did not restart", backend=name)
                states[name] = f"down: restart failed ({exc}); retrying"
                self._retry_at[name] = now + 5.0
            else:
                log.info("embedded backend restarted", backend=name)
                states[name] = "ok"

    def stop_backends(self) -> None:
        if self._seaweed is not None:
            self._seaweed.stop()
        if self._postgres is not None:
            self._postgres.stop()


def _prepared(config: Config) -> str | None:
    """`_prepare` in a child process: the database code, the signing keys and the
    transparency log it loads (~15 MiB) stay out of the supervisor, which with one worker
    shares nothing it does not need (`load_worker_code`)."""
    return run_in_child(lambda: asyncio.run(_prepare(config)), expected=(StartError,))


async def _prepare(config: Config) -> str | None:
    """Once per start, before any worker: migrations, crash repair, and on first start the
    admin account (its password is returned, once)."""
    from registry.auth.bootstrap import ensure_admin
    from registry.db.migrate import migrate
    from registry.db.pool import create_pool

    assert config.database.dsn
    pool = await create_pool(config.database.dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("migrations applied", versions=[m.version for m in applied])
        jobs, uploads = await _release_orphans(pool)
        if jobs or uploads:
            log.info("released a crashed run's claims", jobs_requeued=jobs, uploads=uploads)
        if config.pipeline.enabled:
            await _repair(config, pool)
            await _warn_about_vulnerability_data(config, pool)
        if config.auth.enabled and config.auth.bootstrap_admin:
            return await ensure_admin(pool, config.auth.scrypt_log2_n)
        return None
    finally:
        await pool.close()


async def _warn_about_vulnerability_data(config: Config, pool: Any) -> None:
    """Images judged without vulnerability data pass with no CVE check: say so at start."""
    from policy.vuln import VulnStore
    from registry.pipeline.vulndata import vuln_data

    data = await vuln_data(VulnStore(pool))
    for warning in data.warnings(config.namespaces):
        log.warning(warning, vulnerability_data=data.to_json())


async def _repair(config: Config, pool: Any) -> None:
    """Attestations signed but not logged when the last run died get logged now; jobs
    whose lease ran out are queued again. An instance whose attestation key is not the
    log's, or whose witness key is not the node's, does not start (`registry.pipeline.signers`)."""
    from attest.servicekeys import ServiceKeyring
    from attest.tlog.cosignature import Cosigner
    from attest.tlog.store import TransparencyLog
    from registry.federation.identity import load_witness_key, witness_name
    from registry.pipeline.jobs import JobQueue
    from registry.pipeline.services import keyring_settings, log_origin
    from registry.pipeline.signers import ForeignSigner, check_log_signer, check_witness_key

    keyring = await asyncio.to_thread(
        ServiceKeyring.load_or_create, config.data_dir, keyring_settings(config)
    )
    try:
        try:
            await check_log_signer(pool, log_origin(config), keyring)
            witness_key = await asyncio.to_thread(load_witness_key, config)
            witness = Cosigner(witness_name(log_origin(config)), witness_key.public)
            await check_witness_key(pool, witness)
        except ForeignSigner as exc:
            raise StartError(f"zoll serve cannot start: {exc}") from None
        report = await TransparencyLog(pool, keyring.signer, log_origin(config)).repair()
        requeued = await JobQueue(pool).requeue_expired()
        if report.relinked or report.appended or requeued:  # said only when there was work
            log.info(
                "repaired what the last run left unfinished",
                log_entries_appended=report.appended,
                log_entries_relinked=report.relinked,
                log_size=report.size,
                jobs_requeued=requeued,
            )
    finally:
        keyring.close()


class StartError(Exception):
    """`zoll serve` cannot start; the message says why in one sentence. Raised before
    anything was started, so nothing is left running."""


LOCK_FILE = "serve.lock"


def _check_trust_policy(config: Config) -> None:
    """Read the trust policy once before anything starts: a broken file is one sentence
    here, not a traceback from every worker; the log says which policy is in force."""
    from attest.trust_policy import TrustPolicyError
    from registry.pipeline.trust import load_policy

    path = config.attest.trust_policy
    try:
        policy = load_policy(path)
    except (TrustPolicyError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartError(f"zoll serve cannot use the trust policy {path}: {reason}") from None
    if path is not None:
        log.info("trust policy in force", sha256=policy.sha256, path=str(path))


def _claim_data_dir(config: Config) -> int | None:
    """Hold `<data_dir>/serve.lock` while this service runs from the data folder with its
    embedded backends (one PostgreSQL and one SeaweedFS per folder); the lock is the
    open file's, so it goes when the service does, however it ends. Services with an
    external database and S3 may share a folder (replicas sharing the signing key)."""
    embedded_s3 = config.storage.driver == "s3" and not config.storage.s3.endpoint
    if config.database.dsn and not embedded_s3:
        return None
    config.data_dir.mkdir(parents=True, exist_ok=True)
    path = config.data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        running = local_service.find(config.data_dir)
        where = f", serving on {running.url}" if running is not None else ", starting"
        raise StartError(
            f"zoll serve is already running from the data folder {config.data_dir.resolve()} "
            f"(process {holder}{where}): stop it first, or start this one with another "
            "--data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _reserve_port(host: str, port: int) -> socket.socket:
    """The listening address, checked before anything starts: the workers of this service
    share it (SO_REUSEPORT), nobody else may. A first bind without SO_REUSEPORT fails if
    anyone listens there — another program, or another Zoll whose workers would otherwise
    share the port with ours — then the socket the workers join is bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartError(_bind_problem(host, port, exc)) from None
        port = probe.getsockname()[1]  # port 0: the one the kernel chose, for the workers
    try:
        return _listen_socket(host, port)
    except OSError as exc:  # taken in between
        raise StartError(_bind_problem(host, port, exc)) from None


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno != errno.EADDRINUSE:
        return f"zoll serve cannot listen on {address}: {exc.strerror}"
    holder = port_holder(port)
    return (
        f"zoll serve cannot listen on {address}: the address is in use"
        + (f" by {holder}" if holder else " by another program")
        + "; stop it, or choose another --port"
    )


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


FAILURE_REMINDER = 60.0
"""Seconds between log lines of periodic work that keeps failing."""


async def _every(
    interval: float, stopping: asyncio.Event, work: Callable[[], Awaitable[object]], failed: str
) -> None:
    """Run `work` about every `interval` seconds (jittered, so workers and instances drift
    apart) until `stopping`; a failure (the database may be away) is logged as `failed`
    and the work retried next time. While it keeps failing, a reminder is logged at most
    every `FAILURE_REMINDER` seconds (not every few seconds in every worker), and the
    first success after failures says so."""
    failures, reminded = 0, 0.0
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval * random.uniform(0.9, 1.1))
        if stopping.is_set():
            return
        try:
            await work()
        except Exception as exc:
            failures += 1
            now = time.monotonic()
            if failures == 1:
                log.exception(failed)
                reminded = now
            elif now - reminded >= FAILURE_REMINDER:
                log.error(f"{failed}, still", failures=failures, error=repr(exc))
                reminded = now
            continue
        if failures:
            log.info(f"{failed} before, works again", failures=failures)
            failures = 0


async def _background(registry_config: Config, registry: Registry, stopping: asyncio.Event) -> None:
    """Periodic GC (one at a time cluster-wide: collect() takes an advisory lock)."""
    from registry.gc import collect

    if not registry_config.gc.enabled:
        return

    await _every(registry_config.gc.interval, stopping, lambda: collect(registry), "gc failed")


async def _expire_uploads(registry: Any, stopping: asyncio.Event) -> None:
    """Idle upload sessions go within a minute of their expiry, not at the next GC."""
    from registry.metrics import UPLOADS_EXPIRED

    async def expire() -> None:
        expired = await registry.uploads.expire()
        if expired:
            UPLOADS_EXPIRED.inc(expired)
            log.info("upload sessions expired", count=expired)

    await _every(registry.config.uploads.expire_interval, stopping, expire, "upload expiry failed")


async def _fold_counts(registry: Any, stopping: asyncio.Event) -> None:
    """Repository counts folded every few seconds, so a listing adds up only the deltas of
    the last seconds (several workers and instances fold at once safely)."""
    from registry.db.repositories import FOLD_INTERVAL, fold_counts

    await _every(
        FOLD_INTERVAL,
        stopping,
        lambda: fold_counts(registry.pool),
        "folding repository counts failed",
    )


async def serve_worker(config: Config, sock: socket.socket, ready: Callable[[], None]) -> None:
    """One HTTP worker: its own pool and driver, serving on the shared socket."""
    load_worker_code()  # imported already when several workers share it
    from aiohttp import web

    from registry.http.app import build_app
    from registry.http.connections import GuardedSite
    from registry.pipeline.services import PipelineServices
    from registry.service import close_registry, open_registry

    registry = await open_registry(config, run_migrations=False)
    services = await PipelineServices.open(registry)
    app = build_app(registry, services)
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=config.http.shutdown_timeout,
        keepalive_timeout=config.http.keepalive_timeout,
    )
    await runner.setup()
    site = GuardedSite(runner, sock, config.http)
    await site.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    background = asyncio.create_task(_background(config, registry, stopping))
    expiry = asyncio.create_task(_expire_uploads(registry, stopping))
    folding = asyncio.create_task(_fold_counts(registry, stopping))
    pipeline = None
    if config.pipeline.enabled:
        from registry.pipeline.runner import PipelineRunner

        pipeline = PipelineRunner(services)
        await pipeline.start()
        loop.add_signal_handler(signal.SIGHUP, pipeline.reload_soon)  # the trust policy
    federation = None
    if services.federation is not None:
        from registry.federation.worker import FederationWorker

        federation = FederationWorker(services)
        await federation.start()
    ready()
    try:
        await stopping.wait()
    finally:
        for task in (background, expiry, folding):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if federation is not None:
            await federation.stop()
        if pipeline is not None:
            await pipeline.stop()
        await runner.cleanup()
        await services.aclose()
        await close_registry(registry)


def _raise_file_limit() -> None:
    """Every connection is a file descriptor: take all the kernel allows this process
    (the soft limit is often 1024), so connection limits, not the fd table, decide."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _run_worker(config: Config, sock: socket.socket, ready: Callable[[], None]) -> None:
    tune_malloc()
    _raise_file_limit()
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve_worker(config, sock, ready))
    finally:
        loop.close()


def run(
    config: Config,
    on_ready: Callable[[Config, int], None],
    on_admin_created: Callable[[str], None] | None = None,
) -> int:
    """Run until interrupted; `on_ready(config, port)` runs once workers accept requests,
    `on_admin_created(password)` once if the first start created the admin account."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload before the workers can take one
    run_in_child(lambda: _check_trust_policy(config), expected=(StartError,))  # as _prepared
    lock = _claim_data_dir(config)  # StartError before anything started
    try:
        sock = _reserve_port(config.http.host, config.http.port)
    except StartError:
        if lock is not None:
            os.close(lock)
        raise
    port = sock.getsockname()[1]
    supervisor = Supervisor(config)
    try:
        effective = supervisor.start_backends()
        supervision.sweep(effective.data_dir)
        password = _prepared(effective)
        if password is not None and on_admin_created is not None:
            on_admin_created(password)
        # `sock` is bound but never listening: it keeps the port ours while no worker
        # holds it (all restarting); the kernel hands connections only to listening ones.

        def ready() -> None:
            url = local_service.base_url(effective.http.host, port)
            service = local_service.LocalService(url, os.getpid(), effective.auth.enabled)
            local_service.announce(effective.data_dir, service)
            on_ready(effective, port)

        if effective.http.workers > 1:
            load_worker_code()  # shared by the workers forked from here
        return WorkerPool(effective, port, supervisor).run(ready)
    finally:
        sock.close()
        local_service.withdraw(config.data_dir, os.getpid())
        supervision.remove(config.data_dir)
        supervisor.stop_backends()
        if lock is not None:
            os.close(lock)


RESTART_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
"""Seconds before a dead worker is replaced, growing with each death in a row."""
STEADY_SECONDS = 60.0
"""A worker that lived this long resets the back-off."""
START_ATTEMPTS = 5
"""Workers that die before any has ever become ready: the start itself is broken."""
TICK = 0.5


class WorkerPool:
    """`http.workers` forked worker processes sharing the port, watched by the supervisor:
    a worker that dies is replaced after a back-off, its job claims and upload leases are
    released at once, and the embedded backends stay up meanwhile (and are restarted if
    they die). Only SIGINT/SIGTERM, or a start that never works, end it."""

    def __init__(self, config: Config, port: int, supervisor: Supervisor) -> None:
        self.config = config
        self.port = port
        self.supervisor = supervisor
        self.wanted = config.http.workers
        self.children: dict[int, float] = {}
        """Worker pid → when it was forked (monotonic)."""
        self.ready: set[int] = set()
        self.ever_ready = False
        self.deaths_in_a_row = 0
        self.start_failures = 0
        self.respawns: list[float] = []
        self.stopping = False
        self.exit_code = 0
        self.orphans_pending = False
        self.status = supervision.SupervisorStatus(os.getpid(), self.wanted)
        self._written: str | None = None
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)

    def spawn(self) -> None:
        supervisor = os.getpid()
        until_single_threaded()
        # What the supervisor holds now goes to the permanent generation: the worker's
        # collections then never write to those objects, so their pages stay shared
        # (copy-on-write) instead of being copied into every worker: ~15 MiB per worker
        # (docs/benchmarks.md, "memory: the verification stack loaded on first use").
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # worker
            code = 0
            try:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)  # the supervisor's handler is not ours
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker takes it
                die_with_parent(supervisor)
                os.close(self._read_fd)
                sock = _listen_socket(self.config.http.host, self.port)
                sock.listen(1024)
                me = f"{os.getpid()}\n".encode()

                def signal_ready() -> None:
                    os.write(self._write_fd, me)

                _run_worker(self.config, sock, signal_ready)
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(code)
        self.children[pid] = time.monotonic()

    def run(self, on_ready: Callable[[], None]) -> int:
        def stop(signum: int, _frame: object) -> None:
            self.stopping = True
            self.respawns.clear()
            for child in self.children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signum)

        def forward(signum: int, _frame: object) -> None:
            for child in self.children:  # SIGHUP: every worker reloads the trust policy
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signum)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGHUP, forward)
        for _ in range(self.wanted):
            self.spawn()
        announced = False
        try:
            while self.children or not self.stopping:
                self._wait_for_ready()
                self._reap()
                if self.stopping:
                    continue
                self.supervisor.check_backends(self.status.backends, self._publish)
                self._release_orphans()
                self._respawn_due()
                self._publish()
                if not announced and len(self.ready) >= self.wanted:
                    announced = True  # after the status says so: /readyz agrees at once
                    on_ready()
        finally:
            os.close(self._read_fd)
            os.close(self._write_fd)
        return self.exit_code

    def _wait_for_ready(self) -> None:
        readable, _, _ = select.select([self._read_fd], [], [], TICK)
        if not readable:
            return
        with contextlib.suppress(BlockingIOError, InterruptedError):
            for line in os.read(self._read_fd, 4096).split():
                pid = int(line)
                if pid in self.children:
                    self.ready.add(pid)
                    self.ever_ready = True

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, code = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, code = pid, 0
            if done == 0:
                continue
            started = self.children.pop(pid)
            was_ready = pid in self.ready
            self.ready.discard(pid)
            _forget_metrics(pid)
            if self.stopping:
                status = os.waitstatus_to_exitcode(code)
                if status not in (0, -signal.SIGINT, -signal.SIGTERM):
                    self.exit_code = 1
                continue
            self._died(pid, code, time.monotonic() - started, was_ready)

    def _died(self, pid: int, code: int, lived: float, was_ready: bool) -> None:
        self.orphans_pending = True
        if lived >= STEADY_SECONDS:
            self.deaths_in_a_row = 0
        delay = RESTART_DELAYS[min(self.deaths_in_a_row, len(RESTART_DELAYS) - 1)]
        self.deaths_in_a_row += 1
        if not self.ever_ready and not was_ready:
            self.start_failures += 1
            if self.start_failures >= START_ATTEMPTS:
                log.error("workers keep failing to start; stopping", attempts=START_ATTEMPTS)
                self.exit_code = 1
                self.stopping = True
                for child in self.children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGTERM)
                return
        log.error(
            "worker died; starting another",
            pid=pid,
            exit=os.waitstatus_to_exitcode(code),
            lived_seconds=round(lived, 1),
            restart_in=delay,
        )
        self.respawns.append(time.monotonic() + delay)

    def _release_orphans(self) -> None:
        """A dead worker's job claims and upload leases end now, not when their leases run
        out; retried every tick while the database cannot be reached."""
        if not self.orphans_pending:
            return
        try:  # in a child, as `_prepared`: the supervisor keeps no database code
            jobs, uploads = run_in_child(
                lambda: asyncio.run(_released_orphans(self.config)), expected=(Exception,)
            )
        except Exception as exc:  # the database may be down too: try again next tick
            log.warning("cannot release the dead worker's claims yet", error=str(exc))
            return
        self.orphans_pending = False
        log.info("released a dead worker's claims", jobs_requeued=jobs, uploads_released=uploads)

    def _respawn_due(self) -> None:
        now = time.monotonic()
        due = [t for t in self.respawns if t <= now]
        self.respawns = [t for t in self.respawns if t > now]
        for _ in due:
            self.spawn()

    def _publish(self) -> None:
        self.status.workers_running = len(self.ready)
        text = json.dumps(asdict(self.status))
        if text != self._written:
            supervision.write(self.config.data_dir, self.status)
            self._written = text


def _forget_metrics(pid: int) -> None:
    """A dead worker's live gauges (the upload buffer in use) must not count any more."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


async def _released_orphans(config: Config) -> tuple[int, int]:
    from registry.db.pool import create_pool

    assert config.database.dsn
    async with asyncio.timeout(10):
        pool = await create_pool(config.database.dsn, min_size=1, max_size=1, bulk=False)
        try:
            return await _release_orphans(pool)
        finally:
            await pool.close()


async def _release_orphans(pool: Any) -> tuple[int, int]:
    """Job claims and upload leases of this host's processes that no longer run."""
    from registry.db import uploads as upload_sessions
    from registry.pipeline.jobs import JobQueue

    host = socket.gethostname()
    jobs = await JobQueue(pool).requeue_orphans(host)
    uploads = await upload_sessions.release_orphans(pool, host)
    return jobs, uploads
