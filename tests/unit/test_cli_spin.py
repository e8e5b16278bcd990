"""``--spin-us`` reaches the server's settings from the flag, the environment or its default,
and a value out of range is a usage error (server/awake.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pyngest.server import cli
from pyngest.server.config import DEFAULT_SPIN_US


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    """The ServerConfig each invocation would serve with (the server itself is not started)."""
    monkeypatch.chdir(tmp_path)  # no inngest config file of this checkout's is picked up
    seen: list[Any] = []
    monkeypatch.setattr(cli, "_run", lambda cfg, path: seen.append(cfg))
    return seen


@pytest.mark.parametrize(("args", "env", "expected"), [
    ([], {}, DEFAULT_SPIN_US),
    (["--spin-us", "0"], {}, 0),
    ([], {"INNGEST_SPIN_US": "250"}, 250),
])
def test_spin_us_from_flag_env_or_default(built: list[Any], args: list[str], env: dict[str, str],
                                          expected: int) -> None:
    result = CliRunner().invoke(cli.main, ["dev", "--no-discovery", *args], env=env)
    assert result.exit_code == 0, result.output
    assert built[0].spin_us == expected


def test_a_spin_out_of_range_is_a_usage_error(built: list[Any]) -> None:
    result = CliRunner().invoke(cli.main, ["dev", "--no-discovery", "--spin-us", "-1"])
    assert result.exit_code == 2 and "--spin-us" in result.output
    assert built == []
