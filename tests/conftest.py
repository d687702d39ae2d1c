"""Fixtures: real memcached servers, a span recorder, and patching.

Servers are ``memcached`` processes on free 127.0.0.1 ports, started once per test
session, or running ones named by the environment (docker compose):

- ``MEMCACHED_HOST`` / ``MEMCACHED_PORT``: the main server;
- ``MEMCACHED_HASH_SERVERS``: ``host:port,host:port,host:port`` for HashClient tests.
"""

import os

# Before ddtrace is imported: no agent, no background chatter in unit tests.
os.environ.setdefault("DD_TRACE_AGENT_URL", "http://127.0.0.1:9")
os.environ.setdefault("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false")
os.environ.setdefault("DD_REMOTE_CONFIGURATION_ENABLED", "false")
os.environ.setdefault("DD_CRASHTRACKING_ENABLED", "false")

import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from typing import List  # noqa: E402

from ddtrace.trace import TraceFilter  # noqa: E402
from ddtrace.trace import tracer  # noqa: E402
import pytest  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(connect, what: str, process=None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect().close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError("%s exited with %s" % (what, process.returncode))
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not start within %ss" % (what, timeout))
            time.sleep(0.01)


class MemcachedProcess:
    """A memcached server process on 127.0.0.1 (or a unix socket)."""

    def __init__(self, unix_path=None):
        binary = shutil.which("memcached")
        if binary is None:
            raise RuntimeError("memcached is not installed: apt-get install -y memcached")
        self.unix_path = unix_path
        self.port = None if unix_path else free_port()
        cmd = [binary, "-U", "0", "-m", "64"]
        cmd += ["-s", unix_path] if unix_path else ["-l", "127.0.0.1", "-p", str(self.port)]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until_serving(self._connect, "memcached", self.process)

    @property
    def address(self):
        return self.unix_path or ("127.0.0.1", self.port)

    def _connect(self):
        if self.unix_path:
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.unix_path)
            return s
        return socket.create_connection(("127.0.0.1", self.port), timeout=1)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def _from_env_or_start(request, n: int) -> List:
    spec = os.environ.get("MEMCACHED_HASH_SERVERS") if n > 1 else None
    if n == 1 and os.environ.get("MEMCACHED_PORT"):
        return [(os.environ.get("MEMCACHED_HOST", "127.0.0.1"), int(os.environ["MEMCACHED_PORT"]))]
    if spec:
        return [(h, int(p)) for h, p in (item.rsplit(":", 1) for item in spec.split(","))]
    servers = [MemcachedProcess() for _ in range(n)]
    for server in servers:
        request.addfinalizer(server.stop)
    return [server.address for server in servers]


@pytest.fixture(scope="session")
def memcached(request):
    """(host, port) of a running memcached."""
    return _from_env_or_start(request, 1)[0]


@pytest.fixture(scope="session")
def memcached_nodes(request):
    """Three (host, port) memcached servers, for HashClient."""
    return _from_env_or_start(request, 3)


@pytest.fixture(scope="session")
def memcached_unix():
    """The path of a memcached listening on a unix socket."""
    directory = tempfile.mkdtemp(prefix="memcached-")
    server = MemcachedProcess(unix_path=os.path.join(directory, "memcached.sock"))
    yield server.address
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def dead_address():
    """A 127.0.0.1 address where nothing listens."""
    return ("127.0.0.1", free_port())


@pytest.fixture
def silent_server():
    """A real socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()
    listener.close()


class SpanRecorder(TraceFilter):
    """Keeps every finished span and drops the traces (nothing is sent)."""

    def __init__(self):
        self.spans = []

    def process_trace(self, trace):
        self.spans.extend(trace)
        return None

    def memcached(self):
        return [s for s in self.spans if s.get_tag("component") == "memcached"]


_recorder = SpanRecorder()


@pytest.fixture(scope="session", autouse=True)
def _record_spans():
    tracer.configure(trace_processors=[_recorder])
    yield


@pytest.fixture
def spans():
    """The spans finished during the test."""
    tracer.flush()
    _recorder.spans.clear()
    yield _recorder
    _recorder.spans.clear()


@pytest.fixture
def patched():
    import ddtrace_memcached

    ddtrace_memcached.patch()
    yield
    ddtrace_memcached.unpatch()


@pytest.fixture(autouse=True)
def _flush_servers(request):
    """Every test starts with empty servers (only those it uses)."""
    from pymemcache.client.base import Client

    for name in ("memcached", "memcached_nodes"):
        if name in request.fixturenames:
            addresses = request.getfixturevalue(name)
            for address in addresses if isinstance(addresses, list) else [addresses]:
                client = Client(address)
                client.flush_all(noreply=False)
                client.close()
    yield


@pytest.fixture
def command_enabled():
    """Turns on memcached.query for the test."""
    from ddtrace import config

    config.memcached["command_enabled"] = True
    yield
    config.memcached["command_enabled"] = False


# --- apps in subprocesses -----------------------------------------------------------


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
    return [os.path.join(os.path.dirname(sys.executable), "ddtrace-run")]


# The app template: ``app()`` code records its spans with a public TraceFilter and
# prints them as JSON on one marked line, which ``spans_of()`` reads back.

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
