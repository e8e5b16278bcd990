"""What every system under test offers the load generator."""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from typing import Literal

from bench.harness.procs import Proc, scratch_dir

Kind = Literal["one", "ten"]  # a 1-step function, and a 10-step one whose steps return small ints


class System(ABC):
    """A durable-execution system running the benchmark's two workflows.

    ``run(kind, i)`` starts run number ``i`` of workflow ``kind`` and returns once the system
    reports it completed. Every system is started on its own durable defaults, on loopback,
    and stopped after its scenarios, so systems never share the machine while measured.
    """

    name: str = ""
    label: str = ""  # for tables and plots
    processes: list[Proc]

    def __init__(self) -> None:
        self.processes = []
        self.data_dirs: list[str] = []

    def data_dir(self, prefix: str) -> str:
        """A new directory for the system's data, removed when it stops: a server under load
        writes gigabytes, and a benchmark run starts a dozen of them."""
        path = scratch_dir(prefix)
        self.data_dirs.append(path)
        return path

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def run(self, kind: Kind, i: int) -> None: ...

    async def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes = []
        for path in self.data_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.data_dirs = []

    def engine_pids(self) -> list[int]:
        """The processes of the engine itself (server, database), for memory and CPU figures."""
        return [p.pid for p in self.processes if p.name in self.engine_names()]

    def engine_names(self) -> set[str]:
        return {p.name for p in self.processes}

    def all_pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def describe(self) -> dict[str, str]:
        """Versions and settings, for the results file."""
        return {}
