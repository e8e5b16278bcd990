"""``model.compact``: the statements a batch needs, with the same effect as its ops."""

from __future__ import annotations

from pyngest.server.model import (
    ClaimPause,
    CreateRun,
    DeleteJob,
    DeleteRunJobs,
    Run,
    RunStatus,
    SaveStep,
    UpdateRun,
    compact,
)

R = "01JRUN0000000000000000000A"
S = "01JRUN0000000000000000000B"


def _run(run_id: str) -> Run:
    return Run(id=run_id, fn_id="f", app_id="a", status=RunStatus.QUEUED, event_ids=[], events=[], queued_ms=0)


def test_a_runs_updates_merge_into_its_first_later_values_winning() -> None:
    ops = compact([
        UpdateRun(R, {"status": RunStatus.RUNNING, "started_ms": 1}),
        SaveStep(R, "s", 0, b"1"),
        UpdateRun(S, {"version": 2}),
        UpdateRun(R, {"state_bytes": 5}),
        UpdateRun(R, {"status": RunStatus.COMPLETED}),
    ])
    assert ops[0] == UpdateRun(R, {"status": RunStatus.COMPLETED, "started_ms": 1, "state_bytes": 5})
    assert [type(op).__name__ for op in ops] == ["UpdateRun", "SaveStep", "UpdateRun"]


def test_updates_do_not_merge_across_a_claim_or_the_runs_creation() -> None:
    before_claim = UpdateRun(R, {"version": 1})
    after_claim = UpdateRun(R, {"version": 2})
    assert compact([before_claim, ClaimPause("p"), after_claim]) == [before_claim, ClaimPause("p"), after_claim]
    created = CreateRun(_run(R))
    assert compact([before_claim, created, after_claim]) == [before_claim, created, after_claim]


def test_a_job_delete_the_runs_cleanup_covers_is_dropped() -> None:
    cleanup = DeleteRunJobs(R)
    assert compact([DeleteJob(f"{R}:d:1"), cleanup]) == [cleanup]
    # kept: the cleanup keeps that job, or another run's job, or the cleanup is behind a claim
    kept = DeleteRunJobs(R, keep=f"{R}:d:1")
    assert compact([DeleteJob(f"{R}:d:1"), kept]) == [DeleteJob(f"{R}:d:1"), kept]
    assert compact([DeleteJob(f"{S}:d:1"), cleanup]) == [DeleteJob(f"{S}:d:1"), cleanup]
    assert compact([DeleteJob("events:x"), cleanup]) == [DeleteJob("events:x"), cleanup]
    claimed = [DeleteJob(f"{R}:d:1"), ClaimPause("p"), cleanup]
    assert compact(claimed) == claimed
