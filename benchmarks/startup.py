"""What the package adds to interpreter startup: CPU time and modules loaded.

Two throwaway venvs link every package of this one, one of them with the working
tree's package (and its ``.pth`` hook) too; each program starts in both, alternately,
and the figure is the median CPU time of the runs.
"""

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

from runner import iqr
from workloads import ROOT

PROGRAMS = {"python -c pass": "pass", "python -c 'import ddtrace'": "import ddtrace"}


def _is_ours(entry: str) -> bool:
    return entry.startswith(("ddtrace_memcached", "_ddtrace_memcached_hook"))


def make_venvs(tmp: str) -> dict:
    """Two venvs that link to every package of this one: with the working tree's package, and without it."""
    site = sysconfig.get_paths()["purelib"]
    venvs = {}
    for name in ("without", "with"):
        path = os.path.join(tmp, name)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
        python = os.path.join(path, "bin", "python")
        target = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for entry in os.listdir(site):
            if not _is_ours(entry) and not os.path.exists(os.path.join(target, entry)):
                os.symlink(os.path.join(site, entry), os.path.join(target, entry))
        if name == "with":
            for entry in ("ddtrace_memcached", "_ddtrace_memcached_hook.py", "ddtrace_memcached.pth"):
                os.symlink(os.path.join(ROOT, entry), os.path.join(target, entry))
        venvs[name] = python
    return venvs


def _cpu_of(cmd) -> tuple:
    """(CPU seconds, wall seconds) of a child process."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError("%s failed" % cmd)
    return usage.ru_utime + usage.ru_stime, time.perf_counter() - start


def measure(runs: int, progress) -> dict:
    tmp = tempfile.mkdtemp(prefix="ddtrace-memcached-startup-")
    try:
        venvs = make_venvs(tmp)
        result = {}
        for label, code in PROGRAMS.items():
            times = {name: [] for name in venvs}
            for i in range(runs + 1):
                for name in sorted(venvs, reverse=i % 2 == 1):  # alternate who goes first
                    cpu, wall = _cpu_of([venvs[name], "-I", "-c", code])
                    if i:  # the first run warms the file cache
                        times[name].append((cpu, wall))
            modules = {}
            for name, python in venvs.items():
                count = "%s\nimport sys; print(len(sys.modules))" % code
                out = subprocess.run([python, "-I", "-c", count], check=True, capture_output=True, text=True)
                modules[name] = int(out.stdout.strip())
            result[label] = {
                name: dict(
                    cpu_ms=1e3 * statistics.median(t[0] for t in times[name]),
                    cpu_iqr_ms=1e3 * iqr([t[0] for t in times[name]]),
                    wall_ms=1e3 * statistics.median(t[1] for t in times[name]),
                    modules=modules[name],
                )
                for name in venvs
            }
            progress("startup: %s" % label)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
