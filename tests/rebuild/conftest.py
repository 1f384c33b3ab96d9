"""Fixtures for the rebuild tests: a busybox base image in an OCI layout, projects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from registry.oci.digest import Digest
from tests.rebuild.project import Project, layout_digest
from tests.support.buildah import BUSYBOX_BASE, Builder


@pytest.fixture(scope="session")
def upstream_builder(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    """The vendor's buildah (host configuration, its own storage)."""
    return Builder(tmp_path_factory.mktemp("vendor-buildah"))


@pytest.fixture(scope="session")
def busybox_base(
    upstream_builder: Builder, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Digest]:
    """A busybox base image in an OCI layout (what Zoll mirrored), and its digest."""
    image = upstream_builder.build("busybox-base", BUSYBOX_BASE, layers=True)
    layout = tmp_path_factory.mktemp("bases") / "busybox"
    upstream_builder.push_oci_layout(image, layout, "1.36")
    return layout, layout_digest(layout, "1.36")


@pytest.fixture
def project(tmp_path: Path, upstream_builder: Builder) -> Project:
    return Project(tmp_path / "project", upstream_builder)


MakeProject = Callable[[str], Project]
