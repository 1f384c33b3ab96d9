"""`zoll serve`: embedded backends, migrations, and worker processes sharing one port.

The supervisor (this process) starts the embedded PostgreSQL and SeaweedFS when no DSN or
S3 endpoint is configured, applies migrations once, then runs the HTTP workers: in
process for one worker, or as forked processes that each bind the port with
SO_REUSEPORT so the kernel spreads connections. On SIGINT/SIGTERM the workers drain and
stop first, then the embedded backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import random
import select
import signal
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from registry import local_service
from registry.auth.bootstrap import ensure_admin
from registry.config import Config
from registry.db.migrate import migrate
from registry.db.pool import create_pool
from registry.embedded.postgres import EmbeddedPostgres
from registry.embedded.seaweedfs import EmbeddedSeaweed
from registry.gc import collect
from registry.http.app import build_app
from registry.logs import get_logger
from registry.memory import tune_malloc
from registry.processes import alive, port_holder
from registry.service import close_registry, open_registry

log = get_logger("zoll.server")


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

    def stop_backends(self) -> None:
        if self._seaweed is not None:
            self._seaweed.stop()
        if self._postgres is not None:
            self._postgres.stop()


async def _prepare(config: Config) -> str | None:
    """Once per start, before any worker: migrations, crash repair, and on first start the
    admin account (its password is returned, once)."""
    assert config.database.dsn
    pool = await create_pool(config.database.dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("migrations applied", versions=[m.version for m in applied])
        if config.pipeline.enabled:
            await _repair(config, pool)
        if config.auth.enabled and config.auth.bootstrap_admin:
            return await ensure_admin(pool, config.auth.scrypt_log2_n)
        return None
    finally:
        await pool.close()


async def _repair(config: Config, pool: Any) -> None:
    """Attestations signed but not logged when the last run died get logged now; jobs
    whose worker died are queued again."""
    from attest.servicekeys import ServiceKeyring
    from attest.tlog.store import TransparencyLog
    from registry.pipeline.jobs import JobQueue
    from registry.pipeline.services import keyring_settings, log_origin

    keyring = await asyncio.to_thread(
        ServiceKeyring.load_or_create, config.data_dir, keyring_settings(config)
    )
    try:
        report = await TransparencyLog(pool, keyring.signer, log_origin(config)).repair()
        jobs = JobQueue(pool)
        requeued = await jobs.requeue_expired()
        requeued += await jobs.requeue_orphans(socket.gethostname(), alive)
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


async def _background(registry_config: Config, registry: Any, stopping: asyncio.Event) -> None:
    """Periodic GC (one at a time cluster-wide: collect() takes an advisory lock)."""
    if not registry_config.gc.enabled:
        return
    interval = registry_config.gc.interval
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval * random.uniform(0.9, 1.1))
        if stopping.is_set():
            return
        try:
            await collect(registry)
        except Exception:  # GC failures are logged and retried next interval
            log.exception("gc failed")


async def serve_worker(config: Config, sock: socket.socket, ready: Callable[[], None]) -> None:
    """One HTTP worker: its own pool and driver, serving on the shared socket."""
    from registry.pipeline.services import PipelineServices

    registry = await open_registry(config, run_migrations=False)
    services = await PipelineServices.open(registry)
    app = build_app(registry, services)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=config.http.shutdown_timeout)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    background = asyncio.create_task(_background(config, registry, stopping))
    pipeline = None
    if config.pipeline.enabled:
        from registry.pipeline.runner import PipelineRunner

        pipeline = PipelineRunner(services)
        await pipeline.start()
        loop.add_signal_handler(signal.SIGHUP, pipeline.reload_soon)  # the trust policy
    ready()
    try:
        await stopping.wait()
    finally:
        background.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await background
        if pipeline is not None:
            await pipeline.stop()
        await runner.cleanup()
        await services.aclose()
        await close_registry(registry)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _run_worker(config: Config, sock: socket.socket, ready: Callable[[], None]) -> None:
    tune_malloc()
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
    _check_trust_policy(config)
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
        password = asyncio.run(_prepare(effective))
        if password is not None and on_admin_created is not None:
            on_admin_created(password)
        workers = effective.http.workers

        def ready(config: Config, port: int) -> None:
            url = local_service.base_url(config.http.host, port)
            service = local_service.LocalService(url, os.getpid(), config.auth.enabled)
            local_service.announce(config.data_dir, service)
            on_ready(config, port)

        if workers == 1:
            sock.listen(1024)
            _run_worker(effective, sock, lambda: ready(effective, port))
            return 0
        return _run_forked(effective, sock, port, workers, ready)
    finally:
        sock.close()
        local_service.withdraw(config.data_dir, os.getpid())
        supervisor.stop_backends()
        if lock is not None:
            os.close(lock)


def _run_forked(
    config: Config,
    parent_sock: socket.socket,
    port: int,
    workers: int,
    on_ready: Callable[[Config, int], None],
) -> int:
    read_fd, write_fd = os.pipe()
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # worker: never returns into the supervisor's code
            code = 1
            try:
                os.close(read_fd)
                parent_sock.close()
                sock = _listen_socket(config.http.host, port)
                sock.listen(1024)

                def signal_ready() -> None:
                    os.write(write_fd, b".")

                _run_worker(config, sock, signal_ready)
                code = 0
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(code)
        children.append(pid)
    os.close(write_fd)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for forwarded in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(forwarded, forward)  # SIGHUP: every worker reloads the trust policy
    exited: dict[int, int] = {}
    ready = _await_workers(read_fd, children, exited)
    parent_sock.close()  # held (bound, not listening) until every worker listens
    if ready:
        on_ready(config, port)
    else:  # one died starting (its log says why): stop the others, then the backends
        log.error("a worker failed to start; stopping", workers=workers, exited=len(exited))
        forward(signal.SIGTERM, None)
    status = 0 if ready else 1
    for child in children:
        if child in exited:
            code = exited[child]
        else:
            code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        status = status or code
    os.close(read_fd)
    return 0 if status in (0, -signal.SIGINT, -signal.SIGTERM) else 1


def _await_workers(read_fd: int, children: list[int], exited: dict[int, int]) -> bool:
    """Wait until every worker says it is ready (True), or one of them ended first
    (False; its exit status goes into `exited`)."""
    started = 0
    while started < len(children):
        readable, _, _ = select.select([read_fd], [], [], 0.5)
        if readable:
            chunk = os.read(read_fd, len(children))
            if not chunk:
                return False
            started += len(chunk)
            continue
        for child in children:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid:
                exited[child] = os.waitstatus_to_exitcode(status)
                return False
    return True
