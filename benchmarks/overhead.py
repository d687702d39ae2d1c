"""What tracing adds to each memcached command: ours, ddtrace's built-in, OpenTelemetry, the floor.

``benchmarks/run`` (or ``python benchmarks/overhead.py``) runs every variant side by side:
each in its own worker process (``worker.py``), all interleaved round by round, against
real local memcached servers, with ddtrace's writer sending to a local sink (``sink.py``,
its own process) so that encoding and sending are counted. It prints markdown tables
and writes them, with the raw figures, to ``benchmarks/results/``.

What is measured: the CPU time of the whole worker process (``time.process_time()``,
every thread: ddtrace encodes and sends in more than one), per command, for a batch of
commands grouped in traces of about 50 spans under a root span, the writer flushed
before the clock stops. Every variant runs the same root spans, so the difference to
``untraced`` is what the instrumentation adds. Each figure is the median over rounds;
the added cost is the median of the per-round differences (rounds are paired).

Workloads: pymemcache's commands, its scaling series (keys per ``get_many``, servers
in a ``HashClient``, threads on a ``PooledClient``: what ours adds per memcached command
must stay flat), and get/set on every other client the package traces that is
installed (through its test adapter, ``tests/adapters``). A variant that does not
trace a client (ddtrace has built-in integrations for pymemcache and pylibmc only)
shows "—" there.

``--mode instructions`` counts the instructions the same batches execute instead, with
valgrind's callgrind: slower, but exact and deaf to other processes on the machine.
Each workload then runs in its own process, which sets up only that workload.

The chart (``overhead.svg``, or ``--chart PATH``; needs matplotlib) shows, per
workload, what each variant adds per memcached command, with its interquartile range.

Nothing here asserts a time: targets are reported, the exit status only says whether
the variants made the spans they should and the sink received them.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from worker import CLIENT_OF  # noqa: E402
from worker import SERIES  # noqa: E402
from worker import SERVERS  # noqa: E402
from worker import WORKLOADS  # noqa: E402
from worker import expected_spans  # noqa: E402

from servers import MemcachedProcess  # noqa: E402

# Commands per measured batch: each batch takes some tens of milliseconds of CPU.
# (cpu, --quick, instructions); any other workload: DEFAULT_BATCH.
BATCHES = {
    "get_many_10": (500, 100, 500),
    "get_many_100": (250, 50, 100),
    "get_many_1000": (50, 10, 20),
    "hash1_get_many_100": (250, 50, 100),
    "hash_get_many_100": (48, 16, 32),
    "hash10_get_many_100": (20, 5, 10),
    "aiomcache_get": (500, 50, 200),
    "aiomcache_set": (500, 50, 200),
    "emcache_get": (500, 50, 200),
    "emcache_set": (500, 50, 200),
}
DEFAULT_BATCH = (1000, 100, 500)
BATCH = {name: BATCHES.get(name, DEFAULT_BATCH)[0] for name in WORKLOADS}
QUICK_BATCH = {name: BATCHES.get(name, DEFAULT_BATCH)[1] for name in WORKLOADS}
INSTRUCTIONS_BATCH = {name: BATCHES.get(name, DEFAULT_BATCH)[2] for name in WORKLOADS}

PHASES = {
    # name: (variants, extra environment)
    "enabled": (["untraced", "ours", "builtin", "otel", "floor"], {}),
    "disabled": (["untraced", "ours", "builtin", "otel"], {"DD_TRACE_ENABLED": "false", "OTEL_SDK_DISABLED": "true"}),
}
EXTRA_VARIANTS = ("floor-wrapt",)  # --extra; and ours-ref with --ref-src

QUIET = {
    # No agent features but traces: nothing else in the background of a worker.
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_TELEMETRY_DEPENDENCY_COLLECTION_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "DD_CRASHTRACKING_ENABLED": "false",
    "DD_PROFILING_ENABLED": "false",
    "DD_RUNTIME_METRICS_ENABLED": "false",
    "DD_TRACE_STATS_COMPUTATION_ENABLED": "false",
    "DD_DATA_STREAMS_ENABLED": "false",
    "DD_APPSEC_ENABLED": "false",
    "DD_TRACE_STARTUP_LOGS": "false",
    "DD_SERVICE": "bench-app",
}

LABELS = {
    "untraced": "untraced",
    "ours": "ours",
    "ours-ref": "ref",
    "builtin": "built-in",
    "otel": "OTel",
    "floor": "floor",
    "floor-wrapt": "floor+wrapt",
}

SELECTED = list(WORKLOADS)  # --workloads

COLORS = {"ours": "C0", "builtin": "C1", "otel": "C2", "floor": "C3", "floor-wrapt": "C4", "ours-ref": "C5"}

TARGETS = {"floor": 1.0, "floor_cpu": 1.05, "builtin": 0.6, "disabled_us": 1.0, "flat": 1.1}


# --- processes ---------------------------------------------------------------------


class Sink:
    """``sink.py`` with one port per worker."""

    def __init__(self, ports: int):
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "sink.py"), str(ports)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ports = json.loads(self.process.stdout.readline())

    def stats(self, port: int) -> dict:
        with urllib.request.urlopen("http://127.0.0.1:%d/_bench/stats" % port, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


class Worker:
    """``worker.py VARIANT``, spoken to one JSON line at a time."""

    def __init__(self, variant: str, tag: str, env: dict, log_dir: str, prefix=()):
        self.variant, self.tag = variant, tag
        self.log_path = os.path.join(log_dir, "%s-%s.log" % (tag, variant))
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            list(prefix) + [sys.executable, os.path.join(HERE, "worker.py"), variant],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
        )
        self.ready = None

    def _request(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(10)
            with open(self.log_path) as log:
                tail = log.read()[-3000:]
            raise RuntimeError(
                "worker %s/%s exited (%s):\n%s" % (self.tag, self.variant, self.process.returncode, tail)
            )
        return json.loads(line)

    def wait_ready(self) -> dict:
        self.ready = self._read()
        return self.ready

    def run(self, workload: str, commands: int, callgrind: bool = False) -> dict:
        return self._request({"run": workload, "commands": commands, "callgrind": callgrind})

    def quit(self) -> dict:
        final = self._request({"quit": True})
        self.process.wait(60)
        self.log.close()
        return final

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def worker_env(variant: str, phase_env: dict, agent_port: int, servers, ref_src) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "_DD_", "OTEL_"))}
    env.update(QUIET)
    env.update(phase_env)
    env["DD_TRACE_AGENT_URL"] = "http://127.0.0.1:%d" % agent_port
    env["BENCH_SERVERS"] = json.dumps(servers)
    # The working tree (or the reference copy) first, not what is installed in the venv;
    # then the caller's path, which is where riot puts the suite's packages.
    first = ref_src if variant == "ours-ref" else ROOT
    env["PYTHONPATH"] = os.pathsep.join(p for p in (first, os.environ.get("PYTHONPATH")) if p)
    return env


# --- CPU time ----------------------------------------------------------------------


def run_generation(variants, env_of, rounds, first_round, batch, samples, log_dir, tag, progress):
    """Fresh workers for ``rounds`` interleaved rounds: in each, every workload on every
    worker, in an order that rotates from round to round."""
    workers = []
    try:
        for variant in variants:
            workers.append(Worker(variant, tag, env_of(variant), log_dir))
        for w in workers:
            w.wait_ready()
        for w in workers:  # warm-up, not counted
            for name in SELECTED:
                w.run(name, batch[name])
        for r in range(first_round, first_round + rounds):
            for name in SELECTED:
                k = r % len(workers)
                for w in workers[k:] + workers[:k]:
                    samples[w.variant][name].append(w.run(name, batch[name]))
            progress("%s: round %d" % (tag, r + 1))
        finals = {w.variant: w.quit() for w in workers}
    finally:
        for w in workers:
            w.kill()
    return {w.variant: w.ready for w in workers}, finals


def run_phase(phase, variants, env_of, sink, port_of, rounds, generations, batch, log_dir, progress) -> dict:
    """``rounds`` rounds, spread over ``generations`` sets of fresh worker processes.

    A process's luck (its memory layout, its hash seed) moves its CPU time by a few
    percent for as long as it lives: new processes now and then average that out.
    """
    samples = {v: {name: [] for name in SELECTED} for v in variants}
    ready, written = {}, {v: 0 for v in variants}
    generations = max(1, min(generations, rounds))
    done = 0
    for g in range(generations):
        count = rounds * (g + 1) // generations - done
        tag = "%s-%d" % (phase, g + 1)
        gen_ready, finals = run_generation(variants, env_of, count, done, batch, samples, log_dir, tag, progress)
        done += count
        ready = ready or gen_ready
        for variant, final in finals.items():
            written[variant] += final["written"]
            if gen_ready[variant]["spans_per_command"] != ready[variant]["spans_per_command"]:
                ready[variant].setdefault("inconsistent", []).append(tag)
    delivered = {}
    for variant in variants:
        for _ in range(50):  # the last payload may still be on its way
            delivered[variant] = sink.stats(port_of[variant])
            if delivered[variant]["spans"] is None or delivered[variant]["spans"] >= written[variant]:
                break
            time.sleep(0.1)
    return dict(ready=ready, samples=samples, written=written, delivered=delivered, generations=generations)


def summarize(phase_result: dict, expected_spans) -> dict:
    """µs per command: median and IQR per variant, paired added cost over untraced."""
    samples = phase_result["samples"]
    out = {}
    for variant, by_workload in samples.items():
        out[variant] = {}
        for name, runs in by_workload.items():
            per_command = [1e6 * s["cpu"] / s["commands"] for s in runs]
            main_share = sum(s["main_cpu"] for s in runs) / max(1e-12, sum(s["cpu"] for s in runs))
            base = [1e6 * s["cpu"] / s["commands"] for s in samples["untraced"][name]]
            added = [a - b for a, b in zip(per_command, base)]
            spans = sum(s["spans"] for s in runs) / sum(s["commands"] for s in runs)
            out[variant][name] = dict(
                median=statistics.median(per_command),
                iqr=_iqr(per_command),
                added=statistics.median(added),
                added_iqr=_iqr(added),
                added_quartiles=_quartiles(added),
                main_thread_share=main_share,
                spans_per_command=spans,
                expected_spans=expected_spans(variant, name),
                rounds=len(runs),
            )
    return out


def _quartiles(values):
    """(first, third) quartile; the extremes when there are too few values for quartiles."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def _iqr(values):
    if len(values) < 4:
        return max(values) - min(values)
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


# --- instructions ------------------------------------------------------------------


def _callgrind_total(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in %s" % path)


def measure_instructions(phase, variants, env_of, batch, log_dir, progress) -> dict:
    """Instructions per command, each variant and workload in its own process under callgrind.

    Only the measured batch is instrumented; the hash seed is fixed and the writer's
    periodic flush is off (the batch ends with a flush), so the count does not move
    from run to run.
    """
    jobs = [(v, name) for v in variants for name in SELECTED]
    counts = {v: {} for v in variants}
    errors = []

    def run(variant, name):
        out = os.path.join(log_dir, "callgrind.%s.%s.%s.out" % (phase, variant, name))
        prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=" + out]
        env = dict(env_of(variant), PYTHONHASHSEED="0", DD_TRACE_WRITER_INTERVAL_SECONDS="3600")
        env["BENCH_WORKLOADS"] = name  # set up and check only the workload it measures
        w = Worker(variant, "instructions-%s-%s" % (phase, name), env, log_dir, prefix)
        try:
            w.wait_ready()
            w.run(name, batch[name])  # warm-up
            result = w.run(name, batch[name], callgrind=True)
            w.quit()
        finally:
            w.kill()
        counts[variant][name] = dict(
            per_command=_callgrind_total(out) / result["commands"], spans=result["spans"], commands=result["commands"]
        )
        progress("instructions: %s %s %s" % (phase, variant, name))

    def worker_thread():
        while True:
            try:
                variant, name = jobs.pop()
            except IndexError:
                return
            try:
                run(variant, name)
            except Exception as error:  # reported after the other jobs finish
                errors.append(error)

    threads = [threading.Thread(target=worker_thread) for _ in range(os.cpu_count() or 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    summary = {}
    for variant, by_workload in counts.items():
        summary[variant] = {
            name: dict(
                median=c["per_command"],
                added=c["per_command"] - counts["untraced"][name]["per_command"],
                spans_per_command=c["spans"] / c["commands"],
            )
            for name, c in by_workload.items()
        }
    return summary


# --- startup -----------------------------------------------------------------------

STARTUP_PROGRAMS = {"python -c pass": "pass", "python -c 'import ddtrace'": "import ddtrace"}


def _is_ours(entry: str) -> bool:
    return entry.startswith(("ddtrace_memcached", "_ddtrace_memcached_hook"))


def make_startup_venvs(tmp: str) -> dict:
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


def measure_startup(runs: int, progress) -> dict:
    tmp = tempfile.mkdtemp(prefix="ddtrace-memcached-startup-")
    try:
        venvs = make_startup_venvs(tmp)
        result = {}
        for label, code in STARTUP_PROGRAMS.items():
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
                    cpu_iqr_ms=1e3 * _iqr([t[0] for t in times[name]]),
                    wall_ms=1e3 * statistics.median(t[1] for t in times[name]),
                    modules=modules[name],
                )
                for name in venvs
            }
            progress("startup: %s" % label)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- report ------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        python=platform.python_version(),
        system=platform.system() + " " + platform.release(),
        ddtrace=version("ddtrace"),
        pymemcache=version("pymemcache"),
        wrapt=version("wrapt"),
        opentelemetry_sdk=version("opentelemetry-sdk"),
        load_average=os.getloadavg(),
    )


def machine_line(m: dict) -> str:
    return "%s, %s cores, %s, Python %s, ddtrace %s, pymemcache %s, wrapt %s, opentelemetry-sdk %s" % (
        m["cpu"],
        m["cores"],
        m["system"],
        m["python"],
        m["ddtrace"],
        m["pymemcache"],
        m["wrapt"],
        m["opentelemetry_sdk"],
    )


def _num(value, unit, signed=False) -> str:
    if unit == "k":
        value = value / 1000
    text = ("%+.1f" if signed else "%.1f") % value
    return text.replace("-", "−")


def _ratio(num, den, floor) -> str:
    return "%.2f" % (num / den) if den > floor else "—"


def ratio_table(enabled: dict, disabled: dict, unit: str) -> str:
    """One row per workload (and per workload with the tracer disabled): the untraced cost,
    what each variant adds to it, and ours against the others."""
    extra = [v for v in enabled if v not in ("untraced", "ours", "builtin", "otel", "floor")]
    columns = ["builtin", "otel", "floor"] + extra
    name = "µs" if unit == "µs" else "k instr."
    head = ["workload", "untraced %s" % name, "ours +"] + ["%s +" % LABELS[v] for v in columns]
    head += ["ours/untraced", "ours/built-in", "ours/floor"] + ["ours/%s" % LABELS[v] for v in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    small = 0.05 if unit == "µs" else 50  # ratios of added costs this close to 0 mean nothing
    for summary, suffix in ((enabled, ""), (disabled, ", tracer disabled")):
        for workload in SELECTED if summary else ():
            base, ours = summary["untraced"][workload], summary["ours"][workload]
            row = [WORKLOADS[workload][0] + suffix, _num(base["median"], unit), _num(ours["added"], unit, True)]
            for v in columns:
                # A variant that does not trace this client adds nothing to show.
                shown = v in summary and expected_spans(v, workload) > 0
                row.append(_num(summary[v][workload]["added"], unit, True) if shown else "—")
            row.append("%.2f" % (ours["median"] / base["median"]))
            for v in ["builtin", "floor"] + extra:
                traced = not suffix and v in summary and expected_spans(v, workload) > 0
                row.append(_ratio(ours["added"], summary[v][workload]["added"], small) if traced else "—")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def details(results: dict) -> str:
    lines = ["| phase | variant | workload | µs/command | IQR | +µs | IQR | main thread | spans/command |"]
    lines.append("|" + "---|" * 9)
    for phase, data in results["phases"].items():
        for variant, by_workload in data["summary"].items():
            for name, s in by_workload.items():
                spans = "%.2f" % s["spans_per_command"]
                if abs(s["spans_per_command"] - s["expected_spans"]) > 1e-9:
                    spans += " (expected %s)" % s["expected_spans"]
                row = [
                    phase,
                    LABELS[variant],
                    name,
                    _num(s["median"], "µs"),
                    _num(s["iqr"], "µs"),
                    _num(s["added"], "µs", True),
                    _num(s["added_iqr"], "µs"),
                    "%.0f%%" % (100 * s["main_thread_share"]),
                    spans,
                ]
                lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("| phase | variant | spans written | delivered to sink | traces | payloads | bytes |")
    lines.append("|---|---|---|---|---|---|---|")
    for phase, data in results["phases"].items():
        for variant, written in data["written"].items():
            sink = data["delivered"][variant]
            row = [phase, LABELS[variant], str(written), str(sink["spans"]), str(sink["traces"])]
            row += [str(sink["payloads"]), str(sink["bytes"])]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _covered(variant: str, names) -> list:
    return [n for n in names if expected_spans(variant, n) > 0]


def per_memcached_command(summary: dict, variant: str, name: str) -> float:
    """What ``variant`` adds per memcached command (a HashClient get_many sends one per server)."""
    return summary[variant][name]["added"] / WORKLOADS[name][2]


def targets(enabled: dict, disabled: dict, unit: str) -> str:
    lines = []
    names = [n for n in WORKLOADS if n in SELECTED]
    pymemcache = [n for n in names if CLIENT_OF[n] == "pymemcache"]
    floor_target = TARGETS["floor"] if unit == "k" else TARGETS["floor_cpu"]
    checks = [("floor", "floor", floor_target, pymemcache, "pymemcache")]
    checks.append(("floor", "floor", floor_target, [n for n in names if n not in pymemcache], "other clients"))
    checks.append(("builtin", "built-in", TARGETS["builtin"], names, "where it traces"))
    for other, label, target, among, what in checks if enabled else ():
        among = _covered(other, among)
        if other not in enabled or not among:
            continue
        ratios = {n: enabled["ours"][n]["added"] / enabled[other][n]["added"] for n in among}
        worst = max(ratios, key=ratios.get)
        lines.append(
            "- ours/%s ≤ %.2f, %s: %s (worst %.2f, %s)"
            % (label, target, what, _ok(ratios[worst] <= target), ratios[worst], worst)
        )
    if enabled and "floor" in enabled:
        lines.append(scaling(enabled, unit))
    if disabled:
        per_command = {n: per_memcached_command(disabled, "ours", n) for n in names}
        worst = max(per_command, key=per_command.get)
        if unit == "µs":
            lines.append(
                "- tracer disabled, ≤ %.0f µs added per memcached command: %s (worst %+.2f µs, %s)"
                % (TARGETS["disabled_us"], _ok(per_command[worst] <= TARGETS["disabled_us"]), per_command[worst], worst)
            )
        else:
            lines.append(
                "- tracer disabled: ours adds at most %s k instructions per memcached command (%s)"
                % (_num(per_command[worst], "k"), worst)
            )
    return "\n".join(lines)


def _slope(points) -> float:
    """Least-squares slope of ``[(x, y)]``."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def scaling(enabled: dict, unit: str) -> str:
    """Per memcached command, what ours and the floor add at each point of each series,
    and the slope per key, server or thread. Ours may grow as much as the floor's span
    does (a bigger result to hold), not more: its excess over the floor stays flat."""
    lines = ["", "| scaling, added per memcached command | ours | floor | ours − floor | slope of ours − floor |"]
    lines.append("|---|---|---|---|---|")
    verdicts = []
    for series, (what, points) in SERIES.items():
        points = [(x, n) for x, n in points if n in SELECTED]
        if len(points) < 2:
            continue
        ours = [(x, per_memcached_command(enabled, "ours", n)) for x, n in points]
        floor = [(x, per_memcached_command(enabled, "floor", n)) for x, n in points]
        excess = [(x, o - f) for (x, o), (_, f) in zip(ours, floor)]
        slope = _slope(excess)
        # Flat: from the first point to the last, what ours adds beyond the floor's span
        # grows by no more than a tenth of the floor's own cost per command.
        rise = excess[-1][1] - excess[0][1]
        allowed = (TARGETS["flat"] - 1) * abs(floor[0][1])
        verdicts.append(
            "- flat in %ss: %s (from %d to %d %ss, ours − floor moves %s %s per memcached command, "
            "allowed %s; slope %s %s per %s)"
            % (
                what,
                _ok(rise <= allowed),
                points[0][0],
                points[-1][0],
                what,
                _num(rise, unit, True),
                unit,
                _num(allowed, unit),
                _num(slope, unit, True),
                unit,
                what,
            )
        )
        for (x, o), (_, f), (_, e) in zip(ours, floor, excess):
            lines.append(
                "| %s, %d %s%s | %s | %s | %s | %s |"
                % (
                    series,
                    x,
                    what,
                    "" if x == 1 else "s",
                    _num(o, unit, True),
                    _num(f, unit, True),
                    _num(e, unit, True),
                    "%s %s per %s" % (_num(slope, unit, True), unit, what) if x == points[0][0] else "",
                )
            )
    return "\n".join(verdicts + lines + [""])


def _ok(ok: bool) -> str:
    return "met" if ok else "NOT met"


def startup_table(startup: dict) -> str:
    lines = ["| interpreter startup, CPU | without the package | with it | added | modules without / with |"]
    lines.append("|---|---|---|---|---|")
    for label, by_venv in startup.items():
        a, b = by_venv["without"], by_venv["with"]
        lines.append(
            "| `%s` | %.1f ms | %.1f ms | %s ms | %d / %d |"
            % (label, a["cpu_ms"], b["cpu_ms"], _num(b["cpu_ms"] - a["cpu_ms"], "ms", True), a["modules"], b["modules"])
        )
    return "\n".join(lines)


def chart(results: dict, path: str) -> str:
    """Per workload, what each variant adds per memcached command: CPU time with its
    interquartile range over the rounds, and instructions (exact: no range), each in
    its own panel when measured."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (the bench extra)"
    panels = []
    if results["phases"].get("enabled"):
        title = "CPU time: median of %d interleaved rounds; bars: interquartile range" % results["rounds"]
        panels.append((results["phases"]["enabled"]["summary"], "CPU µs added", 1.0, title))
    if results.get("instructions", {}).get("enabled"):
        title = "Instructions (callgrind): exact counts"
        panels.append((results["instructions"]["enabled"], "k instructions added", 1e-3, title))
    if not panels:
        return "no chart: nothing measured with the tracer enabled"
    most = max(len(panel[0]["ours"]) for panel in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(10, 0.7 * most), 4.5 * len(panels)), squeeze=False)
    for ax, (summary, ylabel, scale, title) in zip(axes[:, 0], panels):
        names = [n for n in WORKLOADS if n in summary["ours"]]  # each panel its own workloads
        variants = [v for v in summary if v != "untraced"]
        width = 0.8 / len(variants)
        for i, v in enumerate(variants):
            xs, ys, errors = [], [], [[], []]
            for j, n in enumerate(names):
                if n not in summary[v] or expected_spans(v, n) == 0:
                    continue  # the variant does not trace this client
                per = scale / WORKLOADS[n][2]
                s = summary[v][n]
                low, high = s.get("added_quartiles") or (s["added"], s["added"])
                xs.append(j + i * width)
                ys.append(s["added"] * per)
                errors[0].append(max(0.0, (s["added"] - low) * per))
                errors[1].append(max(0.0, (high - s["added"]) * per))
            ax.bar(xs, ys, width, yerr=errors, capsize=2, label=LABELS[v], color=COLORS.get(v))
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
        ax.set_xticklabels([WORKLOADS[n][0] for n in names], rotation=35, ha="right", fontsize=7)
        ax.set_ylabel(ylabel + " per memcached command", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=len(variants))
    fig.suptitle("What tracing adds to each memcached command", fontsize=11)
    fig.text(0.01, 0.005, machine_line(results["machine"]), fontsize=6, alpha=0.7)
    fig.tight_layout(rect=(0, 0.015, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return "chart: %s" % path


def check(results: dict) -> list:
    """What makes the figures meaningless: wrong span counts, spans that did not reach the sink."""
    problems = []
    for phase, data in results["phases"].items():
        for variant, by_workload in data["summary"].items():
            for name, s in by_workload.items():
                if abs(s["spans_per_command"] - s["expected_spans"]) > 1e-9:
                    problems.append(
                        "%s/%s/%s: %.2f spans per command, expected %s"
                        % (phase, variant, name, s["spans_per_command"], s["expected_spans"])
                    )
        for variant, written in data["written"].items():
            sink = data["delivered"][variant]
            if sink["spans"] is not None and sink["spans"] != written:
                problems.append(
                    "%s/%s: %s spans written, %s delivered to the sink" % (phase, variant, written, sink["spans"])
                )
            if phase == "enabled" and sink["traces"] == 0:
                problems.append("%s/%s: no trace reached the sink" % (phase, variant))
            if data["ready"][variant].get("inconsistent"):
                problems.append("%s/%s: spans per command differ between generations" % (phase, variant))
    ready = results["phases"].get("enabled", {}).get("ready", {})
    for variant in ("floor", "floor-wrapt"):
        if "ours" in ready and variant in ready:
            for resource in ("get", "get_many", "set"):
                if ready["ours"]["span_signatures"].get(resource) != ready[variant]["span_signatures"].get(resource):
                    problems.append("the %s's %s span differs from ours" % (variant, resource))
    for phase, summary in results.get("instructions", {}).items():
        for variant, by_workload in summary.items():
            for name, s in by_workload.items():
                expected = expected_spans_for(phase)(variant, name)
                if abs(s["spans_per_command"] - expected) > 1e-9:
                    problems.append(
                        "instructions %s/%s/%s: %.2f spans per command, expected %s"
                        % (phase, variant, name, s["spans_per_command"], expected)
                    )
    return problems


def expected_spans_for(phase: str):
    def expected(variant, workload):
        return 0 if phase == "disabled" else expected_spans(variant, workload)

    return expected


def report(results: dict, problems: list) -> str:
    lines = ["## memcached tracing overhead", "", "Machine: " + machine_line(results["machine"]) + "."]
    loads = results["machine"]["load_average"][0], results["machine"]["load_average_end"][0]
    lines.append("Load average %.2f at the start, %.2f at the end." % loads)
    phases = results["phases"]
    if phases:
        enabled = phases.get("enabled", {}).get("summary", {})
        disabled = phases.get("disabled", {}).get("summary", {})
        lines += ["", "### CPU time per command", "", ratio_table(enabled, disabled, "µs"), ""]
        lines.append(
            "CPU µs per command, the whole process (writer included): median of %d rounds over %d sets of "
            "processes. +: added over untraced (median of the paired per-round differences). "
            "ours/built-in, ours/floor: ratios of the added costs."
            % (results["rounds"], max(p["generations"] for p in phases.values()))
        )
        lines += ["", targets(enabled, disabled, "µs")]
    instructions = results.get("instructions")
    if instructions:
        enabled, disabled = instructions.get("enabled", {}), instructions.get("disabled", {})
        lines += ["", "### Instructions per command (callgrind)", "", ratio_table(enabled, disabled, "k"), ""]
        lines += [targets(enabled, disabled, "k")]
    if "startup" in results:
        lines += ["", "### Startup", "", startup_table(results["startup"]), ""]
        lines.append("CPU time of `python -I -c ...`, median of %d runs." % results["startup_runs"])
    if phases:
        lines += ["", "<details><summary>Details</summary>", "", details(results), "", "</details>"]
    if problems:
        lines += ["", "PROBLEMS:"] + ["- " + p for p in problems]
    return "\n".join(lines) + "\n"


# --- main --------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="cpu", choices=["cpu", "instructions", "both"], help="default: cpu")
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds per phase (default 30)")
    parser.add_argument("--generations", type=int, default=5, help="fresh worker processes this many times (default 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds, small batches, 2 startup runs")
    parser.add_argument("--phases", default="enabled,disabled", help="enabled,disabled (default both)")
    parser.add_argument("--startup-runs", type=int, default=20, help="interpreter starts per case; 0 skips")
    parser.add_argument("--extra", default="", help="more variants: " + ",".join(EXTRA_VARIANTS))
    parser.add_argument("--skip", default="", help="variants to leave out, e.g. otel")
    parser.add_argument("--ref-src", help="also run the package found in this directory, as variant 'ref'")
    parser.add_argument("--output", default=os.path.join(HERE, "results"), help="where to write the results")
    parser.add_argument("--workloads", default="", help="only these workloads (default all): " + ",".join(WORKLOADS))
    parser.add_argument("--chart", help="where to save the chart (needs matplotlib; default OUTPUT/overhead.svg)")
    args = parser.parse_args(argv)
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        parser.error("unknown workloads: %s" % ", ".join(sorted(unknown)))
    SELECTED[:] = chosen or list(WORKLOADS)
    if args.quick:
        args.rounds = min(args.rounds, 2)
        args.generations = 1
        args.startup_runs = min(args.startup_runs, 2)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    batch = QUICK_BATCH if args.quick else BATCH
    instructions_batch = QUICK_BATCH if args.quick else INSTRUCTIONS_BATCH
    log_dir = os.path.join(args.output, "logs")
    os.makedirs(log_dir, exist_ok=True)

    def progress(message):
        print("... " + message, file=sys.stderr, flush=True)

    results = dict(machine=machine(), rounds=args.rounds, batch=batch, phases={}, startup_runs=args.startup_runs)
    results["started"] = datetime.datetime.now().isoformat(timespec="seconds")
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    extra = [v.strip() for v in args.extra.split(",") if v.strip()] + (["ours-ref"] if args.ref_src else [])
    skip = {v.strip() for v in args.skip.split(",")} - {"untraced", "ours"}
    variants_of = {
        p: [v for v in PHASES[p][0] if v not in skip] + [v for v in extra if p == "enabled" or v == "ours-ref"]
        for p in phases
    }
    servers = [MemcachedProcess() for _ in range(SERVERS)]  # one for Client, the rest for HashClients
    sink = Sink(sum(len(v) for v in variants_of.values()) + 1)
    try:
        addresses = [list(s.address) for s in servers]
        ports = iter(sink.ports)
        instructions_port = next(ports)
        for phase in phases:
            port_of = {v: next(ports) for v in variants_of[phase]}

            def env_of(variant, phase=phase, port_of=port_of):
                return worker_env(variant, PHASES[phase][1], port_of[variant], addresses, args.ref_src)

            if args.mode in ("cpu", "both"):
                data = run_phase(
                    phase,
                    variants_of[phase],
                    env_of,
                    sink,
                    port_of,
                    args.rounds,
                    args.generations,
                    batch,
                    log_dir,
                    progress,
                )
                data["summary"] = summarize(data, expected_spans_for(phase))
                results["phases"][phase] = data
            if args.mode in ("instructions", "both"):

                def env_of_instructions(variant, phase=phase):
                    return worker_env(variant, PHASES[phase][1], instructions_port, addresses, args.ref_src)

                summary = measure_instructions(
                    phase, variants_of[phase], env_of_instructions, instructions_batch, log_dir, progress
                )
                results.setdefault("instructions", {})[phase] = summary
    finally:
        sink.stop()
        for server in servers:
            server.stop()
    if args.startup_runs:
        results["startup"] = measure_startup(args.startup_runs, progress)
    results["machine"]["load_average_end"] = os.getloadavg()

    problems = check(results)
    text = report(results, problems)
    text += "\n" + chart(results, args.chart or os.path.join(args.output, "overhead.svg")) + "\n"
    print(text)
    with open(os.path.join(args.output, "latest.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.output, "latest.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
