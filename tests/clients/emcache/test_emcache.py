"""emcache: every command coroutine, per-key routing, fan-out, autobatching, faults and leaks.

The contract suite covers the common span model through the adapter. Here, in real
event loops: each single-key span names the node that holds its key (asked of the
servers directly); a multi-key command over several nodes is a span naming no host with
one child per node round trip, each naming its node; autobatched ``get`` calls keep
their own spans under their own callers; a caller's cancellation is not an error (emcache's
own timeout is, as the contract checks); nothing is left open.
"""

import asyncio

import pytest

emcache = pytest.importorskip("emcache")

from ddtrace import config  # noqa: E402
from ddtrace.trace import tracer  # noqa: E402

from adapters import holder  # noqa: E402
from adapters.emcache import addresses  # noqa: E402
import ddtrace_memcached  # noqa: E402
from helpers import run_threads  # noqa: E402
from workers import assert_each_under_its_worker  # noqa: E402
from workers import gather_workers  # noqa: E402
from workers import set_and_get  # noqa: E402

SECRET = b"s3cr7-value-0f-the-app"


async def _client(servers, **options):
    options.setdefault("timeout", 2.0)
    return await emcache.create_client(addresses(servers), **options)


async def _close(client):
    # emcache can wait forever to close a client whose node is down (untraced too).
    try:
        await asyncio.wait_for(client.close(), 0.5)
    except asyncio.TimeoutError:
        pass


def server_of(span):
    port = span.get_metric("network.destination.port")
    return span.get_tag("out.host") if port is None else (span.get_tag("out.host"), int(port))


def children(spans, parent):
    return [s for s in spans.memcached() if s.parent_id == parent.span_id]


KEYS = [b"key-%d" % i for i in range(30)]


# --- every command, on the node of its key ------------------------------------------------

# (call, expected result, resource, row count)
CALLS = [
    (lambda c, k: c.set(k, b"v"), None, "set", None),
    (lambda c, k: c.add(b"new-" + k, b"v"), None, "add", None),
    (lambda c, k: c.replace(k, b"w"), None, "replace", None),
    (lambda c, k: c.append(k, b"+"), None, "append", None),
    (lambda c, k: c.prepend(k, b"-"), None, "prepend", None),
    (lambda c, k: c.get(k), emcache.Item(b"v", None, None), "get", 1),
    (lambda c, k: c.get(b"missing-" + k), None, "get", 0),
    (lambda c, k: c.gat(0, k), emcache.Item(b"v", None, None), "gat", 1),
    (lambda c, k: c.gats(0, b"missing-" + k), None, "gats", 0),
    (lambda c, k: c.increment(b"n-" + k, 2), 3, "incr", None),
    (lambda c, k: c.decrement(b"n-" + k, 1), 0, "decr", None),
    (lambda c, k: c.touch(k, 100), None, "touch", None),
    (lambda c, k: c.delete(k), None, "delete", None),
]


@pytest.mark.parametrize("call,expected,resource,rows", CALLS, ids=[c[2] + str(i) for i, c in enumerate(CALLS)])
@pytest.mark.asyncio
async def test_each_command_names_the_node_of_its_key(memcached_nodes, spans, patched, call, expected, resource, rows):
    client = await _client(memcached_nodes)
    used = set()
    try:
        for key in KEYS[:9]:
            await client.set(key, b"v")
            await client.set(b"n-" + key, b"1")
            sent = b"n-" + key if resource in ("incr", "decr") else key
            where = holder(memcached_nodes, sent)  # before: delete removes it
            spans.spans.clear()
            assert await call(client, key) == expected
            (span,) = spans.memcached()
            assert span.resource == resource and span.error == 0
            assert span.get_metric("db.row_count") == rows
            if resource == "add":
                where = holder(memcached_nodes, b"new-" + key)
            if resource in ("get", "gats") and not rows:  # a miss is on no server: store it, then ask
                await client.set(b"missing-" + key, b"x")
                where = holder(memcached_nodes, b"missing-" + key)
            assert server_of(span) == where, key
            used.add(server_of(span))
    finally:
        await client.close()
    assert len(used) > 1, "the routing is not exercised"


@pytest.mark.asyncio
async def test_gets_and_cas(memcached, spans, patched):
    client = await _client([memcached])
    try:
        await client.set(b"k", b"v")
        item = await client.gets(b"k")
        await client.cas(b"k", b"w", item.cas)
        assert (await client.get(b"k")).value == b"w"
    finally:
        await client.close()
    assert [s.resource for s in spans.memcached()] == ["set", "gets", "cas", "get"]
    assert all(server_of(s) == memcached for s in spans.memcached())


@pytest.mark.asyncio
async def test_node_commands_name_the_node_given(memcached_nodes, spans, patched):
    client = await _client(memcached_nodes)
    try:
        for node in memcached_nodes:
            address = emcache.MemcachedHostAddress(*node)
            assert await client.version(address)
            assert await client.stats(address)
            await client.flush_all(address)
    finally:
        await client.close()
    found = spans.memcached()
    assert [s.resource for s in found] == ["version", "stats", "flush_all"] * 3
    assert [server_of(s) for s in found] == [n for n in memcached_nodes for _ in range(3)]


@pytest.mark.asyncio
async def test_unix_socket(memcached_unix, spans, patched):
    client = await _client([memcached_unix])
    try:
        await client.set(b"k", b"v")
        assert await client.get_many([b"k", b"x"]) == {b"k": emcache.Item(b"v", None, None)}
    finally:
        await client.close()
    for span in spans.memcached():
        assert span.get_tag("out.host") == memcached_unix
        assert span.get_metric("network.destination.port") is None
    assert [s.resource for s in spans.memcached()] == ["set", "get_many"]


# --- multi-key commands: fan-out ----------------------------------------------------------


@pytest.mark.parametrize("method", ["get_many", "gets_many", "gat_many", "gats_many"])
@pytest.mark.asyncio
async def test_fan_out_is_a_span_with_a_child_per_node(memcached_nodes, spans, patched, method, command_enabled):
    client = await _client(memcached_nodes)
    try:
        for key in KEYS[:20]:
            await client.set(key, b"v")
        spans.spans.clear()
        with tracer.trace("app.request") as root:
            call = getattr(client, method)
            found = await (call(0, KEYS) if method.startswith("gat") else call(KEYS))
        for key in KEYS[20:]:  # now every key is on its server, for holder()
            await client.set(key, b"v")
    finally:
        await client.close()
    assert sorted(found) == sorted(KEYS[:20])
    (command,) = [s for s in spans.memcached() if s.parent_id == root.span_id]
    assert command.resource == method and command.error == 0
    assert command.get_tag("out.host") is None and command.get_metric("network.destination.port") is None
    assert command.get_metric("memcached.servers") == 3
    assert command.get_metric("db.row_count") == 20
    round_trips = children(spans, command)
    assert len(round_trips) == 3 and len(spans.memcached()) == 4 + 10
    assert sorted(server_of(s) for s in round_trips) == sorted(memcached_nodes)
    assert sum(s.get_metric("db.row_count") for s in round_trips) == 20
    for span in round_trips:
        assert span.resource == method and span.error == 0 and span.finished
        sent = span.get_tag("memcached.query").split()[1:]
        assert sent and all(holder(memcached_nodes, key.encode()) == server_of(span) for key in sent)
        stored = [key for key in sent if key.encode() in KEYS[:20]]
        assert span.get_metric("db.row_count") == len(stored)
    assert sorted(k for s in round_trips for k in s.get_tag("memcached.query").split()[1:]) == sorted(
        k.decode() for k in KEYS
    )


@pytest.mark.asyncio
async def test_multi_key_on_one_node_is_one_span_naming_it(memcached_nodes, spans, patched):
    client = await _client(memcached_nodes)
    node = memcached_nodes[0]
    try:
        keys = [k for k in KEYS if client._cluster.pick_node(k).memcached_host_address.port == node[1]][:3]
        assert keys
        for key in keys:
            await client.set(key, b"v")
        spans.spans.clear()
        assert len(await client.get_many(keys)) == len(keys)
    finally:
        await client.close()
    (span,) = spans.memcached()
    assert server_of(span) == node and span.get_metric("db.row_count") == len(keys)
    assert span.get_metric("memcached.servers") is None


@pytest.mark.asyncio
async def test_fan_out_with_a_silent_node_times_out(memcached_nodes, silent_server, spans, patched):
    """emcache's timeout is an error on the command; the round trips it stopped are cancelled."""
    servers = memcached_nodes[:2] + [silent_server]
    client = await _client(servers, timeout=0.3)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await client.get_many(KEYS)
    finally:
        await _close(client)
    (command,) = [s for s in spans.memcached() if s.resource == "get_many" and s.get_metric("memcached.servers")]
    assert command.error == 1 and command.get_tag("error.type").endswith("TimeoutError")
    for span in children(spans, command):
        assert span.finished and span.error == 0
        if server_of(span) == silent_server:
            assert span.get_tag("memcached.cancelled") == "true"
    assert all(s.finished for s in spans.memcached())
    assert tracer.current_span() is None


# --- autobatching -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_autobatching_each_get_under_its_caller(memcached_nodes, spans, patched):
    """Gets of one loop iteration share batched round trips: each keeps its own span, under
    its own caller, naming its key's node; the batch itself makes no span."""
    client = await _client(memcached_nodes, autobatching=True)
    try:
        for key in KEYS[:6]:
            await client.set(key, b"v")
        spans.spans.clear()

        async def caller(key):
            with tracer.trace("caller") as root:
                item = await client.get(key)
            return root, item

        results = await asyncio.gather(*(caller(key) for key in KEYS[:6] + [b"missing"]))
    finally:
        await client.close()
    assert [item.value if item else None for _, item in results] == [b"v"] * 6 + [None]
    found = spans.memcached()
    assert len(found) == 7
    for (root, _), key in zip(results, KEYS[:6] + [b"missing"]):
        (span,) = children(spans, root)
        assert span.resource == "get" and span.trace_id == root.trace_id
        assert span.get_metric("db.row_count") == (0 if key == b"missing" else 1)
        if key != b"missing":
            assert server_of(span) == holder(memcached_nodes, key)


# --- concurrency ------------------------------------------------------------------------------

# Tasks under spans of their own share a client, as in the contract's test_tasks_share_one_client
# (see workers.gather_workers), on other loops: uvloop's, and a loop per thread.


async def _gather_workers(servers):
    client = await _client(servers, max_connections=4)
    return await gather_workers(set_and_get(client), client.close)


def test_uvloop(memcached_nodes, spans, patched):
    uvloop = pytest.importorskip("uvloop")
    roots = uvloop.run(_gather_workers(memcached_nodes))
    assert_each_under_its_worker(spans.memcached(), roots)


def test_event_loops_in_threads(memcached_nodes, spans, patched):
    """A loop per thread, each with its own client: spans stay in their thread's trace."""
    results = run_threads(lambda n: asyncio.run(_gather_workers(memcached_nodes)), 3)
    assert_each_under_its_worker(spans.memcached(), *results.values())


# --- cancellation, timeouts, faults ------------------------------------------------------------


@pytest.mark.asyncio
async def test_caller_timeout_is_a_cancelled_span(silent_server, spans, patched):
    client = await _client([silent_server], timeout=None)
    try:
        with tracer.trace("app.request") as parent:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.get(b"k"), 0.2)
    finally:
        await _close(client)
    (span,) = spans.memcached()
    assert span.parent_id == parent.span_id and span.finished
    assert span.error == 0 and span.get_tag("memcached.cancelled") == "true"


@pytest.mark.asyncio
async def test_task_cancel_finishes_the_span(silent_server, spans, patched):
    client = await _client([silent_server], timeout=None)
    task = asyncio.ensure_future(client.set(b"k", b"v"))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _close(client)
    (span,) = spans.memcached()
    assert span.finished and span.error == 0 and span.get_tag("memcached.cancelled") == "true"


@pytest.mark.asyncio
async def test_not_found_and_not_stored_are_the_same_exceptions(memcached, spans, patched):
    """emcache raises its misses: the app gets the same exceptions, and the spans are misses
    (``db.response.status_code``), not errors."""
    client = await _client([memcached])
    raised = []
    try:
        await client.set(b"k", b"v")
        cas = (await client.gets(b"k")).cas
        await client.set(b"k", b"changed")
        for call in (
            client.delete(b"missing"),
            client.increment(b"missing", 1),
            client.decrement(b"missing", 1),
            client.touch(b"missing", 10),
            client.add(b"k", b"v"),
            client.replace(b"missing", b"v"),
            client.append(b"missing", b"v"),
            client.cas(b"k", b"v", cas),
            client.cas(b"missing", b"v", cas),
        ):
            with pytest.raises(emcache.client_errors.CommandError) as exc:
                await call
            raised.append(type(exc.value).__name__)
    finally:
        await client.close()
    assert raised == ["NotFoundCommandError"] * 4 + ["NotStoredStorageCommandError"] * 4 + ["StorageCommandError"]
    misses = [(s.resource, s.error, s.get_tag("db.response.status_code")) for s in spans.memcached()[3:]]
    assert misses == [
        ("delete", 0, "NOT_FOUND"),
        ("incr", 0, "NOT_FOUND"),
        ("decr", 0, "NOT_FOUND"),
        ("touch", 0, "NOT_FOUND"),
        ("add", 0, "NOT_STORED"),
        ("replace", 0, "NOT_STORED"),
        ("append", 0, "NOT_STORED"),
        ("cas", 0, "EXISTS"),
        ("cas", 0, "NOT_FOUND"),
    ]
    assert not any(s.get_tag("error.type") for s in spans.memcached())


@pytest.mark.asyncio
async def test_no_node_for_the_call_still_a_whole_span(memcached_nodes, spans, patched):
    """A str key (emcache's Cython routing refuses it) and no keys at all: the span keeps
    every common tag and names no node; the app gets emcache's own outcome."""
    client = await _client(memcached_nodes)
    try:
        with pytest.raises(TypeError) as raised:
            await client.get("text")
        assert await client.get_many([]) == {}
    finally:
        await client.close()
    failed, empty = spans.memcached()
    assert failed.error == 1 and failed.get_tag("error.type") == "builtins.TypeError"
    assert failed.get_tag("error.message") == str(raised.value)
    assert empty.resource == "get_many" and empty.error == 0 and empty.get_metric("db.row_count") == 0
    for span in (failed, empty):
        assert span.get_tag("out.host") is None
        assert span.get_tag("db.system") == "memcached" and span.get_tag("span.kind") == "client"


# --- security, overrides ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_value_in_tags_and_keys_only_when_enabled(memcached_nodes, spans, patched):
    client = await _client(memcached_nodes)
    try:
        for enabled in (False, True):
            config.memcached["command_enabled"] = enabled
            await client.set(b"the-key", SECRET)
            await client.get_many([b"the-key", *KEYS])
    finally:
        config.memcached["command_enabled"] = False
        await client.close()
    for span in spans.memcached():
        text = " ".join("%s=%s" % kv for kv in span.get_tags().items())
        assert SECRET.decode() not in text
    queries = [s.get_tag("memcached.query") for s in spans.memcached()]
    assert [q for q in queries if q and "the-key" in q]
    assert not [s for s in spans.memcached()[: len(spans.memcached()) // 2] if s.get_tag("memcached.query")]


@pytest.mark.asyncio
async def test_override_covers_the_round_trips(memcached_nodes, spans, patched):
    client = await _client(memcached_nodes)
    ddtrace_memcached.override(client, service="sessions", tags={"team": "web"})
    try:
        await client.get_many(KEYS)
    finally:
        await client.close()
    assert len(spans.memcached()) == 4
    for span in spans.memcached():
        assert span.service == "sessions" and span.get_tag("team") == "web"


# --- stability ------------------------------------------------------------------------------------


def _pending():
    """The pending tasks, but emcache's own connection pool tasks (which come and go)."""
    return {t for t in asyncio.all_tasks() if not t.done() and "ConnectionPool." not in repr(t.get_coro())}


@pytest.mark.parametrize("n", [pytest.param(1000, id="1k"), pytest.param(100_000, id="100k", marks=pytest.mark.stress)])
@pytest.mark.asyncio
async def test_no_span_or_task_leak(memcached_nodes, spans, patched, n):
    client = await _client(memcached_nodes, max_connections=4)
    try:
        before = _pending()
        for start in range(0, n, 100):
            batch = [client.set(b"k%d" % (i % 50), b"v") for i in range(start, start + 50)]
            batch += [client.get(b"k%d" % (i % 50)) for i in range(start + 50, start + 100)]
            await asyncio.gather(*batch)
        assert _pending() == before  # and the pools' own background tasks
    finally:
        await client.close()
    found = spans.memcached()
    assert len(found) == n and all(s.finished for s in found)
    assert tracer.current_span() is None
    spans.spans.clear()
