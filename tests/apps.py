"""Apps in subprocesses: a new interpreter of this venv (optionally under ``ddtrace-run``)
runs app code that records its spans with a public ``TraceFilter`` and prints them as JSON
on one marked line, which :func:`spans_of` reads back.

This module imports nothing of ddtrace: the apps import it themselves, as users do.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import List


def subprocess_env(**extra) -> dict:
    """This environment without DD_ settings, with no agent and no background chatter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DD_")}
    env.update(
        DD_TRACE_AGENT_URL="http://127.0.0.1:9",
        DD_INSTRUMENTATION_TELEMETRY_ENABLED="false",
        DD_REMOTE_CONFIGURATION_ENABLED="false",
        DD_CRASHTRACKING_ENABLED="false",
    )
    env.update(extra)
    return env


def run_python(code: str, env=None, argv_prefix=(), timeout=60, cwd=None) -> subprocess.CompletedProcess:
    """Runs ``code`` in a new interpreter of this venv, optionally under ``ddtrace-run``."""
    return subprocess.run(
        [*argv_prefix, sys.executable, "-c", code],
        env=subprocess_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def ddtrace_run() -> List[str]:
    """``ddtrace-run`` of this venv, or from PATH (riot installs ddtrace in a venv of its own)."""
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return [shutil.which("ddtrace-run", path=search) or "ddtrace-run"]


MARK = "@@SPANS@@"

_CAPTURE = """
import json as _json

from ddtrace.trace import TraceFilter as _TraceFilter
from ddtrace.trace import tracer as _tracer


class _Keep(_TraceFilter):
    spans = []

    def process_trace(self, trace):
        self.spans.extend(trace)
        return None


_tracer.configure(trace_processors=[_Keep()])
ADDRESS = {address!r}
"""

_REPORT = """
_tracer.flush()
print({mark!r} + _json.dumps([
    dict(
        name=s.name,
        service=s.service,
        resource=s.resource,
        component=s.get_tag("component"),
        error=s.error,
        tags={{k: str(v) for k, v in s.get_tags().items()}},
    )
    for s in _Keep.spans
]))
"""


def app(body, address, prelude: str = "") -> str:
    """App code: ``prelude`` first (e.g. ``import ddtrace.auto``), span capture, ``body``, report.

    ``body`` is a code block or a list of blocks, each dedented on its own.
    """
    blocks = [body] if isinstance(body, str) else list(body)
    parts = [prelude, _CAPTURE.format(address=tuple(address)), *blocks, _REPORT.format(mark=MARK)]
    return "\n".join(textwrap.dedent(part) for part in parts)


def spans_of(proc: subprocess.CompletedProcess) -> list:
    """The spans an :func:`app` printed; fails with its output if it did not exit cleanly."""
    output = "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    assert proc.returncode == 0, output
    reports = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    assert len(reports) == 1, output
    return json.loads(reports[0][len(MARK) :])
