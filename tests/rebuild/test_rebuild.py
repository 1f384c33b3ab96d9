"""Rebuild real buildah images from git and prove them identical, or name what differs."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from attest.intoto import Statement
from attest.rebuild import (
    FailureReason,
    LayoutBases,
    RebuildLimits,
    RebuildResult,
    RecipeSpec,
    rebuild,
)
from attest.rebuild.buildah import TRANSIENT_RUNTIME_FAILURE, BuildahBackend
from attest.statements import Verifier
from registry.oci.digest import Digest
from registry.oci.reader import OCILayoutReader
from tests.rebuild.procs import processes_running
from tests.rebuild.project import BUSYBOX_FILES, Project
from tests.support.paths import REPO

pytestmark = pytest.mark.slow

NODE = Verifier("https://zoll.example/node/1", {"zoll": "0.1.0"})
BUSYBOX_STEPS = """COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""
APP = {
    **BUSYBOX_FILES,
    "Containerfile": "FROM scratch\n"
    + BUSYBOX_STEPS
    + "ADD etc/motd /etc/motd\n"
    + "COPY app/ /app/\n"
    + "RUN chmod 0750 /app/run.sh && echo built > /app/BUILT\n",
    "etc/motd": "welcome\n",
    "app/run.sh": "#!/bin/sh\necho run\n",
}


def schema_check(result: RebuildResult, image: str = "example/app") -> dict[str, Any]:
    statement = result.statement(image=image, rebuilder=NODE)
    schema = json.loads((REPO / "docs/schemas/rebuild-result-v1.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(statement["predicate"])
    predicate: dict[str, Any] = statement["predicate"]
    return predicate


def explain(result: RebuildResult) -> str:
    """The failure message for a rebuild that should have reproduced."""
    if result.diff is not None:
        return json.dumps(result.diff.to_json(), indent=1)
    return f"{result.error}\n{result.log_excerpt}"


def add_index(layout: Path, image: Digest, tag: str) -> Digest:
    """Tag an index over `image` (linux/amd64) and an absent arm64 image in `layout`."""
    blobs = layout / "blobs" / "sha256"
    size = (blobs / image.encoded).stat().st_size
    manifests = [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{'0' * 64}",
            "size": 500,
            "platform": {"os": "linux", "architecture": "arm64"},
        },
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": str(image),
            "size": size,
            "platform": {"os": "linux", "architecture": "amd64"},
        },
    ]
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
    ).encode()
    digest = Digest.of(raw)
    (blobs / digest.encoded).write_bytes(raw)
    top = json.loads((layout / "index.json").read_text())
    top["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": str(digest),
            "size": len(raw),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    (layout / "index.json").write_text(json.dumps(top))
    return digest


class BuildOutputLines:
    """A rebuild reporter that keeps the builder's output."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def stage(self, name: str, message: str) -> None:
        pass

    def log(self, line: str) -> None:
        self.lines.append(line)


def git_recipe(project: Project, **extra: Any) -> RecipeSpec:
    return RecipeSpec.from_mapping({"source": {"git": str(project.repo), "ref": "main"}, **extra})


async def test_a_git_recipe_reproduces_the_image_bit_for_bit(
    project: Project, tmp_path: Path
) -> None:
    commit = project.commit(APP)
    upstream = project.build_upstream(tmp_path / "upstream", timestamp=1700000000)
    scratch = tmp_path / "scratch"

    result = await rebuild(
        OCILayoutReader(tmp_path / "upstream"),
        "v1",
        bases=LayoutBases([]),
        recipe=git_recipe(project),
        output=tmp_path / "rebuilt",
        scratch=scratch,
    )

    assert result.outcome == "reproduced", explain(result)
    assert result.rebuilt == upstream == result.upstream
    assert result.source_digest == {"gitCommit": commit}
    assert result.recipe is not None
    assert result.recipe.source_date_epoch == 1700000000
    assert result.recipe.origins["source_date_epoch"] == "upstream"
    assert result.builder_version and result.builder_version[0].isdigit()
    rebuilt = OCILayoutReader(tmp_path / "rebuilt")
    assert (await rebuilt.get_manifest("rebuilt")).digest == upstream
    assert list(scratch.iterdir()) == []
    predicate = schema_check(result)
    assert predicate["outcome"] == "reproduced"
    assert predicate["source"]["digest"] == {"gitCommit": commit}
    assert predicate["rebuilder"]["version"]["buildah"] == result.builder_version
    assert all(layer["identical"] for layer in predicate["layers"])
    assert len(predicate["layers"]) == 5  # one per COPY/ADD/RUN

    # Given a multi-platform index, the rebuild picks the platform image and says so.
    index = add_index(tmp_path / "upstream", upstream, "multi")
    again = await rebuild(
        OCILayoutReader(tmp_path / "upstream"),
        "multi",
        bases=LayoutBases([]),
        recipe=git_recipe(project),
    )
    assert again.outcome == "reproduced", explain(again)
    assert (again.upstream, again.upstream_index) == (upstream, index)


async def test_a_runtime_that_could_not_start_is_tried_again(
    project: Project, tmp_path: Path
) -> None:
    """The kernel can refuse the chroot runtime's memfd seal for a moment (EBUSY; CI saw
    it once in hundreds of builds). The step is run again; the result is unchanged."""
    project.commit(APP)
    upstream = project.build_upstream(tmp_path / "upstream", timestamp=1700000000)
    real = shutil.which("buildah")
    assert real is not None
    marker = tmp_path / "failed-once"
    flaky = tmp_path / "buildah-first-run-fails"
    flaky.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" bud "*) if [ ! -e {marker} ]; then touch {marker}\n'
        f'  echo "Close_Fd {TRANSIENT_RUNTIME_FAILURE}: Device or resource busy" >&2\n'
        "  exit 1; fi;; esac\n"
        f'exec {real} "$@"\n'
    )
    flaky.chmod(0o755)
    output = BuildOutputLines()

    result = await rebuild(
        OCILayoutReader(tmp_path / "upstream"),
        "v1",
        bases=LayoutBases([]),
        recipe=git_recipe(project),
        backend=BuildahBackend(executable=str(flaky)),
        reporter=output,
    )

    assert marker.exists()
    assert result.outcome == "reproduced", explain(result)
    assert result.rebuilt == upstream
    assert any("could not start" in line and "retrying" in line for line in output.lines)


async def test_a_nondeterministic_step_is_named_in_the_diff(
    project: Project, tmp_path: Path
) -> None:
    project.commit(
        {
            **APP,
            "Containerfile": APP["Containerfile"] + "RUN date +%s%N > /build-time\n",
        }
    )
    upstream = project.build_upstream(tmp_path / "upstream")

    result = await rebuild(
        OCILayoutReader(tmp_path / "upstream"),
        "v1",
        bases=LayoutBases([]),
        recipe=git_recipe(project),
    )

    assert result.outcome == "differs"
    assert result.rebuilt is not None and result.rebuilt != upstream
    assert result.diff is not None
    changed = [layer for layer in result.diff.layers if not layer.identical]
    assert [layer.index for layer in changed] == [5]
    [file] = changed[0].files
    assert file.path == "/build-time" and file.change == "modified"
    assert [f.name for f in file.fields] == ["content"]
    predicate = schema_check(result)
    assert predicate["outcome"] == "differs"
    assert predicate["layers"][5]["differences"] == ["modified /build-time (content)"]
    assert predicate["rebuilt"]["digest"] == {"sha256": result.rebuilt.encoded}


async def test_base_images_come_from_zoll_by_digest(
    project: Project, tmp_path: Path, busybox_base: tuple[Path, Digest]
) -> None:
    base_layout, base_digest = busybox_base
    project.commit(
        {
            "Containerfile": f"FROM mirror.example/busybox@{base_digest}\nRUN echo hi > /hi\n",
            "Containerfile.tagged": "FROM mirror.example/busybox:1.36\nRUN echo tagged > /t\n",
        }
    )
    project.pull_base(base_layout, "1.36", f"mirror.example/busybox@{base_digest}")
    upstream = project.build_upstream(tmp_path / "upstream")
    zoll = LayoutBases([OCILayoutReader(base_layout)])

    pinned = await rebuild(
        OCILayoutReader(tmp_path / "upstream"), "v1", bases=zoll, recipe=git_recipe(project)
    )
    assert pinned.outcome == "reproduced", explain(pinned)
    assert pinned.rebuilt == upstream

    missing = await rebuild(
        OCILayoutReader(tmp_path / "upstream"),
        "v1",
        bases=LayoutBases([]),
        recipe=git_recipe(project),
        output=tmp_path / "never",
    )
    assert missing.outcome == "failed"
    assert missing.reason == FailureReason.BASE_IMAGE_MISSING
    assert f"docker.io/library/busybox@{base_digest}" not in (missing.message or "")
    assert f"mirror.example/busybox@{base_digest}" in (missing.message or "")
    assert not (tmp_path / "never").exists()
    assert schema_check(missing)["error"].startswith("base-image-missing: ")

    # A tag in FROM is pinned by the recipe instead (the vendor pulled it by tag).
    project.pull_base(base_layout, "1.36", "mirror.example/busybox:1.36")
    tagged = project.build_upstream(tmp_path / "tagged", containerfile="Containerfile.tagged")
    result = await rebuild(
        OCILayoutReader(tmp_path / "tagged"),
        "v1",
        bases=zoll,
        recipe=git_recipe(
            project,
            containerfile="Containerfile.tagged",
            base_images={"mirror.example/busybox:1.36": str(base_digest)},
        ),
    )
    assert result.outcome == "reproduced", explain(result)
    assert result.rebuilt == tagged


async def test_the_source_can_come_from_labels_and_the_recipe_from_provenance(
    project: Project, tmp_path: Path
) -> None:
    files = {
        **BUSYBOX_FILES,
        "Containerfile": "FROM scratch\nARG SOURCE\nARG REVISION\n"
        "LABEL org.opencontainers.image.source=$SOURCE "
        "org.opencontainers.image.revision=$REVISION\n" + BUSYBOX_STEPS,
        "services/api/build/Containerfile": "FROM scratch\nARG FLAVOUR\n"
        "COPY config.ini /etc/api.ini\nLABEL flavour=$FLAVOUR\n",
        "services/api/config.ini": "[api]\nport = 8080\n",
    }
    commit = project.commit(files)
    args = {"SOURCE": str(project.repo), "REVISION": commit}
    labelled = project.build_upstream(tmp_path / "labelled", build_args=args)
    # The labels name the source; the mirror set adds only the build arguments.
    refused = await rebuild(
        OCILayoutReader(tmp_path / "labelled"),
        "v1",
        bases=LayoutBases([]),
        recipe=RecipeSpec.from_mapping({"build_args": args}),
    )
    # A path on the Zoll node, named by the image itself, is not built by default.
    assert refused.reason == FailureReason.RECIPE_INVALID
    assert f"the image's labels names a local source ({project.repo})" in (refused.message or "")
    result = await rebuild(
        OCILayoutReader(tmp_path / "labelled"),
        "v1",
        bases=LayoutBases([]),
        recipe=RecipeSpec.from_mapping({"build_args": args}),
        local_derived_sources=True,
    )
    assert result.outcome == "reproduced", explain(result)
    assert result.rebuilt == labelled
    assert result.recipe is not None and result.recipe.origins["source"] == "labels"

    project.commit({**files, "later.txt": "a commit after the release\n"})
    api = project.build_upstream(
        tmp_path / "api",
        context="services/api",
        containerfile="build/Containerfile",
        build_args={"FLAVOUR": "release"},
    )
    provenance = Statement.parse(
        json.dumps(
            {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "api", "digest": {"sha256": api.encoded}}],
                "predicateType": "https://slsa.dev/provenance/v1",
                "predicate": {
                    "buildDefinition": {
                        "buildType": "https://mobyproject.org/buildkit@v1",
                        "externalParameters": {
                            "configSource": {
                                "uri": f"{project.repo}#main:services/api",
                                "digest": {"sha1": commit},
                                "path": "build/Containerfile",
                            },
                            "request": {"args": {"build-arg:FLAVOUR": "release"}},
                        },
                    },
                    "runDetails": {"builder": {"id": "https://ci.example/runner"}},
                },
            }
        ).encode(),
        None,
    )
    result = await rebuild(
        OCILayoutReader(tmp_path / "api"),
        "v1",
        bases=LayoutBases([]),
        provenance=[provenance],
        local_derived_sources=True,
    )
    # The provenance pins the release commit, not the later head of main.
    assert result.source_digest == {"gitCommit": commit}
    assert result.outcome == "reproduced", explain(result)
    assert result.recipe is not None
    assert (result.recipe.context, result.recipe.containerfile) == (
        "services/api",
        "build/Containerfile",
    )
    assert result.recipe.origins["build_args"] == "provenance"


SANDBOX_PROBE = (
    "RUN cut -d: -f1 -s /proc/net/dev | tr -d ' ' | sort > /netdevs"
    " && ls /proc | grep -c '^[0-9]' > /processes"
    " && mkdir /jail && (chroot /jail /nothing 2>&1 | grep -q 'not permitted'"
    " && echo chroot refused || echo chroot allowed) > /chroot\n"
)


async def test_rebuilds_run_without_network_host_processes_or_chroot(
    project: Project, tmp_path: Path
) -> None:
    project.commit(
        {**BUSYBOX_FILES, "Containerfile": "FROM scratch\n" + BUSYBOX_STEPS + SANDBOX_PROBE}
    )
    project.build_upstream(tmp_path / "upstream")
    result = await rebuild(
        OCILayoutReader(tmp_path / "upstream"),
        "v1",
        bases=LayoutBases([]),
        recipe=git_recipe(project),
        output=tmp_path / "rebuilt",
    )
    assert result.rebuilt is not None, explain(result)
    reader = OCILayoutReader(tmp_path / "rebuilt")
    manifest = json.loads((await reader.get_manifest("rebuilt")).raw)
    last = Digest.parse(manifest["layers"][-1]["digest"])
    layer = gzip.decompress(await reader.read_blob(last, 1 << 20))
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:

        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            assert member is not None
            return member.read()

        assert read("netdevs").split() == [b"lo"]
        assert int(read("processes")) < 10  # the host has far more
        assert read("chroot") == b"chroot refused\n"
    # The vendor's build saw the host (network, processes): the diff says where.
    assert result.diff is not None
    [changed] = [layer for layer in result.diff.layers if not layer.identical]
    assert {f.path for f in changed.files} >= {"/netdevs", "/processes", "/chroot"}


async def test_recipe_errors_give_clear_results_and_no_image(
    project: Project, tmp_path: Path
) -> None:
    project.commit(
        {
            **APP,
            "Containerfile.typo": "FROM scratch\nCOPY rootfs/ /\nRUNN true\n",
            "Containerfile.fails": "FROM scratch\n" + BUSYBOX_STEPS + "RUN echo doomed && exit 3\n",
            "Containerfile.unpinned": "FROM alpine:3.20\nRUN true\n",
        }
    )
    project.build_upstream(tmp_path / "upstream")
    scratch = tmp_path / "scratch"

    async def attempt(**recipe: Any) -> RebuildResult:
        spec = RecipeSpec.from_mapping(
            {"source": {"git": str(project.repo), "ref": "main"}, **recipe}
        )
        result = await rebuild(
            OCILayoutReader(tmp_path / "upstream"),
            "v1",
            bases=LayoutBases([]),
            recipe=spec,
            output=tmp_path / "out",
            scratch=scratch,
        )
        assert result.outcome == "failed"
        assert not (tmp_path / "out").exists()
        assert list(scratch.iterdir()) == []
        schema_check(result)
        return result

    missing = await attempt(context="services/none")
    assert missing.reason == FailureReason.RECIPE_INVALID
    assert "context 'services/none' does not exist" in (missing.message or "")
    assert missing.source_digest  # the commit that lacks it is recorded

    typo = await attempt(containerfile="Containerfile.typo")
    assert typo.reason == FailureReason.RECIPE_INVALID
    assert "line 3: unknown instruction 'RUNN'" in (typo.message or "")

    unpinned = await attempt(containerfile="Containerfile.unpinned")
    assert unpinned.reason == FailureReason.RECIPE_INVALID
    assert "alpine:3.20 is not pinned by digest" in (unpinned.message or "")

    fails = await attempt(containerfile="Containerfile.fails")
    assert fails.reason == FailureReason.BUILD_FAILED
    assert "doomed" in fails.log_excerpt
    assert "exit status 3" in fails.log_excerpt or "exit 3" in (fails.message or "")

    gone = await attempt(source={"git": str(project.repo), "ref": "release-9"})
    assert gone.reason == FailureReason.SOURCE_UNAVAILABLE
    assert "release-9" in (gone.message or "")

    nowhere = await attempt(source={"git": str(tmp_path / "no-such-repo.git")})
    assert nowhere.reason == FailureReason.SOURCE_UNAVAILABLE


async def test_a_build_past_its_time_limit_is_killed_whole(
    project: Project, tmp_path: Path
) -> None:
    project.commit(
        {**APP, "Containerfile.slow": "FROM scratch\n" + BUSYBOX_STEPS + "RUN sleep 3127\n"}
    )
    project.build_upstream(tmp_path / "upstream")
    started = time.monotonic()
    result = await rebuild(
        OCILayoutReader(tmp_path / "upstream"),
        "v1",
        bases=LayoutBases([]),
        recipe=git_recipe(project, containerfile="Containerfile.slow"),
        limits=RebuildLimits(build_timeout=8),
        output=tmp_path / "out",
        scratch=tmp_path / "scratch",
    )
    assert result.outcome == "failed"
    assert result.reason == FailureReason.TIMEOUT
    assert time.monotonic() - started < 8 + 30
    assert "timeout" in result.log_excerpt
    assert processes_running("sleep 3127") == []
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "scratch").iterdir()) == []
    assert os.path.isdir(tmp_path / "upstream")


async def test_cancelling_a_rebuild_stops_the_build_and_leaves_nothing(
    project: Project, tmp_path: Path
) -> None:
    project.commit(
        {**APP, "Containerfile.slow": "FROM scratch\n" + BUSYBOX_STEPS + "RUN sleep 3128\n"}
    )
    project.build_upstream(tmp_path / "upstream")
    task = asyncio.create_task(
        rebuild(
            OCILayoutReader(tmp_path / "upstream"),
            "v1",
            bases=LayoutBases([]),
            recipe=git_recipe(project, containerfile="Containerfile.slow"),
            output=tmp_path / "out",
            scratch=tmp_path / "scratch",
        )
    )
    deadline = time.monotonic() + 120
    while not processes_running("sleep 3128"):
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert processes_running("sleep 3128") == []
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "scratch").iterdir()) == []
