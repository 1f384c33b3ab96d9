"""The comparison names exactly what differs, down to one attribute of one file."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from attest.rebuild import DiffLimits, ImageDiff, compare_images
from registry.oci.digest import Digest
from registry.oci.reader import OCILayoutReader
from tests.rebuild.layouts import Entry, tar_of, write_image

BASE = [
    Entry("etc/", kind=tarfile.DIRTYPE, mode=0o755),
    Entry("etc/os-release", b"ID=zoll\n"),
    Entry("bin/", kind=tarfile.DIRTYPE, mode=0o755),
    Entry("bin/tool", b"\x7fELF tool", mode=0o755),
    Entry("bin/sh", kind=tarfile.SYMTYPE, link="tool", mode=0o777),
]


def changed(**kwargs: object) -> list[Entry]:
    """BASE with /bin/tool's attributes replaced."""
    out = []
    for e in BASE:
        if e.path == "bin/tool":
            e = Entry(**{**e.__dict__, **kwargs})  # type: ignore[arg-type]
        out.append(e)
    return out


async def compare(
    tmp_path: Path,
    original: list[bytes],
    rebuilt: list[bytes],
    *,
    limits: DiffLimits | None = None,
    compression: tuple[str, str] = ("gzip", "gzip"),
    configs: tuple[dict[str, object] | None, dict[str, object] | None] = (None, None),
) -> ImageDiff:
    a = write_image(tmp_path / "a", original, compression=compression[0], config=configs[0])
    b = write_image(tmp_path / "b", rebuilt, compression=compression[1], config=configs[1])
    return await compare_images(
        OCILayoutReader(tmp_path / "a"), a, OCILayoutReader(tmp_path / "b"), b, limits
    )


async def test_identical_images_are_settled_by_the_digest_alone(tmp_path: Path) -> None:
    diff = await compare(tmp_path, [tar_of(BASE)], [tar_of(BASE)])
    assert diff.identical
    assert diff.bytes_read == 0
    assert [c.identical for c in diff.layer_comparisons()] == [True]


@pytest.mark.parametrize(
    ("change", "field", "original", "rebuilt"),
    [
        ({"data": b"\x7fELF tool v2"}, "content", None, None),
        ({"mode": 0o4755}, "mode", "0755", "4755"),
        ({"uid": 1000, "gid": 1000}, "owner", "0:0", "1000:1000"),
        ({"mtime": 1700000000}, "mtime", "0", "1700000000"),
        ({"xattrs": {"security.capability": "\x01\x00\x00\x02"}}, "xattrs", "", None),
    ],
)
async def test_each_attribute_of_a_file_is_named(
    tmp_path: Path,
    change: dict[str, object],
    field: str,
    original: str | None,
    rebuilt: str | None,
) -> None:
    diff = await compare(tmp_path, [tar_of(BASE)], [tar_of(changed(**change))])
    assert not diff.identical
    [layer] = diff.layers
    assert not layer.content_identical
    [file] = layer.files
    assert file.path == "/bin/tool"
    assert file.change == "modified"
    names = [f.name for f in file.fields]
    assert field in names
    got = next(f for f in file.fields if f.name == field)
    if original is not None:
        assert got.original == original
    if rebuilt is not None:
        assert got.rebuilt == rebuilt
    if field == "xattrs":
        assert got.rebuilt is not None and got.rebuilt.startswith("security.capability=")
    if field == "content":
        assert names == ["content", "size"]
        assert got.original is not None and got.original.startswith("sha256:")


async def test_symlink_targets_added_and_removed_paths(tmp_path: Path) -> None:
    rebuilt = [e for e in BASE if e.path != "etc/os-release"]
    rebuilt = [
        Entry("bin/sh", kind=tarfile.SYMTYPE, link="busybox", mode=0o777)
        if e.path == "bin/sh"
        else e
        for e in rebuilt
    ]
    rebuilt.append(Entry("build-time", b"1700000000\n"))
    diff = await compare(tmp_path, [tar_of(BASE)], [tar_of(rebuilt)])
    files = {f.path: f for f in diff.layers[0].files}
    assert set(files) == {"/bin/sh", "/etc/os-release", "/build-time"}
    assert files["/etc/os-release"].change == "removed"
    assert files["/build-time"].change == "added"
    [link] = files["/bin/sh"].fields
    assert (link.name, link.original, link.rebuilt) == ("link", "tool", "busybox")
    assert diff.layers[0].total == 3


async def test_only_the_compression_differs(tmp_path: Path) -> None:
    diff = await compare(tmp_path, [tar_of(BASE)], [tar_of(BASE)], compression=("gzip", "zstd"))
    [layer] = diff.layers
    assert not layer.identical and layer.content_identical
    assert layer.files == ()
    assert "only the compressed bytes differ" in layer.notes[0]
    assert "compression: gzip → zstd" in layer.notes
    assert [f.name for f in diff.manifest] == ["layers[0].mediaType"]


async def test_same_files_in_another_order(tmp_path: Path) -> None:
    diff = await compare(tmp_path, [tar_of(BASE)], [tar_of(list(reversed(BASE)))])
    [layer] = diff.layers
    assert layer.files == ()
    assert "the tar entries are in a different order" in layer.notes


async def test_the_cap_is_reported_not_silent(tmp_path: Path) -> None:
    original = [Entry(f"data/{i:03}", b"a") for i in range(50)]
    rebuilt = [Entry(f"data/{i:03}", b"b") for i in range(50)]
    diff = await compare(
        tmp_path, [tar_of(original)], [tar_of(rebuilt)], limits=DiffLimits(max_differences=10)
    )
    [layer] = diff.layers
    assert diff.truncated
    assert len(layer.files) == 10 and layer.total == 50
    lines = layer.comparison(limit=5).differences
    assert len(lines) == 6
    assert lines[-1] == "… 45 more differing paths not listed"


async def test_an_extra_layer_lists_its_files_as_added(tmp_path: Path) -> None:
    extra = tar_of([Entry("stamp", b"now")])
    diff = await compare(tmp_path, [tar_of(BASE)], [tar_of(BASE), extra])
    assert diff.layers[0].identical
    layer = diff.layers[1]
    assert layer.original is None and layer.rebuilt is not None
    assert [(f.path, f.change) for f in layer.files] == [("/stamp", "added")]
    assert ("layers", "1", "2") in {(f.name, f.original, f.rebuilt) for f in diff.manifest}


async def test_config_fields_that_differ_are_named(tmp_path: Path) -> None:
    diff = await compare(
        tmp_path,
        [tar_of(BASE)],
        [tar_of(BASE)],
        configs=({"created": "2024-01-01T00:00:00Z"}, {"created": "2024-06-01T12:00:00Z"}),
    )
    assert diff.config is not None and not diff.config.identical
    assert [(f.name, f.original, f.rebuilt) for f in diff.config.fields] == [
        ("created", "2024-01-01T00:00:00Z", "2024-06-01T12:00:00Z")
    ]
    assert diff.layers[0].identical
    assert "created: 2024-01-01T00:00:00Z → 2024-06-01T12:00:00Z" in (
        diff.config.comparison().differences
    )


def replace_first_layer(layout: Path, blob: bytes) -> Digest:
    """Swap the image's first layer for `blob` (manifest and index rewritten to match)."""
    blobs = layout / "blobs" / "sha256"
    digest = hashlib.sha256(blob).hexdigest()
    (blobs / digest).write_bytes(blob)
    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    manifest["layers"][0].update(digest=f"sha256:{digest}", size=len(blob))
    raw = json.dumps(manifest).encode()
    new = hashlib.sha256(raw).hexdigest()
    (blobs / new).write_bytes(raw)
    index["manifests"][0].update(digest=f"sha256:{new}", size=len(raw))
    (layout / "index.json").write_text(json.dumps(index))
    return Digest.parse(f"sha256:{new}")


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (gzip.compress(tar_of(changed(data=b"x" * 5000)))[:-40], "the gzip stream is truncated"),
        (b"\x1f\x8b" + b"not really gzip" * 10, "the gzip stream is corrupt"),
        (tar_of(BASE)[:512].replace(b"etc/", b"ETC/", 1) + bytes(1024), "bad header checksum"),
        (
            tar_of([Entry("big", xattrs={"user.blob": "x" * (2 << 20)})]),
            "exceeds 1048576",
        ),
    ],
)
async def test_malformed_layers_are_reported_incomplete_not_raised(
    tmp_path: Path, blob: bytes, reason: str
) -> None:
    a = write_image(tmp_path / "a", [tar_of(BASE)])
    write_image(tmp_path / "b", [tar_of(BASE)], config={"created": "2000-01-01T00:00:00Z"})
    b = replace_first_layer(tmp_path / "b", blob)
    diff = await compare_images(
        OCILayoutReader(tmp_path / "a"), a, OCILayoutReader(tmp_path / "b"), b
    )
    [layer] = diff.layers
    assert layer.incomplete is not None and reason in layer.incomplete
    assert f"incomplete: rebuilt: {layer.incomplete.split('rebuilt: ', 1)[1]}" in (
        layer.comparison().differences
    )


async def test_a_full_table_never_invents_added_paths(tmp_path: Path) -> None:
    original = [Entry(f"f{i}", b"a") for i in range(20)]
    rebuilt = [Entry(f"f{i}", b"b" if i == 2 else b"a") for i in range(20)]
    diff = await compare(
        tmp_path, [tar_of(original)], [tar_of(rebuilt)], limits=DiffLimits(max_entries=5)
    )
    [layer] = diff.layers
    assert layer.incomplete is not None and "more than 5 entries" in layer.incomplete
    assert [(f.path, f.change) for f in layer.files] == [("/f2", "modified")]
