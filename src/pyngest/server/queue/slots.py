"""Limits on requests in flight, per app and per function.

A job that makes a request for an app (an EXECUTE job calls the app; a GATEWAY job makes a
``step.fetch`` / ``step.ai.infer`` request on its behalf) needs a slot of its app and one of its
function. A job that finds either full is *parked* here, still leased from the scheduler (so it is
neither handed out again nor lost: it stays stored until it is finished), and starts when a slot
of its app frees. Parking costs no queue worker: a hung, slow or flooded app delays only its own
requests.

Parked jobs wait in one FIFO per function; an app with free room takes from its functions' queues
in turn, so one function flooding its app does not starve the app's other functions.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from pyngest.server.model import Job, JobKind

REQUEST_KINDS = frozenset({JobKind.EXECUTE, JobKind.GATEWAY})


@dataclass(frozen=True, slots=True)
class SlotKey:
    app: str
    fn: str


def function_of(job: Job) -> str | None:
    """The function a request job belongs to: the first element of an EXECUTE job's queue
    (``part``), or the ``fn`` a GATEWAY job carries. None for jobs from before these limits."""
    payload = job.payload or {}
    if job.kind is JobKind.GATEWAY:
        fn = payload.get("fn")
        return str(fn) if fn else None
    part = payload.get("part")
    return str(part).split("|", 1)[0] if part else None


class RequestSlots:
    def __init__(self, *, per_app: int, per_function: int, app_of: Callable[[str], str | None]) -> None:
        self.per_app = per_app
        self.per_function = per_function
        self.app_of = app_of
        self._app_busy: dict[str, int] = {}
        self._fn_busy: dict[str, int] = {}
        self._parked: dict[str, deque[Job]] = {}  # function -> its parked jobs, oldest first
        self._waiting: dict[str, OrderedDict[str, None]] = {}  # app -> functions with parked jobs
        self._keys: dict[str, SlotKey] = {}  # job id -> the slots it holds or waits for
        self.parked = 0

    def key_of(self, job: Job) -> SlotKey | None:
        if job.kind not in REQUEST_KINDS:
            return None
        fn = function_of(job)
        if fn is None:
            return None
        return SlotKey(self.app_of(fn) or f"fn:{fn}", fn)

    def in_flight(self, app: str) -> int:
        return self._app_busy.get(app, 0)

    def _has_room(self, key: SlotKey) -> bool:
        return (self._app_busy.get(key.app, 0) < self.per_app
                and self._fn_busy.get(key.fn, 0) < self.per_function)

    def _take(self, job: Job, key: SlotKey) -> None:
        self._keys[job.id] = key
        self._app_busy[key.app] = self._app_busy.get(key.app, 0) + 1
        self._fn_busy[key.fn] = self._fn_busy.get(key.fn, 0) + 1

    def admit(self, job: Job, key: SlotKey) -> bool:
        """Take the job's slots (True), or park it until they free (False). Jobs already parked
        for its function go first."""
        if key.fn not in self._parked and self._has_room(key):
            self._take(job, key)
            return True
        self._keys[job.id] = key
        self._parked.setdefault(key.fn, deque()).append(job)
        self._waiting.setdefault(key.app, OrderedDict())[key.fn] = None
        self.parked += 1
        return False

    def release(self, job: Job) -> list[Job]:
        """The job's request ended: free its slots; the parked jobs that may start now (their
        slots taken)."""
        key = self._keys.pop(job.id, None)
        if key is None:
            return []
        for counts, name in ((self._app_busy, key.app), (self._fn_busy, key.fn)):
            n = counts.get(name, 0) - 1
            if n > 0:
                counts[name] = n
            else:
                counts.pop(name, None)
        return self._ready(key.app)

    def _ready(self, app: str) -> list[Job]:
        out: list[Job] = []
        waiting = self._waiting.get(app)
        while waiting and self._app_busy.get(app, 0) < self.per_app:
            took = False
            for fn in list(waiting):
                if self._fn_busy.get(fn, 0) >= self.per_function:
                    continue
                queue = self._parked[fn]
                job = queue.popleft()
                self.parked -= 1
                if not queue:
                    del self._parked[fn]
                    del waiting[fn]
                else:
                    waiting.move_to_end(fn)  # in turn with the app's other functions
                self._take(job, self._keys[job.id])
                out.append(job)
                took = True
                break
            if not took:
                break
        if waiting is not None and not waiting:
            del self._waiting[app]
        return out

    def drain(self) -> list[Job]:
        """Take every parked job out (the server is stopping)."""
        out = [job for queue in self._parked.values() for job in queue]
        for job in out:
            self._keys.pop(job.id, None)
        self._parked.clear()
        self._waiting.clear()
        self.parked = 0
        return out
