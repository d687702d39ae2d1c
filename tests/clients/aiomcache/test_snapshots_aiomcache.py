"""Snapshot tests of aiomcache's asyncio apps: the traces an app sends to the APM test agent.

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


def aiomcache_app(body: str) -> str:
    pytest.importorskip("aiomcache")
    return ASYNC_ADDRESSES + "\nimport aiomcache\n" + textwrap.dedent(body)


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
