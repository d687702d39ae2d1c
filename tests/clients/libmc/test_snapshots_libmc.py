"""Snapshot tests of libmc apps: the traces they send to Datadog's APM test agent.

As the other clients' snapshot tests (same fixtures, fixed ports): each app runs in a new
interpreter under ``ddtrace-run``, asserts what libmc returns and its ``get_last_error()``
code, and runs its commands inside one ``app.request`` span (one trace); the ``snapshot``
fixture compares the agent's traces with ``snapshots/test_snapshots_libmc.<test>.json``.
"""

import pytest

pytest.importorskip("libmc")

from snapshot_apps import snapshot_server_strings  # noqa: E402

pytestmark = pytest.mark.snapshot

PRELUDE = """
import libmc
from ddtrace.trace import tracer


def code(client, expected):
    found = client.get_last_error()
    assert found == expected, (found, client.get_last_strerror())
""" + snapshot_server_strings()


def test_commands(snapshot):
    """Every command once, on one server: rows on reads (a stored b"" and None are hits),
    misses and "not stored" replies no errors."""
    snapshot.run(
        """
        c = libmc.Client([SERVER])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") is True
            assert c.set_raw("raw", b"r", 0, 0) is True
            assert c.set_multi({"a": b"1", "empty": b"", "none": None}) is True
            assert c.add("k", b"x") is False  # not stored: no error
            assert c.add("fresh", b"v") is True
            assert c.replace("k", b"w") is True
            assert c.replace("missing", b"w") is False
            assert c.append("k", b"+") is True
            assert c.prepend("k", b"-") is True
            assert c.append_multi(["a", "empty"], b"+") is True
            assert c.prepend_multi(["a", "empty"], b"+") is True
            assert c.get("k") == b"-w+"
            assert c.get("none") is None  # a stored None: a hit
            assert c.get("missing") is None
            assert c.get_raw("raw") == (b"r", 0)
            value, token = c.gets("k")
            assert c.cas("k", b"v2", 0, token) is True
            assert c.cas("k", b"v3", 0, token) is False  # stale: no error
            assert c.get_multi(["a", "empty", "none", "missing"]) == {"a": b"+1+", "empty": b"++", "none": None}
            assert c.get_list(["a", "missing"]) == [b"+1+", None]
            assert c.set("n", 10) is True
            assert c.incr("n", 5) == 15
            assert c.decr("n", 3) == 12
            assert c.incr("missing", 1) is None  # a miss: no error
            assert c.touch("k", 60) is True
            assert c.touch("missing", 60) is False
            assert c.expire("k") is True
            assert c.delete("k") is True
            assert c.delete("missing") is True
            assert c.delete_multi(["a", "empty"]) is True
            assert list(c.version()) == [SERVER]
            assert "curr_items" in c.stats()[SERVER]
            c.toggle_flush_all_feature(True)
            assert c.flush_all() == [SERVER]
            assert c.quit() is True
            code(c, libmc.MC_RETURN_OK)
        """,
        prelude=PRELUDE,
    )


def test_three_servers(snapshot):
    """Each key's span names its server; a multi-key call over several servers names none and
    counts them (``memcached.servers``), one on a single server names it; the commands of every
    server count all three."""
    snapshot.run(
        """
        c = libmc.Client(NODES)
        keys = ["key-%d" % i for i in range(6)]
        with tracer.trace("app.request"):
            for key in keys:
                assert c.set(key, b"v") is True
            assert c.get("key-0") == b"v"
            assert len(c.get_multi(keys)) == 6
            assert c.get_multi(["key-0"]) == {"key-0": b"v"}
            assert c.delete_multi(keys) is True
            assert len(c.version()) == 3
            assert len(c.stats()) == 3
        """,
        prelude=PRELUDE,
    )


def test_unix_socket(snapshot):
    snapshot.run(
        """
        c = libmc.Client([SOCKET])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") is True
            assert c.get("k") == b"v"
        """,
        prelude=PRELUDE,
    )


def test_errors_libmc_swallows(snapshot):
    """Bad keys (-2) and incr of a value that is no number (-3) are error spans, without the
    key; a get_multi that leaves a bad key out is one too, though libmc reports 0; a key that
    is not a str raises TypeError, as untraced."""
    snapshot.run(
        """
        c = libmc.Client([SERVER])
        with tracer.trace("app.request"):
            assert c.get("secret key") is None
            code(c, libmc.MC_RETURN_INVALID_KEY_ERR)
            assert c.set("x" * 251, b"v") is False
            code(c, libmc.MC_RETURN_INVALID_KEY_ERR)
            assert c.set("k", b"v") is True
            assert c.get_multi(["k", "secret key"]) == {"k": b"v"}
            code(c, libmc.MC_RETURN_OK)
            assert c.incr("k", 1) is None  # libmc prints CLIENT_ERROR
            code(c, libmc.MC_RETURN_PROGRAMMING_ERR)
            try:
                c.get(b"bytes")
            except TypeError:
                pass
            else:
                raise SystemExit("no TypeError")
        """,
        prelude=PRELUDE,
    )


def test_dead_server(snapshot):
    """A refused server (-4): an error span naming it; version and stats answer for no one; a
    multi-key call over a live and a dead server is an error span naming the dead one."""
    snapshot.run(
        """
        c = libmc.Client([DEAD])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") is False
            code(c, libmc.MC_RETURN_MC_SERVER_ERR)
            assert c.get("k") is None
            code(c, libmc.MC_RETURN_MC_SERVER_ERR)
            assert c.version() == {}
            assert c.stats() == {DEAD: {}}
        both = libmc.Client([SERVER, DEAD])
        keys = ["key-%d" % i for i in range(8)]
        live = [key for key in keys if both.get_host_by_key(key) == SERVER]
        assert live and len(live) < len(keys)
        with tracer.trace("app.request"):
            assert both.get_multi(keys) == {}
            code(both, libmc.MC_RETURN_OK)
        """,
        prelude=PRELUDE,
    )


def test_failover(snapshot):
    """With ``failover=True`` a key whose server is dead goes to another one: the span names
    the server that took it."""
    snapshot.run(
        """
        c = libmc.Client([SERVER, DEAD], failover=True)
        key = next("key-%d" % i for i in range(50) if c.get_host_by_key("key-%d" % i) == DEAD)
        with tracer.trace("app.request"):
            assert c.set(key, b"v") is True
            assert c.get(key) == b"v"
            code(c, libmc.MC_RETURN_OK)
        """,
        prelude=PRELUDE,
    )


def test_key_capture(snapshot):
    """``memcached.query`` holds the keys (prefixed, as sent) with capture on, the bad key's
    too; libmc's messages never quote a key."""
    snapshot.run(
        """
        c = libmc.Client([SERVER], prefix="app:")
        with tracer.trace("app.request"):
            assert c.set("user:1", b"secret") is True
            assert c.get_multi(["user:1", "user:2"]) == {"user:1": b"secret"}
            assert c.get("bad key") is None
        """,
        prelude=PRELUDE,
        DD_TRACE_MEMCACHED_COMMAND_ENABLED="true",
    )


def test_pools_and_overrides(snapshot):
    """The workers ``ClientPool.client()`` hands out, and ``ThreadedClient``'s, are traced;
    an override on the pool or the ThreadedClient covers its workers' spans."""
    snapshot.run(
        """
        import ddtrace_memcached

        pool = libmc.ClientPool([SERVER])
        ddtrace_memcached.override(pool, service="pooled-cache", tags={"pool": "main"})
        threaded = libmc.ThreadedClient([SERVER])
        ddtrace_memcached.override(threaded, service="threaded-cache")
        with tracer.trace("app.request"):
            with pool.client() as mc:
                assert mc.set("k", b"v") is True
                assert mc.get("k") == b"v"
            assert threaded.get("k") == b"v"
            assert threaded.get_multi(["k", "missing"]) == {"k": b"v"}
        """,
        prelude=PRELUDE,
    )


@pytest.mark.parametrize(
    "variant,settings",
    [("v0", {}), ("v1", {"DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": "v1"})],
    ids=["v0", "v1"],
)
def test_naming(snapshot, variant, settings):
    snapshot.run(
        """
        c = libmc.Client([SERVER])
        assert c.set("k", b"v") is True
        assert c.get("k") == b"v"
        """,
        prelude=PRELUDE,
        **settings,
    )
