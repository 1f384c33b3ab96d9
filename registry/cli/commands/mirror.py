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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.cli.args import add_config_args, add_database_args, add_service_args
from registry.cli.output import (
    add_json_flag,
    console,
    count_progress,
    emit_json,
    table,
    transfer_progress,
)

if TYPE_CHECKING:
    from registry.cli.service_api import ServiceClient
    from registry.oci.digest import Digest

WATCH_POLL = 0.05
"""How often `--wait` asks how far the service is (a few index lookups)."""
FOLLOW_WAIT = {True: "30", False: "0.5"}
"""How long one progress call may wait on the service: a machine reading --json needs
only the end; a person watches the bar move twice a second."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mirror", help="mirror upstream images into Zoll")
    actions = p.add_subparsers(dest="action", metavar="COMMAND", required=True)
    apply = actions.add_parser("apply", help="store a mirror set and queue its entries")
    apply.add_argument("file", type=Path, help="the mirror set (YAML, docs/mirroring.md)")
    apply.add_argument("--run", action="store_true", help="copy now, with progress")
    apply.add_argument(
        "--wait",
        action="store_true",
        help="wait until every image is admitted or quarantined (by the service, or by "
        "this process with --run)",
    )
    add_service_args(apply, "apply")
    run = actions.add_parser("run", help="copy due or selected entries now")
    run.add_argument("--set", dest="set_name", help="only this mirror set")
    run.add_argument("--entry", help="only this entry (with --set)")
    run.add_argument("--wait", action="store_true", help="also run the pipeline to its end")
    status = actions.add_parser("status", help="mirror entries and their last runs")
    add_service_args(status, "ask")
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
    through_service = args.action == "status" or (args.action == "apply" and not args.run)
    if through_service and not args.dsn:
        from registry.cli.service_api import ServiceError

        try:
            client = _service_client(args)
            if client is not None:
                try:
                    if args.action == "status":
                        return _status_through(client, args)
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
    """The service to work through: --url, or the one running from the data folder (which
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
    with _Follower(name, args.json) as follower:
        while True:
            report = client.call(
                "GET",
                f"/api/v1/mirror/sets/{name}/progress",
                query={"wait": FOLLOW_WAIT[bool(args.json)]},
            )
            follower.show(report)
            if report["finished"]:
                break
    return follower.result(report, time.monotonic() - started)


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
    from registry.cli.database import cli_actor, cli_settings, resolve_dsn
    from registry.db.pool import create_pool
    from registry.mirror.sets import MirrorSet
    from registry.mirror.store import apply_and_queue

    mirror_set = MirrorSet.load(args.file) if args.action == "apply" else None
    pool = await create_pool(resolve_dsn(args), min_size=1, max_size=2, bulk=False)
    try:
        if args.action == "status":
            return await _status(pool, args)
        assert mirror_set is not None
        attempts = cli_settings(args).pipeline.max_attempts
        with acting_as(cli_actor()):
            names, _ = await apply_and_queue(pool, *mirror_set, max_attempts=attempts)
        if not args.wait:
            _applied(mirror_set[0].name, names, args.json)
            return 0
        return await _watch(pool, mirror_set[0].name, args.json)
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


async def _watch(pool: Any, set_name: str, as_json: bool) -> int:
    """Follow the service working on a mirror set until every entry is done or failed."""
    from registry.mirror import progress
    from registry.mirror.store import load_set

    mirror_set = await load_set(pool, set_name)
    started = time.monotonic()
    report: dict[str, Any] = {}
    with _Follower(set_name, as_json) as follower:
        async for report in progress.follow(pool, mirror_set, WATCH_POLL):
            follower.show(report)
    return follower.result(report, time.monotonic() - started)


class _Follower:
    """Shows a set's progress reports as they come: a bar counting images, and each
    entry's failures in one line each (the upstream's error, the attempt, the next try)
    the moment they are known; then what was decided for each image."""

    def __init__(self, set_name: str, as_json: bool) -> None:
        self.set_name = set_name
        self.as_json = as_json
        self.bars = count_progress("images", disable=as_json)
        self.task: Any = None
        self.told: dict[str, tuple[Any, ...]] = {}

    def __enter__(self) -> _Follower:
        self.bars.__enter__()
        self.task = self.bars.add_task(f"mirror set {self.set_name}", total=None)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self.bars.__exit__(kind, exc, tb)

    def show(self, report: dict[str, Any]) -> None:
        wanted = report["wanted"]
        total = wanted if wanted or report["finished"] else None
        self.bars.update(self.task, completed=report["ended"], total=total)
        if self.as_json:
            return
        for entry in report["entries"]:
            line = _failure_line(entry)
            seen = (entry["error"], entry["attempt"], entry["state"])
            if line is not None and self.told.get(entry["entry"]) != seen:
                self.told[entry["entry"]] = seen
                colour = "red" if entry["state"] == "failed" else "yellow"
                console.print(line, style=colour, markup=False, highlight=False, soft_wrap=True)

    def result(self, report: dict[str, Any], elapsed: float) -> int:
        """What the service decided for each image; 1 if an entry or an image failed."""
        failed = report["failed"] or [e for e in report["entries"] if e["state"] == "failed"]
        if self.as_json:
            emit_json({"seconds": round(elapsed, 2), **report})
            return 1 if failed else 0
        release, charts = report.get("release"), report.get("charts") or []
        if release is not None:
            images = report["images"]
            console.print(
                f"release [bold]{release['name']}[/] {release.get('version') or ''}: "
                f"{sum(1 for c in charts if c['state'] == 'admitted')}/{len(charts)} charts and "
                f"{sum(1 for i in images if i['state'] == 'admitted')}/{len(images)} "
                "images admitted"
            )
        if charts:
            shown = table("chart", "digest", "state", "images admitted", "held back by",
                          title=f"charts of {self.set_name}")  # fmt: skip
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
        if report["images"]:
            title = f"mirror set {self.set_name}"
            shown = table("entry", "reference", "digest", "state", title=title)
            for r in report["images"]:
                colour = "green" if r["state"] == "admitted" else "yellow"
                shown.add_row(
                    r["entry"], r["reference"], r["digest"][:19], f"[{colour}]{r['state']}[/]"
                )
            console.print(shown)
        count = sum(1 for e in report["entries"] if e["state"] == "failed")
        if count:
            console.print(
                f"[red]{count} of {len(report['entries'])} entries failed[/] "
                f"(zoll mirror status shows each entry's last error)"
            )
        return 1 if failed else 0


def _failure_line(entry: dict[str, Any]) -> str | None:
    """`entry: error — attempt 1 of 5 failed, next try at 12:03:04` (or `failed: …`)."""
    if not entry["error"]:
        return None
    if entry["state"] == "failed":
        tries = f" (after {entry['attempt']} attempts)" if (entry["attempt"] or 0) > 1 else ""
        return f"{entry['entry']}: failed: {entry['error']}{tries}"
    return (
        f"{entry['entry']}: {entry['error']} — attempt {entry['attempt']} of "
        f"{entry['max_attempts']} failed, next try at {_clock(entry['next_try_at'])}"
    )


def _clock(when: Any) -> str:
    """A time to try again, in local time (an ISO string from the API, or a datetime)."""
    from datetime import datetime

    if when is None:
        return "?"
    moment = datetime.fromisoformat(when) if isinstance(when, str) else when
    return str(moment.astimezone().strftime("%H:%M:%S"))


def _status_through(client: ServiceClient, args: argparse.Namespace) -> int:
    """`status` by the service's API: the same answer as from the database."""
    answer = client.call("GET", "/api/v1/mirror/sets")
    return _show_status(answer["entries"], answer["jobs"], args.json)


async def _status(pool: Any, args: argparse.Namespace) -> int:
    from registry.mirror import progress

    rows = await progress.entries(pool)
    jobs = await progress.pending_mirror_jobs(pool)
    return _show_status(rows, jobs, args.json)


def _show_status(rows: list[dict[str, Any]], jobs: dict[str, int], as_json: bool) -> int:
    if as_json:
        emit_json({"entries": rows, "jobs": jobs})
        return 0
    shown = table(
        "set/entry", "images", "state", "last run", "next run", "last error", title="mirror entries"
    )
    for r in rows:
        error = r["last_error"] or ""
        if error and r["next_try_at"] is not None:
            error += (
                f" (attempt {r['attempt']} of {r['max_attempts']},"
                f" next try at {_clock(r['next_try_at'])})"
            )
        shown.add_row(
            f"{r['set_name']}/{r['name']}",
            str(r["images"]),
            r["state"] or "",
            str(r["last_run_at"] or "never"),
            str(r["next_run_at"]),
            error,
        )
    console.print(shown)
    if jobs:
        console.print("pending: " + ", ".join(f"{k} {v}" for k, v in jobs.items()))
    return 0
