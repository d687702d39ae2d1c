"""Snapshot tests of emcache's asyncio apps: the traces an app sends to the APM test agent.

As ``tests/clients/pymemcache/test_snapshots.py`` (same fixtures, fixed ports): each app runs
in a new interpreter under ``ddtrace-run`` and asserts its own results; the ``snapshot``
fixture compares the agent's traces with ``snapshots/test_snapshots_async.<test>.json``
(the module's ``SNAPSHOT_PREFIX``: aiomcache's and emcache's were recorded in one module).
"""

import textwrap

import pytest

from snapshot_apps import ASYNC_ADDRESSES

pytestmark = pytest.mark.snapshot

SNAPSHOT_PREFIX = "test_snapshots_async"


# ddtrace-run (4.16) unloads the modules imported while it starts, asyncio among them when
# wrapt 2 imports it (wrapt.synchronization): the app then has a second copy of asyncio
# whose CancelledError is not the one the C tasks raise, and emcache's own
# ``except asyncio.CancelledError`` (in close(), its timeouts) misses it, untraced too.
EMCACHE_ENV = {"DD_UNLOAD_MODULES_FROM_SITECUSTOMIZE": "0"}


def emcache_app(body: str) -> str:
    pytest.importorskip("emcache")
    return (
        ASYNC_ADDRESSES
        + """
import emcache

NODES = [emcache.MemcachedHostAddress("127.0.0.1", port) for port in PORTS]
"""
        + textwrap.dedent(body)
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
