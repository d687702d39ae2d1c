"""The contract every traced client keeps, run once per client through its adapter.

Against real memcached servers: one span per command with the common tags, the host of
the server that holds the key, row counts, errors re-raised as they are (a dead server, a
server killed then restarted, a server that never answers, bad keys), no value in any tag
and keys only when asked for, overrides and Pin, clients made before patching and
subclasses, patch/unpatch cycles that stack no wrapper, threads and asyncio tasks sharing
one client, parents, a disabled tracer, traced ≡ untraced, and the three entry points.
At the edges: a miss is never an error (``db.response.status_code``), a command sent
without waiting says so (``memcached.noreply``), and no frame of the integration keeps the
app's keys or values after a call, even one whose exception the app keeps.
The drift test keeps the client modules' command tables complete.

Every client of the registry takes part through its adapter (``tests/adapters``); a case
a client cannot take is skipped with the reason its adapter gives (``Adapter.cannot``).
Its own quirks get tests of their own, in ``tests/clients/<module>/``.
"""

import ast
import collections
import gc
import importlib.util
import inspect
import os
import random
import sys
import time

from ddtrace.trace import tracer
import pytest

from adapters import CLIENTS
from adapters import Adapter
from adapters import holder
from adapters import load
from apps import app
from apps import ddtrace_run
from apps import run_python
from apps import spans_of
import ddtrace_memcached
from ddtrace_memcached import core
from ddtrace_memcached import registry
from ddtrace_memcached import wrapping
from ddtrace_memcached.commands import Command
from ddtrace_memcached.patch import client_module
from helpers import Pin
from helpers import host_of
from helpers import run_threads
from helpers import untraced_and_traced
from servers import MemcachedProcess
from servers import free_port
from workers import assert_each_under_its_worker
from workers import gather_workers

TESTS = os.path.dirname(os.path.abspath(__file__))

SECRET = b"s3cr7-value-0f-the-app"

# A client suite runs the contract for its own client only (riotfile.py).
UNDER_TEST = [c for c in os.environ.get("MEMCACHED_CONTRACT_CLIENTS", ",".join(CLIENTS)).split(",") if c]

# The cases an adapter may declare it cannot take (``Adapter.cannot``).
CASES = ("server_restart", "timeout", "threads", "noreply")


def skip_if_cannot(adapter, case):
    """Skips ``case`` for a client whose adapter declares it cannot take it, with its reason."""
    assert case in CASES, case
    if case in adapter.cannot:
        pytest.skip("%s cannot: %s" % (adapter.client, adapter.cannot[case]))


@pytest.fixture(params=UNDER_TEST)
def adapter(request):
    """The client's adapter; the client's tests are skipped only when its library is not
    installed (a missing or broken adapter fails them)."""
    if importlib.util.find_spec(request.param) is None:
        pytest.skip("%s is not installed" % request.param)
    return load(request.param)


@pytest.fixture
def client(adapter, memcached, patched):
    c = adapter.make([memcached])
    yield c
    adapter.close(c)


def commands(spans):
    """Our spans of whole commands: without the per-node round trips that some clients'
    multi-key commands show as their children (each counts its own node's keys)."""
    found = spans.memcached()
    ids = {s.span_id for s in found}
    return [s for s in found if s.parent_id not in ids]


def one_span(spans):
    found = spans.memcached()
    assert len(found) == 1, [(s.resource, s.get_tags()) for s in found]
    return found[0]


def assert_common(span, adapter, op, address):
    assert span.name == "memcached.command"
    assert span.span_type == "cache"
    assert span.service == "memcached"
    assert span.resource == adapter.resources[op]
    assert span.get_tag("component") == "memcached"
    assert span.get_tag("span.kind") == "client"
    assert span.get_tag("db.system") == "memcached"
    assert span.get_metric("_dd.measured") == 1
    if isinstance(address, str):
        assert span.get_tag("out.host") == address
        assert span.get_metric("network.destination.port") is None
    else:
        assert span.get_tag("out.host") == address[0]
        assert span.get_tag("server.address") == address[0]
        assert span.get_metric("network.destination.port") == address[1]


# --- every client of the registry, through its adapter --------------------------------


def test_every_registry_client_has_an_adapter():
    """A client added to the registry without an adapter would never run the contract."""
    for client in registry.CLIENTS:
        path = os.path.join(TESTS, "adapters", client.module + ".py")
        assert os.path.exists(path), "%s has no adapter: tests/adapters/%s.py" % (client.module, client.module)
        with open(path) as f:
            tree = ast.parse(f.read())
        assigned = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}
        assert "ADAPTER" in assigned, path
        names = [
            node.value.value
            for cls in tree.body
            if isinstance(cls, ast.ClassDef)
            for node in cls.body
            if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["client"]
        ]
        assert names == [client.module], (path, names)


def test_the_adapter_is_the_clients(adapter):
    assert isinstance(adapter, Adapter) and adapter.client in CLIENTS
    assert adapter.module.__name__ == adapter.client


def test_contract_clients_are_registry_clients():
    """``MEMCACHED_CONTRACT_CLIENTS`` (a client suite's) names registry clients: a misspelt
    one would run nothing."""
    assert UNDER_TEST and set(UNDER_TEST) <= set(CLIENTS), UNDER_TEST


def test_declared_cases_are_contract_cases(adapter):
    assert set(adapter.cannot) <= set(CASES), adapter.cannot
    assert all(reason.strip() for reason in adapter.cannot.values())


# --- one span per command, with the common tags -------------------------------------

OPS = [
    ("set", ("k", b"v")),
    ("get", ("k",)),
    ("get_many", (["k", "other"],)),
    ("delete", ("k",)),
    ("incr", ("n", 1)),
]


@pytest.mark.parametrize("op,args", OPS, ids=[op for op, _ in OPS])
def test_each_operation_is_one_span(adapter, client, memcached, spans, op, args):
    adapter.set(client, "k", b"v")
    adapter.set(client, "n", b"1")
    spans.spans.clear()
    adapter.call(op, client, *args)
    assert_common(one_span(spans), adapter, op, memcached)


def test_unix_socket_host_is_its_path(adapter, memcached_unix, spans, patched):
    if not adapter.unix_socket:
        pytest.skip("%s has no unix-socket client" % adapter.client)
    c = adapter.make([memcached_unix])
    try:
        assert adapter.set(c, "k", b"v") is not None
        assert adapter.get(c, "k") == b"v"
    finally:
        adapter.close(c)
    found = spans.memcached()
    assert [s.resource for s in found] == [adapter.resources["set"], adapter.resources["get"]]
    for span, op in zip(found, ["set", "get"]):
        assert_common(span, adapter, op, memcached_unix)


# --- reads ------------------------------------------------------------------------


def test_get_row_count_hit_miss_and_falsy_values(adapter, client, spans):
    for i, value in enumerate(adapter.values):
        adapter.set(client, "k%d" % i, value)
    spans.spans.clear()
    for i, value in enumerate(adapter.values):
        assert adapter.get(client, "k%d" % i) == value
    assert adapter.get(client, "missing") is None
    counts = [s.get_metric("db.row_count") for s in spans.memcached()]
    assert counts == [1] * len(adapter.values) + [0]


def test_get_many_row_count(adapter, client, spans):
    adapter.set(client, "a", b"1")
    adapter.set(client, "b", b"")
    spans.spans.clear()
    assert adapter.get_many(client, ["a", "b", "missing"]) == {"a": b"1", "b": b""}
    assert sum(s.get_metric("db.row_count") for s in commands(spans)) == 2


# --- the host is the server that holds the key ----------------------------------------


def test_host_is_the_server_that_holds_the_key(adapter, memcached_nodes, spans, patched):
    if not adapter.multi_server:
        pytest.skip("%s talks to one server" % adapter.client)
    c = adapter.make(memcached_nodes)
    try:
        keys = ["key-%d" % i for i in range(30)]
        for key in keys:
            adapter.set(c, key, b"v")
    finally:
        adapter.close(c)
    sets = [s for s in spans.memcached() if s.resource == adapter.resources["set"]]
    assert len(sets) == len(keys)
    used = set()
    for key, span in zip(keys, sets):
        host, port = holder(memcached_nodes, adapter.wire_key(key))
        assert (span.get_tag("out.host"), span.get_metric("network.destination.port")) == (host, port), key
        used.add(port)
    assert len(used) > 1, "30 keys all went to one server: the routing is not exercised"


def test_multi_key_spans_never_name_a_wrong_host(adapter, memcached_nodes, spans, patched):
    if not adapter.multi_server:
        pytest.skip("%s talks to one server" % adapter.client)
    c = adapter.make(memcached_nodes)
    keys = ["key-%d" % i for i in range(30)]
    try:
        for key in keys:
            adapter.set(c, key, b"v")
        spans.spans.clear()
        assert adapter.get_many(c, keys) == {key: b"v" for key in keys}
    finally:
        adapter.close(c)
    found = spans.memcached()
    assert found and sum(s.get_metric("db.row_count") for s in commands(spans)) == len(keys)
    round_trips = [s for s in found if s not in commands(spans)]
    if round_trips:  # they split the keys found between them
        assert sum(s.get_metric("db.row_count") for s in round_trips) == len(keys)
    holders = {key: holder(memcached_nodes, adapter.wire_key(key)) for key in keys}
    for span in found:
        host = span.get_tag("out.host")
        if host is None:  # a documented multi-server span: it names no host at all
            continue
        port = span.get_metric("network.destination.port")
        assert (host, port) in holders.values()


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("op,args", OPS, ids=[op for op, _ in OPS])
def test_dead_server_same_outcome_and_an_error_span(adapter, dead_address, spans, op, args):
    untraced = adapter.make([dead_address])
    expected = adapter.outcome(op, untraced, *args)
    adapter.close(untraced)
    ddtrace_memcached.patch()
    try:
        traced = adapter.make([dead_address])
        assert adapter.outcome(op, traced, *args) == expected
        adapter.close(traced)
    finally:
        ddtrace_memcached.unpatch()
    assert (expected[0] == "raised") == (op in adapter.dead_server_raises), expected
    found = [s for s in spans.memcached() if s.resource == adapter.resources[op]]
    assert found, "no span for %s on a dead server" % op
    assert all(s.finished for s in found)
    assert any(s.error == 1 and s.get_tag("error.type") for s in found), [s.get_tags() for s in found]
    assert tracer.current_span() is None


def test_bad_key_same_error_and_no_open_span(adapter, client, spans):
    if adapter.bad_key is None:
        pytest.skip("%s accepts every key" % adapter.client)
    with pytest.raises(adapter.bad_key_error) as raised:
        adapter.set(client, adapter.bad_key, b"v")
    for span in spans.memcached():
        assert span.finished and span.error == 1
        assert span.get_tag("error.type").endswith(type(raised.value).__name__)
        assert adapter.bad_key not in (span.get_tag("error.message") or "")
    assert tracer.current_span() is None


# --- a server killed mid-run, then restarted ------------------------------------------

KILLED = [("set", ("k", b"v2")), ("get", ("k",)), ("get_many", (["k", "j"],)), ("delete", ("k",)), ("incr", ("n", 1))]
RESTARTED = [
    ("set", ("k", b"v3")),
    ("get", ("k",)),
    ("get_many", (["k", "j"],)),
    ("set", ("n", b"1")),
    ("incr", ("n", 1)),
    ("delete", ("k",)),
]
RECONNECT_WITHIN = 15  # seconds


def _answers(adapter, client) -> bool:
    try:
        adapter.set(client, "probe", b"1")
        return adapter.get(client, "probe") == b"1"
    except Exception:
        return False


def _until_answered(adapter, client) -> None:
    """Waits, untraced, until the client reaches the restarted server again: at once, or on
    its own retry schedule (see ``Adapter.reconnect_options``)."""
    deadline = time.monotonic() + RECONNECT_WITHIN
    tracer.enabled = False
    try:
        while not _answers(adapter, client):
            assert time.monotonic() < deadline, "%s did not reconnect within %ss" % (adapter.client, RECONNECT_WITHIN)
            time.sleep(0.05)
    finally:
        tracer.enabled = True


def _killed_then_restarted(adapter, port, spans) -> list:
    """One client, live, then its server SIGKILLed, then restarted on the same port:
    ``(phase, op, outcome, spans of the call)`` of each call."""
    calls = []

    def call(phase, op, args):
        before = len(spans.memcached())
        outcome = adapter.outcome(op, client, *args)
        calls.append((phase, op, outcome, spans.memcached()[before:]))

    server = MemcachedProcess(port=port)
    client = adapter.make([server.address], **adapter.reconnect_options)
    try:
        call("live", "set", ("k", b"v"))
        call("live", "get", ("k",))
        server.stop()  # SIGKILL, and wait for the process to be gone
        for op, args in KILLED:
            call("killed", op, args)
        server = MemcachedProcess(port=port)
        _until_answered(adapter, client)
        for op, args in RESTARTED:
            call("restarted", op, args)
    finally:
        adapter.close(client)
        server.stop()
    return calls


def test_server_killed_then_restarted(adapter, spans):
    """SIGKILL between commands, then a restart on the same port, untraced then traced: the
    same outcomes; after the kill, every call an error span (raised, or returned as the
    client returns on a dead server, a read then counting no row); after the restart the
    same client is answered again, its spans clean; every span finished, naming the server,
    and none left active."""
    skip_if_cannot(adapter, "server_restart")
    port = free_port()
    untraced = _killed_then_restarted(adapter, port, spans)
    assert spans.memcached() == [], "the untraced run made spans"
    ddtrace_memcached.patch()
    try:
        traced = _killed_then_restarted(adapter, port, spans)
    finally:
        ddtrace_memcached.unpatch()
    assert [c[:3] for c in traced] == [c[:3] for c in untraced]
    for phase, op, outcome, found in traced:
        assert len(found) == 1, (phase, op, [s.resource for s in found])
        span = found[0]
        assert span.resource == adapter.resources[op] and span.finished, (phase, op)
        assert host_of(span) == ("127.0.0.1", port), (phase, op)
        raised = outcome[0] == "raised"
        if phase == "killed":
            assert raised == (op in adapter.dead_server_raises), (op, outcome)
            assert span.error == 1 and span.get_tag("error.type"), (op, outcome)
            if raised:
                assert span.get_tag("error.type").rpartition(".")[2] == outcome[1], (op, outcome)
            elif op in ("get", "get_many"):
                assert span.get_metric("db.row_count") == 0, op
        else:
            assert not raised and span.error == 0, (phase, op, outcome, span.get_tag("error.message"))
    results = {(phase, op): outcome for phase, op, outcome, _ in traced}
    assert results["live", "get"] == ("ok", b"v")
    assert results["restarted", "get"] == ("ok", b"v3")
    assert results["restarted", "get_many"] == ("ok", {"k": b"v3"})
    assert tracer.current_span() is None and core.current() is None


# --- a server that never answers --------------------------------------------------------


@pytest.mark.parametrize("op,args", OPS, ids=[op for op, _ in OPS])
def test_timeout_same_outcome_and_an_error_span(adapter, silent_server, spans, op, args):
    """A server that accepts the connection and never answers, with the client's own short
    timeout: the app sees what it sees untraced; the span is finished, names the server,
    and is an error (not a cancellation), unless the client reports that timeout as a miss
    (``Adapter.timeout_misses``): then it is a clean miss, as the app saw it."""
    skip_if_cannot(adapter, "timeout")
    assert adapter.timeout_options, "%s: declare timeout_options, or why it cannot (cannot['timeout'])" % adapter.client

    def run():
        client = adapter.make([silent_server], **adapter.timeout_options)
        try:
            return adapter.outcome(op, client, *args)
        finally:
            adapter.close(client)

    untraced, traced = untraced_and_traced(run)
    assert traced == untraced
    span = one_span(spans)
    assert span.resource == adapter.resources[op] and span.finished
    assert host_of(span) == tuple(silent_server)
    assert span.get_tag("memcached.cancelled") is None
    if op in adapter.timeout_misses:
        assert traced[0] == "ok" and span.error == 0 and span.get_metric("db.row_count") == 0, traced
    else:
        assert span.error == 1 and span.get_tag("error.type"), traced
        if traced[0] == "raised":
            assert span.get_tag("error.type").rpartition(".")[2] == traced[1]
    assert tracer.current_span() is None and core.current() is None


# --- no value in a tag; keys only when asked for ------------------------------------


def test_no_value_and_no_key_in_tags(adapter, client, spans):
    adapter.set(client, "the-key-of-the-app", SECRET)
    adapter.get(client, "the-key-of-the-app")
    adapter.get_many(client, ["the-key-of-the-app"])
    assert spans.memcached()
    for span in spans.memcached():
        text = " ".join("%s=%s" % kv for kv in span.get_tags().items())
        assert SECRET.decode() not in text
        assert "the-key-of-the-app" not in text
        assert span.get_tag("memcached.query") is None


def test_keys_in_query_when_enabled_never_values(adapter, client, spans, command_enabled):
    adapter.set(client, "the-key-of-the-app", SECRET)
    adapter.get(client, "the-key-of-the-app")
    for span in spans.memcached():
        query = span.get_tag("memcached.query")
        assert query is not None and "the-key-of-the-app" in query, span.get_tags()
        assert SECRET.decode() not in " ".join("%s=%s" % kv for kv in span.get_tags().items())


# --- overrides, Pin ------------------------------------------------------------------


def test_override_service_and_tags(adapter, client, spans):
    ddtrace_memcached.override(client, service="sessions-cache", tags={"team": "web"})
    adapter.set(client, "k", b"v")
    adapter.get(client, "k")
    for span in spans.memcached():
        assert span.service == "sessions-cache"
        assert span.get_tag("team") == "web"


def test_override_does_not_leak_to_other_clients(adapter, client, memcached, spans):
    other = adapter.make([memcached])
    try:
        ddtrace_memcached.override(client, service="sessions-cache")
        adapter.set(other, "k", b"v")
    finally:
        adapter.close(other)
    assert [s.service for s in spans.memcached()] == ["memcached"]


def test_pin_service_and_tags(adapter, client, spans):
    Pin.override(client, service="pinned-cache", tags={"pinned": "yes"})
    adapter.set(client, "k", b"v")
    for span in spans.memcached():
        assert span.service == "pinned-cache"
        assert span.get_tag("pinned") == "yes"


# --- which clients are traced ------------------------------------------------------


def test_client_made_before_patch_is_traced(adapter, memcached, spans):
    c = adapter.make([memcached])
    ddtrace_memcached.patch()
    try:
        adapter.set(c, "k", b"v")
    finally:
        ddtrace_memcached.unpatch()
        adapter.close(c)
    assert_common(one_span(spans), adapter, "set", memcached)


def test_subclass_is_traced_and_isinstance_holds(adapter, memcached, spans, patched):
    c = adapter.make_subclass([memcached])
    try:
        assert isinstance(c, adapter.client_class)
        adapter.set(c, "k", b"v")
    finally:
        adapter.close(c)
    assert_common(one_span(spans), adapter, "set", memcached)
    assert isinstance(adapter.make([memcached]), adapter.client_class)


def test_unpatch_stops_tracing(adapter, memcached, spans):
    ddtrace_memcached.patch()
    ddtrace_memcached.unpatch()
    c = adapter.make([memcached])
    try:
        adapter.set(c, "k", b"v")
        assert adapter.get(c, "k") == b"v"
    finally:
        adapter.close(c)
    assert spans.memcached() == []


def test_patch_twice_is_one_span(adapter, client, spans):
    ddtrace_memcached.patch()
    adapter.set(client, "k", b"v")
    assert len(spans.memcached()) == 1


CYCLES = 20


def _defined(cls, method):
    """What ``cls.method`` resolves to, from the class that defines it (None if none does)."""
    return next((vars(klass)[method] for klass in cls.__mro__ if method in vars(klass)), None)


def _introspected(attribute):
    """What frameworks ask of a method: whether it is a coroutine function, its signature."""
    function = attribute.__func__ if isinstance(attribute, (classmethod, staticmethod)) else attribute
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a C method's may be unreadable, wrapped or not
        signature = None
    return inspect.iscoroutinefunction(function), signature


def test_patch_unpatch_cycles_stack_no_wrapper(adapter, memcached, spans):
    """Cycles of patch() (every fifth twice) and unpatch(): while patched, every attribute
    the client module wraps (its ``targets()``) is one wrapper of ours right around the
    original, introspected as the original is (a coroutine function or not, its signature),
    a second patch() changes none, and a command is one span; once unpatched,
    every target class and the client's own module are as they were, and a client made
    while patched makes no span."""
    integration = client_module(adapter.client)
    targets = [(cls, method) for cls, method, _ in integration.targets()]
    originals = {(cls, method): _defined(cls, method) for cls, method in targets}
    wrapped = [target for target, original in originals.items() if original is not None]
    assert wrapped, "%s wraps nothing" % integration.__name__
    classes = {cls for cls, _ in targets}
    before = {cls: dict(vars(cls)) for cls in classes}
    library = dict(vars(adapter.module))
    for cycle in range(CYCLES):
        ddtrace_memcached.patch()
        try:
            installed = {(cls, method): vars(cls).get(method) for cls, method in wrapped}
            for (cls, method), attribute in installed.items():
                assert wrapping.is_ours(attribute), (cycle, cls, method, attribute)
                assert attribute.__wrapped__ is originals[cls, method], (cycle, cls, method)
                assert _introspected(attribute) == _introspected(originals[cls, method]), (cls, method)
            if cycle % 5 == 0:
                ddtrace_memcached.patch()  # idempotent
                again = {(cls, method): vars(cls).get(method) for cls, method in wrapped}
                assert all(again[t] is installed[t] for t in wrapped), cycle
            client = adapter.make([memcached])
            spans.spans.clear()
            adapter.set(client, "k", b"v")
            assert len(spans.memcached()) == 1, (cycle, [s.resource for s in spans.memcached()])
        finally:
            ddtrace_memcached.unpatch()
        changed = [cls for cls in classes if dict(vars(cls)) != before[cls]]
        assert not changed, (cycle, changed)
        spans.spans.clear()
        assert adapter.get(client, "k") == b"v"
        adapter.close(client)
        assert spans.memcached() == [], cycle
    assert dict(vars(adapter.module)) == library


# --- threads and asyncio tasks sharing one client ----------------------------------------

THREADS = 6  # at most adapters.SHARED_BY
ROUNDS = 25


def test_threads_share_one_client(adapter, memcached, memcached_nodes, spans, patched):
    """Threads, each under its own span, share one client (``Adapter.make_shared``; every
    server when the client routes keys): each thread gets its own answers, and its span has
    exactly its own commands as children, clean, counting their rows, naming the server
    that holds their key."""
    skip_if_cannot(adapter, "threads")
    servers = memcached_nodes if adapter.multi_server else [memcached]
    client = adapter.make_shared(servers)

    def work(n):
        wrong = []
        with tracer.trace("thread", resource=str(n)) as root:
            for i in range(ROUNDS):
                key, value = "t%d-%d" % (n, i), b"t%d-%d" % (n, i)
                adapter.set(client, key, value)
                got = [adapter.get(client, key), adapter.get_many(client, [key])]
                if got != [value, {key: value}]:
                    wrong.append(got)
                if tracer.current_span() is not root:
                    wrong.append("active: %r" % tracer.current_span())
        return root, wrong, tracer.current_span()

    try:
        results = run_threads(work, THREADS)
    finally:
        adapter.close(client)
    found = commands(spans)
    assert len(found) == THREADS * ROUNDS * 3
    resources = adapter.resources
    for n, (root, wrong, active) in results.items():
        assert wrong == [] and active is None, (n, wrong[:3], active)
        mine = [s for s in found if s.parent_id == root.span_id]
        assert all(s.trace_id == root.trace_id and s.finished and s.error == 0 for s in mine), n
        assert collections.Counter(s.resource for s in mine) == {
            resources["set"]: ROUNDS,
            resources["get"]: ROUNDS,
            resources["get_many"]: ROUNDS,
        }, n
        reads = [s for s in mine if s.resource in (resources["get"], resources["get_many"])]
        assert sum(s.get_metric("db.row_count") for s in reads) == 2 * ROUNDS, n
        sets = sorted((s for s in mine if s.resource == resources["set"]), key=lambda s: s.start_ns)
        for i, span in enumerate(sets):
            assert host_of(span) == holder(servers, adapter.wire_key("t%d-%d" % (n, i))), (n, i)


def test_tasks_share_one_client(adapter, memcached, memcached_nodes, spans, patched):
    """Asyncio tasks, each under a root span of its own, share one client on one loop
    (every server when the client routes keys), each awaiting its commands gathered at
    once: every root has exactly its own commands as children, finished, in its trace, and
    a task of no trace running meanwhile never sees a span (``workers.gather_workers``)."""
    if not adapter.is_async:
        pytest.skip("%s is not an asyncio client" % adapter.client)
    servers = memcached_nodes if adapter.multi_server else [memcached]
    client = adapter.make_shared(servers)

    def command(n, i):
        key = "w%d-%d" % (n, i)
        return adapter.coroutine("set", client, key, b"v") if i % 2 == 0 else adapter.coroutine("get", client, key)

    roots = adapter.run(gather_workers(command, lambda: adapter.a_close(client)))
    assert_each_under_its_worker(spans.memcached(), roots)


# --- parents, a disabled tracer ------------------------------------------------------


def test_spans_are_children_of_the_active_span(adapter, client, spans):
    with tracer.trace("app.request") as parent:
        adapter.set(client, "k", b"v")
        adapter.get(client, "k")
    for span in spans.memcached():
        assert span.parent_id == parent.span_id and span.trace_id == parent.trace_id
    assert tracer.current_span() is None


def test_disabled_tracer_no_spans_same_results(adapter, client, spans):
    tracer.enabled = False
    try:
        adapter.set(client, "k", b"v")
        assert adapter.get(client, "k") == b"v"
        assert adapter.get(client, "missing") is None
    finally:
        tracer.enabled = True
    assert spans.memcached() == []


# --- traced ≡ untraced ---------------------------------------------------------------


def _script(rng: random.Random, adapter, n: int):
    keys = ["k%d" % i for i in range(5)]
    if adapter.bad_key is not None:
        keys.append(adapter.bad_key)
    steps = []
    for _ in range(n):
        op = rng.choice(["set", "get", "get_many", "delete", "incr"])
        if op == "set":
            steps.append((op, rng.choice(keys), rng.choice([b"1", b"", b"x" * rng.randint(1, 50)])))
        elif op == "get_many":
            steps.append((op, rng.sample(keys, 3)))
        elif op == "incr":
            steps.append((op, rng.choice(keys), rng.randint(0, 5)))
        else:
            steps.append((op, rng.choice(keys)))
    return steps


@pytest.mark.parametrize("seed", range(3))
def test_traced_equals_untraced(adapter, spans, seed):
    """The same random script, with bad keys, on two fresh servers: the same outcomes,
    one span per operation (``Adapter.resources``) and an error span per raise but a miss."""
    steps = _script(random.Random(seed), adapter, 60)
    servers = [MemcachedProcess(), MemcachedProcess()]
    try:
        untraced = adapter.make([servers[0].address])
        expected = [adapter.outcome(step[0], untraced, *step[1:]) for step in steps]
        adapter.close(untraced)
        ddtrace_memcached.patch()
        try:
            traced = adapter.make([servers[1].address])
            got = []
            for step in steps:
                before = len(spans.memcached())
                got.append(adapter.outcome(step[0], traced, *step[1:]))
                new = spans.memcached()[before:]
                assert len(new) == 1, (step, [s.resource for s in new])
                assert new[0].resource == adapter.resources[step[0]]
                miss = new[0].get_tag("db.response.status_code")
                if got[-1][0] == "raised" and miss is not None:  # the client raises its misses
                    assert step[0] in adapter.miss_raises and new[0].error == 0, (step, got[-1])
                else:
                    assert new[0].error == (1 if got[-1][0] == "raised" else 0), (step, got[-1])
            adapter.close(traced)
        finally:
            ddtrace_memcached.unpatch()
    finally:
        for server in servers:
            server.stop()
    assert got == expected
    assert tracer.current_span() is None


# --- the edges: misses, noreply, nothing of the app's held ----------------------------------

MISSES = {
    # op: (what the server holds first, the call that misses)
    "incr": (None, ("incr", "counter", 1)),
    "delete": (None, ("delete", "k")),
    "add": (("k", b"there"), ("add", "k", b"v")),
}


@pytest.mark.parametrize("op", list(MISSES))
def test_a_miss_is_no_error(adapter, memcached, spans, op):
    """``incr`` of a missing counter, ``delete`` of a missing key, ``add`` of an existing one:
    the app sees what it sees untraced (a value, or the client's own exception), the span is
    no error, and its ``db.response.status_code`` says the miss wherever the client's answer
    can tell it (``Adapter.replies``)."""
    stored, call = MISSES[op]

    def run():
        c = adapter.make([memcached])
        try:
            adapter.outcome("delete", c, "k")  # a clean slate, whatever ran before
            adapter.outcome("delete", c, "counter")
            if stored is not None:
                adapter.set(c, *stored)
            spans.spans.clear()
            return adapter.outcome(call[0], c, *call[1:])
        finally:
            adapter.close(c)

    untraced, traced = untraced_and_traced(run)
    assert traced == untraced
    assert (traced[0] == "raised") == (op in adapter.miss_raises), traced
    span = one_span(spans)
    assert span.resource == adapter.resources[op] and span.error == 0, span.get_tags()
    assert span.get_tag("error.type") is None and span.get_tag("error.message") is None
    assert span.get_tag("db.response.status_code") == adapter.replies[op], span.get_tags()


def test_a_hit_has_no_status(adapter, client, spans):
    """A command that did its job carries no ``db.response.status_code``: only misses do."""
    adapter.set(client, "counter", b"1")
    adapter.incr(client, "counter", 1)
    adapter.delete(client, "counter")
    adapter.add(client, "counter", b"1")
    assert [s.resource for s in spans.memcached()] == [adapter.resources[op] for op in ("set", "incr", "delete", "add")]
    for span in spans.memcached():
        assert span.error == 0 and span.get_tag("db.response.status_code") is None, span.get_tags()


def test_noreply_is_marked(adapter, client, spans):
    """A command sent without waiting for the reply says so, ``memcached.noreply:true``: its
    span measures the write alone. One that waits has no such tag."""
    skip_if_cannot(adapter, "noreply")
    adapter.set_noreply(client, "k", b"v")
    adapter.set(client, "k2", b"v")  # waits
    assert adapter.get(client, "k2") == b"v"  # the noreply set was sent before: the server has it
    assert adapter.get(client, "k") == b"v"
    noreply, waited = spans.memcached()[:2]
    assert noreply.resource == adapter.resources["set_noreply"] and noreply.error == 0
    assert noreply.get_tag("memcached.noreply") == "true"
    assert noreply.get_tag("db.response.status_code") is None  # no reply: nothing to tell
    assert waited.get_tag("memcached.noreply") is None
    assert all(s.get_tag("memcached.noreply") is None for s in spans.memcached()[1:])


def _unique(prefix: str) -> str:
    """A string no other object equals or shares: its references are the test's alone."""
    return "".join([prefix, "-", str(random.random())])


def _ours_holding(frames, *objects) -> list:
    """The frames of the integration among ``frames`` (and their callers) whose locals hold
    one of ``objects``, directly or in a tuple, list or dict."""
    found, seen = [], set()
    for frame in frames:
        while frame is not None and id(frame) not in seen:
            seen.add(id(frame))
            if "ddtrace_memcached" in frame.f_code.co_filename:
                for name, value in frame.f_locals.items():
                    held = [value]
                    if isinstance(value, (tuple, list)):
                        held += list(value)
                    elif isinstance(value, dict):
                        held += list(value) + list(value.values())
                    if any(item is obj for item in held for obj in objects):
                        found.append((frame.f_code.co_name, name))
            frame = frame.f_back
    return found


def test_nothing_of_the_app_is_held_after_a_call(adapter, memcached, dead_address, spans):
    """After a call, and after a call that raised and whose exception the app keeps (error
    trackers do), the integration holds nothing of the app's: no frame of ours keeps the key
    or the value (a stored exception keeps its traceback's frames alive, and their callers),
    and they have exactly the references they have untraced (the client's own frames in the
    traceback hold them too)."""
    # "held key" holds a space: a key that clients with key checks refuse
    key, value = _unique("held key"), _unique("held-value").encode()

    def refs():
        gc.collect()  # an asyncio task and its exception make a cycle: garbage, not held
        return sys.getrefcount(key), sys.getrefcount(value)

    def run():
        start = refs()
        c = adapter.make([memcached])
        try:
            adapter.outcome("set", c, key, value)
            adapter.outcome("get", c, key)
        finally:
            adapter.close(c)
        after_calls = refs()
        kept = []
        for address in (memcached, dead_address):  # a refused key; a dead server
            c = adapter.make([address], **adapter.timeout_options)
            try:
                for op, args in (("set", (key, value)), ("get", (key,)), ("get_many", ([key, "other"],))):
                    try:
                        adapter.call(op, c, *args)
                    except Exception as exc:
                        kept.append(exc)
            finally:
                adapter.close(c)
        end = refs()
        # What the calls left referenced, and what the kept exceptions hold.
        return [a - b for a, b in zip(after_calls, start)], [a - b for a, b in zip(end, after_calls)], kept

    untraced, traced = untraced_and_traced(run)
    assert traced[0] == untraced[0] == [0, 0]
    if not traced[2]:
        pytest.skip("%s raised for neither a bad key nor a dead server" % adapter.client)
    assert [type(e) for e in traced[2]] == [type(e) for e in untraced[2]]
    frames = [tb.tb_frame for exc in traced[2] for tb in _tracebacks(exc)]
    assert _ours_holding(frames, key, value) == []
    assert traced[1] == untraced[1]  # the client's own frames, nothing more


def _tracebacks(exc):
    tb = exc.__traceback__
    while tb is not None:
        yield tb
        tb = tb.tb_next


# --- drift: every public method of the client classes is a command, or says why not ----


def command_methods(integration) -> set:
    """The methods of the client module's command tables: its module-level tuples, lists
    and dicts of ``Command`` rows (``COMMANDS``, ``ALL_COMMANDS``, ``KEYED``, ``EXECUTOR``...)."""
    methods = set()
    for value in vars(integration).values():
        rows = list(value.values()) if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else []
        if rows and all(isinstance(row, Command) for row in rows):
            methods.update(row.method for row in rows)
    return methods


def public_methods(classes) -> dict:
    """``{name: [classes]}`` of the public methods (not starting with ``_``) of ``classes``,
    inherited ones included."""
    found = collections.defaultdict(list)
    for cls in classes:
        for name in dir(cls):
            if not name.startswith("_") and inspect.isroutine(getattr(cls, name)):
                found[name].append(cls)
    return found


def undeclared(classes, commands_, not_commands) -> list:
    """The public methods of ``classes`` that are neither commands, nor another name of a
    command on the same class (pymemcache's ``HashClient.gets_multi = gets_many``), nor in
    ``not_commands``."""

    def alias(cls, name):
        function = inspect.unwrap(getattr(cls, name))
        return any(inspect.unwrap(getattr(cls, c)) is function for c in commands_ if hasattr(cls, c))

    return sorted(
        "%s.%s" % (cls.__name__, name)
        for name, owners in public_methods(classes).items()
        if name not in commands_ and name not in not_commands
        for cls in owners
        if not alias(cls, name)
    )


def test_every_public_method_is_a_command_or_declared_not(adapter):
    """A release of the client that adds a public method to the classes the integration
    traces fails here, until the method is in the client module's command tables (traced)
    or in the adapter's ``not_commands``, with why it sends nothing."""
    integration = client_module(adapter.client)
    commands_ = command_methods(integration)
    assert commands_ and adapter.command_classes, (integration.__name__, adapter.command_classes)
    missing = undeclared(adapter.command_classes, commands_, adapter.not_commands)
    assert not missing, "public methods of %s that are neither in %s's command tables nor in %s's not_commands: %s" % (
        adapter.client,
        integration.__name__,
        type(adapter).__name__,
        missing,
    )
    declared = set(adapter.not_commands)
    assert not declared & commands_, declared & commands_  # a command is traced: it cannot be "not a command"
    stale = declared - set(public_methods(adapter.command_classes))
    assert not stale, stale  # what the client no longer has is no longer declared
    assert all(why.strip() for why in adapter.not_commands.values())


def test_the_drift_check_flags_a_new_method(adapter):
    """The check above fails on a release that adds a public method (a subclass stands in)."""
    base = adapter.command_classes[0]
    newer = type(base.__name__, (base,), {"new_command": lambda self, keys: None})
    commands_ = command_methods(client_module(adapter.client))
    assert undeclared([newer], commands_, adapter.not_commands) == ["%s.new_command" % base.__name__]


# --- the three entry points ----------------------------------------------------------

ENTRY_POINTS = {
    "ddtrace-run": ("", True),
    "import-ddtrace-auto": ("import ddtrace.auto", False),
    "ddtrace-patch": ("import ddtrace\n\nddtrace.patch(memcached=True)", False),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_traces_the_client(adapter, memcached, entry):
    """In a new interpreter, enabled as a user would: the client is imported after the
    entry point ran (through the adapter), and its commands are our spans, once each."""
    prelude, under_ddtrace_run = ENTRY_POINTS[entry]
    body = """
    import sys

    sys.path.insert(0, %r)
    from adapters import load

    adapter = load(%r)
    client = adapter.make([ADDRESS])
    adapter.set(client, "k", b"v")
    assert adapter.get(client, "k") == b"v"
    adapter.close(client)
    """ % (TESTS, adapter.client)
    argv = ddtrace_run() if under_ddtrace_run else ()
    env = adapter.auto_env if under_ddtrace_run or "auto" in entry else {}
    spans = spans_of(run_python(app(body, memcached, prelude=prelude), env=env, argv_prefix=argv))
    assert [(s["name"], s["resource"], s["component"]) for s in spans] == [
        ("memcached.command", adapter.resources["set"], "memcached"),
        ("memcached.command", adapter.resources["get"], "memcached"),
    ], spans
