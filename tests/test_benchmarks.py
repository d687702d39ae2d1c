"""The overhead benchmark (benchmarks/): a smoke run, which times nothing that is asserted,
and the instruction budget, which holds what ours adds to get and set of every installed
client to ``benchmarks/budget.json``."""

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import budget  # noqa: E402
from workloads import CLIENT_OF  # noqa: E402
from workloads import GET_SET  # noqa: E402
from workloads import OP_OF  # noqa: E402
from workloads import WORKLOADS  # noqa: E402
from workloads import expected_spans  # noqa: E402

# Its own suite: it needs requirements/bench.txt (OpenTelemetry's instrumentation), and
# valgrind for the budget.
pytestmark = pytest.mark.benchmark

OVERHEAD = os.path.join(ROOT, "benchmarks", "overhead.py")


def test_benchmark_smoke(tmp_path):
    cmd = [sys.executable, OVERHEAD, "--quick", "--rounds", "1", "--startup-runs", "1", "--output", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    table = run.stdout.split("### CPU time per command", 1)[1].split("###", 1)[0]
    for label in ("ours +", "built-in +", "OTel +", "floor +", "ours/untraced", "ours/built-in", "ours/floor"):
        assert label in table
    for what, _, _ in WORKLOADS.values():
        assert "| %s |" % what in table
        assert "| %s, tracer disabled |" % what in table
    for series in ("keys", "servers", "threads"):
        assert "| %s, 1" % series in table  # the scaling table, first point of each series
    assert "python -c pass" in run.stdout  # startup
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "overhead.svg").stat().st_size > 0

    results = json.loads((tmp_path / "latest.json").read_text())
    enabled, disabled = results["phases"]["enabled"], results["phases"]["disabled"]
    for variant in ("ours", "builtin", "floor"):
        assert enabled["delivered"][variant]["spans"] == enabled["written"][variant] > 0
        for name in WORKLOADS:
            assert enabled["summary"][variant][name]["spans_per_command"] == expected_spans(variant, name)
            assert disabled["summary"].get(variant, {}).get(name, {}).get("spans_per_command", 0) == 0
    # Every client the package traces (and that is installed) has its rows, traced by ours.
    assert {CLIENT_OF[name] for name in WORKLOADS} >= {"pymemcache"}
    for name in WORKLOADS:
        assert enabled["summary"]["ours"][name]["spans_per_command"] == WORKLOADS[name][2] > 0
    assert enabled["delivered"]["untraced"]["traces"] > 0  # the root spans
    assert all(s["spans_per_command"] == 0 for s in enabled["summary"]["untraced"].values())


def test_instruction_budget(tmp_path):
    """Counted with callgrind as the budget was recorded (``budget.ARGS``: small batches,
    --quick): with the tracer enabled, what ours adds over what the floor adds, in
    the same run; with it disabled, what ours adds to the untraced command. Both within
    ``benchmarks/budget.json``, for get and set of every installed client (a client without
    a budget fails: record one)."""
    assert shutil.which("valgrind"), "the instruction budget counts with valgrind's callgrind: install valgrind"
    cmd = [sys.executable, OVERHEAD] + budget.ARGS + ["--output", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    measured = budget.measured(results)
    assert {(client, op) for client, ops in measured.items() for op in ops} == {
        (CLIENT_OF[n], OP_OF[n]) for n in GET_SET
    }
    recorded = budget.load()
    over = budget.exceeded(results, recorded)
    assert not over, "over the instruction budget:\n%s\nafter a deliberate change, record it anew: %s" % (
        "\n".join(over),
        budget.COMMAND,
    )


def test_budget_is_exceeded_by_a_slower_ours():
    """What the budget test compares: a ratio just within its tolerance passes, just over it
    fails; so does a tracer-disabled addition; and a client without a budget fails."""
    recorded = {
        "update": "...",
        "tolerance": {budget.RATIO: 0.02, budget.DISABLED: 0.1, budget.DISABLED_SLACK: 0.5},
        "budgets": {"pymemcache": {"get": {budget.RATIO: 1.0, budget.DISABLED: 6.0}}},
    }

    def run(ours, floor, disabled, name="get"):
        def summary(**added):
            return {v: {name: {"added": a * 1000}} for v, a in added.items()}

        enabled = summary(untraced=0, ours=ours, floor=floor)
        return {"instructions": {"enabled": enabled, "disabled": summary(untraced=0, ours=disabled)}}

    assert budget.exceeded(run(101.9, 100.0, 6.5), recorded) == []
    assert len(budget.exceeded(run(102.1, 100.0, 6.5), recorded)) == 1
    assert len(budget.exceeded(run(100.0, 100.0, 6.7), recorded)) == 1
    # a small addition: at least the slack (0.5k), not 10 % of it
    recorded["budgets"]["pymemcache"]["get"][budget.DISABLED] = 2.0
    assert budget.exceeded(run(100.0, 100.0, 2.45), recorded) == []
    assert len(budget.exceeded(run(100.0, 100.0, 2.55), recorded)) == 1
    assert budget.exceeded(run(100.0, 100.0, 6.0, name="set"), recorded) == ["pymemcache set: no budget recorded"]


def test_with_the_tracer_disabled_a_command_passes_its_layers_and_runs_nothing_else():
    """``benchmarks/layers.py``'s profile of every installed client (what ``anatomy.py
    --clients`` reports): with the tracer disabled, a command runs none of the integration's
    code but its plain layers (wrapt skips our wrapper: ``wrapping.TRACING``), the same
    layers as when traced; traced, the app's command is one wrapt layer on the clients whose
    module wraps with wrapt, and none on the others, whose commands are plain layers too
    (libmc's are plain functions of its module)."""
    script = (
        "import json, sys; sys.path.insert(0, %r); import layers; "
        "print(json.dumps({k: {p: dict(c) for p, c in v.items()} for k, v in layers.profiles().items()}))"
        % os.path.join(ROOT, "benchmarks")
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert {name.split()[0] for name in found} == {CLIENT_OF[name] for name in WORKLOADS}
    for name, phases in found.items():
        on, off = phases["enabled"], phases["disabled"]
        assert on.get("calls", 0) > 0, name
        for kind in ("hook", "function"):
            assert on.get(kind, 0) == off.get(kind, 0), (name, kind)
        if name.startswith("libmc "):
            assert on.get("wrapt", 0) == 0 and off.get("calls", 0) > 0, name
        elif _uses_wrapt(name.split()[0]):
            assert on.get("wrapt") == 1, name
            assert off.get("calls", 0) == 0, (name, off)
        else:
            assert on.get("wrapt", 0) == 0 and on.get("function", 0) >= 1, (name, on)
            assert off.get("calls", 0) == 0, (name, off)


def _uses_wrapt(client: str) -> bool:
    """Whether the client module wraps any method with wrapt (a target that is no ``Hook``)."""
    from ddtrace_memcached import wrapping

    module = importlib.import_module("ddtrace_memcached.clients." + client)
    return any(not isinstance(wrapper, wrapping.Hook) for _, _, wrapper in module.targets())
