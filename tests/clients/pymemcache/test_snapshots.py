"""Snapshot tests: the traces an app sends to Datadog's APM test agent.

Each test runs a small app in a new interpreter (under ``ddtrace-run`` unless it says
otherwise) against memcached on fixed ports, and the ``snapshot`` fixture compares what the
agent received with ``snapshots/<module>.<test>.json`` and runs the agent's checks on it.
The apps assert the results they get, so a snapshot is always of a working app.

Snapshots are expectations: after a deliberate change, regenerate them with
``scripts/update-snapshots`` and review the diff.
"""

import pytest

from ddtrace_memcached.clients.pymemcache import ALL_COMMANDS
from ddtrace_memcached.clients.pymemcache import HAS_RETRYING_CLIENT
from ddtrace_memcached.clients.pymemcache import VERSION as PYMEMCACHE_VERSION
from snapshot_apps import SNAPSHOT_DEAD_PORT
from snapshot_apps import SNAPSHOT_PORTS
from snapshot_apps import SNAPSHOT_SILENT_PORT
from snapshot_apps import SNAPSHOT_SOCKET
from snapshot_apps import Snapshot

# The app's first lines: the servers, and the client classes.
PRELUDE = """
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient
from ddtrace.trace import tracer

SERVER = ("127.0.0.1", {port})
NODES = {nodes!r}
SOCKET = {socket!r}
DEAD = ("127.0.0.1", {dead})
SILENT = ("127.0.0.1", {silent})
c = Client(SERVER)
""".format(
    port=SNAPSHOT_PORTS[0],
    nodes=[("127.0.0.1", port) for port in SNAPSHOT_PORTS],
    socket=SNAPSHOT_SOCKET,
    dead=SNAPSHOT_DEAD_PORT,
    silent=SNAPSHOT_SILENT_PORT,
)

# The harness tests below use the agent without the ``snapshot`` fixture: same suite.
pytestmark = pytest.mark.snapshot

needs_retrying_client = pytest.mark.skipif(not HAS_RETRYING_CLIENT, reason="RetryingClient needs pymemcache >= 3.5")

# --- every command ----------------------------------------------------------------

# One app per command: its setup (traced too, so it shows in the snapshot) and the
# command, asserting its result.
COMMAND_APPS = {
    "set": 'assert c.set("k", b"v", expire=60, noreply=False) is True',
    "set_many": 'assert c.set_many({"a": b"1", "b": b"2"}, noreply=False) == []',
    "set_multi": 'assert c.set_multi({"a": b"1", "b": b"2"}, noreply=False) == []',
    "add": 'assert c.add("fresh", b"v", noreply=False) is True',
    "replace": 'c.set("k", b"v")\nassert c.replace("k", b"v2", noreply=False) is True',
    "append": 'c.set("k", b"v")\nassert c.append("k", b"-tail", noreply=False) is True',
    "prepend": 'c.set("k", b"v")\nassert c.prepend("k", b"head-", noreply=False) is True',
    "cas": 'c.set("k", b"v")\n_, token = c.gets("k")\nassert c.cas("k", b"v2", token, noreply=False) is True',
    "get": 'c.set("k", b"v")\nassert c.get("k") == b"v"\nassert c.get("missing") is None',
    "get_many": 'c.set_many({"a": b"1"})\nassert c.get_many(["a", "missing"]) == {"a": b"1"}',
    "get_multi": 'c.set_many({"a": b"1"})\nassert c.get_multi(["a", "missing"]) == {"a": b"1"}',
    "gets": 'c.set("k", b"v")\nvalue, token = c.gets("k")\nassert value == b"v" and token.isdigit()',
    "gets_many": 'c.set("k", b"v")\nassert list(c.gets_many(["k", "missing"])) == ["k"]',
    "delete": 'c.set("k", b"v")\nassert c.delete("k", noreply=False) is True',
    "delete_many": 'c.set("a", b"1")\nassert c.delete_many(["a", "b"], noreply=False) is True',
    "delete_multi": 'c.set("a", b"1")\nassert c.delete_multi(["a", "b"], noreply=False) is True',
    "incr": 'c.set("n", b"10")\nassert c.incr("n", 5) == 15',
    "decr": 'c.set("n", b"10")\nassert c.decr("n", 3) == 7',
    "touch": 'c.set("k", b"v")\nassert c.touch("k", expire=60, noreply=False) is True',
    "stats": 'assert b"curr_items" in c.stats()',
    "version": "assert c.version()[:1].isdigit()",
    "flush_all": "assert c.flush_all(noreply=False) is True",
    "quit": "c.version()\nassert c.quit() is None",
    "cache_memlimit": "assert c.cache_memlimit(64) is True",
    # The fixed servers run without -A: memcached refuses, and the span is an error.
    "shutdown": (
        "from pymemcache.exceptions import MemcacheUnknownCommandError\n"
        "try:\n    c.shutdown()\nexcept MemcacheUnknownCommandError:\n    pass\nelse:\n    raise SystemExit(1)"
    ),
    "raw_command": 'assert c.raw_command("set raw 0 0 5\\r\\nvalue", end_tokens=b"STORED\\r\\n") == b""',
}


def test_every_command_has_an_app():
    assert set(COMMAND_APPS) == {command.method for command in ALL_COMMANDS}


@pytest.mark.parametrize("method", sorted(COMMAND_APPS))
def test_command(snapshot, method):
    since = next(command.since for command in ALL_COMMANDS if command.method == method)
    if PYMEMCACHE_VERSION < since:
        pytest.skip("%s needs pymemcache >= %s" % (method, ".".join(map(str, since))))
    snapshot.run(COMMAND_APPS[method], prelude=PRELUDE)


# --- client types -----------------------------------------------------------------


def test_pooled_client(snapshot):
    snapshot.run(
        """
        pooled = PooledClient(SERVER, max_pool_size=2)
        assert pooled.set("k", b"v", noreply=False) is True
        assert pooled.get("k") == b"v"
        assert pooled.get_many(["k", "missing"]) == {"k": b"v"}
        """,
        prelude=PRELUDE,
    )


@pytest.mark.parametrize("use_pooling", [False, True], ids=["unpooled", "pooled"])
def test_hash_client(snapshot, use_pooling):
    """Three servers: one span per node that a multi-key command reaches."""
    snapshot.run(
        """
        hashed = HashClient(NODES, use_pooling=%r)
        values = {"key-%%d" %% i: b"v" for i in range(8)}
        assert hashed.set_many(values, noreply=False) == []
        assert hashed.get("key-0") == b"v"
        assert hashed.get_many(list(values) + ["missing"]) == values
        """
        % use_pooling,
        prelude=PRELUDE,
    )


@needs_retrying_client
def test_retrying_client_attempts(snapshot):
    """A dead server: one error span per attempt, numbered."""
    snapshot.run(
        """
        from pymemcache.client.retrying import RetryingClient
        from pymemcache.exceptions import MemcacheUnexpectedCloseError

        retrying = RetryingClient(Client(DEAD), attempts=3, retry_delay=0, retry_for=[ConnectionRefusedError])
        try:
            retrying.get("k")
        except ConnectionRefusedError:
            pass
        else:
            raise SystemExit("no error")
        healthy = RetryingClient(Client(SERVER), attempts=3, retry_delay=0)
        assert healthy.set("k", b"v", noreply=False) is True
        """,
        prelude=PRELUDE,
    )


def test_unix_socket(snapshot):
    snapshot.run(
        """
        local = Client(SOCKET)
        assert local.set("k", b"v", noreply=False) is True
        assert local.get("k") == b"v"
        """,
        prelude=PRELUDE,
    )


# --- errors -----------------------------------------------------------------------


def test_error_dead_server(snapshot):
    snapshot.run(
        """
        try:
            Client(DEAD).get("k")
        except ConnectionRefusedError:
            pass
        else:
            raise SystemExit("no error")
        """,
        prelude=PRELUDE,
    )


def test_error_timeout(snapshot):
    """A socket that accepts and never answers: the app listens on SILENT itself."""
    snapshot.run(
        """
        import socket

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(SILENT)
        listener.listen(1)
        try:
            Client(SILENT, timeout=0.2).get("k")
        except socket.timeout:
            pass
        else:
            raise SystemExit("no error")
        """,
        prelude=PRELUDE,
    )


def test_error_illegal_input(snapshot):
    snapshot.run(
        """
        from pymemcache.exceptions import MemcacheIllegalInputError

        for key in ("has space", "x" * 251):
            try:
                c.set(key, b"v")
            except MemcacheIllegalInputError:
                pass
            else:
                raise SystemExit("no error")
        """,
        prelude=PRELUDE,
    )


# --- key capture, overrides ---------------------------------------------------------


def test_key_capture(snapshot):
    """``memcached.query``: the keys as sent (with key_prefix), never a value."""
    snapshot.run(
        """
        prefixed = Client(SERVER, key_prefix=b"app:")
        assert prefixed.set("user:1", b"secret", noreply=False) is True
        assert prefixed.get("user:1") == b"secret"
        assert prefixed.get_many(["user:1", "user:2"]) == {"user:1": b"secret"}
        assert prefixed.incr("missing", 1) is None
        """,
        prelude=PRELUDE,
        DD_TRACE_MEMCACHED_COMMAND_ENABLED="true",
    )


@pytest.mark.skipif(PYMEMCACHE_VERSION < (4, 0), reason="raw_command needs pymemcache >= 4.0")
def test_key_capture_raw_command(snapshot):
    """Only the command line of ``raw_command``: its data block is the value."""
    snapshot.run(
        'assert c.raw_command("set raw 0 0 6\\r\\nsecret", end_tokens=b"STORED\\r\\n") == b""',
        prelude=PRELUDE,
        DD_TRACE_MEMCACHED_COMMAND_ENABLED="true",
    )


def test_pin_and_public_overrides(snapshot):
    """``override()`` beats ddtrace's Pin on the same client; each client keeps its own."""
    snapshot.run(
        """
        import ddtrace
        import ddtrace_memcached

        if int(ddtrace.__version__.split(".")[0]) >= 4:
            from ddtrace._trace.pin import Pin
        else:
            from ddtrace.trace import Pin

        pinned = Client(SERVER)
        Pin.override(pinned, service="pinned-cache", tags={"team": "pin"})
        overridden = Client(SERVER)
        ddtrace_memcached.override(overridden, service="sessions-cache", tags={"team": "web"})
        both = Client(SERVER)
        Pin.override(both, service="pinned-cache")
        ddtrace_memcached.override(both, service="sessions-cache")
        for client in (pinned, overridden, both, c):
            assert client.set("k", b"v", noreply=False) is True
        """,
        prelude=PRELUDE,
    )


# --- entry points -------------------------------------------------------------------

REQUEST_APP = """
def handle(user_id):
    with tracer.trace("web.request", service="snapshot-app", resource="GET /users/<id>"):
        profile = cache.get("user:%s" % user_id)
        if profile is None:
            profile = b"profile-of-%s" % user_id.encode()
            cache.set("user:%s" % user_id, profile, expire=60)
        return profile

cache = HashClient(NODES[:2])
assert handle("42") == b"profile-of-42"  # miss, then fill
assert handle("42") == b"profile-of-42"  # hit
"""


def test_app_under_ddtrace_run(snapshot):
    snapshot.run(REQUEST_APP, prelude=PRELUDE)


def test_app_with_import_ddtrace_auto(snapshot):
    snapshot.run(REQUEST_APP, prelude="import ddtrace.auto\n" + PRELUDE, under_ddtrace_run=False)


def test_app_with_ddtrace_patch(snapshot):
    snapshot.run(
        REQUEST_APP,
        prelude="import ddtrace\nddtrace.patch(memcached=True)\n" + PRELUDE,
        under_ddtrace_run=False,
    )


# --- naming -------------------------------------------------------------------------

NAMING_APP = """
assert c.set("k", b"v", noreply=False) is True
assert c.get("k") == b"v"
"""

NAMING = {
    "v0": {},
    "v0-no-dd-service": {"DD_SERVICE": None},
    "v1": {"DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": "v1"},
    "v0-memcached-service": {"DD_MEMCACHED_SERVICE": "sessions-cache"},
    "v1-memcached-service": {"DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": "v1", "DD_MEMCACHED_SERVICE": "sessions-cache"},
    "v0-peer-service-defaults": {"DD_TRACE_PEER_SERVICE_DEFAULTS_ENABLED": "true"},
    "v0-peer-service-mapping": {
        "DD_TRACE_PEER_SERVICE_DEFAULTS_ENABLED": "true",
        "DD_TRACE_PEER_SERVICE_MAPPING": "127.0.0.1:memcached-cluster",
    },
    "v0-remove-integration-service-names": {"DD_TRACE_REMOVE_INTEGRATION_SERVICE_NAMES_ENABLED": "true"},
}


@pytest.mark.parametrize("variant", list(NAMING))
def test_naming(snapshot, variant):
    snapshot.run(NAMING_APP, prelude=PRELUDE, **NAMING[variant])


def test_naming_v1_no_dd_service(snapshot):
    """v1 without DD_SERVICE: the spans take the process's own service, which ddtrace infers from
    the app's directory, ``app``.

    The agent's ``trace_dd_service`` check expects DD_SERVICE itself under v1, so the
    settings are kept from its checks here; the snapshot still holds the service.
    """
    snapshot.run(NAMING_APP, prelude=PRELUDE, env_header=False, DD_SERVICE=None, DD_TRACE_SPAN_ATTRIBUTE_SCHEMA="v1")


# --- the harness fails on bad spans -------------------------------------------------

# Corrupts the finished memcached spans before they are sent, as a buggy integration would.
CORRUPT = """
from ddtrace.trace import TraceFilter

class Corrupt(TraceFilter):
    def process_trace(self, trace):
        for span in trace:
            if span.get_tag("component") == "memcached":
                {change}
        return trace

tracer.configure(trace_processors=[Corrupt()])
"""


@pytest.fixture
def session(request, test_agent, snapshot_servers, tmp_path):
    """A test agent session without the ``snapshot`` fixture's comparison."""
    (tmp_path / "app").mkdir()
    token = "test_snapshots.%s" % request.node.name
    test_agent.start(token)
    return Snapshot(test_agent, token, str(tmp_path / "app"))


@pytest.mark.parametrize(
    "check, change",
    [
        ("trace_peer_service", 'span.set_tag("peer.service", "not-the-host")'),
        ("trace_dd_service", 'span.service = "not-dd-service"'),
    ],
    ids=["peer-service", "service"],
)
def test_agent_checks_fail_on_bad_spans(test_agent, session, check, change):
    """Under v1, a wrong ``peer.service`` or service fails the agent's check by name."""
    session.run(CORRUPT.format(change=change) + NAMING_APP, prelude=PRELUDE, DD_TRACE_SPAN_ATTRIBUTE_SCHEMA="v1")
    test_agent.wait_for_traces(session.token, 0)
    with pytest.raises(AssertionError, match=check):
        test_agent.check_failures(session.token)


def test_agent_checks_pass_on_good_spans(test_agent, session):
    """The same app without the corruption passes: the failures above come from it."""
    session.run(NAMING_APP, prelude=PRELUDE, DD_TRACE_SPAN_ATTRIBUTE_SCHEMA="v1")
    assert len(test_agent.traces(session.token)) == 2
    test_agent.check_failures(session.token)


def test_snapshot_mismatch_fails_with_the_diff(test_agent, session):
    """Spans that differ from a committed snapshot fail, and the message shows what differs."""
    session.token = "test_snapshots.test_naming[v0-memcached-service]"  # expects sessions-cache
    test_agent.start(session.token)
    session.run(NAMING_APP, prelude=PRELUDE, DD_MEMCACHED_SERVICE="another-cache")
    with pytest.raises(AssertionError, match="another-cache"):
        test_agent.snapshot(session.token)
