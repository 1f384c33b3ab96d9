"""`zoll mirror`: keep sovereign copies of upstream images, with live progress.

    zoll mirror apply mirror.yaml [--run]   store a mirror set, queue its entries
    zoll mirror run [--set S] [--entry E]   copy now: progress per blob, summary table
    zoll mirror status                      entries, last runs, errors, pending work

`run` makes this process a worker for the durable mirror jobs (the service's workers do
the same on their schedule); with `--wait` it also runs the pipeline until each mirrored
image is admitted or quarantined. Interrupted runs resume where they stopped.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.cli.args import add_config_args, add_database_args
from registry.cli.output import add_json_flag, console, emit_json, table, transfer_progress

if TYPE_CHECKING:
    from registry.cli.service_api import ServiceClient
    from registry.oci.digest import Digest

WATCH_POLL = 0.02
"""How often `--wait` asks whether the service is done (one small count query)."""
FOLLOW_WAIT = {True: "30", False: "0.5"}
"""How long one progress call may wait on the service: a machine reading --json needs
only the end; a person watches the bar move twice a second."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mirror", help="mirror upstream images into Zoll")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    apply = actions.add_parser("apply", help="store a mirror set and queue its entries")
    apply.add_argument("file", type=Path)
    apply.add_argument("--run", action="store_true", help="copy now, with progress")
    apply.add_argument(
        "--wait",
        action="store_true",
        help="wait until every image is admitted or quarantined (by the service, or by "
        "this process with --run)",
    )
    apply.add_argument(
        "--url",
        default=os.environ.get("ZOLL_URL"),
        help="apply through this service's API (or ZOLL_URL; credentials from ZOLL_USER and "
        "ZOLL_PASSWORD); default: the service running from the data folder, if any",
    )
    run = actions.add_parser("run", help="copy due or selected entries now")
    run.add_argument("--set", dest="set_name", help="only this mirror set")
    run.add_argument("--entry", help="only this entry (with --set)")
    run.add_argument("--wait", action="store_true", help="also run the pipeline to its end")
    status = actions.add_parser("status", help="mirror entries and their last runs")
    for q in (apply, run, status):
        add_config_args(q)
        add_database_args(q)
        add_json_flag(q)
        q.set_defaults(handler=_handler, quick_exit=True)  # starts nothing that outlives it
    for q in (apply, run):
        q.add_argument("--jobs", type=int, default=4, help="images copied at once")


class RichCopyProgress:
    """Per-blob progress bars (bytes, rate, ETA) for the copy engine."""

    def __init__(self, enabled: bool) -> None:
        self.bars = transfer_progress(disable=not enabled)
        self._tasks: dict[Digest, Any] = {}

    def blob_started(self, digest: Digest, size: int) -> None:
        self._tasks[digest] = self.bars.add_task(f"blob {digest.encoded[:12]}", total=size)

    def blob_advanced(self, digest: Digest, nbytes: int) -> None:
        task = self._tasks.get(digest)
        if task is not None:
            self.bars.advance(task, nbytes)

    def blob_finished(self, digest: Digest, fetched: bool) -> None:
        task = self._tasks.pop(digest, None)
        if task is not None:
            self.bars.remove_task(task)


def _handler(args: argparse.Namespace) -> int:
    if args.action == "apply" and not args.run and not args.dsn:
        from registry.cli.service_api import ServiceError

        try:
            client = _service_client(args)
            if client is not None:
                try:
                    return _apply_through(client, args)
                finally:
                    client.close()
        except ServiceError as exc:
            return _failed(exc)
    return _through_database(args)


def _through_database(args: argparse.Namespace) -> int:
    import asyncio

    from registry.cli.database import NoDatabase
    from registry.config import ConfigError
    from registry.mirror.sets import MirrorSetError

    try:
        return asyncio.run(_main(args))
    except (NoDatabase, MirrorSetError, ConfigError) as exc:
        return _failed(exc)


def _failed(why: Exception | str) -> int:
    console.print(str(why), style="red", markup=False, highlight=False, soft_wrap=True)
    return 2


def _service_client(args: argparse.Namespace) -> ServiceClient | None:
    """The service to apply through: --url, or the one running from the data folder (which
    answers without loading what the database path needs); None: use the database."""
    from registry.cli.service_api import (
        ServiceClient,
        credentials_from_env,
        light_data_dir,
        local_client,
    )

    timeout = float(FOLLOW_WAIT[True]) + 30
    if args.url:
        return ServiceClient(args.url, credentials_from_env(), timeout)
    data_dir = light_data_dir(args.data_dir, args.config)
    if data_dir is None:
        from registry.cli.database import NoDatabase, cli_data_dir

        try:
            data_dir = cli_data_dir(args)
        except NoDatabase:
            return None  # the database path says what is wrong with the configuration
    return local_client(data_dir, timeout)


def _apply_through(client: ServiceClient, args: argparse.Namespace) -> int:
    """`apply` by the service's API: send the set, then follow its progress calls."""
    try:
        body = args.file.read_bytes()
    except OSError as exc:
        return _failed(f"cannot read {args.file}: {exc.strerror}")
    applied = client.call(
        "POST",
        "/api/v1/mirror/sets",
        query={"source": str(args.file)},
        body=body,
        content_type="application/yaml",
    )
    name = applied["set"]
    if not args.wait:
        _applied(name, applied["entries"], args.json)
        return 0
    started = time.monotonic()
    with transfer_progress(disable=args.json) as bars:
        task = bars.add_task(f"mirror set {name}", total=None)
        while True:
            report = client.call(
                "GET",
                f"/api/v1/mirror/sets/{name}/progress",
                query={"wait": FOLLOW_WAIT[bool(args.json)]},
            )
            bars.update(task, completed=report["done"], total=report["done"] + report["pending"])
            if report["finished"]:
                break
    return _report(
        name,
        report["images"],
        report["failed"],
        time.monotonic() - started,
        args.json,
        charts=report.get("charts") or [],
        release=report.get("release"),
    )


def _applied(name: str, entries: list[str], as_json: bool) -> None:
    if as_json:
        emit_json({"set": name, "entries": entries, "queued": True})
    else:
        console.print(
            f"applied mirror set [bold]{name}[/]: {len(entries)} entries "
            "queued for the service (or copy them now with `zoll mirror run`)"
        )


async def _main(args: argparse.Namespace) -> int:
    if args.action == "status" or (args.action == "apply" and not args.run):
        return await _bookkeeping(args)  # the database is enough: the service does the work
    from registry.audit import acting_as
    from registry.cli.database import cli_actor, cli_config
    from registry.mirror.copy import Copier
    from registry.mirror.jobs import queue_entry
    from registry.mirror.sets import MirrorSet
    from registry.mirror.store import apply_set
    from registry.pipeline.services import PipelineServices
    from registry.service import close_registry, open_registry

    mirror_set = MirrorSet.load(args.file) if args.action == "apply" else None
    registry = await open_registry(cli_config(args))
    services = await PipelineServices.open(registry)
    try:
        if mirror_set is not None:
            with acting_as(cli_actor()):
                names = await apply_set(registry.pool, *mirror_set)
            for name in names:
                await queue_entry(services, mirror_set[0].name, name)
            if not args.json:
                console.print(
                    f"applied mirror set [bold]{mirror_set[0].name}[/]: {len(names)} entries"
                )
        elif args.set_name:
            entries = await registry.pool.fetch(
                """SELECT name FROM mirror_entries
                   WHERE set_name = $1 AND ($2::text IS NULL OR name = $2)""",
                args.set_name,
                args.entry,
            )
            if not entries:
                wanted = f"{args.set_name}/{args.entry or '*'}"
                console.print(f"[red]no mirror entries match {wanted}[/]")
                return 2
            for row in entries:
                await queue_entry(services, args.set_name, row["name"])
        progress = RichCopyProgress(enabled=not args.json)
        services.copier = Copier(registry, progress=progress)
        started = time.monotonic()
        with progress.bars:
            results = await _work(services, args.jobs, with_pipeline=args.wait)
        if args.wait:
            await _add_verdicts(registry.pool, results)
        return _summary(results, time.monotonic() - started, args.json, services)
    finally:
        await services.aclose()
        await close_registry(registry)


async def _bookkeeping(args: argparse.Namespace) -> int:
    """`apply` (queue only) and `status` without a service to ask: done in the database."""
    from registry.audit import acting_as
    from registry.cli.database import cli_actor, resolve_dsn
    from registry.db.pool import create_pool
    from registry.mirror.sets import MirrorSet
    from registry.mirror.store import apply_and_queue

    mirror_set = MirrorSet.load(args.file) if args.action == "apply" else None
    pool = await create_pool(resolve_dsn(args), min_size=1, max_size=2, bulk=False)
    try:
        if args.action == "status":
            return await _status(pool, args)
        assert mirror_set is not None
        with acting_as(cli_actor()):
            names, since = await apply_and_queue(pool, *mirror_set)
        if not args.wait:
            _applied(mirror_set[0].name, names, args.json)
            return 0
        return await _watch(pool, mirror_set[0].name, since, args.json)
    finally:
        await pool.close()


async def _work(services: Any, parallel: int, *, with_pipeline: bool) -> list[dict[str, Any]]:
    """Run mirror jobs (and pipeline stages with `with_pipeline`) until none is left."""
    import asyncio
    import contextlib

    from registry.mirror.progress import MIRROR_KINDS
    from registry.pipeline.runner import HANDLERS, PipelineRunner
    from registry.pipeline.stages import STAGES

    runner = PipelineRunner(services)
    kinds = MIRROR_KINDS + (list(STAGES) if with_pipeline else [])
    kinds = [k for k in kinds if k in HANDLERS]
    results: list[dict[str, Any]] = []

    async def worker(n: int) -> None:
        idle = 0
        while idle < 2:  # nothing queued or running anywhere, twice in a row
            job = await services.jobs.claim(f"{runner.worker}:cli{n}", kinds)
            if job is None:
                counts = await services.jobs.counts()
                busy = sum(
                    counts.get(k, {}).get(s, 0) for k in kinds for s in ("queued", "running")
                )
                idle = idle + 1 if busy == 0 else 0
                await asyncio.sleep(0.05 if busy == 0 else 0.2)
                continue
            idle = 0
            for ran in await runner.run(job, worker=f"{runner.worker}:cli{n}", kinds=kinds):
                if ran.kind != "mirror-image":
                    continue
                row = await services.registry.pool.fetchrow(
                    "SELECT state, last_error, result FROM jobs WHERE id = $1", ran.id
                )
                results.append(
                    {
                        "job": ran.payload,
                        "state": row["state"],
                        "error": row["last_error"],
                        "result": row["result"],
                    }
                )

    tasks = [asyncio.create_task(worker(n)) for n in range(parallel)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return results


async def _add_verdicts(pool: Any, results: list[dict[str, Any]]) -> None:
    """With --wait the pipeline ran to its end: say what it decided for each image."""
    for r in results:
        digest = (r["result"] or {}).get("digest")
        row = await pool.fetchrow(
            """SELECT s.state, s.reasons FROM mirror_images i
               JOIN repositories repo ON repo.name = i.repository
               JOIN image_status s ON s.repository_id = repo.id AND s.digest = i.digest
               WHERE i.set_name = $1 AND i.entry = $2 AND i.digest = $3""",
            r["job"]["set"],
            r["job"]["entry"],
            digest,
        )
        if row is not None:
            r["image_state"], r["reasons"] = row["state"], list(row["reasons"] or [])


def _summary(results: list[dict[str, Any]], elapsed: float, as_json: bool, services: Any) -> int:
    failed = [r for r in results if r["state"] != "done"]
    if as_json:
        emit_json({"seconds": round(elapsed, 2), "images": results, "failed": len(failed)})
        return 1 if failed else 0
    rows = table(
        "entry",
        "reference",
        "digest",
        "fetched",
        "blobs new/reused",
        "result",
        title=f"mirrored in {elapsed:.1f}s",
    )
    for r in results:
        res = r["result"] or {}
        rows.add_row(
            f"{r['job']['set']}/{r['job']['entry']}",
            r["job"]["reference"],
            (res.get("digest") or "")[:19],
            f"{res.get('bytes_fetched', 0) / 1e6:.1f} MB",
            f"{res.get('blobs_fetched', 0)}/{res.get('blobs_reused', 0)}",
            _verdict(r),
        )
    console.print(rows)
    return 1 if failed else 0


def _verdict(r: dict[str, Any]) -> str:
    if r["state"] != "done":
        return f"[red]{r['state']}: {r['error']}[/]"
    image_state = r.get("image_state")
    if image_state is None:
        return "[green]copied[/]"
    if image_state == "admitted":
        return "[green]admitted[/]"
    why = "; ".join(r.get("reasons") or [])
    return f"[yellow]{image_state}[/]" + (f": {why}" if why else "")


async def _watch(pool: Any, set_name: str, since: Any, as_json: bool) -> int:
    """Follow the service working on a mirror set until nothing is left to do."""
    from registry.mirror import progress

    started = time.monotonic()
    with transfer_progress(disable=as_json) as bars:
        task = bars.add_task(f"mirror set {set_name}", total=None)
        async for pending, done in progress.follow(pool, since, WATCH_POLL):
            bars.update(task, completed=done, total=done + pending)
    images = await progress.set_images(pool, set_name)
    failed = await progress.failures_since(pool, since)
    charts = await progress.set_charts(pool, set_name)
    release = await progress.set_release(pool, set_name)
    elapsed = time.monotonic() - started
    return _report(set_name, images, failed, elapsed, as_json, charts=charts, release=release)


def _report(
    set_name: str,
    images: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    elapsed: float,
    as_json: bool,
    *,
    charts: list[dict[str, Any]] | None = None,
    release: dict[str, Any] | None = None,
) -> int:
    """What the service decided for each chart and image of the set; 1 if a mirror job
    failed. A release gets its name, version and one line per chart first."""
    charts = charts or []
    if as_json:
        emit_json(
            {
                "seconds": round(elapsed, 2),
                "release": release,
                "charts": charts,
                "images": images,
                "failed": failed,
            },
        )
        return 1 if failed else 0
    if release is not None:
        admitted = sum(1 for c in charts if c["state"] == "admitted")
        console.print(
            f"release [bold]{release['name']}[/] {release.get('version') or ''}: "
            f"{admitted}/{len(charts)} charts and "
            f"{sum(1 for i in images if i['state'] == 'admitted')}/{len(images)} images admitted"
        )
    if charts:
        shown = table("chart", "digest", "state", "images admitted", "held back by",
                      title=f"charts of {set_name}")  # fmt: skip
        for c in charts:
            ok = sum(1 for i in c["images"] if i["state"] == "admitted")
            colour = "green" if c["state"] == "admitted" else "yellow"
            shown.add_row(
                c["repository"],
                c["digest"][:19],
                f"[{colour}]{c['state']}[/]",
                f"{ok}/{len(c['images'])}",
                "; ".join((c["reasons"] or [])[:2]),
            )
        console.print(shown)
    shown = table("entry", "reference", "digest", "state", title=f"mirror set {set_name}")
    for r in images:
        colour = "green" if r["state"] == "admitted" else "yellow"
        shown.add_row(r["entry"], r["reference"], r["digest"][:19], f"[{colour}]{r['state']}[/]")
    console.print(shown)
    for f in failed:
        console.print(f"[red]failed[/] {f['job'].get('reference', '')}: {f['error']}")
    return 1 if failed else 0


async def _status(pool: Any, args: argparse.Namespace) -> int:
    from registry.mirror import progress

    rows = await progress.entries(pool)
    jobs = await progress.pending_mirror_jobs(pool)
    if args.json:
        emit_json({"entries": rows, "jobs": jobs})
        return 0
    shown = table("set/entry", "images", "last run", "next run", "error", title="mirror entries")
    for r in rows:
        shown.add_row(
            f"{r['set_name']}/{r['name']}",
            str(r["images"]),
            str(r["last_run_at"] or "never"),
            str(r["next_run_at"]),
            r["last_error"] or "",
        )
    console.print(shown)
    if jobs:
        console.print("pending: " + ", ".join(f"{k} {v}" for k, v in jobs.items()))
    return 0
