"""What tracing adds to each memcached command: ours, ddtrace's built-in, OpenTelemetry, the floor.

``benchmarks/run`` (or ``python benchmarks/overhead.py``) runs every variant side by side:
each in its own worker processes (``worker.py``), all interleaved round by round
(``runner.py``), against real local memcached servers, with ddtrace's writer sending to
a local sink (``sink.py``, its own process) so that encoding and sending are counted. It
prints markdown tables (``report.py``) and writes them, with the raw figures, to
``benchmarks/results/``, and the chart (``chart.py``) beside them.

What is measured: the CPU time of the whole worker process (``time.process_time()``,
every thread: ddtrace encodes and sends in more than one), per command, for a batch of
commands grouped in traces of about 50 spans under a root span, the writer flushed
before the clock stops. Every variant runs the same root spans, so the difference to
``untraced`` is what the instrumentation adds. Each figure is the median over rounds;
the added cost is the median of the per-round differences (rounds are paired).

Workloads (``workloads.py``): pymemcache's commands, its scaling series (keys per
``get_many``, servers in a ``HashClient``, threads on a ``PooledClient``: what ours adds
per memcached command must stay flat), and get/set on every other client of the registry
that is installed. A variant that does not trace a client shows "—" there.

``--mode instructions`` counts the instructions of the same batches instead, with
valgrind's callgrind (``instructions.py``, ``callgrind.py``): slower, but exact and deaf
to other processes on the machine. ``--record-budget`` writes those counts of get and
set into ``budget.json``, which ``tests/test_benchmarks.py`` holds ours to (``budget.py``).

Nothing here asserts a time: targets are reported, the exit status only says whether
the variants made the spans they should and the sink received them.
"""

import argparse
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The working tree's package, as the workers have it (not a copy installed in the venv),
# and the tests' memcached servers.
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import budget  # noqa: E402
import chart  # noqa: E402
import instructions  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402
import runner  # noqa: E402
import startup  # noqa: E402
import workloads  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

from servers import MemcachedProcess  # noqa: E402

GROUPS = {"get-set": workloads.GET_SET}  # --workloads: a name for several


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="cpu", choices=["cpu", "instructions", "both"], help="default: cpu")
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds per phase (default 30)")
    parser.add_argument("--generations", type=int, default=5, help="fresh worker processes this many times (default 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds, small batches, 2 startup runs")
    parser.add_argument("--phases", default="enabled,disabled", help="enabled,disabled (default both)")
    parser.add_argument("--startup-runs", type=int, default=20, help="interpreter starts per case; 0 skips")
    parser.add_argument("--extra", default="", help="more variants: " + ",".join(runner.EXTRA_VARIANTS))
    parser.add_argument("--skip", default="", help="variants to leave out, e.g. otel")
    parser.add_argument("--ref-src", help="also run the package found in this directory, as variant 'ref'")
    parser.add_argument("--output", default=os.path.join(HERE, "results"), help="where to write the results")
    parser.add_argument(
        "--workloads",
        default="",
        help="only these workloads (default all), or %s: %s" % (" or ".join(GROUPS), ",".join(WORKLOADS)),
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=instructions.DISABLED_SEEDS,
        help="instructions: hash seeds per worker with the tracer disabled, a count their median (default %d)"
        % instructions.DISABLED_SEEDS,
    )
    parser.add_argument("--chart", help="where to save the chart (needs matplotlib; default OUTPUT/overhead.svg)")
    parser.add_argument(
        "--record-budget",
        action="store_true",
        help="write the instruction counts of get and set into %s" % os.path.relpath(budget.PATH),
    )
    args = parser.parse_args(argv)
    chosen = []
    for name in (w.strip() for w in args.workloads.split(",") if w.strip()):
        chosen += [n for n in GROUPS.get(name, [name]) if n not in chosen]
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        parser.error("unknown workloads: %s" % ", ".join(sorted(unknown)))
    args.workloads = chosen or list(WORKLOADS)
    if args.quick:
        args.rounds = min(args.rounds, 2)
        args.generations = 1
        args.startup_runs = min(args.startup_runs, 2)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    selected = args.workloads
    kind = workloads.QUICK if args.quick else workloads.CPU
    batch = {name: workloads.batch(name, kind) for name in selected}
    kind = workloads.QUICK if args.quick else workloads.INSTRUCTIONS
    instructions_batch = {name: workloads.batch(name, kind) for name in selected}
    log_dir = os.path.join(args.output, "logs")
    os.makedirs(log_dir, exist_ok=True)

    def progress(message):
        print("... " + message, file=sys.stderr, flush=True)

    results = dict(
        machine=machine.describe(),
        rounds=args.rounds,
        batch=batch,
        phases={},
        startup_runs=args.startup_runs,
        workloads=selected,
    )
    results["started"] = datetime.datetime.now().isoformat(timespec="seconds")
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    extra = [v.strip() for v in args.extra.split(",") if v.strip()] + (["ours-ref"] if args.ref_src else [])
    skip = {v.strip() for v in args.skip.split(",")} - {"untraced", "ours"}
    variants_of = {
        p: [v for v in runner.PHASES[p][0] if v not in skip] + [v for v in extra if p == "enabled" or v == "ours-ref"]
        for p in phases
    }
    servers = [MemcachedProcess() for _ in range(workloads.SERVERS)]  # one for Client, the rest for HashClients
    sink = runner.Sink(sum(len(v) for v in variants_of.values()) + 1)
    try:
        addresses = [list(s.address) for s in servers]
        ports = iter(sink.ports)
        instructions_port = next(ports)

        def env_of(phase, variant, port):
            return runner.worker_env(variant, runner.PHASES[phase][1], port, addresses, args.ref_src, selected)

        for phase in phases if args.mode in ("cpu", "both") else ():
            port_of = {v: next(ports) for v in variants_of[phase]}
            data = runner.run_phase(
                phase,
                variants_of[phase],
                lambda variant, phase=phase, port_of=port_of: env_of(phase, variant, port_of[variant]),
                selected,
                sink,
                port_of,
                args.rounds,
                args.generations,
                batch,
                log_dir,
                progress,
            )
            data["summary"] = runner.summarize(data, workloads.expected_spans_in(phase))
            results["phases"][phase] = data
        if args.mode in ("instructions", "both"):
            results["instructions"] = instructions.measure(
                variants_of,
                lambda phase, variant: env_of(phase, variant, instructions_port),
                selected,
                instructions_batch,
                log_dir,
                progress,
                args.seeds,
            )
    finally:
        sink.stop()
        for server in servers:
            server.stop()
    if args.startup_runs:
        results["startup"] = startup.measure(args.startup_runs, progress)
    results["machine"]["load_average_end"] = os.getloadavg()

    problems = report.check(results)
    text = report.report(results, problems)
    text += "\n" + chart.chart(results, args.chart or os.path.join(args.output, "overhead.svg")) + "\n"
    if args.record_budget:
        recorded = budget.measured(results)
        if not recorded or problems:
            text += "\nno budget recorded: %s\n" % ("; ".join(problems) or "no get or set counted with the floor")
        else:
            budget.record(results)
            text += "\nbudget recorded: %s, for %s\n" % (os.path.relpath(budget.PATH), ", ".join(sorted(recorded)))
    print(text)
    with open(os.path.join(args.output, "latest.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.output, "latest.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
