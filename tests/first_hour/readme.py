"""The README's quick start, read from the README itself (never a copy): its commands, the app
it shows, and the output it promises."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_ANY_ID = "<any ULID>"


@dataclass
class QuickStart:
    install: str  # the command that installs what the example needs
    server: str  # the command that runs the server
    app_file: str  # the file name the app's first comment gives
    app_source: str
    app_command: str  # from the app's first comment: "run with: <command>"
    calls: list[tuple[str, str]]  # (command, the output the README promises for it)


def _blocks(section: str) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in re.finditer(r"```(\w+)\n(.*?)```", section, re.S)]


def _command(line: str) -> str:
    """A shell line without its trailing "   # explanation"."""
    return re.sub(r"\s{2,}#.*$", "", line).strip()


def quick_start(readme: Path = ROOT / "README.md") -> QuickStart:
    text = readme.read_text()
    section = text[text.index("## Quick start"):]
    section = section[: section.index("\n## ", 3)]
    blocks = _blocks(section)
    (_, setup), (lang, app), (_, calls_text) = blocks[0], blocks[1], blocks[2]
    assert lang == "python", "the quick start's second block is the app"
    install, server = [_command(line) for line in setup.strip().splitlines()]
    header = app.splitlines()[0]
    m = re.match(r"#\s*(\S+)\s+\S+\s+run with:\s*(.+)$", header)
    assert m, f"the app's first line names the file and the command to run it: {header!r}"
    calls: list[tuple[str, str]] = []
    for line in calls_text.strip().splitlines():
        if line.startswith("#"):
            command, _ = calls[-1]
            calls[-1] = (command, line.lstrip("# ").strip())
        else:
            calls.append((_command(line), ""))
    return QuickStart(install, server, m[1], app, m[2].strip(), calls)


def promised(text: str) -> Any:
    """The README's shorthand for an output, as a value to match: `"01J..."` is any ULID, and a
    trailing `,...` in an object or a list stands for whatever else is there."""
    text = text.replace('"01J..."', json.dumps(_ANY_ID))
    text = re.sub(r",\.\.\.([}\]])", r"\1", text)
    return json.loads(text)


def matches(actual: Any, expected: Any) -> bool:
    if expected == _ANY_ID:
        return isinstance(actual, str) and bool(ULID.match(actual))
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and matches(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) >= len(expected) and all(
            matches(a, e) for a, e in zip(actual, expected, strict=False)
        )
    return bool(actual == expected)
