"""aiomcache: every command coroutine, asyncio semantics, faults and leaks.

The contract suite covers the common span model through the adapter. Here, in real
event loops (pytest-asyncio, uvloop, loops in threads): each awaited command is one span
that starts when awaited, under the awaiting task's span; cancellation and ``wait_for``
timeouts finish the span (``memcached.cancelled``, not an error) and reach the app
unchanged; a dead or killed server is an error span (the contract cannot kill one under
an aiomcache client: see its adapter); no span or task is left behind.
"""

import asyncio
import inspect

import pytest

aiomcache = pytest.importorskip("aiomcache")

from aiomcache.exceptions import ClientException  # noqa: E402
from aiomcache.exceptions import ValidationException  # noqa: E402
from ddtrace.trace import tracer  # noqa: E402
import wrapt  # noqa: E402

import ddtrace_memcached  # noqa: E402
from ddtrace_memcached import core  # noqa: E402
from ddtrace_memcached.clients import aiomcache as integration  # noqa: E402
from helpers import run_threads  # noqa: E402
from servers import MemcachedProcess  # noqa: E402
from workers import assert_each_under_its_worker  # noqa: E402
from workers import gather_workers  # noqa: E402
from workers import set_and_get  # noqa: E402

SECRET = b"s3cr7-value-0f-the-app"


@pytest.fixture
def address(memcached):
    return memcached


async def _client(address, **options):
    return aiomcache.Client(address[0], address[1], **options)


def assert_server(span, address):
    assert span.get_tag("out.host") == address[0]
    assert span.get_tag("server.address") == address[0]
    assert span.get_metric("network.destination.port") == address[1]


# --- every command ---------------------------------------------------------------------

# (method, call, expected result, resource, row count)
CALLS = [
    ("set", lambda c: c.set(b"k", b"v"), True, "set", None),
    ("add", lambda c: c.add(b"new", b"v"), True, "add", None),
    ("replace", lambda c: c.replace(b"k", b"w"), True, "replace", None),
    ("append", lambda c: c.append(b"k", b"+"), True, "append", None),
    ("prepend", lambda c: c.prepend(b"k", b"-"), True, "prepend", None),
    ("get", lambda c: c.get(b"k"), b"v", "get", 1),
    ("get", lambda c: c.get(b"empty"), b"", "get", 1),
    ("get", lambda c: c.get(b"missing"), None, "get", 0),
    ("multi_get", lambda c: c.multi_get(b"k", b"empty", b"missing"), (b"v", b"", None), "get_many", 2),
    ("delete", lambda c: c.delete(b"k"), True, "delete", None),
    ("delete", lambda c: c.delete(b"missing"), False, "delete", None),
    ("incr", lambda c: c.incr(b"n", 2), 3, "incr", None),
    ("decr", lambda c: c.decr(b"n", 1), 0, "decr", None),
    ("touch", lambda c: c.touch(b"k", 100), True, "touch", None),
    ("flush_all", lambda c: c.flush_all(), None, "flush_all", None),
]


@pytest.mark.parametrize("method,call,expected,resource,rows", CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.asyncio
async def test_each_command_is_one_span(address, spans, patched, method, call, expected, resource, rows):
    client = await _client(address)
    try:
        await client.set(b"k", b"v")
        await client.set(b"empty", b"")
        await client.set(b"n", b"1")
        spans.spans.clear()
        assert await call(client) == expected
    finally:
        await client.close()
    (span,) = spans.memcached()
    assert span.resource == resource and span.name == "memcached.command" and span.error == 0
    assert_server(span, address)
    assert span.get_metric("db.row_count") == rows


@pytest.mark.asyncio
async def test_every_command_of_the_table_is_wrapped(patched):
    for cmd in integration.COMMANDS:
        method = vars(integration.COMMAND_CLASS)[cmd.method]
        assert isinstance(method, wrapt.FunctionWrapper), cmd.method
        assert inspect.iscoroutinefunction(getattr(integration.COMMAND_CLASS, cmd.method)), cmd.method


@pytest.mark.asyncio
async def test_gets_cas_stats_version(address, spans, patched):
    client = await _client(address)
    try:
        await client.set(b"k", b"v")
        value, token = await client.gets(b"k")
        assert value == b"v" and isinstance(token, int)
        assert await client.gets(b"missing", b"dflt") == (b"dflt", None)
        assert await client.cas(b"k", b"w", token) is True
        assert await client.get(b"missing", b"dflt") == b"dflt"  # the app's default, not our sentinel
        assert (await client.stats())[b"pid"]
        assert await client.version()
    finally:
        await client.close()
    found = spans.memcached()
    assert [s.resource for s in found] == ["set", "gets", "gets", "cas", "get", "stats", "version"]
    assert [s.get_metric("db.row_count") for s in found if s.resource in ("gets", "get")] == [1, 0, 0]
    for span in found:
        assert_server(span, address)


@pytest.mark.asyncio
async def test_flag_client_is_traced(address, spans, patched):
    """0.8 defines the commands on FlagClient: its own instances are traced too."""
    if not hasattr(aiomcache.client, "FlagClient"):
        pytest.skip("aiomcache < 0.8 has no FlagClient")

    async def loads(value, flags):
        return value.decode()

    async def dumps(value):
        return value.encode(), 1

    client = aiomcache.FlagClient(address[0], address[1], get_flag_handler=loads, set_flag_handler=dumps)
    try:
        await client.set(b"k", "text")
        assert await client.get(b"k") == "text"
    finally:
        await client.close()
    assert [s.resource for s in spans.memcached()] == ["set", "get"]


def test_pool_attributes_of_released_and_main_branch():
    """Released versions keep ``_host``/``_port``; aiomcache's main branch (unix sockets,
    unreleased) keeps ``_target`` (a host or a path) and ``_unix``."""
    from types import SimpleNamespace as Pool

    def server(pool):
        call = core.Call(integration.LIBRARY, integration.COMMANDS[0], Pool(_pool=pool), None, None)
        return integration.LIBRARY.server(call, (), {})

    assert server(Pool(_host="cache", _port=11211)) == ("cache", 11211)
    assert server(Pool(_target="cache", _port=11211, _unix=False)) == ("cache", 11211)
    assert server(Pool(_target="/run/memcached.sock", _port=0, _unix=True)) == "/run/memcached.sock"
    assert server(None) is None


# --- when the span starts, and its parent ------------------------------------------------


@pytest.mark.asyncio
async def test_span_starts_when_awaited_under_the_awaiting_span(address, spans, patched):
    client = await _client(address)
    try:
        coro = client.set(b"k", b"v")  # created outside any span
        assert spans.memcached() == []
        with tracer.trace("app.step") as step:
            await coro
        never_awaited = client.get(b"k")
        never_awaited.close()  # never started: no span
    finally:
        await client.close()
    (span,) = spans.memcached()
    assert span.parent_id == step.span_id and span.trace_id == step.trace_id
    assert span.start >= step.start


# --- concurrency ---------------------------------------------------------------------------

# Tasks under spans of their own share a client, as in the contract's test_tasks_share_one_client
# (see workers.gather_workers), on other loops: uvloop's, and a loop per thread.


async def _gather_workers(address):
    client = await _client(address, pool_size=4)
    return await gather_workers(set_and_get(client), client.close)


def test_uvloop(address, spans, patched):
    uvloop = pytest.importorskip("uvloop")
    roots = uvloop.run(_gather_workers(address))
    assert_each_under_its_worker(spans.memcached(), roots)


def test_event_loops_in_threads(address, spans, patched):
    """A loop per thread, each with its own client: spans stay in their thread's trace."""
    results = run_threads(lambda n: asyncio.run(_gather_workers(address)), 3)
    assert_each_under_its_worker(spans.memcached(), *results.values())


# --- cancellation and timeouts -----------------------------------------------------------------


async def _silent_client(silent_server):
    return aiomcache.Client(silent_server[0], silent_server[1], pool_size=1)


@pytest.mark.asyncio
async def test_wait_for_timeout_finishes_the_span(silent_server, spans, patched):
    client = await _silent_client(silent_server)
    try:
        with tracer.trace("app.request") as parent:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.get(b"k"), 0.2)
    finally:
        await client.close()
    (span,) = spans.memcached()
    assert span.finished and span.parent_id == parent.span_id
    assert span.error == 0 and span.get_tag("memcached.cancelled") == "true"
    assert span.get_tag("error.type") is None
    assert tracer.current_span() is None


@pytest.mark.asyncio
async def test_task_cancel_finishes_the_span_and_reraises(silent_server, spans, patched):
    client = await _silent_client(silent_server)
    started = asyncio.Event()

    async def app():
        started.set()
        with tracer.trace("app.task"):
            return await client.get(b"k")

    task = asyncio.ensure_future(app())
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    await client.close()
    (span,) = spans.memcached()
    assert span.finished and span.error == 0 and span.get_tag("memcached.cancelled") == "true"


@pytest.mark.asyncio
async def test_cancelled_mid_gather_others_complete(address, silent_server, spans, patched):
    """One command cancelled by its caller's timeout; the others in flight are unaffected."""
    good = await _client(address)
    silent = await _silent_client(silent_server)
    try:
        results = await asyncio.gather(
            asyncio.wait_for(silent.get(b"k"), 0.1),
            *(good.set(b"k%d" % i, b"v") for i in range(10)),
            return_exceptions=True,
        )
    finally:
        await good.close()
        await silent.close()
    assert isinstance(results[0], asyncio.TimeoutError) and results[1:] == [True] * 10
    found = spans.memcached()
    assert len(found) == 11 and all(s.finished for s in found)
    assert [s.get_tag("memcached.cancelled") for s in found].count("true") == 1


@pytest.mark.asyncio
async def test_coroutine_closed_unfinished_finishes_the_span(silent_server, spans, patched):
    """A coroutine closed while suspended (GeneratorExit, e.g. a task garbage-collected
    pending) is a cancellation too: the span is finished, not an error."""
    client = await _silent_client(silent_server)
    coro = client.get(b"k")
    coro.send(None)  # runs it up to its first wait: the span has started
    coro.close()
    await client.close()
    (span,) = spans.memcached()
    assert span.finished and span.error == 0 and span.get_tag("memcached.cancelled") == "true"


def test_a_second_copy_of_cancelled_error_is_a_cancellation():
    """ddtrace-run's module cleanup (with gevent installed, DataDog/dd-trace-py#10550) can
    leave two copies of asyncio: the C tasks raise the first copy's CancelledError."""
    from ddtrace_memcached import core

    first_copy = type("CancelledError", (BaseException,), {"__module__": "asyncio.exceptions"})
    assert core._is_cancellation(first_copy())
    assert core._is_cancellation(asyncio.CancelledError())
    assert core._is_cancellation(GeneratorExit())
    assert not core._is_cancellation(type("CancelledError", (Exception,), {"__module__": "app"})())
    assert not core._is_cancellation(asyncio.TimeoutError())
    assert not core._is_cancellation(KeyboardInterrupt())


# --- errors and faults --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_server_error_is_an_error_span_and_the_same_exception(address, spans, patched):
    client = await _client(address)
    try:
        await client.set(b"text", b"not a number")
        with pytest.raises(ClientException) as raised:
            await client.incr(b"text")  # CLIENT_ERROR cannot increment or decrement non-numeric value
    finally:
        await client.close()
    span = spans.memcached()[-1]
    assert span.resource == "incr" and span.error == 1
    assert span.get_tag("error.type").endswith("ClientException")
    assert span.get_tag("error.message") == str(raised.value)
    assert span.get_tag("db.response.status_code") is None


@pytest.mark.asyncio
async def test_a_missing_counter_raises_the_same_exception_and_is_no_error(address, spans, patched):
    """aiomcache raises ``ClientException`` for ``NOT_FOUND`` (whatever its docstring says):
    the app gets it unchanged, and the span is a miss, not an error (aiocache's increment
    handles it as normal: every new counter would count as a cache failure)."""
    client = await _client(address)
    try:
        with pytest.raises(ClientException) as raised:
            await client.incr(b"missing")
        with pytest.raises(ClientException):
            await client.decr(b"missing")
    finally:
        await client.close()
    assert "NOT_FOUND" in str(raised.value)
    assert [(s.resource, s.error, s.get_tag("db.response.status_code")) for s in spans.memcached()] == [
        ("incr", 0, "NOT_FOUND"),
        ("decr", 0, "NOT_FOUND"),
    ]
    assert all(s.get_tag("error.type") is None for s in spans.memcached())


@pytest.mark.asyncio
async def test_dead_server(dead_address, spans, patched):
    client = await _client(dead_address)
    try:
        with pytest.raises(ConnectionRefusedError):
            await client.get(b"k")
    finally:
        await client.close()
    (span,) = spans.memcached()
    assert span.error == 1 and span.get_tag("error.type").endswith("ConnectionRefusedError")
    assert_server(span, dead_address)


@pytest.mark.asyncio
async def test_server_killed_then_restarted(spans, patched):
    """Killed: new connections are refused (error spans); restarted: traced as before.

    aiomcache 0.8.2 (untraced too) spins forever on a pooled connection whose server has
    gone (``readline()`` at EOF returns ``b""`` in a loop), so each phase uses its own client.
    """
    server = MemcachedProcess()
    address = server.address
    outcomes = []
    try:
        for phase in range(3):
            if phase == 1:
                server.stop()
            if phase == 2:
                server = MemcachedProcess(port=address[1])
            client = await _client(address, pool_size=2)
            try:
                for i in range(5):
                    try:
                        outcomes.append(await client.set(b"k%d" % i, b"v"))
                    except Exception as exc:
                        outcomes.append(type(exc))
            finally:
                await client.close()
    finally:
        server.stop()
    assert outcomes == [True] * 5 + [ConnectionRefusedError] * 5 + [True] * 5
    found = spans.memcached()
    assert len(found) == 15 and all(s.finished for s in found)
    assert [s.error for s in found] == [0] * 5 + [1] * 5 + [0] * 5
    assert tracer.current_span() is None


@pytest.mark.parametrize("key", [b"a b", b"k\n", "text"], ids=["space", "newline", "str"])
@pytest.mark.parametrize("enabled", [False, True], ids=["keys-off", "keys-on"])
@pytest.mark.asyncio
async def test_bad_keys_are_redacted_unless_enabled(address, spans, patched, key, enabled):
    from ddtrace import config

    config.memcached["command_enabled"] = enabled
    client = await _client(address)
    try:
        with pytest.raises(ValidationException) as raised:
            await client.set(key, SECRET)
    finally:
        config.memcached["command_enabled"] = False
        await client.close()
    (span,) = spans.memcached()
    assert span.error == 1 and span.finished
    quoted = repr(key)
    assert quoted in str(raised.value)  # the app's exception is left as it is
    text = " ".join("%s=%s" % kv for kv in span.get_tags().items())
    assert SECRET.decode() not in text
    assert (quoted in span.get_tag("error.message")) is enabled
    assert (quoted in span.get_tag("error.stack")) is enabled


@pytest.mark.asyncio
async def test_keys_in_query_only_when_enabled(address, spans, patched, command_enabled):
    client = await _client(address)
    try:
        await client.set(b"the-key", SECRET)
        await client.multi_get(b"the-key", b"other")
    finally:
        await client.close()
    assert [s.get_tag("memcached.query") for s in spans.memcached()] == ["set the-key", "get_many the-key other"]


@pytest.mark.asyncio
async def test_override_on_the_client(address, spans, patched):
    client = await _client(address)
    ddtrace_memcached.override(client, service="sessions", tags={"team": "web"})
    try:
        await client.set(b"k", b"v")
    finally:
        await client.close()
    (span,) = spans.memcached()
    assert span.service == "sessions" and span.get_tag("team") == "web"


# --- stability ------------------------------------------------------------------------------------


async def _run_many(address, n):
    client = await _client(address, pool_size=4)
    before = asyncio.all_tasks()
    try:
        for start in range(0, n, 100):
            batch = [client.set(b"k%d" % (i % 50), b"v") for i in range(start, min(n, start + 50))]
            batch += [client.get(b"k%d" % (i % 50)) for i in range(start + 50, min(n, start + 100))]
            await asyncio.gather(*batch)
    finally:
        await client.close()
    assert asyncio.all_tasks() == before  # no task left behind


@pytest.mark.parametrize("n", [pytest.param(1000, id="1k"), pytest.param(100_000, id="100k", marks=pytest.mark.stress)])
@pytest.mark.asyncio
async def test_no_span_or_task_leak(address, spans, patched, n):
    await _run_many(address, n)
    found = spans.memcached()
    assert len(found) == n and all(s.finished for s in found)
    assert tracer.current_span() is None
    spans.spans.clear()
