"""What a Containerfile needs from outside: the images its FROM and COPY --from name.

A rebuild must not reach the network, so every external image has to be pinned by
digest (in the FROM line or in the recipe's `base_images`) and comes from Zoll. The
parse is deliberately shallow (instructions, continuation lines, heredocs, ARG
substitution in FROM): buildah does the real parsing; this only finds image names and
rejects files that are plainly not Containerfiles before a builder is started.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from attest.rebuild.imagenames import ImageName, ImageNameError, normalise
from attest.rebuild.recipe import RecipeError
from registry.oci.digest import Digest

INSTRUCTIONS: Final = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
MAX_BYTES: Final = 1 << 20
_HEREDOC: Final = re.compile(r"<<-?\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\1")
_VAR: Final = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass(frozen=True, slots=True)
class ExternalImage:
    """An image the build pulls in, as written and normalised."""

    written: str
    name: ImageName
    line: int


@dataclass(frozen=True, slots=True)
class PinnedImage:
    """An external image with the digest it must be resolved to."""

    written: str
    name: ImageName
    digest: Digest


def instructions(text: str) -> list[Instruction]:
    """Logical instructions with their first line numbers; RecipeError when malformed."""
    lines = text.splitlines()
    escape = "\\"
    for raw in lines[:5]:
        directive = re.match(r"^#\s*escape\s*=\s*(\S)\s*$", raw)
        if directive:
            escape = directive.group(1)
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        start = i
        stripped = lines[i].strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        while parts[-1].endswith(escape) and i < len(lines):
            parts[-1] = parts[-1][: -len(escape)]
            nxt = lines[i].strip()
            i += 1
            if nxt.startswith("#"):
                continue
            parts.append(nxt)
        logical = " ".join(p for p in parts if p)
        for match in _HEREDOC.finditer(logical):
            end = match.group(2)
            while i < len(lines) and lines[i].strip() != end:
                i += 1
            i += 1
        keyword, _, arguments = logical.partition(" ")
        if keyword.upper() not in INSTRUCTIONS:
            raise RecipeError(
                f"Containerfile line {start + 1}: unknown instruction {keyword[:40]!r}"
            )
        out.append(Instruction(keyword.upper(), arguments.strip(), start + 1))
    if not any(ins.keyword == "FROM" for ins in out):
        raise RecipeError("the Containerfile has no FROM instruction")
    return out


def _substitute(value: str, variables: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        current = variables.get(name, "")
        if match.group(2) == "-":
            return current or match.group(3)
        if match.group(2) == "+":
            return match.group(3) if current else ""
        return current

    return _VAR.sub(replace, value)


def _flag_value(arguments: str, flag: str) -> str | None:
    for token in arguments.split():
        if token.startswith(f"--{flag}="):
            return token.split("=", 1)[1]
    return None


def external_images(text: str, build_args: Mapping[str, str]) -> list[ExternalImage]:
    """Images named by FROM (not `scratch`, not earlier stages) and `COPY --from`."""
    variables: dict[str, str] = {}
    stages: set[str] = set()
    seen_from = False
    found: list[ExternalImage] = []

    def add(written: str, line: int) -> None:
        lowered = written.lower()
        if lowered == "scratch" or lowered in stages or written.isdigit():
            return
        try:
            found.append(ExternalImage(written, normalise(written), line))
        except ImageNameError as exc:
            raise RecipeError(f"Containerfile line {line}: {exc}") from exc

    for ins in instructions(text):
        if ins.keyword == "ARG" and not seen_from:
            for decl in ins.arguments.split():
                name, sep, default = decl.partition("=")
                variables[name] = build_args.get(name, default.strip("\"'") if sep else "")
        elif ins.keyword == "FROM":
            seen_from = True
            words = [w for w in ins.arguments.split() if not w.startswith("--")]
            if not words:
                raise RecipeError(f"Containerfile line {ins.line}: FROM names no image")
            add(_substitute(words[0], variables), ins.line)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
        elif ins.keyword in ("COPY", "ADD"):
            source = _flag_value(ins.arguments, "from")
            if source:
                add(_substitute(source, variables), ins.line)
        elif ins.keyword == "RUN":
            for token in ins.arguments.split():
                if token.startswith("--mount="):
                    options = dict(
                        o.partition("=")[::2] for o in token[len("--mount=") :].split(",")
                    )
                    if options.get("from"):
                        add(_substitute(options["from"], variables), ins.line)
    return found


def pin(images: list[ExternalImage], base_images: Mapping[str, Digest]) -> list[PinnedImage]:
    """Every external image with its digest; RecipeError names the first unpinned one.

    `base_images` keys are normalised names (`docker.io/library/alpine:3.20`, or without
    a tag); a digest in the Containerfile must agree with the recipe's.
    """
    pins: dict[str, PinnedImage] = {}
    for image in images:
        name = image.name
        declared = base_images.get(name.tagged) or base_images.get(name.repository)
        if name.digest is not None and declared is not None and declared != name.digest:
            raise RecipeError(
                f"Containerfile line {image.line} pins {image.written} but the recipe "
                f"says {declared}"
            )
        digest = name.digest or declared
        if digest is None:
            raise RecipeError(
                f"Containerfile line {image.line}: {image.written} is not pinned by digest; "
                f"add it to base_images (as {name.tagged}: sha256:…) so it comes from Zoll"
            )
        pins.setdefault(image.written, PinnedImage(image.written, name, digest))
    return list(pins.values())
