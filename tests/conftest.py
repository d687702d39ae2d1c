"""Fixtures: real memcached servers, a span recorder, patching, and the snapshot tests'
agent sessions. What the test modules share otherwise lives in modules of its own:
``helpers`` (Pin, span helpers, threads, untraced-versus-traced runs), ``workers``
(asyncio tasks sharing a client), ``apps`` (apps in subprocesses), ``snapshot_apps``
(the snapshot apps' addresses and agent sessions), ``framework_steps`` (real users' apps),
``servers`` and ``adapters``.

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

import shutil  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
from typing import List  # noqa: E402

from ddtrace.trace import TraceFilter  # noqa: E402
from ddtrace.trace import tracer  # noqa: E402
import pytest  # noqa: E402

from servers import MemcachedProcess  # noqa: E402
from servers import TestAgent  # noqa: E402
from servers import free_port  # noqa: E402
from snapshot_apps import SNAPSHOT_PORTS  # noqa: E402
from snapshot_apps import SNAPSHOT_SOCKET  # noqa: E402
from snapshot_apps import Snapshot  # noqa: E402
from snapshot_apps import token_prefix  # noqa: E402


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


# --- snapshots through the APM test agent --------------------------------------------

# Holds paths and line numbers: the unit tests check it instead.
SNAPSHOT_REMOVES = ("meta.error.stack",)


@pytest.fixture(scope="session")
def reused_agent_url():
    """The test agent that ``DD_TRACE_AGENT_URL`` named when the session started (docker
    compose), for apps that start their own otherwise (the demo); None when unset."""
    return AGENT_URL


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


@pytest.fixture
def snapshot(request, test_agent, snapshot_servers, tmp_path_factory):
    """Runs the test in its own agent session; afterwards its traces must match
    ``snapshots/<token>.json`` and pass the agent's checks.

    The token is ``<module>.<test name>`` (see ``snapshot_apps.token_prefix``). Snapshots are written where none exists
    (``SNAPSHOT_CI=0``, see ``scripts/update-snapshots``); under ``SNAPSHOT_CI=1`` a missing or
    different snapshot fails the test with the agent's diff.
    """
    token = "%s.%s" % (token_prefix(request.node.module), request.node.name)
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
