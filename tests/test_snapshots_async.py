"""Snapshot tests of asyncio apps (aiomcache, emcache): the traces they send to the APM test agent.

As ``tests/test_snapshots.py`` (same fixtures, fixed ports): each app runs in a new
interpreter under ``ddtrace-run`` and asserts its own results; the ``snapshot`` fixture
compares the agent's traces with ``snapshots/test_snapshots_async.<test>.json``.
"""

import textwrap

import pytest

from conftest import SNAPSHOT_DEAD_PORT
from conftest import SNAPSHOT_PORTS
from conftest import SNAPSHOT_SILENT_PORT
from conftest import SNAPSHOT_SOCKET

pytestmark = pytest.mark.snapshot

ADDRESSES = """
import asyncio

from ddtrace.trace import tracer

PORTS = {ports!r}
SOCKET = {socket!r}
DEAD = {dead!r}
SILENT = {silent!r}


def silent_listener():
    import socket

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", SILENT))
    listener.listen(1)
    return listener
""".format(ports=list(SNAPSHOT_PORTS), socket=SNAPSHOT_SOCKET, dead=SNAPSHOT_DEAD_PORT, silent=SNAPSHOT_SILENT_PORT)


def aiomcache_app(body: str) -> str:
    pytest.importorskip("aiomcache")
    return ADDRESSES + "\nimport aiomcache\n" + textwrap.dedent(body)


# ddtrace-run (4.16) unloads the modules imported while it starts, asyncio among them when
# wrapt 2 imports it (wrapt.synchronization): the app then has a second copy of asyncio
# whose CancelledError is not the one the C tasks raise, and emcache's own
# ``except asyncio.CancelledError`` (in close(), its timeouts) misses it, untraced too.
EMCACHE_ENV = {"DD_UNLOAD_MODULES_FROM_SITECUSTOMIZE": "0"}


def emcache_app(body: str) -> str:
    pytest.importorskip("emcache")
    return (
        ADDRESSES
        + """
import emcache

NODES = [emcache.MemcachedHostAddress("127.0.0.1", port) for port in PORTS]
"""
        + textwrap.dedent(body)
    )


def test_aiomcache_commands(snapshot):
    snapshot.run(
        aiomcache_app(
            """
            async def main():
                c = aiomcache.Client("127.0.0.1", PORTS[0])
                with tracer.trace("app.request"):
                    assert await c.set(b"k", b"") is True
                    assert await c.get(b"k") == b""
                    assert await c.get(b"missing") is None
                    assert await c.multi_get(b"k", b"missing") == (b"", None)
                    assert await c.add(b"k", b"v") is False
                    assert await c.set(b"n", b"1") is True
                    assert await c.incr(b"n", 2) == 3
                    assert await c.delete(b"k") is True
                await c.close()

            asyncio.run(main())
            """
        )
    )


def test_aiomcache_errors(snapshot):
    """A dead server, a bad key, a server error, and a caller's timeout (cancelled, no error)."""
    snapshot.run(
        aiomcache_app(
            """
            async def expect(error, coro):
                try:
                    await coro
                except BaseException as exc:  # by name: see the timeout below
                    if type(exc).__name__ in error:
                        return
                    raise
                raise SystemExit("no %s" % (error,))

            async def main():
                listener = silent_listener()
                dead = aiomcache.Client("127.0.0.1", DEAD)
                live = aiomcache.Client("127.0.0.1", PORTS[0])
                silent = aiomcache.Client("127.0.0.1", SILENT)
                await expect(["ConnectionRefusedError"], dead.get(b"k"))
                await expect(["ValidationException"], live.set(b"bad key", b"v"))
                await expect(["ClientException"], live.incr(b"missing"))
                # Under ddtrace-run (4.16, Python 3.11), asyncio is imported twice (its module
                # cleanup), and wait_for lets through the C tasks' CancelledError, of the first
                # copy, instead of TimeoutError; without memcached tracing too. The memcached span
                # is a cancellation either way.
                await expect(["TimeoutError", "CancelledError"], asyncio.wait_for(silent.get(b"k"), 0.2))
                for c in (dead, live, silent):
                    await c.close()
                listener.close()

            asyncio.run(main())
            """
        )
    )


def test_emcache_commands_on_three_nodes(snapshot):
    """Single-key commands name their key's node; get_many over three nodes is a span
    naming none, with a child per node round trip."""
    snapshot.run(
        emcache_app(
            """
            async def main():
                c = await emcache.create_client(NODES)
                keys = [b"key-%d" % i for i in range(6)]
                with tracer.trace("app.request"):
                    for key in keys:
                        await c.set(key, b"v")
                    assert (await c.get(keys[0])).value == b"v"
                    assert await c.get(b"missing") is None
                    found = await c.get_many(keys + [b"missing"])
                    assert sorted(found) == keys
                    await c.delete(keys[0])
                await c.close()

            asyncio.run(main())
            """
        ),
        **EMCACHE_ENV,
    )


def test_emcache_unix_socket_and_errors(snapshot):
    """A unix socket node; emcache's own timeout (an error) and a missing key (NotFound)."""
    snapshot.run(
        emcache_app(
            """
            async def main():
                listener = silent_listener()
                unix = await emcache.create_client([emcache.MemcachedUnixSocketPath(SOCKET)])
                await unix.set(b"k", b"v")
                assert (await unix.get(b"k")).value == b"v"
                try:
                    await unix.delete(b"missing")
                except emcache.NotFoundCommandError:
                    pass
                else:
                    raise SystemExit("no NotFoundCommandError")
                await unix.close()
                silent = await emcache.create_client([emcache.MemcachedHostAddress("127.0.0.1", SILENT)], timeout=0.2)
                try:
                    await silent.get(b"k")
                except asyncio.TimeoutError:
                    pass
                else:
                    raise SystemExit("no TimeoutError")
                await asyncio.wait_for(silent.close(), 0.5)
                listener.close()

            asyncio.run(main())
            """
        ),
        **EMCACHE_ENV,
    )


def test_emcache_autobatching(snapshot):
    """Three callers' gets sent in shared batches: each keeps its span, under its caller."""
    snapshot.run(
        emcache_app(
            """
            async def main():
                c = await emcache.create_client(NODES, autobatching=True)
                await c.set(b"key-0", b"v")

                async def caller(key):
                    with tracer.trace("caller", resource=key.decode()):
                        return await c.get(key)

                items = await asyncio.gather(*(caller(b"key-%d" % i) for i in range(3)))
                assert [i.value if i else None for i in items] == [b"v", None, None]
                await c.close()

            asyncio.run(main())
            """
        ),
        **EMCACHE_ENV,
    )
