from __future__ import annotations


class UnstubbedStepError(Exception):
    """A step that needs a stub (invoke, wait_for_event, ai.infer) has none."""

    def __init__(self, step_id: str) -> None:
        super().__init__(f"step {step_id} is not stubbed: pass step_stubs={{{step_id!r}: <value>}} to mocked.trigger")
        self.step_id = step_id
