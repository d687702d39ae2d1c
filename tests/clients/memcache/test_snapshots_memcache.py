"""Snapshot tests of python-memcached (``memcache``): the traces an app sends to the APM test agent.

Apps run under ``ddtrace-run`` against memcached on the fixed snapshot ports; each asserts
its results, and its commands run inside one ``app.request`` span (one trace).
"""

import pytest

from snapshot_apps import snapshot_server_strings

pytest.importorskip("memcache")

pytestmark = pytest.mark.snapshot

PRELUDE = """
import memcache
from ddtrace.trace import tracer
""" + snapshot_server_strings("unix:")


def test_commands(snapshot):
    snapshot.run(
        """
        c = memcache.Client([SERVER])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") is True
            assert c.add("k", b"v") is False
            assert c.replace("k", b"w") is True
            assert c.append("k", b"+") is True
            assert c.prepend("k", b"-") is True
            assert c.get("k") == b"-w+"
            assert c.get("missing", "default") == "default"
            assert c.set("none", None) is True
            assert c.get("none", "default") is None
            assert c.gets("k") == b"-w+"
            assert c.set_multi({"a": b"1", "b": b""}) == []
            assert c.get_multi(["a", "b", "missing"]) == {"a": b"1", "b": b""}
            assert c.delete_multi(["a", "b"]) == 1
            assert c.set("n", 10) is True
            assert c.incr("n", 5) == 15
            assert c.decr("n", 3) == 12
            assert c.touch("n", 60) == 1
            assert c.delete("k") == 1
            assert c.get_stats()[0][1]["pid"]
            c.flush_all()
            c.quit_all()
        """,
        prelude=PRELUDE,
    )


def test_several_servers(snapshot):
    snapshot.run(
        """
        c = memcache.Client(NODES)
        with tracer.trace("app.request"):
            for i in range(6):
                assert c.set("key-%d" % i, b"v") is True
            assert len(c.get_multi(["key-%d" % i for i in range(6)])) == 6
            assert c.get_multi(["key-0"]) == {"key-0": b"v"}
            assert len(c.get_stats()) == 3
        """,
        prelude=PRELUDE,
    )


def test_dead_server(snapshot):
    snapshot.run(
        """
        c = memcache.Client([DEAD])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") == 0  # refused: marked dead
            assert c.get("k") is None  # skipped, no live server
            assert c.get_multi(["k"]) == {}
        """,
        prelude=PRELUDE,
    )


def test_unix_socket(snapshot):
    snapshot.run(
        """
        c = memcache.Client([SOCKET])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") is True
            assert c.get("k") == b"v"
        """,
        prelude=PRELUDE,
    )


def test_key_capture_and_bad_key(snapshot):
    snapshot.run(
        """
        c = memcache.Client([SERVER])
        with tracer.trace("app.request"):
            c.set("the-key", b"the-value")
            c.get_multi(["the-key", "other"])
            try:
                c.get("bad key")
            except memcache.Client.MemcachedKeyCharacterError:
                pass
            else:
                raise SystemExit(1)
        """,
        prelude=PRELUDE,
        DD_TRACE_MEMCACHED_COMMAND_ENABLED="true",
    )


def test_bad_key_redacted(snapshot):
    snapshot.run(
        """
        c = memcache.Client([SERVER])
        with tracer.trace("app.request"):
            try:
                c.set("secret key", b"v")
            except memcache.Client.MemcachedKeyCharacterError:
                pass
            else:
                raise SystemExit(1)
        """,
        prelude=PRELUDE,
    )
