"""pylibmc's own behaviour under the integration, against real memcached servers.

The contract (``tests/test_contract.py``) covers what every client keeps (a server killed
then restarted, timeouts, patch/unpatch cycles among it); here: every command and the
mapping forms, the host of each key on three servers (asked of the servers themselves),
multi-key calls that libmemcached fans out in C, pylibmc's errors and faults, clones and
pools, threads (through a pool), stability, key redaction, and how ours shares pylibmc
with ddtrace's built-in integration.
"""

import pytest

pylibmc = pytest.importorskip("pylibmc")

import ddtrace  # noqa: E402
from ddtrace.trace import tracer  # noqa: E402

from adapters import holder  # noqa: E402
from adapters import spec  # noqa: E402
from adapters.pylibmc import BEHAVIORS  # noqa: E402
from apps import app  # noqa: E402
from apps import ddtrace_run  # noqa: E402
from apps import run_python  # noqa: E402
from apps import spans_of  # noqa: E402
import ddtrace_memcached  # noqa: E402
from ddtrace_memcached.clients import pylibmc as ours_pylibmc  # noqa: E402
from ddtrace_memcached.commands import REDACTED  # noqa: E402
from ddtrace_memcached.commands import redact  # noqa: E402
from helpers import Pin  # noqa: E402
from helpers import host_of  # noqa: E402
from helpers import run_threads  # noqa: E402
from helpers import untraced_and_traced  # noqa: E402

SECRET = b"s3cr7-value-0f-the-app"


def make(*addresses, **behaviors):
    return pylibmc.Client([spec(a) for a in addresses], behaviors=dict(BEHAVIORS, **behaviors))


@pytest.fixture
def client(memcached, patched):
    c = make(memcached, cas=True)
    yield c
    c.disconnect_all()


@pytest.fixture
def nodes_client(memcached_nodes, patched):
    c = make(*memcached_nodes)
    yield c
    c.disconnect_all()


def resources(spans):
    return [s.resource for s in spans.memcached()]


# --- every command: one span, its resource, its host, its result --------------------

# (method, args, expected result, resource): run after SETUP.
SETUP = {"k": b"v", "n": b"10", "empty": b"", "zero": 0}
COMMANDS = [
    ("set", ("k", b"w"), True, "set"),
    ("add", ("fresh", b"v"), True, "add"),
    ("replace", ("k", b"w"), True, "replace"),
    ("append", ("k", b"-tail"), True, "append"),
    ("prepend", ("k", b"head-"), True, "prepend"),
    ("get", ("k",), b"v", "get"),
    ("delete", ("k",), True, "delete"),
    ("incr", ("n", 5), 15, "incr"),
    ("decr", ("n", 3), 7, "decr"),
    ("touch", ("k", 60), True, "touch"),
    ("set_multi", ({"a": b"1", "b": b"2"},), [], "set_many"),
    ("add_multi", ({"k": b"x", "c": b"3"},), ["k"], "add_many"),
    ("get_multi", (["k", "empty", "missing"],), {"k": b"v", "empty": b""}, "get_many"),
    ("delete_multi", (["k", "missing"],), False, "delete_many"),
    ("incr_multi", (["n"],), None, "incr_many"),
]


@pytest.mark.parametrize("method,args,expected,resource", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_is_one_span(client, memcached, spans, method, args, expected, resource):
    client.set_multi(SETUP)
    spans.spans.clear()
    assert getattr(client, method)(*args) == expected
    (span,) = spans.memcached()
    assert span.resource == resource
    assert host_of(span) == memcached
    assert span.error == 0
    assert span.get_tag("memcached.query") is None


def test_gets_and_cas(client, memcached, spans):
    client.set("k", b"v")
    client.set("none", None)
    spans.spans.clear()
    value, token = client.gets("k")
    assert value == b"v"
    assert client.cas("k", b"w", token) is True
    assert client.gets("missing") == (None, None)
    assert client.gets("none")[0] is None
    assert resources(spans) == ["gets", "cas", "gets", "gets"]
    assert [s.get_metric("db.row_count") for s in spans.memcached()] == [1, None, 0, 1]
    assert all(host_of(s) == memcached for s in spans.memcached())


def test_get_row_count_with_falsy_values_defaults_and_stored_none(client, spans):
    client.set_multi({"empty": b"", "zero": 0, "none": None})
    spans.spans.clear()
    assert client.get("empty") == b""
    assert client.get("zero") == 0
    assert client.get("none", "default") is None  # a stored None is a hit
    assert client.get("missing") is None
    assert client.get("missing", "default") == "default"
    assert [s.get_metric("db.row_count") for s in spans.memcached()] == [1, 1, 1, 0, 0]


def test_get_with_a_default_keyword_raises_as_untraced(client, spans):
    """pylibmc's get takes no keywords: the same TypeError, and an error span. (Its message
    names ``client.get()`` or ``get()`` depending on how CPython calls the C method, as
    ``f = c.get; f(k, default=1)`` shows untraced.)"""
    with pytest.raises(TypeError, match="takes no keyword arguments"):
        client.get("k", default=1)
    (span,) = spans.memcached()
    assert span.error == 1 and span.finished and span.get_tag("error.type") == "builtins.TypeError"
    assert tracer.current_span() is None


def test_mapping_forms_are_one_span_of_their_command(client, memcached, spans):
    client["k"] = b"v"
    assert client["k"] == b"v"
    assert "k" in client
    assert "missing" not in client
    with pytest.raises(KeyError):
        client["missing"]
    del client["k"]
    with pytest.raises(KeyError):
        del client["k"]
    assert resources(spans) == ["set", "get", "get", "get", "get", "delete", "delete"]
    rows = [s.get_metric("db.row_count") for s in spans.memcached() if s.resource == "get"]
    assert rows == [1, 1, 0, 0]
    assert all(host_of(s) == memcached and s.error == 0 for s in spans.memcached())


def test_server_wide_commands(client, memcached, spans):
    stats = client.get_stats()
    assert stats and b"%s:%d" % (memcached[0].encode(), memcached[1]) in stats[0][0]
    assert client.get_stats("slabs") is not None
    assert client.flush_all() is True
    assert resources(spans) == ["stats", "stats", "flush_all"]
    assert all(host_of(s) == memcached for s in spans.memcached())


def test_traced_results_equal_untraced(memcached, spans):
    def script(c):
        out = []
        for method, args, _, _ in COMMANDS:
            c.flush_all()
            c.set_multi(SETUP)
            out.append(getattr(c, method)(*args))
        out.append(c.get_multi(["k", "a", "b", "c", "missing"]))
        return out

    untraced, traced = untraced_and_traced(lambda: script(make(memcached)))
    assert traced == untraced
    assert len(spans.memcached()) == 3 * len(COMMANDS) + 1


# --- the host: the server that holds the key -----------------------------------------

SINGLE_KEY_CALLS = [
    ("set", lambda c, k: c.set(k, b"v")),
    ("add", lambda c, k: c.add(k + "-new", b"v")),
    ("get", lambda c, k: c.get(k)),
    ("touch", lambda c, k: c.touch(k, 60)),
    ("delete", lambda c, k: c.delete(k)),
]


@pytest.mark.parametrize(
    "behaviors",
    [{}, {"ketama": True}, {"distribution": "consistent", "hash": "crc"}],
    ids=["modula", "ketama", "consistent-crc"],
)
def test_each_key_names_the_server_that_holds_it(memcached_nodes, spans, patched, behaviors):
    c = make(*memcached_nodes, **behaviors)
    keys = ["key-%d" % i for i in range(24)]
    for key in keys:
        c.set(key, b"v")
    used = set()
    for key in keys:
        expected = holder(memcached_nodes, key.encode())
        used.add(expected)
        for name, call in SINGLE_KEY_CALLS[1:]:
            spans.spans.clear()
            call(c, key)
            (span,) = spans.memcached()
            held = holder(memcached_nodes, (key + "-new").encode()) if name == "add" else expected
            assert host_of(span) == held, (name, key)
        c.set(key, b"v")
    assert len(used) == 3, "24 keys did not reach all 3 servers: the routing is not exercised"


@pytest.mark.parametrize(
    "behaviors",
    [{"ketama": True, "remove_failed": 1}, {"ketama": True, "auto_eject": True, "failure_limit": 1}],
    ids=["remove-failed", "auto-eject"],
)
def test_host_after_a_dead_server_is_ejected(memcached_nodes, dead_address, spans, patched, behaviors):
    """libmemcached moves the keys of a server it ejected: spans follow them."""
    servers = [*memcached_nodes[:2], dead_address]
    c = make(*servers, **behaviors)
    failed = stored = 0
    for i in range(30):
        key = "key-%d" % i
        spans.spans.clear()
        try:
            c.set(key, b"v")
        except pylibmc.Error:
            failed += 1
            (span,) = spans.memcached()
            assert span.error == 1 and host_of(span) == dead_address, key
            continue
        stored += 1
        (span,) = spans.memcached()
        assert host_of(span) == holder(memcached_nodes[:2], key.encode()), key
    assert failed and stored, (failed, stored)  # both paths were exercised


def test_multi_key_call_names_a_host_only_when_one_server_holds_every_key(nodes_client, memcached_nodes, spans):
    keys = ["key-%d" % i for i in range(30)]
    nodes_client.set_multi({k: b"v" for k in keys})
    by_server = {}
    for key in keys:
        by_server.setdefault(holder(memcached_nodes, key.encode()), []).append(key)
    assert len(by_server) == 3
    spans.spans.clear()
    for server, held in sorted(by_server.items()):
        assert nodes_client.get_multi(held) == {k: b"v" for k in held}
    assert nodes_client.get_multi(keys) == {k: b"v" for k in keys}
    two = [by_server[s][0] for s in sorted(by_server)[:2]]
    assert nodes_client.delete_multi(two) is True
    found = spans.memcached()
    assert [host_of(s) for s in found[:3]] == sorted(by_server)
    assert [s.get_metric("memcached.servers") for s in found[:3]] == [None] * 3
    for span in found[3:]:
        assert span.get_tag("out.host") is None and span.get_tag("server.address") is None
        assert span.get_metric("network.destination.port") is None
    assert [s.get_metric("memcached.servers") for s in found[3:]] == [3, 2]
    assert found[3].get_metric("db.row_count") == 30


def test_multi_key_prefix_is_hashed_with_the_key(nodes_client, memcached_nodes, spans):
    nodes_client.set_multi({"a": b"1"}, key_prefix="p:")
    nodes_client.set_multi({"a": b"1"}, 0, "p:")
    assert nodes_client.get_multi(["a"], key_prefix="p:") == {"a": b"1"}
    where = holder(memcached_nodes, b"p:a")
    assert [host_of(s) for s in spans.memcached()] == [where] * 3


def test_server_wide_commands_on_three_servers(nodes_client, spans):
    assert len(nodes_client.get_stats()) == 3
    assert nodes_client.flush_all() is True
    for span in spans.memcached():
        assert span.get_tag("out.host") is None
        assert span.get_metric("memcached.servers") == 3


def test_unix_socket_and_tuple_specs(memcached_unix, memcached, spans, patched):
    c = pylibmc.Client([memcached_unix])
    assert c.set("k", b"v") is True
    t = pylibmc.Client([(pylibmc.server_type_tcp, memcached[0], memcached[1])])
    assert t.set("k", b"v") is True
    unix, tcp = spans.memcached()
    assert unix.get_tag("out.host") == memcached_unix and unix.get_metric("network.destination.port") is None
    assert host_of(tcp) == memcached


# --- errors and faults ----------------------------------------------------------------


def error_span(spans, resource):
    found = [s for s in spans.memcached() if s.resource == resource]
    assert len(found) == 1, [s.resource for s in spans.memcached()]
    span = found[0]
    assert span.finished and span.error == 1
    assert tracer.current_span() is None
    return span


def test_not_found_from_incr_is_a_miss_not_an_error(client, memcached, spans):
    """pylibmc raises ``NotFound`` for incr/decr of a missing counter and cas of a missing
    key: the app gets it unchanged; the span says NOT_FOUND and is no error."""
    client.behaviors = {"cas": True}
    for call in (
        lambda: client.incr("missing"),
        lambda: client.decr("missing"),
        lambda: client.cas("missing", b"v", 1),
    ):
        with pytest.raises(pylibmc.NotFound):
            call()
    found = [(s.resource, s.error, s.get_tag("db.response.status_code")) for s in spans.memcached()]
    assert found == [("incr", 0, "NOT_FOUND"), ("decr", 0, "NOT_FOUND"), ("cas", 0, "NOT_FOUND")]
    assert all(host_of(s) == memcached and s.get_tag("error.type") is None for s in spans.memcached())


def test_dead_server_error_redacts_the_quoted_key(dead_address, spans, patched):
    c = make(dead_address)
    with pytest.raises(pylibmc.ConnectionError) as raised:
        c.get("the-key-of-the-app")
    assert "the-key-of-the-app" in str(raised.value)  # what the app sees is untouched
    span = error_span(spans, "get")
    # libmemcached 1.0 says ": CONNECTION FAILURE"; 1.1 adds a pointer, the host and its source line.
    assert span.get_tag("error.message") == str(raised.value).replace("the-key-of-the-app", REDACTED)
    assert span.get_tag("error.message").startswith("error 3 from memcached_get(%s): " % REDACTED)
    assert "the-key-of-the-app" not in span.get_tag("error.stack")
    assert host_of(span) == dead_address


def test_quoted_key_kept_when_key_capture_is_on(dead_address, spans, patched, command_enabled):
    with pytest.raises(pylibmc.ConnectionError) as raised:
        make(dead_address).delete("the-key-of-the-app")
    span = error_span(spans, "delete")
    assert span.get_tag("error.message") == str(raised.value)
    assert span.get_tag("memcached.query") == "delete the-key-of-the-app"


@pytest.mark.parametrize(
    "message,redacted",
    [
        ("error 3 from memcached_get(k): CONNECTION FAILURE", "error 3 from memcached_get(R): CONNECTION FAILURE"),
        ("error 16 from memcached_cas(missing)", "error 16 from memcached_cas(R)"),
        ("error 9 from memcached_delete(a): b): CLIENT ERROR", "error 9 from memcached_delete(R): CLIENT ERROR"),
        ("error 5 from memcached_touch(k): WRITE FAILURE (x)", "error 5 from memcached_touch(R): WRITE FAILURE (x)"),
        ("error 3 from memcached_set: CONNECTION FAILURE", "error 3 from memcached_set: CONNECTION FAILURE"),
        ("1 keys not found", "1 keys not found"),
    ],
)
def test_redact_key(message, redacted):
    """pylibmc's messages quote the key after the function's name: only that is redacted."""
    library = ours_pylibmc.LIBRARY
    assert redact(message, library.key_quote, keys_enabled=False) == redacted.replace("(R)", "(%s)" % REDACTED)


# libmemcached 1.0 (pylibmc's wheels) and 1.1 (built from source, e.g. Debian's) differ in
# their messages and in one fault: a timed-out get.
LIBMEMCACHED_1_0 = pylibmc.libmemcached_version.startswith("1.0.")


def test_timeout_on_a_silent_server(silent_server, spans, patched):
    c = make(silent_server, connect_timeout=200, _poll_timeout=200)
    with pytest.raises(pylibmc.Error) as raised:
        c.set("k", b"v")
    assert "TIMEOUT" in str(raised.value)
    span = error_span(spans, "set")
    assert host_of(span) == silent_server
    spans.spans.clear()
    fresh = make(silent_server, connect_timeout=200, _poll_timeout=200)
    if LIBMEMCACHED_1_0:
        # libmemcached 1.0 reports a timed-out get as a miss: pylibmc returns the default,
        # and no error reaches Python for the span to record (documented).
        assert fresh.get("k") is None
        (miss,) = spans.memcached()
        assert miss.error == 0 and miss.get_metric("db.row_count") == 0
    else:
        with pytest.raises(pylibmc.Error) as raised:
            fresh.get("the-key-of-the-app")
        assert "TIMEOUT" in str(raised.value)
        span = error_span(spans, "get")
        assert span.get_tag("error.message") == str(raised.value).replace("the-key-of-the-app", REDACTED)


def test_value_too_large(client, spans):
    with pytest.raises(pylibmc.TooBig) as raised:
        client.set("big", b"x" * (2 * 1024 * 1024))
    span = error_span(spans, "set")
    assert span.get_tag("error.type") == "pylibmc.TooBig"
    assert raised.value.__traceback__ is not None


@pytest.mark.parametrize("key", ["k" * 251, 5], ids=["too-long", "not-a-string"])
def test_key_refused_before_sending(client, memcached, spans, key):
    ddtrace_memcached.unpatch()
    try:
        make(memcached).set(key, b"v")
    except Exception as exc:
        expected = (type(exc), str(exc))
    ddtrace_memcached.patch()
    with pytest.raises(Exception) as raised:
        client.set(key, b"v")
    assert (type(raised.value), str(raised.value)) == expected
    span = error_span(spans, "set")
    assert span.get_tag("out.host") == memcached[0]


def test_key_with_a_space_is_a_client_error(client, spans):
    with pytest.raises(pylibmc.ClientError) as raised:
        client.delete("bad key")
    span = error_span(spans, "delete")
    assert "bad key" not in span.get_tag("error.message")
    assert span.get_tag("error.message") == str(raised.value).replace("bad key", REDACTED)
    assert "(bad key)" in str(raised.value)


# --- clients: clones, pools, subclasses -------------------------------------------------


def test_clone_is_traced_and_keeps_overrides(memcached, spans, patched):
    c = make(memcached)
    ddtrace_memcached.override(c, service="sessions", tags={"team": "web"})
    clone = c.clone()
    assert type(clone) is pylibmc.Client
    clone.set("k", b"v")
    (span,) = spans.memcached()
    assert span.service == "sessions" and span.get_tag("team") == "web"
    assert host_of(span) == memcached


def test_subclass_override_of_a_command_is_one_span(memcached, spans, patched):
    class AppClient(pylibmc.Client):
        def get(self, key, default=None):
            return super().get("app:" + key, default)

    c = AppClient([spec(memcached)])
    c.set("app:k", b"v")
    assert c.get("k") == b"v" and c["k"] == b"v"
    assert resources(spans) == ["set", "get", "get"]
    assert isinstance(c.clone(), AppClient)


@pytest.mark.parametrize("pool_kind", ["ClientPool", "ThreadMappedPool"])
def test_pool_clients_are_traced_and_pool_overrides_cover_them(memcached, spans, patched, pool_kind):
    master = make(memcached)
    if pool_kind == "ClientPool":
        pool = pylibmc.ClientPool(master, 2)
    else:
        pool = pylibmc.ThreadMappedPool(master)
    ddtrace_memcached.override(pool, service="pooled", tags={"pool": pool_kind})
    with pool.reserve() as mc:
        assert isinstance(mc, pylibmc.Client)
        mc.set("k", b"v")
        ddtrace_memcached.override(mc, service="own")  # the most specific wins
        assert mc.get("k") == b"v"
        del vars(mc)["_ddtrace_memcached_override"]
    with pool.reserve() as mc:
        pass
    mc.get("k")  # outside the reservation: the pool's override does not apply
    first, second, outside = spans.memcached()
    assert (first.service, first.get_tag("pool")) == ("pooled", pool_kind)
    assert (second.service, second.get_tag("pool")) == ("own", pool_kind)
    assert (outside.service, outside.get_tag("pool")) == ("memcached", None)


def test_pool_pin_and_exception_in_the_block(memcached, spans, patched):
    pool = pylibmc.ClientPool(make(memcached), 1)
    Pin.override(pool, service="pinned-pool")
    error = RuntimeError("app")
    with pytest.raises(RuntimeError) as raised:
        with pool.reserve() as mc:
            mc.set("k", b"v")
            raise error
    assert raised.value is error
    assert pool.qsize() == 1  # the client went back
    with pool.reserve() as mc:
        mc.get("k")
    assert [s.service for s in spans.memcached()] == ["pinned-pool", "pinned-pool"]


def test_threads_with_a_thread_mapped_pool(memcached, spans, patched):
    pool = pylibmc.ThreadMappedPool(make(memcached))

    def work(n):
        try:
            with tracer.trace("thread.%d" % n) as parent:
                for i in range(20):
                    with pool.reserve() as mc:
                        mc.set("t%d-%d" % (n, i), b"v")
                        assert mc.get("t%d-%d" % (n, i)) == b"v"
            return parent
        finally:
            pool.relinquish()

    parents = run_threads(work, 4)
    found = spans.memcached()
    assert len(found) == 4 * 40
    for n, parent in parents.items():
        children = [s for s in found if s.parent_id == parent.span_id]
        assert len(children) == 40 and all(s.trace_id == parent.trace_id for s in children)


# --- patching ---------------------------------------------------------------------------


def test_disabled_tracer_same_results_no_spans(client, spans):
    tracer.enabled = False
    try:
        assert client.set("k", b"v") is True
        assert client["k"] == b"v"
        assert client.get_multi(["k", "missing"]) == {"k": b"v"}
    finally:
        tracer.enabled = True
    assert spans.memcached() == []


# --- security --------------------------------------------------------------------------


def test_no_value_and_no_key_in_any_tag(nodes_client, spans):
    key = "the-key-of-the-app"
    nodes_client.set(key, SECRET)
    nodes_client[key] = SECRET
    nodes_client.get(key)
    nodes_client.set_multi({key: SECRET, "other": SECRET})
    nodes_client.get_multi([key, "other"])
    nodes_client.add_multi({key: SECRET})
    assert len(spans.memcached()) == 6
    for span in spans.memcached():
        text = " ".join("%s=%s" % kv for kv in span.get_tags().items())
        assert SECRET.decode() not in text and key not in text


def test_keys_in_query_only_when_enabled_never_values(client, spans, command_enabled):
    client.set("k1", SECRET)
    client.set_multi({"k2": SECRET, "k3": SECRET})
    client.get_multi(["k1", "k2"], key_prefix="")
    client.get_multi(["1", "2"], "p:")
    client.set_multi(keys={"1": SECRET}, key_prefix=b"p:")
    client.delete_multi(["1"], key_prefix="p:")
    client.get_stats("slabs")
    queries = [s.get_tag("memcached.query") for s in spans.memcached()]
    assert queries == [
        "set k1",
        "set_many k2 k3",
        "get_many k1 k2",
        "get_many p:1 p:2",
        "set_many p:1",
        "delete_many p:1",
        "stats slabs",
    ]
    for span in spans.memcached():
        assert SECRET.decode() not in " ".join("%s=%s" % kv for kv in span.get_tags().items())


# --- stability ---------------------------------------------------------------------------

STABILITY = """
import gc
from ddtrace.trace import Span
import pylibmc
import ddtrace_memcached

ddtrace_memcached.patch()
c = pylibmc.Client(["%s:%d" % ADDRESS])
c.set("text", b"not a number")
errors = misses = 0
for i in range(N):
    c.set("k%d" % (i % 50), b"v")
    c.get("k%d" % (i % 50))
    try:
        c.incr("text")
    except pylibmc.ClientError:
        errors += 1
    try:
        c.incr("missing")
    except pylibmc.NotFound:
        misses += 1
_tracer.flush()
assert errors == misses == N
recorded = len(_Keep.spans) - 1
unfinished = sum(1 for s in _Keep.spans if s.duration is None)
failed = sum(s.error for s in _Keep.spans)
not_found = sum(1 for s in _Keep.spans if s.get_tag("db.response.status_code") == "NOT_FOUND")
del _Keep.spans[:]
gc.collect()
alive = sum(1 for o in gc.get_objects() if isinstance(o, Span))
print("@@ALIVE", alive, recorded, unfinished, failed, not_found)
"""


def _stability(memcached, n):
    proc = run_python(app(["N = %d" % n, STABILITY], memcached), timeout=600)
    spans = spans_of(proc)
    assert spans == []  # the app dropped them itself after counting
    line = next(line for line in proc.stdout.splitlines() if line.startswith("@@ALIVE"))
    alive, recorded, unfinished, failed, not_found = map(int, line.split()[1:])
    assert (recorded, unfinished, failed, not_found) == (4 * n, 0, n, n)
    assert alive == 0  # once the app dropped its recorded spans, nothing holds one


def test_stability_short(memcached):
    _stability(memcached, 2000)


@pytest.mark.stress
def test_stability_long(memcached):
    _stability(memcached, 50000)


# --- ddtrace's built-in pylibmc integration --------------------------------------------

COMMANDS_APP = """
import pylibmc

c = pylibmc.Client(["%s:%d" % ADDRESS])
c.set("a", b"1")
assert c.get("a") == b"1"
assert c["a"] == b"1"
assert c.get_multi(["a", "missing"]) == {"a": b"1"}
"""
COMMANDS_RESOURCES = ["set", "get", "get", "get_many"]

REAL_CLASS = """
import pylibmc.client
assert pylibmc.Client is pylibmc.client.Client, pylibmc.Client
"""


# ddtrace 3.x's built-in pylibmc integration makes no span at all: its TracedClient's Pin
# gets tracer=None, and Pin.enabled() is then False.
BUILTIN_MAKES_SPANS = int(ddtrace.__version__.split(".")[0]) >= 4


def builtin(*resources):
    return [(r, "pylibmc") for r in resources] if BUILTIN_MAKES_SPANS else []


def commands_of(spans):
    return [(s["resource"], s["component"]) for s in spans]


def assert_ours(spans, resources):
    assert commands_of(spans) == [(r, "memcached") for r in resources], commands_of(spans)
    for span in spans:
        assert span["name"] == "memcached.command" and span["error"] == 0
        assert span["tags"]["out.host"] == "127.0.0.1"


def test_ddtrace_run_defaults_one_span_ours(memcached):
    spans = spans_of(run_python(app([COMMANDS_APP, REAL_CLASS], memcached), argv_prefix=ddtrace_run()))
    assert_ours(spans, COMMANDS_RESOURCES)


def test_ddtrace_run_clients_left_to_the_builtin(memcached):
    proc = run_python(
        app(COMMANDS_APP, memcached), argv_prefix=ddtrace_run(), env={"DD_TRACE_MEMCACHED_CLIENTS": "pymemcache"}
    )
    # The built-in misses c[key].
    assert commands_of(spans_of(proc)) == builtin("set", "get", "get_multi")


@pytest.mark.parametrize("order", ["builtin-first", "ours-first", "both-at-once"])
def test_patch_orders_one_span_ours(memcached, order):
    body = {
        "builtin-first": "import ddtrace\nddtrace.patch(pylibmc=True)\nddtrace.patch(memcached=True)",
        "ours-first": "import ddtrace\nddtrace.patch(memcached=True)\nddtrace.patch(pylibmc=True)",
        "both-at-once": "import ddtrace\nddtrace.patch(pylibmc=True, memcached=True)",
    }[order]
    spans = spans_of(run_python(app(["import pylibmc", body, COMMANDS_APP, REAL_CLASS], memcached)))
    assert_ours(spans, COMMANDS_RESOURCES)


def test_builtin_proxies_forward_untraced_and_unpatch_restores_the_builtin(memcached):
    body = """
    import pylibmc
    import ddtrace
    from ddtrace.contrib.internal.pylibmc import client as builtin_client
    from ddtrace.contrib.internal.pylibmc import patch as builtin_module

    ddtrace.patch(pylibmc=True)
    early = pylibmc.Client(["%s:%d" % ADDRESS])
    assert type(early) is builtin_client.TracedClient
    pool = pylibmc.ClientPool(early, 1)

    def state():
        return dict(
            datadog_patch=getattr(pylibmc, "_datadog_patch", None),
            client=pylibmc.Client,
            module_patch=builtin_module.patch,
            span=vars(builtin_client.TracedClient)["_span"],
        )

    before = state()
    import ddtrace_memcached

    ddtrace_memcached.patch()
    assert pylibmc.Client is pylibmc.client.Client
    early.set("k", b"v")
    assert early["k"] == b"v"
    assert type(early.clone()) is builtin_client.TracedClient
    with pool.reserve() as mc:
        mc.get("k")
    ddtrace_memcached.unpatch()

    after = state()
    changed = [name for name in before if after[name] is not before[name]]
    assert not changed, changed
    early.get("k")
    pylibmc.Client(["%s:%d" % ADDRESS]).get("k")
    """
    spans = spans_of(run_python(app(body, memcached)))
    expected = [("set", "memcached"), ("get", "memcached"), ("get", "memcached")]
    assert commands_of(spans) == expected + builtin("get", "get")
