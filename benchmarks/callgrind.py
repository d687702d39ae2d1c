"""Instructions counted by valgrind's callgrind: how every benchmark here counts them.

``overhead.py --mode instructions`` (its workers), ``anatomy.py`` and ``cycles.py`` run
the measured process under :func:`valgrind`, and count the same way:

- The process starts with callgrind's instrumentation off: start-up, imports and set-up
  run at valgrind's plain speed, uncounted. Its first measurement switches it on
  (:func:`start`, through ``vgdb``, valgrind's own client).
- Around each measured batch, the process calls :func:`mark`: ``os.getppid()``, which
  nothing else the benchmarks run calls. callgrind runs with ``--dump-before=getppid``,
  so each mark writes what was counted since the previous one to a file of its own,
  ``OUT.<n>`` for the n-th mark. A batch's file holds exactly its instructions, however
  long the switch took to take effect; the files between batches are ignored.
- Each figure is measured with two batches of different lengths, and is the difference
  of their counts per command (:func:`per_command`): what a batch costs once (the writer's
  flush, reading the clocks) cancels out. Before each batch the process collects its
  garbage (:func:`mark` does, uncounted), so that the collections during a batch depend on
  what it allocates, not on what the process did before.

With a fixed hash seed, the writer's periodic flush off and glibc's allocator kept off the
state of its heap (:data:`ENV`), a count is the same from run to run, whatever else the
machine runs (``instructions.py`` says what still moves it).
"""

import gc
import glob
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable
from typing import Dict
from typing import List
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "getppid"
ENV = {
    "PYTHONHASHSEED": "0",
    "DD_TRACE_WRITER_INTERVAL_SECONDS": "3600",  # the batch ends with a flush: no other
    # glibc's per-thread cache for blocks up to 64 KiB (1 KiB by default): a socket's
    # receive buffer, for one, then comes from it in a few instructions, where it would
    # cost what the state of the heap makes it (python-memcached's get: 2k instructions
    # more or less, with the workloads measured before it in the process).
    "GLIBC_TUNABLES": "glibc.malloc.tcache_max=65536",
}
TRACE = 50  # commands per trace in run_in_traces, as in overhead.py's get and set


def valgrind(out: str, cache_sim: bool = False) -> List[str]:
    """The command that runs a measured process under callgrind, its parts written to
    ``out.<n>`` (and a previous run's there removed)."""
    for stale in glob.glob(glob.escape(out) + "*"):  # a previous run's marks would be read as this one's
        os.remove(stale)
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--dump-before=" + MARK,
        "--cache-sim=%s" % ("yes" if cache_sim else "no"),
        "--callgrind-out-file=" + out,
    ]


# --- in the measured process -----------------------------------------------------------

_marks = 0
_started = False


def start() -> None:
    """Switches callgrind's instrumentation of this process on (once)."""
    global _started
    if _started:
        return
    control = subprocess.Popen(
        ["vgdb", "--pid=%d" % os.getpid(), "instrumentation", "on"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    while control.poll() is None:  # valgrind takes the command while the process runs
        time.sleep(0.02)
    if control.returncode != 0:
        raise RuntimeError("vgdb could not switch callgrind on (not run by callgrind.valgrind()?)")
    _started = True


def mark(collect: bool = False) -> int:
    """Ends the current part; returns its number (its file is ``OUT.<number>``). With
    ``collect``, before a batch: first collects the garbage, counted in the part it ends."""
    global _marks
    if collect:
        gc.collect()
    os.getppid()
    _marks += 1
    return _marks


def marks() -> int:
    """How many parts this process has ended."""
    return _marks


def run_in_traces(command: Callable[[], object], lengths: Sequence[int]) -> None:
    """``anatomy.py``'s and ``cycles.py``'s measured process: a warm-up of 500 calls of
    ``command``, uncounted, then one counted batch per length: part ``2 * (i + 1)`` for the
    i-th. A batch runs its calls in traces of 50 under a root span, as ``overhead.py``'s
    workers do, and flushes the writer, so that encoding counts."""
    from ddtrace.trace import tracer

    def batch(n):
        for _ in range(n // TRACE):
            with tracer.trace("bench.root"):
                for _ in range(TRACE):
                    command()
        tracer.flush()

    batch(500)
    start()
    for n in lengths:
        mark(collect=True)
        batch(n)
        mark()


# --- in the driver --------------------------------------------------------------------


def parts(out: str, count: int) -> Dict[int, Dict[str, int]]:
    """``{n: {event: count}}`` of the parts ``out.1`` to ``out.<count>``; an error when
    callgrind wrote others (something else called getppid: a part is then split) or fewer."""
    found = sorted(int(path.rpartition(".")[2]) for path in glob.glob(glob.escape(out) + ".*"))
    if found != list(range(1, count + 1)):
        raise RuntimeError("%s: %d parts expected, callgrind wrote %s" % (out, count, found))
    return {n: _events("%s.%d" % (out, n)) for n in found}


def _events(path: str) -> Dict[str, int]:
    names, totals = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith("totals:"):
                totals = [int(v) for v in line.split()[1:]]
    return {name: totals[i] if i < len(totals) else 0 for i, name in enumerate(names)}


def per_command(short: Dict[str, int], long: Dict[str, int], commands: int) -> Dict[str, float]:
    """Each event per command: the long batch's count minus the short one's, over the
    ``commands`` the long batch ran more."""
    return {k: (long[k] - short.get(k, 0)) / commands for k in long}


def script_per_command(argv: List[str], lengths: Sequence[int], cache_sim: bool = False) -> Dict[str, float]:
    """Events per command of the script ``argv``, which takes ``--lengths N,M`` and runs
    :func:`run_in_traces` with them. With ``cache_sim``, a first counted batch, ignored,
    fills the simulated caches, so that both measured batches start from warm ones."""
    short, long = (TRACE * (n // TRACE) for n in lengths)  # whole traces
    runs = [short, short, long] if cache_sim else [short, long]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = dict(
            os.environ,
            DD_TRACE_AGENT_URL="http://127.0.0.1:9",  # nothing listens: the writer drops, after encoding
            DD_INSTRUMENTATION_TELEMETRY_ENABLED="false",
            DD_REMOTE_CONFIGURATION_ENABLED="false",
            # The working tree's package (and .pth hook), not a copy installed in the venv.
            PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
            **ENV,
        )
        subprocess.run(
            valgrind(out, cache_sim) + [sys.executable] + argv + ["--lengths", ",".join(map(str, runs))],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        counted = parts(out, 2 * len(runs))
    return per_command(counted[2 * len(runs) - 2], counted[2 * len(runs)], long - short)
