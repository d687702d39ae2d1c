"""Snapshot tests of python-binary-memcached (``bmemcached``): the traces an app sends to the APM test agent.

Apps run under ``ddtrace-run`` against memcached on the fixed snapshot ports; each asserts
its results, and its commands run inside one ``app.request`` span (one trace).
"""

import pytest

from snapshot_apps import snapshot_server_strings

pytest.importorskip("bmemcached")

pytestmark = pytest.mark.snapshot

PRELUDE = """
import bmemcached
from ddtrace.trace import tracer
""" + snapshot_server_strings()


def test_commands(snapshot):
    snapshot.run(
        """
        c = bmemcached.Client([SERVER])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") is True
            assert c.add("k", b"v") is False
            assert c.replace("k", b"w") is True
            assert c.get("k") == b"w"
            assert c.get("missing", "default") == "default"
            assert c.set("none", None) is True
            value, cas = c.gets("k")
            assert value == b"w" and c.cas("k", b"x", cas) is True
            assert c.set_multi({"a": b"1", "b": b""}) == []
            assert c.get_multi(["a", "b", "missing"]) == {"a": b"1", "b": b""}
            assert c.delete_multi(["a", "b"]) is True
            assert c.incr("n", 5) == 0  # initialised to the default
            assert c.incr("n", 5) == 5
            assert c.decr("n", 3) == 2
            assert c.delete("k") is True
            assert c.stats()
            assert c.flush_all() is True
        """,
        prelude=PRELUDE,
    )


def test_replicating_client(snapshot):
    snapshot.run(
        """
        c = bmemcached.Client(NODES[:2])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") is True
            assert c.get("k") == b"v"
            assert c.get("missing") is None
        """,
        prelude=PRELUDE,
    )


def test_distributed_client(snapshot):
    snapshot.run(
        """
        c = bmemcached.DistributedClient(NODES)
        with tracer.trace("app.request"):
            for i in range(6):
                assert c.set("key-%d" % i, b"v") is True
            assert len(c.get_multi(["key-%d" % i for i in range(6)])) == 6
            assert c.delete_multi(["key-%d" % i for i in range(6)]) is True
        """,
        prelude=PRELUDE,
    )


def test_dead_replica(snapshot):
    snapshot.run(
        """
        c = bmemcached.Client([DEAD, SERVER])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") is True  # the live replica took it
            assert c.get("k") == b"v"
        """,
        prelude=PRELUDE,
    )


def test_unix_socket(snapshot):
    snapshot.run(
        """
        c = bmemcached.Client([SOCKET])
        with tracer.trace("app.request"):
            assert c.set("k", b"v") is True
            assert c.get("k") == b"v"
        """,
        prelude=PRELUDE,
    )


def test_key_capture_and_server_error(snapshot):
    snapshot.run(
        """
        from bmemcached.exceptions import MemcachedException

        c = bmemcached.Client([SERVER])
        with tracer.trace("app.request"):
            c.set("text", "abc")
            c.gets("text")
            try:
                c.incr("text", 1)
            except MemcachedException:
                pass
            else:
                raise SystemExit(1)
        """,
        prelude=PRELUDE,
        DD_TRACE_MEMCACHED_COMMAND_ENABLED="true",
    )
