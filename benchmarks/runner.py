"""Runs the variants side by side for CPU time: worker processes, rounds and generations.

Each variant runs in worker processes of its own (``worker.py``), which ddtrace's writer
has send to a port of the sink (``sink.py``, its own process, so that what it spends is
not counted). All variants' workers are interleaved round by round, and replaced by fresh
ones a few times (generations). The instruction counts (``instructions.py``) use the same
workers, one per variant, under callgrind.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from workloads import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))

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


def worker_env(variant: str, phase_env: dict, agent_port: int, servers, ref_src, workloads) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "_DD_", "OTEL_"))}
    env.update(QUIET)
    env.update(phase_env)
    env["DD_TRACE_AGENT_URL"] = "http://127.0.0.1:%d" % agent_port
    env["BENCH_SERVERS"] = json.dumps(servers)
    env["BENCH_WORKLOADS"] = ",".join(workloads)  # it sets up and checks only those
    # The working tree (or the reference copy) first, not what is installed in the venv;
    # then the caller's path, which is where riot puts the suite's packages.
    first = ref_src if variant == "ours-ref" else ROOT
    env["PYTHONPATH"] = os.pathsep.join(p for p in (first, os.environ.get("PYTHONPATH")) if p)
    return env


# --- CPU time ----------------------------------------------------------------------


def run_generation(variants, env_of, selected, rounds, first_round, batch, samples, log_dir, tag, progress):
    """Fresh workers for ``rounds`` interleaved rounds: in each, every workload on every
    worker, in an order that rotates from round to round."""
    workers = []
    try:
        for variant in variants:
            workers.append(Worker(variant, tag, env_of(variant), log_dir))
        for w in workers:
            w.wait_ready()
        for w in workers:  # warm-up, not counted
            for name in selected:
                w.run(name, batch[name])
        for r in range(first_round, first_round + rounds):
            for name in selected:
                k = r % len(workers)
                for w in workers[k:] + workers[:k]:
                    samples[w.variant][name].append(w.run(name, batch[name]))
            progress("%s: round %d" % (tag, r + 1))
        finals = {w.variant: w.quit() for w in workers}
    finally:
        for w in workers:
            w.kill()
    return {w.variant: w.ready for w in workers}, finals


def run_phase(phase, variants, env_of, selected, sink, port_of, rounds, generations, batch, log_dir, progress) -> dict:
    """``rounds`` rounds, spread over ``generations`` sets of fresh worker processes.

    A process's luck (its memory layout, its hash seed) moves its CPU time by a few
    percent for as long as it lives: new processes now and then average that out.
    """
    samples = {v: {name: [] for name in selected} for v in variants}
    ready, written = {}, {v: 0 for v in variants}
    generations = max(1, min(generations, rounds))
    done = 0
    for g in range(generations):
        count = rounds * (g + 1) // generations - done
        tag = "%s-%d" % (phase, g + 1)
        gen_ready, finals = run_generation(
            variants, env_of, selected, count, done, batch, samples, log_dir, tag, progress
        )
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
                iqr=iqr(per_command),
                added=statistics.median(added),
                added_iqr=iqr(added),
                added_quartiles=quartiles(added),
                main_thread_share=main_share,
                spans_per_command=spans,
                expected_spans=expected_spans(variant, name),
                rounds=len(runs),
            )
    return out


def quartiles(values):
    """(first, third) quartile; the extremes when there are too few values for quartiles."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def iqr(values):
    """The interquartile range (the range, when there are too few values for quartiles)."""
    first, third = quartiles(values)
    return third - first
