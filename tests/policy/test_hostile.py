"""A hostile-layer corpus generated here: bombs, traversal, link escapes, millions of
entries, huge files, oversized headers, corrupt streams.

Each image is analysed in a fresh process, so its measured peak RSS is the analysis's
own; every limit must show up as a finding (and fail HC-35), never as a crash.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from policy import analyze_image
from registry.oci import mediatypes as mt
from registry.oci.reader import OCILayoutReader
from tests.policy.layouts import Layout, member, tar_bytes
from tests.support.paths import REPO

MiB = 1 << 20
GiB = 1 << 30
PEAK_RSS_MIB = 200
"""An analysis may use this much resident memory in total (interpreter included)."""


def probe(layout: Path, peak_mib: int = PEAK_RSS_MIB, **limits: Any) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.policy.hostile_probe", str(layout), json.dumps(limits)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["peak_rss_kib"] < peak_mib * 1024, result
    return result


def limit_findings(result: dict[str, Any]) -> list[str]:
    return [f["detail"]["limit"] for f in result["findings"] if f["kind"] == "limit"]


def _zeros(total: int, chunk: int = 16 * MiB) -> Iterator[bytes]:
    block = bytes(chunk)
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


def _tar_stream_of_one_file(name: str, size: int) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.size = size
    yield info.tobuf(format=tarfile.GNU_FORMAT)
    yield from _zeros(size)
    yield bytes(-size % 512) + bytes(1024)


def _gzip(chunks: Iterator[bytes], level: int = 6) -> Iterator[bytes]:
    obj = zlib.compressobj(level, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = obj.compress(chunk)
        if out:
            yield out
    yield obj.flush()


def _zstd(chunks: Iterator[bytes]) -> Iterator[bytes]:
    obj = zstandard.ZstdCompressor(level=3).compressobj()
    for chunk in chunks:
        out = obj.compress(chunk)
        if out:
            yield out
    yield obj.flush()


def _image(tmp: Path, blobs: list[tuple[Iterator[bytes] | bytes, str]]) -> Path:
    layout = Layout(tmp)
    layers = []
    for blob, media_type in blobs:
        digest, size = layout.blob(blob) if isinstance(blob, bytes) else layout.blob_stream(blob)
        layers.append((digest, size, media_type))
    layout.image(layers)
    return tmp


def test_gzip_bomb_stops_at_the_expansion_ratio(tmp_path: Path) -> None:
    layout = _image(
        tmp_path, [(_gzip(_tar_stream_of_one_file("bomb", 3 * GiB), 9), mt.OCI_LAYER_GZIP)]
    )
    compressed = sum(f.stat().st_size for f in (layout / "blobs" / "sha256").iterdir())
    assert compressed < 8 * MiB  # 3 GiB in a few MiB: a real bomb
    result = probe(layout, ratio_floor=64 * MiB, max_ratio=100)
    assert limit_findings(result) == ["max_ratio"]
    assert result["uncompressed"] < 128 * MiB
    assert not result["complete"] and result["hc35"] == "fail"


def test_zstd_bomb_stops_at_the_byte_budget(tmp_path: Path) -> None:
    layout = _image(
        tmp_path, [(_zstd(_tar_stream_of_one_file("bomb", 4 * GiB)), mt.OCI_LAYER_ZSTD)]
    )
    result = probe(layout, max_uncompressed_bytes=256 * MiB, max_ratio=10**9)
    assert limit_findings(result) == ["max_uncompressed_bytes"]
    assert 256 * MiB <= result["uncompressed"] < 260 * MiB
    assert result["hc35"] == "fail"


def _many_entries(count: int) -> Iterator[bytes]:
    """`count` empty files, header blocks written by hand (tarfile is too slow for this)."""
    template = bytearray(tarfile.TarInfo("x").tobuf(format=tarfile.USTAR_FORMAT))
    batch = bytearray()
    for i in range(count):
        header = bytearray(template)
        name = f"d{i // 10000:03d}/f{i:07d}".encode()
        header[0:100] = name.ljust(100, b"\0")
        header[148:156] = b"        "
        header[148:156] = b"%06o\0 " % sum(header)
        batch += header
        if len(batch) >= 4 * MiB:
            yield bytes(batch)
            batch.clear()
    yield bytes(batch) + bytes(1024)


def test_millions_of_entries_stop_at_the_entry_limit(tmp_path: Path) -> None:
    layout = _image(tmp_path, [(_gzip(_many_entries(2_000_000), 1), mt.OCI_LAYER_GZIP)])
    result = probe(layout, max_entries=200_000)
    assert limit_findings(result) == ["max_entries"]
    assert result["entries"] == 200_001 and result["files"] == 200_000
    assert result["seconds"] < 60


def test_all_million_entries_fit_the_default_limits(tmp_path: Path) -> None:
    layout = _image(tmp_path, [(_gzip(_many_entries(1_000_000), 1), mt.OCI_LAYER_GZIP)])
    # The final tree is the one thing that grows with the image: ~250 bytes per entry.
    result = probe(layout, peak_mib=400, max_entries=1_000_000)
    assert result["complete"] and result["files"] == 1_000_000
    per_entry = (result["peak_rss_kib"] - result["baseline_rss_kib"]) * 1024 / 1_000_000
    assert per_entry < 300, per_entry
    assert result["seconds"] < 120


def test_huge_declared_file_is_refused_before_reading(tmp_path: Path) -> None:
    info = tarfile.TarInfo("huge")
    info.size = 1 << 40  # 1 TiB, base-256 encoded by GNU format
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    layout = _image(tmp_path, [(gzip.compress(header + bytes(4096)), mt.OCI_LAYER_GZIP)])
    result = probe(layout, max_file_bytes=GiB)
    assert limit_findings(result) == ["max_file_bytes"]
    assert "huge is 1099511627776 bytes" in result["hc35_evidence"][0]


def test_real_huge_file_is_streamed_not_held(tmp_path: Path) -> None:
    layout = _image(
        tmp_path, [(_gzip(_tar_stream_of_one_file("big.bin", 768 * MiB), 1), mt.OCI_LAYER_GZIP)]
    )
    result = probe(layout)
    assert result["complete"] and result["files"] == 1
    assert result["uncompressed"] > 768 * MiB


def test_oversized_pax_header_and_long_names(tmp_path: Path) -> None:
    pax = tarfile.TarInfo("x")
    pax.type = tarfile.XHDTYPE
    pax.size = 64 * MiB
    layer = pax.tobuf(format=tarfile.USTAR_FORMAT) + bytes(64 * MiB) + bytes(1024)
    long_name = tar_bytes([(member("a/" * 3000 + "deep"), b"x")])
    layout = _image(
        tmp_path,
        [(long_name, mt.OCI_LAYER), (gzip.compress(layer, 1), mt.OCI_LAYER_GZIP)],
    )
    result = probe(layout, max_header_bytes=MiB, max_path_bytes=4096)
    assert limit_findings(result) == ["max_path_bytes"]
    layout2 = _image(tmp_path / "pax", [(gzip.compress(layer, 1), mt.OCI_LAYER_GZIP)])
    assert limit_findings(probe(layout2, max_header_bytes=MiB)) == ["max_header_bytes"]


async def test_traversal_and_link_escapes_are_findings_not_files(tmp_path: Path) -> None:
    layer = tar_bytes(
        [
            (member("etc/", tarfile.DIRTYPE, 0o755), None),
            (member("../../etc/cron.d/evil"), b"* * * * * root sh\n"),
            (member("app/../../escape"), b"x"),
            (member("/abs/file"), b"absolute names are applied relative to the root"),
            (member("jump", tarfile.SYMTYPE, link="../../../../etc"), None),
            (member("jump/passwd"), b"root::0:0::/:/bin/sh\n"),
            (member("hard", tarfile.LNKTYPE, link="../../etc/shadow"), None),
            (member("dangling", tarfile.LNKTYPE, link="nowhere"), None),
            (member("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n"),
        ]
    )
    layout = _image(tmp_path, [(layer, mt.OCI_LAYER)])
    reader = OCILayoutReader(layout)
    analysis = await analyze_image(reader, (await reader.get_manifest("latest")).digest)
    kinds = sorted((f.kind, f.path, f.message.split(":")[0]) for f in analysis.findings)
    assert kinds == [
        ("link-escape", "/dangling", "hard link to a missing or non-file"),
        ("link-escape", "/hard", "name contains '..'"),
        ("link-escape", "/jump", "symbolic link climbs above the root"),
        ("link-escape", "/jump/passwd", "entry is written through a symbolic link"),
        ("traversal", "../../etc/cron.d/evil", "name contains '..'"),
        ("traversal", "/abs/file", "absolute name"),
        ("traversal", "app/../../escape", "name contains '..'"),
    ]
    assert analysis.complete
    assert analysis.tree.files == 2  # /abs/file and /etc/passwd; nothing escaped
    assert [u.name for u in analysis.tree.users] == ["root"]


async def test_opaque_directory_hides_lower_layers(tmp_path: Path) -> None:
    lower = tar_bytes(
        [
            (member("app/", tarfile.DIRTYPE, 0o755), None),
            (member("app/old.txt"), b"old"),
            (member("app/sub/", tarfile.DIRTYPE, 0o755), None),
            (member("app/sub/deep.txt"), b"deep"),
            (member("keep.txt"), b"keep"),
        ]
    )
    upper = tar_bytes(
        [
            (member("app/", tarfile.DIRTYPE, 0o755), None),
            (member("app/.wh..wh..opq"), b""),
            (member("app/new.txt"), b"new"),
            (member(".wh.keep.txt"), b""),
        ]
    )
    layout = _image(tmp_path, [(lower, mt.OCI_LAYER), (gzip.compress(upper), mt.OCI_LAYER_GZIP)])
    reader = OCILayoutReader(layout)
    analysis = await analyze_image(reader, (await reader.get_manifest("latest")).digest)
    assert analysis.complete and analysis.findings == []
    assert (analysis.tree.files, analysis.tree.directories) == (1, 1)


def test_corrupt_streams_are_malformed_findings(tmp_path: Path) -> None:
    good = gzip.compress(tar_bytes([(member("a"), b"a" * 5000)]))
    truncated = good[: len(good) // 2]
    garbage = b"\x1f\x8b\x08\x00" + os.urandom(4096)
    bad_tar = gzip.compress(os.urandom(2048))
    for name, blob in (("truncated", truncated), ("garbage", garbage), ("badtar", bad_tar)):
        result = probe(_image(tmp_path / name, [(blob, mt.OCI_LAYER_GZIP)]))
        assert [f["kind"] for f in result["findings"]] == ["malformed"], (name, result)
        assert result["hc35"] == "fail"


def test_blob_that_does_not_match_its_digest_is_corrupt(tmp_path: Path) -> None:
    blob = gzip.compress(tar_bytes([(member("a"), b"payload")]))
    layout = _image(tmp_path, [(blob, mt.OCI_LAYER_GZIP)])
    target = next(p for p in (layout / "blobs" / "sha256").iterdir() if p.read_bytes() == blob)
    target.write_bytes(gzip.compress(tar_bytes([(member("a"), b"PAYLOAD")])))
    result = probe(layout)
    assert [f["kind"] for f in result["findings"]] == ["corrupt"]
    assert "does not match its digest" in result["findings"][0]["message"]


def test_time_limit_is_a_finding(tmp_path: Path) -> None:
    layout = _image(
        tmp_path, [(_gzip(_tar_stream_of_one_file("slow", 2 * GiB), 1), mt.OCI_LAYER_GZIP)]
    )
    result = probe(layout, max_seconds=0.3)
    assert limit_findings(result) == ["max_seconds"]
    assert result["seconds"] < 5


@pytest.mark.parametrize("media_type", ["application/vnd.example.not-a-layer", mt.OCI_LAYER])
def test_unsupported_layer_media_type(tmp_path: Path, media_type: str) -> None:
    layout = _image(tmp_path, [(tar_bytes([(member("a"), b"a")]), media_type)])
    result = probe(layout)
    kinds = [f["kind"] for f in result["findings"]]
    assert kinds == ([] if media_type == mt.OCI_LAYER else ["unsupported"])


def test_layer_that_does_not_match_its_diff_id_is_corrupt(tmp_path: Path) -> None:
    tar = tar_bytes([(member("a"), b"what the config promised")])
    other = tar_bytes([(member("a"), b"what the layer delivers")])
    layout = Layout(tmp_path)
    digest, size = layout.blob(gzip.compress(other))
    promised = "sha256:" + hashlib.sha256(tar).hexdigest()
    layout.image(
        [(digest, size, mt.OCI_LAYER_GZIP)], {"rootfs": {"type": "layers", "diff_ids": [promised]}}
    )
    result = probe(tmp_path)
    assert [f["kind"] for f in result["findings"]] == ["corrupt"]
    assert "does not match the config's diff_id" in result["findings"][0]["message"]


def _header(info: tarfile.TarInfo, declared: int) -> bytes:
    """A ustar header whose size field says `declared` whatever the entry's type."""
    info.size = declared
    raw = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    raw[124:136] = b"%011o\0" % declared
    raw[148:156] = b"        "
    raw[148:156] = b"%06o\0 " % sum(raw[:512])
    return bytes(raw)


async def test_entries_hidden_behind_a_sized_directory_header_are_seen(tmp_path: Path) -> None:
    """Go's archive/tar (what containerd and buildah extract with) gives a directory no
    data whatever its size field says, so the entries after it are extracted: the
    analysis must not skip them as the directory's 'content'."""
    secret = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    key = member("app/.ssh/id_ed25519", mode=0o600)
    hidden = _header(key, len(secret)) + secret + bytes(-len(secret) % 512)
    visible = tar_bytes([(member("app/readme.txt"), b"nothing to see\n")])
    layer = _header(member("app/", tarfile.DIRTYPE, 0o755), len(hidden)) + hidden + visible
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:  # Python's tarfile agrees with Go
        assert tar.getnames() == ["app", "app/.ssh/id_ed25519", "app/readme.txt"]
    layout = _image(tmp_path, [(layer, mt.OCI_LAYER)])
    reader = OCILayoutReader(layout)
    analysis = await analyze_image(reader, (await reader.get_manifest("latest")).digest)
    assert analysis.complete and analysis.tree.files == 2
    assert any(f.kind == "secret" and "id_ed25519" in f.path for f in analysis.findings)
