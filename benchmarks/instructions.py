"""``--mode instructions``: the instructions per command of each variant and workload.

One worker per variant (``runner.Worker``, the same process as for CPU time) runs under
callgrind (``callgrind.py``): it warms every selected workload up, uncounted, then runs
each in two counted batches of different lengths, and a figure is the difference of their
counts per command. Slower than CPU time, but exact: the counts do not move with other
load on the machine. The workers run in parallel, one per core, every phase's at once.

What they do move with is a process's luck in CPython's caches: which attribute lookups
collide in the type cache, how dicts lay their keys out, both set by the hash seed and by
every type and object the process made before. That moves a command by up to 2k
instructions, in either direction, and with any change to the code, related or not: the
same seed in another directory is another draw. It is lost in what a traced command adds
(about 175k), not in what ours adds with the tracer disabled (4 to 17k): those workers run
with several hash seeds each (``seeds``, :data:`DISABLED_SEEDS` by default), and a count is
the median over them. Over ten seeds, python-memcached's and bmemcached's get added 9.5 to
11.1k and 7.3 to 9.1k: the median of three seeds moved by 1.3k and 1.7k, that of five by
0.8k and 1.4k.
"""

import os
import statistics
import threading

import callgrind
from runner import Worker
from workloads import WORKLOADS

SHORT = 5  # the short batch: this fraction of the long one, in whole traces
DISABLED_SEEDS = 9  # hash seeds per worker with the tracer disabled (enabled: 1)


def lengths(commands: int, per_trace: int) -> tuple:
    """(short, long) batches of a workload whose long batch is ``commands`` commands."""
    traces = max(2, commands // per_trace)
    return per_trace * max(1, traces // SHORT), per_trace * traces


def measure(variants_of, env_of, selected, batch, log_dir, progress, seeds: int = DISABLED_SEEDS) -> dict:
    """Instructions per command: ``{phase: {variant: {workload: {median, added,
    spans_per_command, seeds}}}}``, ``added`` over the phase's untraced, ``seeds`` the
    count of each seed; ``variants_of``: ``{phase: [variant]}``, ``env_of(phase, variant)``:
    a worker's environment; ``seeds``: hash seeds per worker with the tracer disabled."""
    counts = {phase: {v: {} for v in variants} for phase, variants in variants_of.items()}
    errors = []

    def run(phase, variant, seed):
        out = os.path.join(log_dir, "callgrind.%s.%s.%d.out" % (phase, variant, seed))
        prefix = callgrind.valgrind(out)
        env = dict(env_of(phase, variant), **callgrind.ENV)
        env["PYTHONHASHSEED"] = str(seed)
        w = Worker(variant, "instructions-%s-%d" % (phase, seed), env, log_dir, prefix)
        try:
            w.wait_ready()
            for name in selected:  # warm-up, not counted: as long as the short batch
                w.run(name, lengths(batch[name], WORKLOADS[name][1])[0])
            batches = {}
            for name in selected:
                short, long = lengths(batch[name], WORKLOADS[name][1])
                batches[name] = w.run(name, short, callgrind=True), w.run(name, long, callgrind=True)
                progress("instructions: %s %s %s (seed %d)" % (phase, variant, name, seed))
            final = w.quit()
        finally:
            w.kill()
        parts = callgrind.parts(out, final["parts"])
        for name, (short, long) in batches.items():
            ir = callgrind.per_command(parts[short["part"]], parts[long["part"]], long["commands"] - short["commands"])
            found = dict(per_command=ir["Ir"], spans=long["spans"], commands=long["commands"])
            counts[phase][variant].setdefault(name, {})[seed] = found

    def worker_thread():
        while True:
            try:
                job = jobs.pop(0)
            except IndexError:
                return
            try:
                run(*job)
            except Exception as error:  # reported after the other jobs finish
                errors.append(error)

    jobs = [
        (phase, variant, seed)
        for phase, variants in variants_of.items()
        for seed in range(seeds if phase == "disabled" else 1)
        for variant in variants
    ]
    threads = [threading.Thread(target=worker_thread) for _ in range(min(len(jobs), os.cpu_count() or 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return {phase: _summary(by_variant) for phase, by_variant in counts.items()}


def _summary(counts: dict) -> dict:
    """Per variant and workload: the median over the seeds, and what it adds to untraced's."""

    def median(seeds):
        return statistics.median(c["per_command"] for c in seeds.values())

    summary = {}
    for variant, by_workload in counts.items():
        summary[variant] = {}
        for name, seeds in by_workload.items():
            spans = sum(c["spans"] for c in seeds.values()) / sum(c["commands"] for c in seeds.values())
            summary[variant][name] = dict(
                median=median(seeds),
                added=median(seeds) - median(counts["untraced"][name]),
                spans_per_command=spans,
                seeds=[seeds[seed]["per_command"] for seed in sorted(seeds)],
            )
    return summary
