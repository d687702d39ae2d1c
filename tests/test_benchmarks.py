"""Smoke run of the overhead benchmark (benchmarks/): it runs, reports every variant and
workload, and the spans reach its sink. It times nothing that is asserted."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from worker import WORKLOADS  # noqa: E402

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
    assert "python -c pass" in run.stdout  # startup

    results = json.loads((tmp_path / "latest.json").read_text())
    enabled, disabled = results["phases"]["enabled"], results["phases"]["disabled"]
    for variant in ("ours", "builtin", "floor"):
        assert enabled["delivered"][variant]["spans"] == enabled["written"][variant] > 0
        for name, (_, _, spans) in WORKLOADS.items():
            assert enabled["summary"][variant][name]["spans_per_command"] == spans
            assert disabled["summary"].get(variant, {}).get(name, {}).get("spans_per_command", 0) == 0
    assert enabled["delivered"]["untraced"]["traces"] > 0  # the root spans
    assert all(s["spans_per_command"] == 0 for s in enabled["summary"]["untraced"].values())
