"""The contract every traced client keeps, run once per client through its adapter.

Against real memcached servers: one span per command with the common tags, the host of
the server that holds the key, row counts, errors re-raised as they are, no value in any
tag and keys only when asked for, overrides and Pin, clients made before patching and
subclasses, unpatching, parents, a disabled tracer, and traced ≡ untraced. A client
joins by adding its adapter (``tests/adapters``); its own quirks get tests of their own.
"""

import os
import random

from ddtrace.trace import tracer
import pytest

from adapters import CLIENTS
from adapters import holder
from adapters import load
from conftest import Pin
from conftest import app
from conftest import ddtrace_run
from conftest import run_python
from conftest import spans_of
import ddtrace_memcached
from servers import MemcachedProcess

TESTS = os.path.dirname(os.path.abspath(__file__))

SECRET = b"s3cr7-value-0f-the-app"


def _installed(client):
    try:
        return load(client)
    except ImportError:
        return None


# A client suite runs the contract for its own client only (riotfile.py).
UNDER_TEST = [c for c in os.environ.get("MEMCACHED_CONTRACT_CLIENTS", ",".join(CLIENTS)).split(",") if c]


@pytest.fixture(params=UNDER_TEST)
def adapter(request):
    found = _installed(request.param)
    if found is None:
        pytest.skip("%s is not installed" % request.param)
    return found


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
    one span per operation (``Adapter.resources``) and an error span per raise."""
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
                assert new[0].error == (1 if got[-1][0] == "raised" else 0), (step, got[-1])
            adapter.close(traced)
        finally:
            ddtrace_memcached.unpatch()
    finally:
        for server in servers:
            server.stop()
    assert got == expected
    assert tracer.current_span() is None


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
