"""Runs pipeline jobs in each worker process, and notices new and stale images.

`PipelineRunner` claims jobs with bounded concurrency (`pipeline.concurrency`), wakes on
PostgreSQL NOTIFY instead of polling hard, requeues jobs whose worker died, and every
`pipeline.reevaluate_interval` looks for images judged with other inputs (trust policy,
catalog, vulnerability data) than today's and sends them through the pipeline again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import asyncpg

from attest.trust_policy import TrustPolicyError
from registry.audit import Actor, acting_as
from registry.content import on_manifest_stored
from registry.db import manifests as manifest_rows
from registry.db.notify import Listener
from registry.http.state import Registry
from registry.logs import get_logger
from registry.metrics import JOB_OUTCOMES
from registry.oci.digest import Digest
from registry.oci.manifest import Manifest, parse_manifest
from registry.pipeline import status
from registry.pipeline.classify import artifact_type, attachment_of, classify
from registry.pipeline.exemptions import attachment, decide_artifact
from registry.pipeline.jobs import (
    BULK,
    HANDOFF,
    LANE,
    NOTIFY_CHANNEL,
    PUSH,
    Cancelled,
    Failed,
    Handoff,
    Job,
    JobQueue,
    Lane,
    LeaseLost,
    Permanent,
    RetryLater,
)
from registry.pipeline.services import PipelineServices
from registry.pipeline.stages import STAGES, enqueue, run_stage
from registry.pipeline.trust import RELOAD_CHANNEL
from registry.processes import process_id

log = get_logger("zoll.pipeline")
JobHandler = Callable[[PipelineServices, Job], Awaitable[dict[str, Any] | None]]
HANDLERS: dict[str, JobHandler] = {}
Periodic = Callable[[PipelineServices], Awaitable[int]]
PERIODIC: list[Periodic] = []
HOUSEKEEPING_SECONDS = 10.0
PIPELINE_ACTOR = Actor("pipeline", "system", source="pipeline")
"""Who the audit log names for what jobs change (mirrored images, attached attestations)."""
"""Housekeeping others add (e.g. queueing mirror entries whose schedule is due)."""


def periodic(fn: Periodic) -> Periodic:
    PERIODIC.append(fn)
    return fn


def job_handler(kind: str) -> Callable[[JobHandler], JobHandler]:
    """Register the handler of a job kind (mirror and rebuild jobs register theirs)."""

    def register(fn: JobHandler) -> JobHandler:
        HANDLERS[kind] = fn
        return fn

    return register


def _stage_handler(stage: str) -> JobHandler:
    async def handle(svc: PipelineServices, job: Job) -> dict[str, Any]:
        outcome = await run_stage(svc, stage, job.payload["repository"], job.payload["digest"])
        return {"outcome": outcome}

    return handle


for _stage in STAGES:
    HANDLERS[_stage] = _stage_handler(_stage)


@on_manifest_stored
async def notice_manifest(
    registry: Registry, repository: str, manifest: Manifest, tags: list[str], external: bool
) -> None:
    """Every stored manifest gets a status row; images, indexes and charts start in
    quarantine and enter the pipeline; a new signature or attestation sends its subject
    through again; any other artifact is held or served by the namespace's rule."""
    rule = registry.config.namespace(repository)
    kind = classify(manifest)
    evaluated = rule.evaluate and registry.config.pipeline.enabled
    digest = str(manifest.digest)
    subject = attachment_of(manifest, tags) if kind == "artifact" else None
    if kind != "artifact":
        await status.ensure(
            registry.pool, repository, digest, kind, "quarantined" if evaluated else "exempt"
        )
    else:
        if subject is None and not tags:  # a tag-scheme name may be known from before
            subject = attachment_of(manifest, await _tags_of(registry, repository, digest))
        decided = (
            attachment(subject)
            if subject is not None
            else decide_artifact(rule, artifact_type(manifest), evaluated)
        )
        await status.ensure(
            registry.pool,
            repository,
            digest,
            kind,
            decided.state,
            decided.reasons,
            decided.artifact_type,
        )
    if not external or not evaluated:
        return
    jobs = JobQueue(registry.pool, max_attempts=registry.config.pipeline.max_attempts)
    # Pushed (or fetched through a pull-through cache) someone waits for it; stored by a
    # job (a mirror copy), it is work of that job's lane.
    lane = LANE.get() or Lane(PUSH, f"push:{repository}")
    if kind != "artifact":
        await jobs.enqueue(
            "verify",
            f"verify:{repository}@{digest}",
            {"repository": repository, "digest": digest},
            lane=lane,
        )
        return
    if not subject:
        return
    row = await status.get(registry.pool, repository, subject)
    if row is not None and row["kind"] != "artifact":
        await jobs.enqueue(
            "verify",
            f"verify:{repository}@{subject}",
            {"repository": repository, "digest": subject},
            delay=1,
            lane=lane,
        )


async def _tags_of(registry: Registry, repository: str, digest: str) -> list[str]:
    image = await manifest_rows.image(registry.pool, repository, Digest.parse(digest))
    return list(image["tags"]) if image is not None else []


class PipelineRunner:
    def __init__(self, services: PipelineServices) -> None:
        self.svc = services
        self.config = services.config.pipeline
        self.worker = process_id()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener = Listener(
            services.config.database.dsn,
            {
                NOTIFY_CHANNEL: lambda _: self._wake.set(),
                RELOAD_CHANNEL: lambda _: self.reload_soon(),
            },
        )

    async def start(self) -> None:
        await self._listener.start()
        for n in range(self.config.concurrency):
            self._tasks.append(asyncio.create_task(self._work(f"{self.worker}:{n}")))
        self._tasks.append(asyncio.create_task(self._housekeeping()))

    def _reload_heard(self, _payload: str) -> None:
        self.reload_soon()

    def reload_soon(self) -> None:
        """Reload the trust policy in a task of its own (from a signal or a NOTIFY)."""
        task = asyncio.create_task(self.reload_trust_policy())
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        tasks = list(self._tasks)  # a reload's task leaves the list when it ends
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._listener.close()

    async def _work(self, name: str) -> None:
        """One job slot. When the database goes away (restarted, failed over) mid-job, the
        outcome cannot be recorded: the slot hands its jobs back to the queue once the
        database answers again, and goes on; it never dies with the outage."""
        while not self._stop.is_set():
            try:
                job = await self.svc.jobs.claim(name, list(HANDLERS))
                if job is None:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.config.poll_seconds)
                    continue
                await self.run(job, worker=name)
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                log.warning("pipeline slot lost the database", slot=name, error=str(exc))
                await self._give_back(name)

    async def _give_back(self, name: str) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.poll_seconds)
            try:
                released = await self.svc.jobs.requeue_worker(name)
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                continue
            log.info("pipeline slot has the database back", slot=name, requeued=released)
            return

    async def run(
        self, job: Job, *, worker: str | None = None, kinds: Collection[str] | None = None
    ) -> list[Job]:
        """Run a claimed job to its end (done, postponed, retried or failed), then every
        job handed to this worker on the way (`kinds` it may take); return all it ran."""
        handoff = Handoff(
            worker or f"{self.worker}:run", HANDLERS.keys() if kinds is None else kinds
        )
        ran = [job]
        try:
            while True:
                try:
                    await self._run_one(ran[-1], handoff)
                except asyncio.CancelledError:
                    if handoff.job is not None:  # not started: another worker takes it
                        with contextlib.suppress(Exception):
                            await self.svc.jobs.release(handoff.job)
                    raise
                if handoff.job is None:
                    return ran
                ran.append(handoff.job)
                handoff.job = None
        finally:
            handoff.closed = True

    async def _run_one(self, job: Job, handoff: Handoff) -> None:
        try:
            await self._attempt(job, handoff)
        except LeaseLost:
            # Its lease ran out (this worker stalled, or could not renew it for that long)
            # and the job was queued again: the run that took over records the outcome.
            log.warning(
                "job lease lost: outcome dropped", kind=job.kind, key=job.key, attempt=job.attempts
            )
            JOB_OUTCOMES.labels(job.kind, "lost").inc()
            if handoff.job is not None:
                await self.svc.jobs.begin(handoff.job)

    async def _attempt(self, job: Job, handoff: Handoff) -> None:
        keeper = asyncio.create_task(self._keep_lease(job))
        token = HANDOFF.set(handoff)
        lane = LANE.set(job.lane)  # what it queues is work of the same lane
        try:
            with acting_as(PIPELINE_ACTOR):
                result = await HANDLERS[job.kind](self.svc, job)
        except RetryLater as later:
            await self.svc.jobs.postpone(job, later.delay, str(later))
            JOB_OUTCOMES.labels(job.kind, "postponed").inc()
        except Cancelled as cancelled:
            log.info("job cancelled", kind=job.kind, key=job.key, reason=str(cancelled))
            await self.svc.jobs.cancel(job, str(cancelled))
            JOB_OUTCOMES.labels(job.kind, "cancelled").inc()
        except Exception as exc:
            permanent = isinstance(exc, Permanent)
            told = isinstance(exc, Failed)  # says in one line what went wrong
            error = str(exc) if told else f"{type(exc).__name__}: {exc}"
            next_try = await self.svc.jobs.fail(job, error, permanent=permanent)
            JOB_OUTCOMES.labels(job.kind, "failed" if next_try is None else "retried").inc()
            attempt = {"attempt": job.attempts, "max_attempts": job.max_attempts}
            event = "job failed" if next_try is not None else "job failed for good"
            retry = {"next_try_at": next_try.isoformat()} if next_try is not None else {}
            if told:
                log.warning(event, kind=job.kind, key=job.key, error=error, **attempt, **retry)
            else:
                log.exception(event, kind=job.kind, key=job.key, **attempt, **retry)
            if next_try is None and job.kind in STAGES:
                await self._reject(job, error)
        else:
            await self.svc.jobs.complete(job, result, then=handoff.job)
            JOB_OUTCOMES.labels(job.kind, "done").inc()
            return
        finally:
            HANDOFF.reset(token)
            LANE.reset(lane)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if handoff.job is not None:
            await self.svc.jobs.begin(handoff.job)

    async def _reject(self, job: Job, error: str) -> None:
        repo, digest = job.payload["repository"], job.payload["digest"]
        reason = f"{job.kind} failed after {job.attempts} attempts: {error}"
        await status.update(
            self.svc.registry.pool, repo, digest, state="rejected", reasons=[reason]
        )
        await status.event(
            self.svc.registry.pool, repo, digest, job.kind, "error", {"error": error}
        )

    async def _keep_lease(self, job: Job) -> None:
        """Renew the lease a third of the way through, until the job ends. A renewal that
        fails (the database unreachable for a moment) is tried again at the next turn:
        the lease outlasts two failed renewals."""
        while True:
            await asyncio.sleep(self.svc.jobs.lease_seconds / 3)
            try:
                held = await self.svc.jobs.extend(job)
            except Exception as exc:  # whichever error a lost connection gives
                log.warning("job lease not renewed", kind=job.kind, key=job.key, error=repr(exc))
                continue
            if not held:
                log.warning("job lease lost", kind=job.kind, key=job.key, attempt=job.attempts)
                return

    async def _housekeeping(self) -> None:
        """Every few seconds: requeue jobs of dead workers and run periodic tasks (mirror
        schedules); every `reevaluate_interval`: look for stale verdicts."""
        last_reevaluation = float("-inf")
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                await self.svc.jobs.requeue_expired()
                for task in PERIODIC:
                    await task(self.svc)
                if loop.time() - last_reevaluation >= self.config.reevaluate_interval:
                    last_reevaluation = loop.time()
                    await self.reevaluate()
            except Exception:  # housekeeping must survive a bad pass; it runs again later
                log.exception("pipeline housekeeping failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), HOUSEKEEPING_SECONDS)

    async def reevaluate(self) -> int:
        """Queue images never judged, or judged with other inputs than today's (as bulk
        work: what was pushed meanwhile goes first)."""
        token = LANE.set(Lane(BULK, "reevaluate"))
        try:
            return await self._reevaluate()
        finally:
            LANE.reset(token)

    async def _reevaluate(self) -> int:
        pool = self.svc.registry.pool
        queued = 0
        for row in await pool.fetch(
            """SELECT r.name, m.digest, m.media_type, m.content FROM manifests m
               JOIN repositories r ON r.id = m.repository_id
               LEFT JOIN image_status s ON s.repository_id = m.repository_id
                                       AND s.digest = m.digest
               WHERE s.digest IS NULL LIMIT 1000"""
        ):
            manifest = parse_manifest(bytes(row["content"]), row["media_type"])
            await notice_manifest(self.svc.registry, row["name"], manifest, [], True)
            queued += 1
        queued += await self._redecide_artifacts()
        fingerprints: dict[tuple[str, str], str] = {}
        for row in await pool.fetch(
            """SELECT r.name, s.digest, s.fingerprint, s.state FROM image_status s
               JOIN repositories r ON r.id = s.repository_id
               WHERE s.kind IN ('image', 'index', 'chart') AND s.state <> 'exempt'"""
        ):
            rule = self.svc.config.namespace(row["name"])
            inputs = (rule.prefix, self.svc.trust_policy.digest_for(row["name"]))
            if inputs not in fingerprints:
                fingerprints[inputs] = await self.svc.fingerprint(rule, row["name"])
            if row["fingerprint"] is not None and row["fingerprint"] != fingerprints[inputs]:
                await enqueue(self.svc, "verify", row["name"], row["digest"])
                queued += 1
        return queued

    async def _redecide_artifacts(self) -> int:
        """Artifacts that stand on their own follow today's namespace rules (a type added
        to or removed from allow_artifact_types since they were stored)."""
        pool = self.svc.registry.pool
        changed = 0
        for row in await pool.fetch(
            """SELECT r.name, s.digest, s.state, s.reasons, s.artifact_type FROM image_status s
               JOIN repositories r ON r.id = s.repository_id
               WHERE s.kind = 'artifact' AND s.artifact_type IS NOT NULL"""
        ):
            rule = self.svc.config.namespace(row["name"])
            evaluated = rule.evaluate and self.svc.config.pipeline.enabled
            decided = decide_artifact(rule, row["artifact_type"], evaluated)
            if (decided.state, decided.reasons) != (row["state"], list(row["reasons"] or [])):
                await status.update(
                    pool, row["name"], row["digest"], state=decided.state, reasons=decided.reasons
                )
                changed += 1
        return changed

    async def reload_trust_policy(self) -> None:
        """Read the trust policy file again (SIGHUP, or the admin API's NOTIFY); if what
        applies to some repositories changed, judge their images again."""
        try:
            before, after = await self.svc.reload_trust_policy()
        except (TrustPolicyError, OSError) as exc:
            log.error(
                "trust policy not reloaded",
                error=str(exc),
                sha256=self.svc.trust_policy.sha256,
                path=str(self.svc.config.attest.trust_policy),
            )
            return
        if (before.sha256, before.parts) == (after.sha256, after.parts):
            log.info("trust policy unchanged", sha256=after.sha256)
            return
        queued = await self.reevaluate()
        log.info(
            "trust policy reloaded",
            sha256=after.sha256,
            previous=before.sha256,
            path=str(after.path),
            images_requeued=queued,
        )
