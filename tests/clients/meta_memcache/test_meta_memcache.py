"""meta-memcache: what the contract does not cover, against real memcached servers.

Every method the app calls and its resource, the spans of each executor round trip
(``multi_get`` over several servers, gutter failover, lease retries), the server
behind a ``server_id``, failures it raises and failures it swallows
(``raise_on_server_error=False``), faults, the extras wrappers, and key capture. Threads
sharing a client, and unpatching, are the contract's.
"""

import gc
import socket
import time
import weakref

from ddtrace.trace import tracer
import pytest

meta_memcache = pytest.importorskip("meta_memcache")

from meta_memcache import MISS_DUE_TO_ERROR  # noqa: E402
from meta_memcache import CacheClient  # noqa: E402
from meta_memcache import DefaultExecutor  # noqa: E402
from meta_memcache import DefaultRouter  # noqa: E402
from meta_memcache import HostConnectionPoolProvider  # noqa: E402
from meta_memcache import Key  # noqa: E402
from meta_memcache import LeasePolicy  # noqa: E402
from meta_memcache import MemcacheServerError  # noqa: E402
from meta_memcache import MixedSerializer  # noqa: E402
from meta_memcache import ServerAddress  # noqa: E402
from meta_memcache import SetMode  # noqa: E402
from meta_memcache import connection_pool_factory_builder  # noqa: E402
from meta_memcache.errors import ServerMarkedDownError  # noqa: E402
from meta_memcache.extras.client_wrapper import ClientWrapper  # noqa: E402
from meta_memcache.protocol import MetaCommand  # noqa: E402

from adapters.meta_memcache import unix_pool_factory  # noqa: E402
import ddtrace_memcached  # noqa: E402
from ddtrace_memcached import core  # noqa: E402
from ddtrace_memcached import registry  # noqa: E402
from ddtrace_memcached.clients import meta_memcache as integration  # noqa: E402
from helpers import Pin  # noqa: E402
from helpers import host_of  # noqa: E402
from helpers import untraced_and_traced  # noqa: E402
from servers import MemcachedProcess  # noqa: E402

SECRET = "s3cr7-value-0f-the-app"


def factory(timeout=2.0, **options):
    return connection_pool_factory_builder(connection_timeout=timeout, recv_timeout=timeout, **options)


def addresses(servers):
    return [ServerAddress(host=h, port=p) for h, p in servers]


@pytest.fixture
def client(memcached, patched):
    return CacheClient.cache_client_from_servers(addresses([memcached]), factory())


# --- every method, its resource and its row count ------------------------------------

LEASE = LeasePolicy(ttl=30, miss_retries=3, miss_retry_wait=0.01, miss_max_retry_wait=0.01)

# (method, args, resource, db.row_count or None when not a read); "k" holds 1, "n" holds 5.
CALLS = [
    ("get", ("k",), "get", 1),
    ("get_cas", ("k",), "get_cas", 1),
    ("get_typed", ("k", int), "get_typed", 1),
    ("get_cas_typed", ("k", int), "get_cas_typed", 1),
    ("get_or_lease", ("k", LEASE), "get_or_lease", 1),
    ("get_or_lease_cas", ("k", LEASE), "get_or_lease_cas", 1),
    ("multi_get", (["k", "missing"],), "get_many", 1),
    ("multi_get_cas", (["k", "missing"],), "get_cas_many", 1),
    ("touch", ("k", 60), "touch", None),
    ("set", ("k2", 2, 60), "set", None),
    ("set_cas", ("k2", 2, 60), "set_cas", None),
    ("refill", ("k2", 2, 60), "refill", None),
    ("delete", ("k",), "delete", None),
    ("invalidate", ("k",), "invalidate", None),
    ("delta", ("n", 1), "delta", None),
    ("delta_initialize", ("n", 1, 0, 60), "delta_initialize", None),
    ("delta_and_get", ("n", 1), "delta_and_get", None),
    ("delta_initialize_and_get", ("n", 1, 0, 60), "delta_initialize_and_get", None),
    ("meta_get", (Key("k"),), "meta_get", 1),
    ("meta_multiget", ([Key("k"), Key("missing")],), "meta_multiget", 1),
    ("meta_delete", (Key("k"),), "meta_delete", None),
    ("meta_arithmetic", (Key("n"),), "meta_arithmetic", None),
]


@pytest.mark.parametrize("method,args,resource,rows", CALLS, ids=[c[0] for c in CALLS])
def test_each_method_is_one_span_named_after_it(client, memcached, spans, method, args, resource, rows):
    client.set("k", 1, 60)
    client.set("n", b"5", 60)
    spans.spans.clear()
    getattr(client, method)(*args)
    found = spans.memcached()
    assert [s.resource for s in found] == [resource]
    span = found[0]
    assert host_of(span) == memcached
    assert span.get_metric("db.row_count") == rows
    assert span.error == 0


def test_meta_set_is_traced(client, memcached, spans):
    from meta_memcache import RequestFlags
    from meta_memcache import Success

    assert isinstance(client.meta_set(Key("k"), b"v", flags=RequestFlags(cache_ttl=60)), Success)
    assert client.get("k") == b"v"
    assert [(s.resource, host_of(s)) for s in spans.memcached()] == [("meta_set", memcached), ("get", memcached)]


def test_results_are_those_of_the_untraced_client(memcached, spans):
    def run(c):
        c.delete("n")  # left by the other run
        return [
            c.set("a", b"1", 60),
            c.get("a"),
            c.get_cas("a")[0],
            c.multi_get(["a", "b"]),
            c.delta_initialize_and_get("n", 2, 10, 60),
            c.delta_and_get("n", 3),
            c.touch("a", 60),
            c.refill("a", b"2", 60),
            c.set("a", b"3", 60, set_mode=SetMode.ADD),
            c.delete("a"),
            c.invalidate("a"),
            c.get("a"),
        ]

    expected, got = untraced_and_traced(
        lambda: run(CacheClient.cache_client_from_servers(addresses([memcached]), factory()))
    )
    assert got == expected
    assert len(spans.memcached()) == 1 + len(got)


@pytest.mark.parametrize("value", [b"", 0, False, [], {}, None])
def test_falsy_and_none_values_are_hits(client, spans, value):
    """A stored None reads like a miss to the app; the server said it was there."""
    client.set("k", value, 60)
    spans.spans.clear()
    assert client.get("k") == (b"" if value == "" else value)
    assert client.get("missing") is None
    assert [s.get_metric("db.row_count") for s in spans.memcached()] == [1, 0]


def test_lease_winner_and_loser_retries(memcached, patched, spans):
    """The winner of a lease reads a miss; the loser's retries are a span each."""
    winner = CacheClient.cache_client_from_servers(addresses([memcached]), factory())
    loser = CacheClient.cache_client_from_servers(addresses([memcached]), factory())
    waits = []
    assert winner.get_or_lease("leased", LEASE) is None
    assert loser.get_or_lease("leased", LEASE, lease_wait_fn=waits.append) is None
    found = spans.memcached()
    assert [s.resource for s in found] == ["get_or_lease"] * (1 + LEASE.miss_retries)
    assert [s.get_metric("db.row_count") for s in found] == [0] * (1 + LEASE.miss_retries)
    assert len(waits) == LEASE.miss_retries - 1


# --- several servers -----------------------------------------------------------------


def test_multi_get_is_a_span_per_server_with_its_keys(memcached_nodes, patched, spans, command_enabled):
    c = CacheClient.cache_client_from_servers(addresses(memcached_nodes), factory())
    keys = ["key-%d" % i for i in range(30)]
    for key in keys:
        c.set(key, b"v", 60)
    spans.spans.clear()
    assert c.multi_get(keys + ["missing"]) == {Key(k): b"v" for k in keys} | {Key("missing"): None}
    found = spans.memcached()
    assert sorted(host_of(s) for s in found) == sorted(set(host_of(s) for s in found))
    assert len(found) == 3
    holders = {k: c.router.pool_provider.get_pool(Key(k)).server for k in keys + ["missing"]}
    for span in found:
        assert span.resource == "get_many"
        sent = span.get_tag("memcached.query").split()[1:]
        assert sent and all(holders[k] == "%s:%d" % host_of(span) for k in sent)
        assert span.get_metric("db.row_count") == len([k for k in sent if k != "missing"])
    assert sum(s.get_metric("db.row_count") for s in found) == len(keys)


def test_server_id_still_names_the_real_server(memcached_nodes, spans):
    """``pool.server`` is the server_id then: the host comes from the pool providers."""
    servers = [ServerAddress(host=h, port=p, server_id="node%d" % i) for i, (h, p) in enumerate(memcached_nodes)]
    made_before_patch = CacheClient.cache_client_from_servers(servers, factory())
    ddtrace_memcached.patch()
    try:
        for c in (made_before_patch, CacheClient.cache_client_from_servers(servers, factory())):
            for i in range(10):
                c.set("key-%d" % i, b"v", 60)
    finally:
        ddtrace_memcached.unpatch()
    found = spans.memcached()
    assert len(found) == 20
    by_id = {a.server_id: (a.host, a.port) for a in servers}
    for i, span in enumerate(found):
        node = made_before_patch.router.pool_provider.get_pool(Key("key-%d" % (i % 10))).server
        assert host_of(span) == by_id[node]


def test_pools_are_mapped_to_servers_without_being_kept_alive(memcached_nodes, patched):
    """Each pool's ``ServerAddress`` is kept by the pool's id, next to a weak reference: the
    entry goes when the app drops its client, and an id that a new pool reuses does not
    inherit the old pool's server."""
    servers = [ServerAddress(host=h, port=p, server_id="node%d" % i) for i, (h, p) in enumerate(memcached_nodes)]
    before = set(integration._ADDRESSES)
    c = CacheClient.cache_client_from_servers(servers, factory())
    c.set("k", b"v", 60)
    learned = set(integration._ADDRESSES) - before
    assert sorted(integration._ADDRESSES[key][1] for key in learned) == sorted(servers)
    pool = integration._ADDRESSES[learned.pop()][0]()
    assert integration._server(pool, None) in servers

    class Stranger:
        pass

    stranger = Stranger()  # what a reused id would point at: another object's entry
    integration._ADDRESSES[id(pool)] = (weakref.ref(stranger), ServerAddress(host="wrong", port=1))
    assert integration._server(pool, None) == pool.server  # "node0"...: not the stranger's address
    del integration._ADDRESSES[id(pool)]

    refs = [integration._ADDRESSES[key][0] for key in learned]
    del c, pool
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)
    assert not learned & set(integration._ADDRESSES)


def test_gutter_failover_is_two_spans_on_two_servers(memcached, dead_address, spans):
    def run(c):
        return [c.set("k", b"v", 300), c.get("k"), c.multi_get(["k", "x"])]

    def gutter_client():
        return CacheClient.cache_client_with_gutter_from_servers(
            addresses([dead_address]), addresses([memcached]), gutter_ttl=5, connection_pool_factory_fn=factory()
        )

    expected, got = untraced_and_traced(lambda: run(gutter_client()))
    assert got == expected == [True, b"v", {Key("k"): b"v", Key("x"): None}]
    found = spans.memcached()
    assert [s.resource for s in found] == ["set", "set", "get", "get", "get_many", "get_many"]
    for primary, gutter in zip(found[::2], found[1::2]):
        assert host_of(primary) == dead_address and primary.error == 1
        assert primary.get_tag("error.type") == "meta_memcache.errors.MemcacheServerError"
        assert host_of(gutter) == memcached and gutter.error == 0
    assert [s.get_metric("db.row_count") for s in found[2:]] == [None, 1, None, 1]


def test_ephemeral_client(memcached, patched, spans):
    c = CacheClient.ephemeral_cache_client_from_servers(addresses([memcached]), 30, factory())
    assert c.set("k", b"v", 0) is True
    assert c.get("k") == b"v"
    assert [(s.resource, host_of(s)) for s in spans.memcached()] == [("set", memcached), ("get", memcached)]


def test_host_connection_pool_provider_and_bare_executor(memcached, patched, spans):
    """A router built by hand; the executor called without a client names the wire command."""
    address = ServerAddress(host=memcached[0], port=memcached[1])
    pool = factory()(address)
    executor = DefaultExecutor(serializer=MixedSerializer())
    c = CacheClient(router=DefaultRouter(HostConnectionPoolProvider(address, pool), executor))
    assert c.set("k", b"v", 60) and c.get("k") == b"v"
    executor.exec_on_pool(pool, MetaCommand.META_GET, Key("k"), None, None, False)
    executor.exec_multi_on_pool(pool, MetaCommand.META_GET, [(Key("k"), None)], None, False)
    found = spans.memcached()
    assert [s.resource for s in found] == ["set", "get", "meta_get", "meta_multiget"]
    assert all(host_of(s) == memcached for s in found)


def test_unix_socket_pool_server_fallback(memcached_unix, patched, spans):
    """Also without the pool providers' mapping: ``pool.server`` is ``path:0``."""
    pool = unix_pool_factory(ServerAddress(host=memcached_unix, port=0))
    DefaultExecutor(serializer=MixedSerializer()).exec_on_pool(pool, MetaCommand.META_GET, Key("k"), None, None, False)
    (span,) = spans.memcached()
    assert span.get_tag("out.host") == memcached_unix
    assert span.get_metric("network.destination.port") is None


# --- failures raised, failures swallowed ---------------------------------------------


def test_dead_server_error_is_the_same_object(dead_address, patched, spans):
    c = CacheClient.cache_client_from_servers(addresses([dead_address]), factory())
    with pytest.raises(ServerMarkedDownError) as raised:
        c.get("k")
    (span,) = spans.memcached()
    assert span.error == 1 and span.finished
    assert span.get_tag("error.type") == "meta_memcache.errors.ServerMarkedDownError"
    assert span.get_tag("error.message") == str(raised.value)
    assert tracer.current_span() is None


@pytest.mark.parametrize(
    "call,expected",
    [
        (lambda c: c.get("k"), None),
        (lambda c: c.set("k", b"v", 60), False),
        (lambda c: c.delete("k"), False),
        (lambda c: c.delta("k", 1), False),
        (lambda c: c.multi_get(["k", "j"]), {Key("k"): None, Key("j"): None}),
    ],
    ids=["get", "set", "delete", "delta", "multi_get"],
)
def test_swallowed_failures_are_error_spans(dead_address, patched, spans, call, expected):
    c = CacheClient.cache_client_from_servers(addresses([dead_address]), factory(), raise_on_server_error=False)
    assert call(c) == expected
    (span,) = spans.memcached()
    assert span.error == 1
    assert span.get_tag("error.type") == "meta_memcache.errors.MemcacheServerError"
    assert "raise_on_server_error is off" in span.get_tag("error.message")
    assert span.get_metric("db.row_count") is None  # the server was not asked


def test_per_call_raise_on_server_error(dead_address, patched, spans):
    from meta_memcache import FailureHandling

    c = CacheClient.cache_client_from_servers(addresses([dead_address]), factory())
    assert c.meta_get(Key("k"), failure_handling=FailureHandling(raise_on_server_error=False)) is MISS_DUE_TO_ERROR
    assert [s.error for s in spans.memcached()] == [1]


def test_server_killed_mid_run(patched, spans):
    server = MemcachedProcess()
    c = CacheClient.cache_client_from_servers(addresses([server.address]), factory(0.5))
    try:
        assert c.set("k", b"v", 60) is True
        server.stop()
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append(c.get("k"))
            except MemcacheServerError as exc:
                outcomes.append(type(exc))
    finally:
        server.stop()
    assert all(o in (MemcacheServerError, ServerMarkedDownError) for o in outcomes), outcomes
    found = spans.memcached()
    assert [s.error for s in found] == [0, 1, 1, 1]
    assert all(s.finished and host_of(s) == server.address for s in found)
    assert tracer.current_span() is None


@pytest.mark.parametrize("raise_on_server_error", [True, False])
def test_timeout(silent_server, patched, spans, raise_on_server_error):
    c = CacheClient.cache_client_from_servers(
        addresses([silent_server]), factory(0.2), raise_on_server_error=raise_on_server_error
    )
    if raise_on_server_error:
        with pytest.raises(MemcacheServerError) as raised:
            c.get("k")
        assert isinstance(raised.value.__cause__, (TimeoutError, socket.timeout, OSError))
    else:
        assert c.get("k") is None
    (span,) = spans.memcached()
    assert span.error == 1 and span.finished and host_of(span) == silent_server


def test_unpicklable_value_is_an_error_span(client, spans):
    with pytest.raises(Exception) as raised:
        client.set("k", lambda: None, 60)
    (span,) = spans.memcached()
    assert span.error == 1 and span.get_tag("error.type").endswith(type(raised.value).__name__)


def test_integration_failure_never_reaches_the_app(client, memcached, spans, monkeypatch):
    def broken(*args):
        raise RuntimeError("integration bug")

    monkeypatch.setattr(integration, "_address", broken)
    monkeypatch.setattr(integration, "_hit", broken)
    assert client.set("k", b"v", 60) is True
    assert client.get("k") == b"v"
    assert [s.resource for s in spans.memcached()] == ["set", "get"]
    assert all(s.finished and s.error == 0 for s in spans.memcached())


# --- overrides, Pin, wrappers, subclasses --------------------------------------------


def test_override_and_pin_on_the_client_reach_the_executor_spans(memcached_nodes, patched, spans):
    c = CacheClient.cache_client_from_servers(addresses(memcached_nodes), factory())
    other = CacheClient.cache_client_from_servers(addresses(memcached_nodes), factory())
    ddtrace_memcached.override(c, service="sessions", tags={"team": "web"})
    Pin.override(other, service="pinned")
    keys = ["key-%d" % i for i in range(12)]
    reached = len({c.router.pool_provider.get_pool(Key(k)) for k in keys})
    c.multi_get(keys)
    other.get("a")
    found = spans.memcached()
    assert len(found) == reached + 1
    assert [(s.service, s.get_tag("team")) for s in found[:reached]] == [("sessions", "web")] * reached
    assert found[-1].service == "pinned" and found[-1].get_tag("team") is None


def test_client_wrapper_is_named_and_its_inner_client_overrides(client, memcached, spans):
    wrapper = ClientWrapper(client)
    ddtrace_memcached.override(client, service="inner")
    ddtrace_memcached.override(wrapper, tags={"outer": "yes"})
    assert wrapper.set("k", b"v", 60) is True
    assert wrapper.multi_get(["k"]) == {Key("k"): b"v"}
    found = spans.memcached()
    assert [s.resource for s in found] == ["set", "get_many"]
    assert all(s.service == "inner" and s.get_tag("outer") == "yes" for s in found)


def test_migrating_client_writes_to_both_servers(memcached_nodes, patched, spans):
    """POPULATE_WRITES: one set of the app is a span on the origin and one on the destination."""
    from meta_memcache.configuration import MigrationMode
    from meta_memcache.extras.migrating_cache_client import MigratingCacheClient

    origin, destination = memcached_nodes[:2]
    c = MigratingCacheClient(
        CacheClient.cache_client_from_servers(addresses([origin]), factory()),
        CacheClient.cache_client_from_servers(addresses([destination]), factory()),
        MigrationMode.POPULATE_WRITES,
    )
    assert c.set("k", b"v", 60) is True
    assert c.get("k") == b"v"
    found = spans.memcached()
    assert [(s.resource, host_of(s)) for s in found] == [("set", origin), ("set", destination), ("get", origin)]


def test_subclass_overriding_a_method(memcached, patched, spans):
    class AppClient(CacheClient):
        def get(self, key, **kwargs):
            return super().get("app:" + key, **kwargs)

    base = CacheClient.cache_client_from_servers(addresses([memcached]), factory())
    c = AppClient(router=base.router)
    base.set("app:k", b"v", 60)
    assert c.get("k") == b"v"
    assert isinstance(c, CacheClient) and type(c.router.executor) is DefaultExecutor
    assert [s.resource for s in spans.memcached()] == ["set", "get"]


def test_stats_callback_still_fires(memcached, patched, spans):
    stats = []
    c = CacheClient.cache_client_from_servers(addresses([memcached]), factory(), stats_callback=stats.append)
    c.set("k", b"v", 60)
    c.multi_get(["k"])
    assert [s.server for s in stats] == ["%s:%d" % memcached] * 2
    assert len(spans.memcached()) == 2


def test_version_gate():
    assert registry.client_version("meta_memcache") == meta_memcache.__version__
    assert integration.VERSION >= (4, 0)
    assert {c.method for c in integration.COMMANDS} <= set(dir(CacheClient))


# --- threads ---------------------------------------------------------------------------


# --- keys and values in tags -----------------------------------------------------------


@pytest.mark.parametrize("key", ["with space", "x" * 300, "ключ"], ids=["space", "long", "unicode"])
def test_query_has_the_apps_key_not_the_wire_key(client, spans, command_enabled, key):
    client.set(key, SECRET, 60)
    assert client.get(key) == SECRET
    client.multi_get([key])
    found = spans.memcached()
    assert [s.get_tag("memcached.query") for s in found] == ["set " + key, "get " + key, "get_many " + key]
    for span in found:
        assert SECRET not in str(span.get_tags())


def test_no_key_and_no_value_by_default(memcached, dead_address, patched, spans):
    c = CacheClient.cache_client_from_servers(addresses([memcached]), factory())
    dead = CacheClient.cache_client_from_servers(addresses([dead_address]), factory())
    c.set("the-key-of-the-app", SECRET, 60)
    c.multi_get(["the-key-of-the-app"])
    with pytest.raises(MemcacheServerError):
        dead.get("the-key-of-the-app")
    found = spans.memcached()
    assert len(found) == 3
    for span in found:
        text = str(span.get_tags())
        assert "the-key-of-the-app" not in text and SECRET not in text


# --- stability -------------------------------------------------------------------------


def _cycle(c, n):
    for i in range(n):
        key = "s%d" % (i % 50)
        c.set(key, i, 60)
        c.get(key)
        c.multi_get([key, "other"])
        c.delete(key)


def test_stability_short(memcached, patched, spans):
    c = CacheClient.cache_client_from_servers(addresses([memcached]), factory())
    _cycle(c, 200)
    assert len(spans.memcached()) == 800
    assert tracer.current_span() is None
    assert core.current() is None


@pytest.mark.stress
def test_stability_long_with_restarts(patched, spans):
    server = MemcachedProcess()
    port = server.address[1]
    c = CacheClient.cache_client_from_servers(
        addresses([server.address]), factory(0.5, mark_down_period_s=0.1), raise_on_server_error=False
    )
    try:
        for _ in range(5):
            spans.spans.clear()
            _cycle(c, 2000)
            up = spans.memcached()
            assert len(up) == 8000 and not any(s.error for s in up)
            server.stop()
            spans.spans.clear()
            _cycle(c, 20)
            down = spans.memcached()
            assert len(down) == 80 and all(s.error == 1 and s.finished for s in down)
            server = MemcachedProcess(port=port)
            time.sleep(0.2)  # past mark_down_period_s
    finally:
        server.stop()
    assert tracer.current_span() is None
    assert core.current() is None
