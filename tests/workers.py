"""Asyncio tasks sharing one client, each under a root span of its own: the harness of
the contract's task test and of the asyncio clients' uvloop and loop-per-thread tests.

WORKER_TASKS tasks each await CALLS_PER_WORKER commands gathered at once, while a task of
no trace watches the active span, which must stay None for it.
"""

import asyncio
from typing import Awaitable
from typing import Callable

from ddtrace.trace import tracer

WORKER_TASKS = 5
CALLS_PER_WORKER = 20

Command = Callable[[int, int], Awaitable]
"""``command(n, i)``: the i-th command of worker n, as an awaitable."""


def set_and_get(client) -> Command:
    """``set`` and ``get`` of bytes keys, called as the app calls them (aiomcache and emcache
    share this API): even commands set ``w<n>-<i>``, odd ones get it."""

    def command(n, i):
        key = b"w%d-%d" % (n, i)
        return client.set(key, b"v") if i % 2 == 0 else client.get(key)

    return command


async def _worker(command: Command, n: int):
    with tracer.trace("worker", resource=str(n)) as root:
        await asyncio.gather(*(command(n, i) for i in range(CALLS_PER_WORKER)))
        assert tracer.current_span() is root
    return root


async def _unrelated(stop: asyncio.Event, seen: list):
    while not stop.is_set():
        seen.append(tracer.current_span())
        await asyncio.sleep(0)


async def gather_workers(command: Command, close: Callable[[], Awaitable]) -> list:
    """Runs the worker tasks, each awaiting its ``command(n, i)`` calls at once, then awaits
    ``close()``; a task of no trace runs meanwhile and must see no span. Returns the roots."""
    stop, seen = asyncio.Event(), []
    watcher = asyncio.ensure_future(_unrelated(stop, seen))
    try:
        roots = await asyncio.gather(*(_worker(command, n) for n in range(WORKER_TASKS)))
    finally:
        stop.set()
        await watcher
        await close()
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
