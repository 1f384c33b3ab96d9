"""The command line as one tool: every group of subcommands is a COMMAND, every command
and every argument says what it is, accounts of people and robots are made with the same
verb, and every command that reads the data folder defaults to ./zoll-data."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

from registry.cli.main import build_parser
from tests.support.served import ZOLL

Group = "argparse._SubParsersAction[argparse.ArgumentParser]"


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, Group | None]]:
    """Every parser of the command line: its path, itself, its group of subcommands."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    yield path, parser, groups[0] if groups else None
    for group in groups:
        seen = set()
        for name, child in group.choices.items():
            if id(child) not in seen:  # aliases share their parser
                seen.add(id(child))
                yield from commands(child, (*path, name))


def test_every_group_is_a_command_and_everything_says_what_it_is() -> None:
    problems = []
    for path, parser, group in commands(build_parser()):
        where = " ".join(("zoll", *path))
        if group is not None and group.metavar != "COMMAND":
            problems.append(f"{where}: subcommands shown as {group.metavar}")
        if path and not parser.description:
            problems.append(f"{where}: no description on its --help page")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if action.help in (None, ""):
                problems.append(f"{where}: {action.dest} has no help text")
    assert problems == []


def test_people_and_robots_are_added_alike() -> None:
    parser = build_parser()
    for group in ("users", "robots"):
        for verb in ("add", "create"):  # `create` stays for those who learnt it
            args = parser.parse_args([group, verb, "ci"])
            assert args.name == "ci", (group, verb)
        assert "add" in _verbs(parser, group) and "remove" in _verbs(parser, group)


def _verbs(parser: argparse.ArgumentParser, group: str) -> set[str]:
    for path, _, sub in commands(parser):
        if path == (group,) and sub is not None:
            return set(sub.choices)
    return set()


async def test_keys_default_to_the_data_folder_like_every_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOLL_")}
    (tmp_path / "zoll-data").mkdir()
    proc = await asyncio.create_subprocess_exec(
        ZOLL, "keys", "list", "--json", cwd=tmp_path, env=env, stdout=-1, stderr=-1
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b'"keys": []' in out, out
