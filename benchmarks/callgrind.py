"""What ``anatomy.py`` and ``cycles.py`` share: commands in traces, counted by callgrind.

A measured process runs its commands as ``overhead.py``'s batches do (traces of 50 spans
under a root span, the writer flushed at the end, so that encoding counts), after a
warm-up of the same commands. Each measurement runs it twice under callgrind, with no
commands and with some, and keeps the difference per command.
"""

import os
import subprocess
import sys
import tempfile
from typing import Callable
from typing import Dict
from typing import List


def run_in_traces(command: Callable[[], object], commands: int) -> None:
    """In the measured process: a warm-up of 500, then ``commands`` calls of ``command``."""
    from ddtrace.trace import tracer

    def batch(n):
        for _ in range(n // 50):
            with tracer.trace("bench.root"):
                for _ in range(50):
                    command()
        tracer.flush()

    batch(500)
    batch(commands)


def _events(argv: List[str], commands: int, cache_sim: bool) -> Dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = dict(
            os.environ,
            PYTHONHASHSEED="0",
            DD_TRACE_AGENT_URL="http://127.0.0.1:9",  # nothing listens: the writer drops, after encoding
            DD_TRACE_WRITER_INTERVAL_SECONDS="3600",
            DD_INSTRUMENTATION_TELEMETRY_ENABLED="false",
            DD_REMOTE_CONFIGURATION_ENABLED="false",
        )
        valgrind = ["valgrind", "--tool=callgrind", "--cache-sim=%s" % ("yes" if cache_sim else "no")]
        valgrind += ["--callgrind-out-file=" + out, sys.executable]
        subprocess.run(
            valgrind + argv + ["--commands", str(commands)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(out) as f:
            lines = f.read().splitlines()
    names = next(line for line in lines if line.startswith("events:")).split()[1:]
    totals = next(line for line in lines if line.startswith("totals:")).split()[1:]
    return dict(zip(names, map(int, totals)))


def per_command(argv: List[str], commands: int, cache_sim: bool = False) -> Dict[str, float]:
    """callgrind's events (``Ir``; with ``cache_sim``, the misses too) per command of the
    script ``argv`` (which takes ``--commands N``): the run with ``commands`` minus the run with none."""
    full, empty = _events(argv, commands, cache_sim), _events(argv, 0, cache_sim)
    return {k: (full[k] - empty.get(k, 0)) / commands for k in full}
