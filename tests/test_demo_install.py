"""``scripts/demo`` on a fresh copy of this tree, as a new user runs it: it installs only the
package, the app's clients and the test agent, each in a venv of its own, says so while it
installs, and draws the traces. (``tests/test_example.py`` runs ``scripts/demo.py`` itself.)

In the ``wheel`` suite: it builds the package and installs from the package index.
"""

import importlib.util
from pathlib import Path
import re
import shutil
import subprocess
import sys
import time

import pytest

from apps import subprocess_env

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEST_TOOLS = {"pytest", "hypothesis", "ruff", "riot", "build", "twine", "gevent", "pytest-asyncio", "uvloop"}


def distributions(venv: Path) -> set:
    code = "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'].lower() for d in m.distributions()))"
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


@pytest.mark.wheel
def test_demo_on_a_fresh_copy(tmp_path):
    for client in ("pymemcache", "pylibmc"):  # their wheels for this Python, as in the demo's venv
        if importlib.util.find_spec(client) is None:
            pytest.skip("the demo's clients are not installable here (riot's wheel suite has pymemcache only)")
    copy = tmp_path / "copy"
    shutil.copytree(PROJECT_ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv*", ".riot", "__pycache__"))
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("DD_") and k != "PYTHONPATH"}
    env.update(PYTHON=sys.executable, PYTHONIOENCODING="utf-8")
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", "scripts/demo"], cwd=copy, env=env, capture_output=True, text=True, encoding="utf-8", timeout=600
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    lines = proc.stdout.splitlines()
    assert re.fullmatch(
        r"--- installing ddtrace-memcached and the app's clients \(pymemcache,pylibmc\) into \.venv-demo, "
        r"the APM test agent into \.venv-demo-agent \.* done \(\d+ s\)",
        lines[0],
    ), lines[0]
    assert any(line.startswith("--- key capture on (DD_TRACE_MEMCACHED_COMMAND_ENABLED=true") for line in lines)
    assert re.match(r"4 traces, \d+ memcached spans, 1 error: ", lines[-1]), lines[-1]

    app, agent = distributions(copy / ".venv-demo"), distributions(copy / ".venv-demo-agent")
    assert {"ddtrace-memcached", "ddtrace", "pymemcache", "pylibmc"} <= app
    assert "ddapm-test-agent" in agent and "ddapm-test-agent" not in app
    assert not TEST_TOOLS & (app | agent), TEST_TOOLS & (app | agent)
    size = sum(f.stat().st_size for venv in (".venv-demo", ".venv-demo-agent") for f in (copy / venv).rglob("*"))
    print("\nscripts/demo on a fresh copy: %.1f s, venvs %.0f MB; then:" % (took, size / 1e6))

    started = time.monotonic()
    again = subprocess.run(["bash", "scripts/demo"], cwd=copy, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert not again.stdout.startswith("--- installing"), again.stdout  # nothing changed: nothing to install
    print("again: %.1f s" % (time.monotonic() - started))
