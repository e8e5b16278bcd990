"""Batch operations are told apart by ``type(op) is X`` on the hot path (pyngest/server/model.py):
that is right only while no op class has a subclass, which this checks across the server."""

from __future__ import annotations

import importlib
import pkgutil
import typing

import pyngest.server
from pyngest.server import model
from pyngest.server.model import (
    AddHistory,
    AddPause,
    AddSkip,
    ClaimPause,
    CreateRun,
    DeleteFlow,
    DeleteJob,
    DeletePause,
    DeleteRunJobs,
    DeleteRunPauses,
    Enqueue,
    InsertEvents,
    Job,
    JobKind,
    Pause,
    PauseKind,
    Run,
    RunStatus,
    SaveStep,
    SetCursor,
    SetFlow,
    UpdateRun,
    op_run_id,
)


def test_no_op_class_is_subclassed_anywhere_in_the_server() -> None:
    for info in pkgutil.walk_packages(pyngest.server.__path__, "pyngest.server."):
        importlib.import_module(info.name)
    ops = typing.get_args(model.Op)
    assert len(ops) == 16
    for cls in ops:
        assert cls.__subclasses__() == [], f"{cls.__name__} is subclassed: dispatch by type(op) would miss it"


def test_the_run_of_each_op() -> None:
    run = Run(id="R", fn_id="f", app_id="a", status=RunStatus.QUEUED, event_ids=[], events=[], queued_ms=0)
    pause = Pause(id="P", run_id="R3", step_id="s", kind=PauseKind.WAIT, expires_ms=0, after_seq=0)
    job = Job(id="J", run_id="R2", kind=JobKind.EXECUTE, due_ms=0)
    about: list[tuple[model.Op, str | None]] = [
        (CreateRun(run), "R"), (Enqueue(job), "R2"), (AddPause(pause), "R3"),
        (SaveStep("R4", "s", 0, b"{}"), "R4"), (UpdateRun("R5", {}), "R5"), (DeleteRunJobs("R6"), "R6"),
        (DeleteRunPauses("R7"), "R7"), (AddHistory("R8", 0, "StepCompleted"), "R8"),
        (InsertEvents([]), None), (DeleteJob("J"), None), (DeletePause("P"), None), (ClaimPause("P"), None),
        (SetFlow("k", 1, 0), None), (DeleteFlow("k"), None), (AddSkip("e", "f", "why", 0), None),
        (SetCursor([0], 1, 2), None),
    ]
    assert {type(op) for op, _ in about} == set(typing.get_args(model.Op))
    for op, run_id in about:
        assert op_run_id(op) == run_id, op


def test_which_statuses_are_ended() -> None:
    assert {s.value: s.ended for s in RunStatus} == {
        "Queued": False, "Running": False, "Completed": True, "Failed": True, "Cancelled": True, "Skipped": True}
