"""Recipes: parsed strictly, combined by origin, derived from provenance and labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.intoto import Statement
from attest.rebuild import (
    GitSource,
    PathSource,
    RecipeError,
    RecipeSpec,
    combine,
    load_recipe,
    recipe_from_labels,
    recipe_from_provenance,
)
from attest.rebuild.containerfile import external_images, pin
from attest.rebuild.imagenames import normalise
from attest.rebuild.recipe import upstream_spec
from registry.oci.digest import Digest
from registry.oci.manifest import parse_manifest

D1 = Digest.parse("sha256:" + "1" * 64)
D2 = Digest.parse("sha256:" + "2" * 64)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def statement(predicate_type: str, predicate: dict[str, object]) -> Statement:
    body = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "x", "digest": {"sha256": "3" * 64}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    return Statement.parse(json.dumps(body).encode(), None)


def test_a_recipe_file_is_parsed_and_relative_paths_follow_the_file(tmp_path: Path) -> None:
    recipe = tmp_path / "recipes" / "app.yaml"
    recipe.parent.mkdir()
    recipe.write_text(
        "source: {path: ../src}\n"
        "containerfile: build/Containerfile\n"
        "context: app\n"
        "build_args: {VERSION: 1.2, SOURCE_DATE_EPOCH: '1700000000'}\n"
        "base_images: {'alpine:3.20': 'sha256:" + "1" * 64 + "'}\n"
        "layers: false\n"
    )
    spec = load_recipe(recipe)
    assert spec.source == PathSource(recipe.parent / "../src")
    assert spec.build_args == {"VERSION": "1.2", "SOURCE_DATE_EPOCH": "1700000000"}
    assert spec.source_date_epoch == 1700000000
    assert spec.base_images == {"docker.io/library/alpine:3.20": D1}
    assert (spec.context, spec.containerfile, spec.layers) == ("app", "build/Containerfile", False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sauce": {}}, "unknown recipe fields: sauce"),
        ({"source": {"git": "x", "path": "y"}}, "exactly one of git"),
        ({"source": {"git": "ext::sh -c evil"}}, "is not a repository URL"),
        ({"source": {"git": "https://h/r", "commit": "abc"}}, "full hexadecimal commit"),
        ({"context": "../../etc"}, "must be a relative path inside the source"),
        ({"containerfile": "/etc/passwd"}, "must be a relative path"),
        ({"base_images": {"alpine": "sha256:abc"}}, "base_images 'alpine'"),
        ({"build_args": {"1BAD": "x"}}, "build argument name"),
        ({"source_date_epoch": -5}, "must not be negative"),
        ({"platform": "amd64"}, "is not os/arch"),
        ({"compression": "bzip2"}, "compression must be one of"),
        ({"timeout": 0}, "timeout must be a positive"),
    ],
)
def test_bad_recipes_say_what_is_wrong(data: dict[str, object], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        RecipeSpec.from_mapping(data)


def test_unreadable_recipe_files_are_recipe_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("source: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")


def test_fields_come_from_the_strongest_origin_and_bases_merge() -> None:
    explicit = RecipeSpec(
        origin="explicit", containerfile="Containerfile.prod", base_images={"a:1": D1}
    )
    provenance = RecipeSpec(
        origin="provenance",
        source=GitSource("https://h/r.git", "main", COMMIT),
        containerfile="Dockerfile",
        base_images={"a:1": D2, "b:1": D2},
    )
    upstream = RecipeSpec(origin="upstream", source_date_epoch=42, platform="linux/arm64")
    recipe = combine([explicit, provenance, upstream])
    assert recipe.containerfile == "Containerfile.prod"
    assert recipe.source == GitSource("https://h/r.git", "main", COMMIT)
    assert recipe.base_images == {"a:1": D1, "b:1": D2}
    assert (recipe.source_date_epoch, recipe.platform, recipe.network) == (42, "linux/arm64", False)
    assert recipe.origins["containerfile"] == "explicit"
    assert recipe.origins["source"] == "provenance"
    assert recipe.origins["layers"] == "default"


def test_without_any_source_the_recipe_is_invalid() -> None:
    with pytest.raises(RecipeError, match="no source to rebuild from"):
        combine([RecipeSpec(origin="upstream", source_date_epoch=0)])


def test_the_upstream_image_gives_time_platform_format_and_compression() -> None:
    manifest = parse_manifest(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": str(D1),
                    "size": 2,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
                        "digest": str(D2),
                        "size": 3,
                    }
                ],
            }
        ).encode()
    )
    spec = upstream_spec(
        manifest,
        {
            "created": "2023-11-14T22:13:20Z",
            "os": "linux",
            "architecture": "arm64",
            "variant": "v8",
        },
    )
    assert spec.source_date_epoch == 1700000000
    assert (spec.platform, spec.format, spec.compression) == ("linux/arm64/v8", "oci", "zstd")


def test_buildkit_provenance_v1_is_a_complete_recipe() -> None:
    spec = recipe_from_provenance(
        statement(
            "https://slsa.dev/provenance/v1",
            {
                "buildDefinition": {
                    "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
                    "externalParameters": {
                        "configSource": {
                            "uri": "https://github.com/example/app.git#refs/tags/v1.0:services/api",
                            "digest": {"sha1": COMMIT},
                            "path": "Dockerfile.release",
                        },
                        "request": {
                            "frontend": "dockerfile.v0",
                            "args": {
                                "build-arg:VERSION": "1.0",
                                "build-arg:SOURCE_DATE_EPOCH": "1700000000",
                                "target": "runtime",
                            },
                        },
                    },
                    "resolvedDependencies": [
                        {
                            "uri": "pkg:docker/alpine@3.20?platform=linux%2Famd64",
                            "digest": {"sha256": "1" * 64},
                        },
                        {
                            "uri": "pkg:docker/ghcr.io/example/base@1.2",
                            "digest": {"sha256": "2" * 64},
                        },
                    ],
                },
                "runDetails": {"builder": {"id": "https://github.com/example/app/actions"}},
            },
        )
    )
    assert spec.source == GitSource("https://github.com/example/app.git", "refs/tags/v1.0", COMMIT)
    assert (spec.context, spec.containerfile, spec.target) == (
        "services/api",
        "Dockerfile.release",
        "runtime",
    )
    assert spec.build_args == {"VERSION": "1.0", "SOURCE_DATE_EPOCH": "1700000000"}
    assert spec.source_date_epoch == 1700000000
    assert spec.base_images == {
        "docker.io/library/alpine:3.20": D1,
        "ghcr.io/example/base:1.2": D2,
    }


def test_buildkit_provenance_v02_and_github_workflows() -> None:
    v02 = recipe_from_provenance(
        statement(
            "https://slsa.dev/provenance/v0.2",
            {
                "builder": {"id": "https://github.com/example/app/actions/runs/1"},
                "buildType": "https://mobyproject.org/buildkit@v1",
                "invocation": {
                    "configSource": {
                        "uri": "https://github.com/example/app.git#main",
                        "digest": {"sha1": COMMIT},
                        "entryPoint": "Dockerfile",
                    },
                    "parameters": {"args": {"build-arg:A": "b"}},
                },
            },
        )
    )
    assert v02.source == GitSource("https://github.com/example/app.git", "main", COMMIT)
    assert (v02.containerfile, v02.build_args) == ("Dockerfile", {"A": "b"})

    workflow = recipe_from_provenance(
        statement(
            "https://slsa.dev/provenance/v1",
            {
                "buildDefinition": {
                    "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                    "externalParameters": {
                        "workflow": {
                            "ref": "refs/tags/v2",
                            "repository": "https://github.com/example/lib",
                            "path": ".github/workflows/release.yml",
                        }
                    },
                    "resolvedDependencies": [
                        {
                            "uri": "git+https://github.com/example/lib@refs/tags/v2",
                            "digest": {"gitCommit": COMMIT},
                        }
                    ],
                },
                "runDetails": {"builder": {"id": "https://github.com/actions/runner"}},
            },
        )
    )
    assert workflow.source == GitSource("https://github.com/example/lib", "refs/tags/v2", COMMIT)


def test_provenance_without_a_git_source_is_refused() -> None:
    with pytest.raises(RecipeError, match="names no git source"):
        recipe_from_provenance(
            statement(
                "https://slsa.dev/provenance/v1",
                {
                    "buildDefinition": {"buildType": "x", "externalParameters": {}},
                    "runDetails": {"builder": {"id": "b"}},
                },
            )
        )
    with pytest.raises(RecipeError, match="is not SLSA provenance"):
        recipe_from_provenance(statement("https://example.com/other", {}))


def test_oci_labels_give_repository_commit_and_base() -> None:
    spec = recipe_from_labels(
        {
            "config": {
                "Labels": {
                    "org.opencontainers.image.source": "https://github.com/example/app",
                    "org.opencontainers.image.revision": COMMIT.upper(),
                }
            }
        },
        {
            "org.opencontainers.image.base.name": "docker.io/library/alpine:3.20",
            "org.opencontainers.image.base.digest": str(D1),
        },
    )
    assert spec is not None
    assert spec.source == GitSource("https://github.com/example/app", None, COMMIT)
    assert spec.base_images == {"docker.io/library/alpine:3.20": D1}
    assert recipe_from_labels({"config": {"Labels": {}}}) is None


def test_image_names_normalise_like_docker() -> None:
    assert str(normalise("alpine")) == "docker.io/library/alpine"
    assert normalise("alpine").tagged == "docker.io/library/alpine:latest"
    assert normalise("bitnami/redis:7").tagged == "docker.io/bitnami/redis:7"
    assert normalise("localhost:5000/x/y:1").repository == "localhost:5000/x/y"
    assert normalise(f"ghcr.io/o/r@{D1}").digest == D1


CONTAINERFILE = f"""# syntax=docker/dockerfile:1
ARG BASE=alpine
ARG TAG=3.20
FROM ${{BASE}}:${{TAG}} AS build
RUN <<EOF
this line is not an instruction
EOF
COPY --from=ghcr.io/example/tools@{D2} /bin/t /bin/t
RUN --mount=type=cache,target=/c \\
    echo ok
FROM scratch
COPY --from=build /out /
"""


def test_containerfiles_name_their_external_images() -> None:
    images = external_images(CONTAINERFILE, {"TAG": "3.21"})
    assert [(str(i.name), i.line) for i in images] == [
        ("docker.io/library/alpine:3.21", 4),
        (f"ghcr.io/example/tools@{D2}", 8),
    ]
    pins = pin(images, {"docker.io/library/alpine:3.21": D1})
    assert [(p.written, p.digest) for p in pins] == [
        ("alpine:3.21", D1),
        (f"ghcr.io/example/tools@{D2}", D2),
    ]


def test_unpinned_or_contradicting_bases_and_bad_files_are_refused() -> None:
    with pytest.raises(RecipeError, match=r"line 4: alpine:3.20 is not pinned by digest"):
        pin(external_images(CONTAINERFILE, {}), {})
    with pytest.raises(RecipeError, match=r"pins .* but the recipe says"):
        pin(
            external_images(f"FROM ghcr.io/example/tools@{D2}\n", {}),
            {"ghcr.io/example/tools": D1},
        )
    with pytest.raises(RecipeError, match="line 2: unknown instruction 'RUNN'"):
        external_images("FROM scratch\nRUNN true\n", {})
    with pytest.raises(RecipeError, match="has no FROM"):
        external_images("RUN true\n", {})
