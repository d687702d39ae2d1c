"""Fixtures: real memcached servers, a span recorder, and patching; and what the test
modules share (``from conftest import ...``): ddtrace's ``Pin``, span helpers, threads,
asyncio tasks sharing a client, untraced-versus-traced runs, apps in subprocesses, snapshots.

Servers are ``memcached`` processes on free 127.0.0.1 ports (fixed ones for the
snapshot tests) and Datadog's APM test agent, started once per test session, or running
ones named by the environment (docker compose):

- ``MEMCACHED_HOST`` / ``MEMCACHED_PORT``: the main server;
- ``MEMCACHED_HASH_SERVERS``: ``host:port,host:port,host:port`` for HashClient tests;
- ``MEMCACHED_SOCKET``: a memcached on a unix socket;
- ``DD_TRACE_AGENT_URL``: the test agent (the suite's own spans are never sent to it).
"""

import os

# A running test agent to reuse (docker compose); in-process spans are never sent.
AGENT_URL = os.environ.get("DD_TRACE_AGENT_URL")
# Before ddtrace is imported: no agent, no background chatter in unit tests.
os.environ["DD_TRACE_AGENT_URL"] = "http://127.0.0.1:9"
os.environ.setdefault("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false")
os.environ.setdefault("DD_REMOTE_CONFIGURATION_ENABLED", "false")
os.environ.setdefault("DD_CRASHTRACKING_ENABLED", "false")

import asyncio  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import threading  # noqa: E402
from typing import List  # noqa: E402

import ddtrace  # noqa: E402
from ddtrace.trace import TraceFilter  # noqa: E402
from ddtrace.trace import tracer  # noqa: E402
import pytest  # noqa: E402

from servers import MemcachedProcess  # noqa: E402
from servers import TestAgent  # noqa: E402
from servers import free_port  # noqa: E402

# ddtrace's Pin, for the test modules: private from ddtrace 4, deprecated in ddtrace.trace before.
if int(ddtrace.__version__.split(".")[0]) >= 4:
    from ddtrace._trace.pin import Pin  # noqa: F401
else:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ddtrace.trace import Pin  # noqa: F401


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
    """The path of a memcached listening on a unix socket (``MEMCACHED_SOCKET`` to reuse one)."""
    if os.environ.get("MEMCACHED_SOCKET"):
        yield os.environ["MEMCACHED_SOCKET"]
        return
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


def flush(address) -> None:
    """Empties the memcached at ``address`` over a plain socket (no client library needed)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(5)
        s.connect(address)
        s.sendall(b"flush_all\r\n")
        assert s.recv(64) == b"OK\r\n"


@pytest.fixture(autouse=True)
def _flush_servers(request):
    """Every test starts with empty servers (only those it uses)."""
    for name in ("memcached", "memcached_nodes"):
        if name in request.fixturenames:
            addresses = request.getfixturevalue(name)
            for address in addresses if isinstance(addresses, list) else [addresses]:
                flush(address)
    yield


@pytest.fixture
def command_enabled():
    """Turns on memcached.query for the test."""
    from ddtrace import config

    config.memcached["command_enabled"] = True
    yield
    config.memcached["command_enabled"] = False


# --- spans, threads, tasks -----------------------------------------------------------


def host_of(span) -> tuple:
    """The (host, port) that a span names: ``out.host`` and ``network.destination.port``."""
    return (span.get_tag("out.host"), span.get_metric("network.destination.port"))


def untraced_and_traced(run) -> tuple:
    """``run()`` unpatched, then patched (for that call only): what the app sees, both ways."""
    import ddtrace_memcached

    untraced = run()
    ddtrace_memcached.patch()
    try:
        traced = run()
    finally:
        ddtrace_memcached.unpatch()
    return untraced, traced


def run_threads(target, count):
    """Starts ``count`` threads on ``target(n)`` together; returns their results by n."""
    barrier = threading.Barrier(count)
    results, failures = {}, []

    def run(n):
        barrier.wait()
        try:
            results[n] = target(n)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append((n, exc))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert sorted(results) == list(range(count))
    return results


# asyncio clients (aiomcache, emcache): WORKER_TASKS tasks share one client, each under a
# root span of its own, each with CALLS_PER_WORKER commands gathered at once.
WORKER_TASKS = 5
CALLS_PER_WORKER = 20


async def _worker(client, n):
    with tracer.trace("worker", resource=str(n)) as root:
        calls = []
        for i in range(CALLS_PER_WORKER):
            key = b"w%d-%d" % (n, i)
            calls.append(client.set(key, b"v") if i % 2 == 0 else client.get(key))
        await asyncio.gather(*calls)
        assert tracer.current_span() is root
    return root


async def _unrelated(stop: asyncio.Event, seen: list):
    while not stop.is_set():
        seen.append(tracer.current_span())
        await asyncio.sleep(0)


async def gather_workers(client) -> list:
    """Runs the worker tasks on ``client`` (``set`` and ``get`` of bytes keys), then closes
    it; a task of no trace runs meanwhile and must see no span. Returns the tasks' roots."""
    stop, seen = asyncio.Event(), []
    watcher = asyncio.ensure_future(_unrelated(stop, seen))
    try:
        roots = await asyncio.gather(*(_worker(client, n) for n in range(WORKER_TASKS)))
    finally:
        stop.set()
        await watcher
        await client.close()
    assert seen and set(seen) == {None}  # nothing leaks into an unrelated task
    assert tracer.current_span() is None
    return roots


def assert_each_under_its_worker(found, *rounds) -> None:
    """``found`` are the spans of the :func:`gather_workers` ``rounds`` (each a list of roots):
    every root has exactly its own commands as children, finished, in its trace."""
    assert len(found) == len(rounds) * WORKER_TASKS * CALLS_PER_WORKER
    for root in (root for roots in rounds for root in roots):
        mine = [s for s in found if s.parent_id == root.span_id]
        assert len(mine) == CALLS_PER_WORKER, root.resource
        assert all(s.trace_id == root.trace_id and s.finished for s in mine), root.resource


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
    """``ddtrace-run`` of this venv, or from PATH (riot installs ddtrace in a venv of its own)."""
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return [shutil.which("ddtrace-run", path=search) or "ddtrace-run"]


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


# --- snapshots through the APM test agent --------------------------------------------

# Fixed, so that the port metric and the socket path in the snapshots are real values.
SNAPSHOT_PORTS = (21211, 21212, 21213)
SNAPSHOT_DEAD_PORT = 21219
SNAPSHOT_SILENT_PORT = 21218
SNAPSHOT_SOCKET = "/tmp/ddtrace-memcached-snapshots/memcached.sock"
# Holds paths and line numbers: the unit tests check it instead.
SNAPSHOT_REMOVES = ("meta.error.stack",)


def snapshot_server_strings(unix_prefix: str = "") -> str:
    """App code naming the snapshot servers as ``host:port`` strings (pylibmc, bmemcached,
    python-memcached): SERVER, the three NODES, SOCKET (the socket's path after
    ``unix_prefix``) and DEAD, where nothing listens."""
    return """
SERVER = "127.0.0.1:{port}"
NODES = {nodes!r}
SOCKET = {socket!r}
DEAD = "127.0.0.1:{dead}"
""".format(
        port=SNAPSHOT_PORTS[0],
        nodes=["127.0.0.1:%d" % port for port in SNAPSHOT_PORTS],
        socket=unix_prefix + SNAPSHOT_SOCKET,
        dead=SNAPSHOT_DEAD_PORT,
    )


@pytest.fixture(scope="session")
def test_agent():
    """The APM test agent: the one at ``DD_TRACE_AGENT_URL`` if set, else a new process."""
    agent = TestAgent(url=AGENT_URL, ci=os.environ.get("SNAPSHOT_CI", "1") != "0")
    yield agent
    agent.stop()


@pytest.fixture(scope="session")
def snapshot_servers(request):
    """memcached on the fixed SNAPSHOT_PORTS and SNAPSHOT_SOCKET; reused from the environment
    (docker compose) when ``MEMCACHED_HASH_SERVERS`` and ``MEMCACHED_SOCKET`` name them."""
    running = os.environ.get("MEMCACHED_HASH_SERVERS", "")
    addresses = [("127.0.0.1", port) for port in SNAPSHOT_PORTS]
    for port in SNAPSHOT_PORTS:
        if "127.0.0.1:%d" % port not in running:
            request.addfinalizer(MemcachedProcess(port=port).stop)
    if os.environ.get("MEMCACHED_SOCKET") != SNAPSHOT_SOCKET:
        os.makedirs(os.path.dirname(SNAPSHOT_SOCKET), exist_ok=True)
        if os.path.exists(SNAPSHOT_SOCKET):
            os.unlink(SNAPSHOT_SOCKET)
        request.addfinalizer(MemcachedProcess(unix_path=SNAPSHOT_SOCKET).stop)
    return addresses


class Snapshot:
    """One test's session in the test agent; see the ``snapshot`` fixture."""

    def __init__(self, agent: TestAgent, token: str, directory: str):
        self.agent = agent
        self.token = token
        self.directory = directory

    def env(self, env_header: bool = True, **settings) -> dict:
        """The app's environment: ``settings`` plus what sends its traces to this session."""
        settings.setdefault("DD_SERVICE", "snapshot-app")
        settings = {k: v for k, v in settings.items() if v is not None}  # None: leave unset
        return subprocess_env(**self.agent.env(self.token, env_header, **settings))

    def run(
        self, code: str, prelude: str = "", under_ddtrace_run: bool = True, env_header: bool = True, **settings
    ) -> subprocess.CompletedProcess:
        """Runs ``code`` as ``app.py`` (a fixed path) in a new interpreter, under ddtrace-run
        by default; ``settings`` are its environment (``DD_SERVICE=None`` leaves it unset).

        ``env_header=False`` keeps the settings from the agent's checks (see TestAgent.env).
        """
        path = os.path.join(self.directory, "app.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(prelude) + "\n" + textwrap.dedent(code))
        argv = [*(ddtrace_run() if under_ddtrace_run else []), sys.executable, "app.py"]
        env = self.env(env_header, **settings)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=self.directory)
        assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
        return proc


@pytest.fixture
def snapshot(request, test_agent, snapshot_servers, tmp_path_factory):
    """Runs the test in its own agent session; afterwards its traces must match
    ``snapshots/<token>.json`` and pass the agent's checks.

    The token is ``<module>.<test name>``. Snapshots are written where none exists
    (``SNAPSHOT_CI=0``, see ``scripts/update-snapshots``); under ``SNAPSHOT_CI=1`` a missing or
    different snapshot fails the test with the agent's diff.
    """
    module = request.node.module.__name__.rpartition(".")[2]
    token = "%s.%s" % (module, request.node.name)
    # ddtrace splits its additional-headers setting on commas and whitespace.
    assert not set(token) & set(", \t"), "test ids of snapshot tests must not hold commas or spaces: %r" % token
    directory = tmp_path_factory.mktemp("snapshot") / "app"  # the process's inferred service
    directory.mkdir()
    for address in [*snapshot_servers, SNAPSHOT_SOCKET]:
        flush(address)
    test_agent.start(token)
    yield Snapshot(test_agent, token, str(directory))
    if request.node.stash.get(_CALL_PASSED, False):  # else the test's own failure says it all
        test_agent.snapshot(token, removes=SNAPSHOT_REMOVES)
        test_agent.check_failures(token)


_CALL_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed


def pytest_collection_modifyitems(items):
    """Tests that use the ``snapshot`` fixture carry the ``snapshot`` marker (``-m snapshot``)."""
    for item in items:
        if "snapshot" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.snapshot)
