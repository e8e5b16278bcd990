"""The dashboard's run search: ``output`` names the run's output, but only as a name, never
inside a string the search compares with."""

from __future__ import annotations

from pyngest.server.api.manage import search_program


def _matches(source: str, event: dict[str, object], output: object) -> bool:
    return search_program(source).matches(event=event, vars={"output": output})


def test_output_names_the_runs_output() -> None:
    assert _matches("output.ok == true", {}, {"ok": True})
    assert _matches('output == "done"', {}, "done")
    assert not _matches("output.ok == true", {}, {"ok": False})


def test_output_inside_a_string_is_left_alone() -> None:
    event = {"data": {"msg": "no output", "other": "output's 'x'"}}
    assert _matches('event.data.msg == "no output"', event, None)
    assert _matches("event.data.msg == 'no output'", event, None)
    assert _matches('event.data.other == "output\'s \'x\'"', event, None)
    assert _matches('event.data.msg == "no output" && output == "output"', event, "output")
    assert _matches('event.data.msg == "say \\"output\\" no" || output.n == 1', event, {"n": 1})
