"""`zoll rebuild`: exit codes, the difference table, JSON, and the statement file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from registry.cli.main import main
from registry.cli.output import rich_console
from tests.rebuild.project import BUSYBOX_FILES, Project
from tests.support.servers import S3Server, live_registry, registry_config
from tests.support.tools import run, skopeo

ZOLL = str(Path(sys.executable).parent / "zoll")

pytestmark = pytest.mark.slow

CONTAINERFILE = """FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN echo stable > /stable
"""


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages are matched whole, so the console must not wrap them."""
    monkeypatch.setattr(rich_console(), "width", 300)


def recipe(tmp_path: Path, project: Project, **extra: str) -> str:
    path = tmp_path / "recipe.yaml"
    lines = [f"source: {{git: '{project.repo}', ref: main}}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_reproduced_is_exit_0_with_json_on_stdout(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commit = project.commit({**BUSYBOX_FILES, "Containerfile": CONTAINERFILE})
    upstream = project.build_upstream(tmp_path / "upstream")
    code = main(
        [
            "rebuild",
            f"oci:{tmp_path / 'upstream'}:v1",
            "--recipe",
            recipe(tmp_path, project),
            "--json",
            "--statement",
            str(tmp_path / "statement.json"),
            "--name",
            "example/app",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["outcome"] == "reproduced"
    assert out["rebuilt"] == str(upstream)
    assert out["source"]["digest"] == {"gitCommit": commit}
    statement = json.loads((tmp_path / "statement.json").read_text())
    assert statement["subject"] == [{"name": "example/app", "digest": {"sha256": upstream.encoded}}]
    assert statement["predicate"]["outcome"] == "reproduced"


def test_differs_is_exit_1_with_a_table_and_the_build_log(
    project: Project,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project.commit(
        {
            **BUSYBOX_FILES,
            "Containerfile": CONTAINERFILE + "RUN date +%s%N > /etc/build-time\n",
        }
    )
    project.build_upstream(tmp_path / "upstream")
    code = main(
        ["rebuild", f"oci:{tmp_path / 'upstream'}:v1", "--recipe", recipe(tmp_path, project)]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert "/etc/build-time" in captured.err
    row = next(line for line in captured.err.splitlines() if line.startswith("│ layer"))
    assert [cell.strip() for cell in row.split("│")[1:4]] == [
        "layer 3",
        "/etc/build-time",
        "modified content",
    ]
    assert "│ STEP 5/5: RUN date +%s%N > /etc/build-time" in captured.err
    assert "differs" in captured.err


def test_failures_are_exit_2_with_the_reason(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.commit({**BUSYBOX_FILES, "Containerfile": CONTAINERFILE})
    project.build_upstream(tmp_path / "upstream")
    target = f"oci:{tmp_path / 'upstream'}:v1"

    assert main(["rebuild", target, "--recipe", recipe(tmp_path, project, context="nope")]) == 2
    assert "recipe-invalid: context 'nope' does not exist" in capsys.readouterr().err

    (tmp_path / "bad.yaml").write_text("source: {git: x, path: y}\n")
    assert main(["rebuild", target, "--recipe", str(tmp_path / "bad.yaml")]) == 2
    assert "exactly one of git: URL or path: DIR" in capsys.readouterr().err

    assert main(["rebuild", f"oci:{tmp_path / 'nothing'}", "--json"]) == 2
    assert "is not an OCI image layout" in capsys.readouterr().err

    assert main(["rebuild", target, "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["reason"] == "recipe-invalid"
    assert "no source to rebuild from" in out["message"]

    source = tmp_path / "local"
    source.mkdir()
    (source / "Containerfile").write_text("FROM scratch\nCOPY missing /\n")
    assert main(["rebuild", target, "--source", str(source), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["reason"] == "build-failed"
    assert out["source"]["digest"]["dirHash"]
    assert "missing" in out["log_excerpt"]


async def test_rebuilds_an_image_straight_from_a_registry(
    project: Project,
    tmp_path: Path,
    pg_dsn: str,
    s3_server: S3Server,
) -> None:
    """`docker://` targets work as in skopeo: the upstream image is read from a registry."""
    project.commit({**BUSYBOX_FILES, "Containerfile": CONTAINERFILE})
    upstream = project.build_upstream(tmp_path / "upstream")
    config = registry_config(pg_dsn, tmp_path / "data", "filesystem", s3_server)
    async with live_registry(config) as zoll:
        await skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{tmp_path / 'upstream'}:v1",
            f"docker://{zoll.host}/example/app:v1",
        )
        out = json.loads(
            await run(  # a process of its own: its stdout holds only its JSON
                ZOLL,
                "rebuild",
                f"docker://{zoll.host}/example/app:v1",
                "--tls-verify=false",
                "--recipe",
                recipe(tmp_path, project),
                "--json",
            )
        )
    assert out["outcome"] == "reproduced"
    assert out["upstream"] == str(upstream)
