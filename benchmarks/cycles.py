"""CPU cost without the noise of a shared machine: callgrind's cache simulation.

``overhead.py --mode cpu`` times the processes, and on a shared VM its interquartile
ranges can be wider than the differences it looks for; ``--mode instructions`` is exact
but counts every instruction alike. This adds what instruction counts leave out: cache
misses (wrapt's code, for one, lives in its own shared object). Each variant runs
pymemcache commands in traces of 50 spans under a root span, encoded, inside callgrind
with ``--cache-sim=yes`` (``callgrind.py``: after a warm-up, a batch that fills the
simulated caches, then two counted batches of different lengths); the difference per
command gives instructions (Ir), first-level misses (instruction and data) and
last-level misses, and callgrind's own estimate of cycles,
``Ir + 10 × L1 misses + 100 × LL misses``. Deterministic (fixed hash seed), about 5 min.

Run: ``.venv/bin/python benchmarks/cycles.py [--workloads get,set] [--commands 1000]``.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the working tree's package

import callgrind  # noqa: E402

VARIANTS = ("untraced", "ours", "builtin", "floor")
SHORT = 100  # commands of the short batch; the long one runs --commands more
WORKLOADS = ("get", "set")
# callgrind_annotate's cycle estimate: an L1 miss ~10 cycles, a last-level miss ~100.
L1_COST, LL_COST = 10, 100


def _run(variant: str, workload: str, port: int, lengths) -> None:
    """The measured process: a client of ``variant`` runs batches of ``workload``."""
    import variants  # the same setups as overhead.py's

    client = variants.SETUPS[variant]()[0](("127.0.0.1", port))
    client.set("k", b"v")
    command = (lambda: client.get("k")) if workload == "get" else (lambda: client.set("k", b"v", noreply=True))

    callgrind.run_in_traces(command, lengths)


def _per_command(variant: str, workload: str, port: int, commands: int) -> dict:
    """k instructions, k L1 misses, LL misses and k estimated cycles per command."""
    argv = [__file__, "--run", variant, "--workloads", workload, "--port", str(port)]
    d = callgrind.script_per_command(argv, (SHORT, SHORT + commands), cache_sim=True)
    l1 = d["I1mr"] + d["D1mr"] + d["D1mw"]
    ll = d["ILmr"] + d["DLmr"] + d["DLmw"]
    return dict(ir=d["Ir"] / 1000, l1=l1 / 1000, ll=ll, cycles=(d["Ir"] + L1_COST * l1 + LL_COST * ll) / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="get,set (default both)")
    parser.add_argument("--commands", type=int, default=1000, help="commands counted per run (default 1000)")
    parser.add_argument("--run", choices=VARIANTS, help=argparse.SUPPRESS)  # the measured process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lengths", help=argparse.SUPPRESS)  # its batches
    args = parser.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    if args.run:
        _run(args.run, workloads[0], args.port, [int(n) for n in args.lengths.split(",")])
        return

    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from servers import MemcachedProcess

    server = MemcachedProcess()
    try:
        print("| workload | variant | k Ir added | k L1 misses added | LL misses added | k est. cycles added |")
        print("|---|---|---|---|---|---|")
        ratios = []
        for workload in workloads:
            base = _per_command("untraced", workload, server.port, args.commands)
            added = {}
            for variant in VARIANTS[1:]:
                m = _per_command(variant, workload, server.port, args.commands)
                added[variant] = {k: m[k] - base[k] for k in m}
                a = added[variant]
                print(
                    "| %s | %s | %+.1f | %+.2f | %+.1f | %+.1f |"
                    % (workload, variant, a["ir"], a["l1"], a["ll"], a["cycles"])
                )
            ratios.append(
                "%s: ours/floor %.2f, ours/built-in %.2f (estimated cycles)"
                % (
                    workload,
                    added["ours"]["cycles"] / added["floor"]["cycles"],
                    added["ours"]["cycles"] / added["builtin"]["cycles"],
                )
            )
        print()
        print("\n".join(ratios))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
