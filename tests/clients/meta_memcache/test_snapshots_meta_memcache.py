"""Snapshot tests of meta-memcache apps under ``ddtrace-run`` (see ``tests/clients/pymemcache/test_snapshots.py``).

The apps assert their results, so every snapshot is of a working app: one span per
server round trip, named after the method the app called, on the server it reached.
"""

import pytest

pytest.importorskip("meta_memcache")

from snapshot_apps import SNAPSHOT_DEAD_PORT  # noqa: E402
from snapshot_apps import SNAPSHOT_PORTS  # noqa: E402
from snapshot_apps import SNAPSHOT_SILENT_PORT  # noqa: E402
from snapshot_apps import SNAPSHOT_SOCKET  # noqa: E402

pytestmark = pytest.mark.snapshot

PRELUDE = """
import socket

from meta_memcache import CacheClient, ConnectionPool, Key, LeasePolicy, ServerAddress
from meta_memcache import MemcacheServerError, connection_pool_factory_builder

SERVER = ServerAddress(host="127.0.0.1", port={port})
NODES = [ServerAddress(host="127.0.0.1", port=p) for p in {ports!r}]
DEAD = ServerAddress(host="127.0.0.1", port={dead})
SILENT = ServerAddress(host="127.0.0.1", port={silent})
SOCKET = ServerAddress(host={socket!r}, port=0)
POOLS = connection_pool_factory_builder(connection_timeout=1, recv_timeout=0.2)
c = CacheClient.cache_client_from_servers([SERVER], POOLS)
""".format(
    port=SNAPSHOT_PORTS[0],
    ports=list(SNAPSHOT_PORTS),
    dead=SNAPSHOT_DEAD_PORT,
    silent=SNAPSHOT_SILENT_PORT,
    socket=SNAPSHOT_SOCKET,
)


def test_commands(snapshot):
    snapshot.run(
        """
        assert c.set("k", b"v", 60) is True
        assert c.get("k") == b"v"
        assert c.get("missing") is None
        assert c.set("empty", b"", 60) is True
        assert c.get("empty") == b""
        assert c.get_cas("k")[0] == b"v"
        assert c.multi_get(["k", "missing"]) == {Key("k"): b"v", Key("missing"): None}
        assert c.delta_initialize_and_get("n", 1, 10, 60) == 10
        assert c.delta("n", 5) is True
        assert c.touch("k", 60) is True
        assert c.refill("k", b"other", 60) is False
        assert c.delete("k") is True
        assert c.invalidate("k") is True
        assert c.meta_get(Key("empty")) is not None
        """,
        prelude=PRELUDE,
    )


def test_multi_get_three_servers(snapshot):
    """A span per server, each with the keys it holds (key capture on)."""
    snapshot.run(
        """
        ring = CacheClient.cache_client_from_servers(NODES, POOLS)
        keys = ["key-%d" % i for i in range(6)]
        for key in keys:
            assert ring.set(key, b"v", 60) is True
        assert ring.multi_get(keys) == {Key(k): b"v" for k in keys}
        """,
        prelude=PRELUDE,
        DD_TRACE_MEMCACHED_COMMAND_ENABLED="true",
    )


def test_server_id(snapshot):
    """The ring hashes server ids; the spans still name host and port."""
    snapshot.run(
        """
        named = [ServerAddress(host=a.host, port=a.port, server_id="node%d" % i) for i, a in enumerate(NODES)]
        ring = CacheClient.cache_client_from_servers(named, POOLS)
        for i in range(3):
            assert ring.set("key-%d" % i, b"v", 60) is True
        """,
        prelude=PRELUDE,
    )


def test_gutter_failover(snapshot):
    """The dead primary is a (swallowed) error span, then the gutter answers."""
    snapshot.run(
        """
        gutter = CacheClient.cache_client_with_gutter_from_servers([DEAD], [SERVER], 5, POOLS)
        assert gutter.set("k", b"v", 60) is True
        assert gutter.get("k") == b"v"
        """,
        prelude=PRELUDE,
    )


def test_get_or_lease(snapshot):
    """The winner reads a miss; the loser retries: a span per round trip."""
    snapshot.run(
        """
        policy = LeasePolicy(ttl=30, miss_retries=2, miss_retry_wait=0.01)
        assert c.get_or_lease("leased", policy) is None
        other = CacheClient.cache_client_from_servers([SERVER], POOLS)
        assert other.get_or_lease("leased", policy) is None
        """,
        prelude=PRELUDE,
    )


def test_unix_socket(snapshot):
    snapshot.run(
        """
        def unix_pools(address):
            def connect():
                s = socket.socket(socket.AF_UNIX)
                s.connect(address.host)
                return s

            return ConnectionPool(str(address), connect, initial_pool_size=1, max_pool_size=2)

        local = CacheClient.cache_client_from_servers([SOCKET], unix_pools)
        assert local.set("k", b"v", 60) is True
        assert local.get("k") == b"v"
        """,
        prelude=PRELUDE,
    )


def test_error_dead_server(snapshot):
    snapshot.run(
        """
        dead = CacheClient.cache_client_from_servers([DEAD], POOLS)
        try:
            dead.get("k")
        except MemcacheServerError:
            pass
        else:
            raise SystemExit("no error")
        quiet = CacheClient.cache_client_from_servers([DEAD], POOLS, raise_on_server_error=False)
        assert quiet.get("k") is None
        assert quiet.set("k", b"v", 60) is False
        """,
        prelude=PRELUDE,
    )


def test_error_timeout(snapshot):
    snapshot.run(
        """
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((SILENT.host, SILENT.port))
        listener.listen(1)
        silent = CacheClient.cache_client_from_servers([SILENT], POOLS)
        try:
            silent.get("k")
        except MemcacheServerError:
            pass
        else:
            raise SystemExit("no error")
        """,
        prelude=PRELUDE,
    )
