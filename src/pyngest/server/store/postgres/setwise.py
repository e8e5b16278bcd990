"""Which batches PostgreSQL can apply set-wise, and their rows by kind.

``pyngest_apply`` applies a batch's ops one by one, a statement or more each. The batches that
make up nearly every run — an event with the runs it starts, a step with the run's update, its
history and its next job, a run's end — can instead be written in one statement of several
sub-statements (``pyngest_apply_setwise``, functions.sql), which apply the rows of each kind in
a fixed order and see one snapshot. :func:`setwise` sends a batch that way only when that order
gives what the ops one by one give; any other batch keeps the op list.
"""

from __future__ import annotations

from typing import Any

from pyngest.server.store.postgres.forms import form_of

# Op kinds (the "t" of an encoded op) the set-wise statement writes, and the key of their rows.
_ROWS = {"ev": "ev", "run": "runs", "djob": "djob", "drj": "drj", "enq": "enq", "upd": "upd", "step": "step",
         "hist": "hist"}


def named_shards(batches: list[list[dict[str, Any]]]) -> list[int]:
    """The shards a group's ops write to by name, ascending: fenced before anything is written."""
    shards: set[int] = set()
    for ops in batches:
        for op in ops:
            if "sh" in op:
                shards.add(op["sh"])
            if op["t"] == "cur":
                shards.update(int(s) for s in op["shards"])
    return sorted(shards)


def setwise(ops: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The batch as rows by kind, or None when it must be applied op by op.

    The set-wise statement inserts events, claims keys and creates runs, deletes runs' jobs,
    inserts jobs, updates runs, saves steps and adds history, each kind in one sub-statement,
    none seeing another's rows. That equals the ops in order when no op depends on an earlier one
    of the same batch in a way the fixed order would lose:

    - a run's creation comes before every other op about it (they are skipped with it);
    - a run has at most one idempotency key and no two runs of the batch share one (a run
      skipped half-way through its keys releases the ones it took, which needs the loop);
    - a run is not both created and updated (the update would not see the new row), nor updated
      twice (``compact`` merges a batch's updates already);
    - a job is not enqueued before a delete of its run's jobs (which would delete it), nor twice,
      nor both enqueued and deleted by id;
    - an event is not stored twice, and the registry check of runs started with their events
      is the batch's first event op (it runs before any of the batch's events is stored).
    """
    rows: dict[str, Any] = {}
    created: set[str] = set()
    about: set[str] = set()  # runs an op has been about so far
    keys: set[str] = set()
    updated: set[str] = set()
    queued_runs: set[str] = set()
    job_ids: set[str] = set()
    deleted_ids: set[str] = set()
    event_ids: set[str] = set()
    for i, op in enumerate(ops):
        kind = op["t"]
        if kind not in _ROWS:
            return None
        rid = op.get("rid")
        if kind == "run":
            if rid in about or len(op["k"]) > 1:
                return None
            key = op["k"][0] if op["k"] else None
            if key is not None:
                if key in keys:
                    return None
                keys.add(key)
            created.add(op["rid"])
            rows.setdefault("runs", []).append(
                {"rid": rid, "sh": op["sh"], "k": key, "x": op["x"], "r": op["r"]})
        elif kind == "ev":
            if "rv" in op:
                if "ev" in rows or "rv" in rows:
                    return None
                rows["rv"] = op["rv"]
                rows["rvids"] = [e[2] for e in op["e"] if e[8]]
            for e in op["e"]:
                if e[0] in event_ids:
                    return None
                event_ids.add(e[0])
            rows.setdefault("ev", []).extend(op["e"])
        else:
            if kind == "upd":
                if rid in created or rid in updated:
                    return None
                updated.add(op["rid"])
            elif kind in ("drj", "djob"):
                if rid in queued_runs or op.get("id") in job_ids:
                    return None
                if kind == "djob":
                    deleted_ids.add(op["id"])
                op = {**op, "i": i}  # which delete comes first matters (functions.sql)
            elif kind == "enq":
                if op["id"] in job_ids or op["id"] in deleted_ids:
                    return None
                job_ids.add(op["id"])
                if rid is not None:
                    queued_runs.add(rid)
            rows.setdefault(_ROWS[kind], []).append(op)
        if rid is not None:
            about.add(rid)
    rows["f"] = form_of(rows)  # the statement form that writes it (forms.py)
    return rows
