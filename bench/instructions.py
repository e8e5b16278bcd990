"""Instructions per run of the server and of the app, counted by valgrind (issue 16).

    .venv/bin/python -m bench.instructions [--system pyngest-sdk] [--kind ten] [--runs 100]
                                           [--under server|app] [--keep DIR]

CPU time on a shared machine grows with the machine's load (caches, hand-overs between
threads); instructions executed do not. This runs one process of the system (``--under``: the
server or the app) under ``valgrind --tool=callgrind``, warms it up, zeroes the counters, runs
``--runs`` runs one at a time and reads the instructions counted (user space: the kernel's
work for system calls is not in them). Some 50 times slower than native: keep ``--runs`` small.
Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness.load import closed_loop
from bench.harness.procs import Proc
from bench.run import all_systems


def _callgrind(control: str, pid: int) -> None:
    subprocess.run(["callgrind_control", control, str(pid)], check=True, capture_output=True, timeout=120)


def _totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    out_dir = Path(tempfile.mkdtemp(prefix="pyngest-callgrind-"))
    cls = all_systems()[args.system]
    original = Proc.__init__
    target = "pyngest" if args.under == "server" else "app-"

    def wrapped(self: Proc, name: str, argv: Any, **kw: Any) -> None:
        if name.startswith(target):
            argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={out_dir}/cg.%p", *argv]
        original(self, name, argv, **kw)

    Proc.__init__ = wrapped  # type: ignore[method-assign]
    system = cls()
    try:
        await system.start()
    except BaseException:
        await system.stop()  # the processes started so far
        raise
    finally:
        Proc.__init__ = original  # type: ignore[method-assign]
    try:
        proc = next(p for p in system.processes if p.name.startswith(target))
        # the valgrind process is the interpreter itself (valgrind execs into the tool)
        pid = proc.pid
        await closed_loop(lambda i: system.run(args.kind, i), concurrency=1, runs=args.warmup)  # type: ignore[arg-type]
        _callgrind("--instr=on", pid)  # started without instrumentation: imports under it take minutes
        await closed_loop(lambda i: system.run(args.kind, 10**6 + i), concurrency=1, runs=3)  # type: ignore[arg-type]
        _callgrind("--zero", pid)
        t = time.perf_counter()
        res = await closed_loop(lambda i: system.run(args.kind, 10**7 + i),  # type: ignore[arg-type]
                                concurrency=1, runs=args.runs)
        took = time.perf_counter() - t
        for f in out_dir.glob("cg.*"):
            f.unlink()
        _callgrind("--dump", pid)
        dumps = sorted(out_dir.glob("cg.*"))
        total = sum(_totals(f) for f in dumps)
        if args.keep:  # for callgrind_annotate: which C functions the instructions went to
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            for f in dumps:
                shutil.copy(f, Path(args.keep) / f.name)
        return {"system": args.system, "under": args.under, "kind": args.kind, "runs": res.completed,
                "instructions_per_run": round(total / res.completed), "seconds": round(took, 1),
                "load": os.getloadavg()}
    finally:
        await system.stop()
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="pyngest-sdk")
    parser.add_argument("--kind", default="ten", choices=["one", "ten"])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--under", default="server", choices=["server", "app"])
    parser.add_argument("--keep", default="", help="copy callgrind's output files into this directory")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
