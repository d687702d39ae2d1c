"""Smoke run of the overhead benchmark (benchmarks/): it runs, reports every variant and
workload, and the spans reach its sink. It times nothing that is asserted."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from worker import CLIENT_OF  # noqa: E402
from worker import WORKLOADS  # noqa: E402
from worker import expected_spans  # noqa: E402

# Its own suite: it needs the bench extra (OpenTelemetry's instrumentation).
pytestmark = pytest.mark.benchmark


def test_benchmark_smoke(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "overhead.py"), "--quick", "--rounds", "1"]
    cmd += ["--startup-runs", "1", "--output", str(tmp_path)]
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
