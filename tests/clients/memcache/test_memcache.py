"""python-memcached (``memcache``): what the contract suite does not cover.

Every command's span and resource, row counts of ``get``/``gets`` (stored None, a
default, a dead server), the host of each span across several servers (failover
included), the span model of the multi-key commands, failures the library swallows
(refused, killed mid-run, timeouts, servers marked dead), overrides and Pin from other
threads (``Client`` is a ``threading.local``), key redaction, and stability.
"""

import gc
import tracemalloc

import pytest

memcache = pytest.importorskip("memcache")

from ddtrace.trace import tracer  # noqa: E402

from adapters import holder  # noqa: E402
from adapters.memcache import spec  # noqa: E402
import ddtrace_memcached  # noqa: E402
from ddtrace_memcached.clients.memcache import MARKED_DEAD  # noqa: E402
from ddtrace_memcached.clients.memcache import NO_LIVE_SERVER  # noqa: E402
from ddtrace_memcached.commands import REDACTED  # noqa: E402
from helpers import Pin  # noqa: E402
from helpers import host_of  # noqa: E402
from helpers import run_threads  # noqa: E402
from helpers import untraced_and_traced  # noqa: E402
from servers import MemcachedProcess  # noqa: E402


def make(*addresses, **options):
    options.setdefault("socket_timeout", 2)
    return memcache.Client([spec(a) for a in addresses], **options)


# --- every command -------------------------------------------------------------------

CALLS = [
    ("set", lambda c: c.set("k", b"v"), True),
    ("add", lambda c: c.add("new", b"v"), True),
    ("replace", lambda c: c.replace("k", b"w"), True),
    ("append", lambda c: c.append("k", b"+"), True),
    ("prepend", lambda c: c.prepend("k", b"-"), True),
    ("get", lambda c: c.get("k"), b"v"),
    ("gets", lambda c: c.gets("k"), b"v"),
    ("cas", lambda c: (c.gets("k"), c.cas("k", b"x"))[1], True),
    ("get_many", lambda c: c.get_multi(["k", "missing"]), {"k": b"v"}),
    ("set_many", lambda c: c.set_multi({"a": b"1", "b": b"2"}), []),
    ("delete", lambda c: c.delete("k"), 1),
    ("delete_many", lambda c: c.delete_multi(["k", "n"]), 1),
    ("incr", lambda c: c.incr("n", 2), 3),
    ("decr", lambda c: c.decr("n", 1), 0),
    ("touch", lambda c: c.touch("k", 10), 1),
    ("flush_all", lambda c: c.flush_all(), None),
    ("quit", lambda c: c.quit_all(), None),
]


@pytest.mark.parametrize("resource,call,expected", CALLS, ids=[c[0] + "-" + str(i) for i, c in enumerate(CALLS)])
def test_each_command_is_one_span_on_its_server(memcached, spans, patched, resource, call, expected):
    c = make(memcached, cache_cas=True)
    c.set("k", b"v")
    c.set("n", b"1")
    spans.spans.clear()
    result = call(c)
    c.disconnect_all()
    if resource != "cas":
        assert result == expected
    else:
        assert result is True
    found = [s for s in spans.memcached() if s.resource == resource]
    assert len(found) == 1, [s.resource for s in spans.memcached()]
    span = found[0]
    assert host_of(span) == memcached
    assert span.error == 0
    assert span.get_tag("component") == "memcached" and span.span_type == "cache"


def test_stats_names_its_one_server_and_get_slabs_error_is_the_same_object(memcached, spans, patched):
    c = make(memcached)
    stats = c.get_stats()
    assert stats and "pid" in stats[0][1]
    with pytest.raises(TypeError) as raised:  # python-memcached's own Python 3 bug
        c.get_slabs()
    span_stats, span_slabs = spans.memcached()
    assert span_stats.resource == span_slabs.resource == "stats"
    assert host_of(span_stats) == memcached and span_stats.error == 0
    assert span_slabs.error == 1 and span_slabs.get_tag("error.type") == "builtins.TypeError"
    assert span_slabs.get_tag("error.message") == str(raised.value)


def test_server_commands_on_several_servers_name_no_host(memcached_nodes, spans, patched):
    c = make(*memcached_nodes)
    assert len(c.get_stats()) == 3
    c.flush_all()
    for span in spans.memcached():
        assert span.get_tag("out.host") is None and span.get_metric("network.destination.port") is None
        assert span.get_metric("memcached.servers") == 3
    assert [s.resource for s in spans.memcached()] == ["stats", "flush_all"]


# --- row counts ----------------------------------------------------------------------


def test_get_row_counts_stored_none_falsy_defaults_and_gets(memcached, spans, patched):
    c = make(memcached)
    sentinel = object()
    for key, value in [("none", None), ("zero", 0), ("empty", b""), ("false", False)]:
        c.set(key, value)
    spans.spans.clear()
    assert c.get("none") is None
    assert c.get("none", sentinel) is None  # stored None: not the default
    assert c.get("zero") == 0 and c.get("empty") == b"" and c.get("false") is False
    assert c.get("missing", sentinel) is sentinel
    assert c.get("missing") is None
    assert c.gets("zero") == 0 and c.gets("missing") is None
    counts = [s.get_metric("db.row_count") for s in spans.memcached()]
    assert counts == [1, 1, 1, 1, 1, 0, 0, 1, 0]
    assert c.get_multi(["none", "zero", "missing"]) == {"none": None, "zero": 0}
    assert spans.memcached()[-1].get_metric("db.row_count") == 2


def test_dead_server_get_counts_no_row(dead_address, spans, patched):
    c = make(dead_address)
    assert c.get("k", "default") is None  # python-memcached's own answer: None, not the default
    span = spans.memcached()[0]
    assert span.get_metric("db.row_count") == 0 and span.error == 1


# --- hosts across several servers ------------------------------------------------------


def test_multi_key_commands_name_a_host_only_when_one_server_is_used(memcached_nodes, spans, patched):
    c = make(*memcached_nodes)
    keys = ["key-%d" % i for i in range(20)]
    assert c.set_multi({k: b"v" for k in keys}) == []
    by_server = {}
    for key in keys:
        by_server.setdefault(holder(memcached_nodes, key.encode()), []).append(key)
    assert len(by_server) > 1
    one_server, its_keys = next(iter(by_server.items()))
    spans.spans.clear()
    assert c.get_multi(keys) == {k: b"v" for k in keys}
    assert c.get_multi(its_keys) == {k: b"v" for k in its_keys}
    assert c.delete_multi(its_keys) == 1
    spread, single, deleted = spans.memcached()
    assert spread.resource == "get_many" and spread.get_tag("out.host") is None
    assert spread.get_metric("memcached.servers") == len(by_server)
    assert spread.get_metric("db.row_count") == len(keys)
    assert host_of(single) == one_server and single.get_metric("db.row_count") == len(its_keys)
    assert deleted.resource == "delete_many" and host_of(deleted) == one_server
    assert all(holder_has_none(memcached_nodes, k) for k in its_keys)


def holder_has_none(servers, key):
    with pytest.raises(AssertionError):
        holder(servers, key.encode())
    return True


def test_failover_span_names_the_live_server_and_is_an_error(memcached, dead_address, spans, patched):
    c = make(dead_address, memcached)
    results = [c.set("key-%d" % i, b"v") for i in range(10)]
    assert all(results)
    first_failure = [s for s in spans.memcached() if s.error]
    assert len(first_failure) == 1  # marked dead once; later keys fail over without I/O
    assert first_failure[0].get_tag("error.type") == MARKED_DEAD
    assert "127.0.0.1:%d marked dead" % dead_address[1] in first_failure[0].get_tag("error.message")
    for span in spans.memcached():
        assert host_of(span) == memcached  # every key ended on the live server
    spans.spans.clear()
    fresh = make(dead_address, memcached)  # new _Host objects: the dead one is tried again
    values = [fresh.get("key-%d" % i) for i in range(10)]
    assert values == [b"v"] * 10
    failed = [s for s in spans.memcached() if s.error]
    assert len(failed) == 1 and failed[0].get_metric("db.row_count") == 1  # served by the live server
    assert all(host_of(s) == memcached for s in spans.memcached())


# --- swallowed failures ---------------------------------------------------------------


def test_refused_then_marked_dead_same_results_and_error_spans(dead_address, spans):
    def calls(c):
        return [c.set("k", b"v"), c.get("k"), c.get_multi(["k"]), c.incr("k"), c.delete_multi(["k"])]

    expected, got = untraced_and_traced(lambda: calls(make(dead_address)))
    # delete_multi says 1 (done) for keys it never sent: python-memcached's own answer.
    assert got == expected == [0, None, {}, None, 1]
    assert len(spans.memcached()) == 5
    first, *later = spans.memcached()
    assert first.error == 1 and first.get_tag("error.type") == MARKED_DEAD
    assert "Connection refused" in first.get_tag("error.message")
    assert host_of(first) == dead_address
    for span in later:  # the server is marked dead: skipped, no I/O, still an error
        assert span.error == 1 and span.get_tag("error.type") == NO_LIVE_SERVER
    assert tracer.current_span() is None


def test_server_killed_mid_run(spans, patched):
    server = MemcachedProcess()
    c = make(server.address)
    try:
        assert c.set("k", b"v") is True
        assert c.get("k") == b"v"
        server.stop()
        assert c.get("k") is None
        assert c.set("k", b"v") == 0
    finally:
        server.stop()
    ok_set, ok_get, dead_get, dead_set = spans.memcached()
    assert ok_set.error == ok_get.error == 0
    assert dead_get.error == 1 and dead_get.get_tag("error.type") == MARKED_DEAD
    assert dead_get.get_metric("db.row_count") == 0
    assert dead_set.error == 1
    assert all(host_of(s) == server.address for s in spans.memcached())


def test_incr_after_the_server_died_raises_the_librarys_own_error(spans):
    def run():
        server = MemcachedProcess()
        try:
            c = make(server.address)
            c.set("n", 1)
            server.stop()
            try:
                c.incr("n")
            except Exception as exc:  # python-memcached's bug: int('') on the closed socket
                return type(exc), str(exc)
        finally:
            server.stop()

    expected, got = untraced_and_traced(run)
    assert got == expected and expected[0] is ValueError
    span = spans.memcached()[-1]
    assert span.resource == "incr" and span.error == 1
    assert span.get_tag("error.type") == "builtins.ValueError"
    assert tracer.current_span() is None


def test_timeout_is_an_error_span(silent_server, spans, patched):
    c = make(silent_server, socket_timeout=0.3)
    assert c.get("k") is None
    span = spans.memcached()[0]
    assert span.error == 1 and "timed out" in span.get_tag("error.message")
    assert host_of(span) == silent_server


def test_unix_socket_dead_server(tmp_path, spans, patched):
    c = make(str(tmp_path / "nothing.sock"))
    assert c.set("k", b"v") == 0
    span = spans.memcached()[0]
    assert span.error == 1 and span.get_tag("out.host") == str(tmp_path / "nothing.sock")


# --- keys -----------------------------------------------------------------------------


def test_bad_key_message_is_redacted_unless_keys_are_captured(memcached, spans, patched):
    c = make(memcached)
    with pytest.raises(memcache.Client.MemcachedKeyCharacterError) as raised:
        c.set("secret key", b"v")
    assert "secret key" in str(raised.value)
    span = spans.memcached()[0]
    assert "secret key" not in span.get_tag("error.message")
    assert "secret key" not in span.get_tag("error.stack")
    assert span.get_tag("error.message").endswith("(key=%s)" % REDACTED)


def test_bad_key_message_kept_with_key_capture(memcached, spans, patched, command_enabled):
    c = make(memcached)
    with pytest.raises(memcache.Client.MemcachedKeyCharacterError):
        c.get("secret key")
    span = spans.memcached()[0]
    assert "secret key" in span.get_tag("error.message")
    assert span.get_tag("memcached.query") == "get secret key"


def test_multi_key_queries_when_enabled_never_values(memcached, spans, patched, command_enabled):
    c = make(memcached)
    c.set_multi({"a": b"value-a", "b": b"value-b"})
    c.get_multi(["a", "b"])
    c.delete_multi(["a"])
    assert [s.get_tag("memcached.query") for s in spans.memcached()] == [
        "set_many a b",
        "get_many a b",
        "delete_many a",
    ]
    for span in spans.memcached():
        assert "value-" not in str(span.get_tags())


# --- threads: Client is a threading.local ----------------------------------------------


def test_override_and_pin_reach_spans_from_every_thread(memcached, spans, patched):
    overridden, pinned = make(memcached), make(memcached)
    ddtrace_memcached.override(overridden, service="sessions", tags={"team": "web"})
    Pin.override(pinned, service="pinned", tags={"pinned": "yes"})

    def work(i):
        assert overridden.set("t%d" % i, b"v") is True
        assert overridden.get("t%d" % i) == b"v"
        assert pinned.get_multi(["t%d" % i]) == {"t%d" % i: b"v"}

    run_threads(work, 4)
    found = spans.memcached()
    assert len(found) == 12
    for span in found:
        if span.resource == "get_many":
            assert span.service == "pinned" and span.get_tag("pinned") == "yes"
        else:
            assert span.service == "sessions" and span.get_tag("team") == "web"
        assert host_of(span) == memcached


def test_override_set_in_another_thread_applies_here(memcached, spans, patched):
    c = make(memcached)
    run_threads(lambda i: ddtrace_memcached.override(c, service="from-a-thread"), 1)
    c.set("k", b"v")
    assert [s.service for s in spans.memcached()] == ["from-a-thread"]


def test_dead_server_in_one_thread_is_an_error_there_only(memcached, dead_address, spans, patched):
    c = make(dead_address)
    run_threads(lambda i: c.set("k%d" % i, b"v"), 3)
    found = spans.memcached()
    assert len(found) == 3
    # _Host objects are per thread: each thread meets the refusal itself.
    assert all(s.error == 1 and s.get_tag("error.type") == MARKED_DEAD for s in found)


# --- stability ------------------------------------------------------------------------


def _loop(client, n):
    for i in range(n):
        key = "k%d" % (i % 50)
        client.set(key, b"v")
        client.get(key)
        client.get_multi([key, "missing"])
        if i % 10 == 0:
            try:
                client.set("bad key", b"v")
            except memcache.Client.MemcachedKeyError:
                pass


@pytest.mark.parametrize("n", [pytest.param(500, id="500"), pytest.param(20_000, id="20k", marks=pytest.mark.stress)])
def test_many_commands_no_leak_and_no_open_span(memcached, spans, patched, n):
    c = make(memcached)
    _loop(c, 50)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    _loop(c, n)
    spans.spans.clear()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    ours_grew = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if "ddtrace_memcached" in stat.traceback[0].filename
    )
    assert ours_grew < 64 * 1024, ours_grew
    assert tracer.current_span() is None


# --- security ---------------------------------------------------------------------------

SECRET = "s3cr7-value-of-the-app"


def test_no_value_in_any_tag_even_with_key_capture(memcached, spans, patched, command_enabled):
    c = make(memcached, cache_cas=True)
    c.set("k", SECRET)
    c.add("k2", SECRET.encode())
    c.replace("k", SECRET)
    c.append("k", SECRET)
    c.prepend("k", SECRET)
    c.gets("k")
    c.cas("k", SECRET)
    c.set_multi({"a": SECRET, "b": {"nested": SECRET}})
    c.get_multi(["a", "b", "k"])
    c.get("k")
    assert len(spans.memcached()) == 10
    for span in spans.memcached():
        assert SECRET not in str(span.get_tags()) + str(span.get_metrics())
        assert span.get_tag("memcached.query")


def test_override_before_patching_and_across_unpatch(memcached, spans):
    c = make(memcached)
    ddtrace_memcached.override(c, service="set-before-patch")  # an attribute of this thread
    ddtrace_memcached.patch()
    try:
        c.set("k", b"v")
        ddtrace_memcached.override(c, service="set-while-patched")
    finally:
        ddtrace_memcached.unpatch()
    ddtrace_memcached.patch()
    try:
        run_threads(lambda i: c.set("k", b"v"), 1)
    finally:
        ddtrace_memcached.unpatch()
    assert [s.service for s in spans.memcached()] == ["set-before-patch", "set-while-patched"]
