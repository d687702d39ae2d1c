"""python-binary-memcached (``bmemcached``): what the contract suite does not cover.

One span per ``Protocol`` round trip, named after the command the app called: every
command of ``ReplicatingClient`` (one span per replica) and ``DistributedClient`` (the
node of each key); row counts (a stored None is a hit); failures it swallows (refused,
retry delay, timeouts, a dead replica; a server killed mid-run is the contract's);
server-side errors re-raised as they are; SASL (a traced authenticated client, bad
credentials); overrides and Pin from other threads (``Protocol`` is a
``threading.local``); stability.
"""

import glob
import os
import shutil
import socket
import subprocess

import pytest

bmemcached = pytest.importorskip("bmemcached")

from bmemcached.exceptions import MemcachedException  # noqa: E402
from ddtrace.trace import tracer  # noqa: E402

from adapters import holder  # noqa: E402
from adapters import spec  # noqa: E402
import ddtrace_memcached  # noqa: E402
from ddtrace_memcached.clients.bmemcached import VERSION  # noqa: E402
from helpers import Pin  # noqa: E402
from helpers import host_of  # noqa: E402
from helpers import run_threads  # noqa: E402
from helpers import untraced_and_traced  # noqa: E402
from servers import free_port  # noqa: E402
from servers import wait_until_serving  # noqa: E402


def make(*addresses, cls=None, **options):
    options.setdefault("socket_timeout", 2)
    return (cls or bmemcached.Client)([spec(a) for a in addresses], **options)


# --- every command -------------------------------------------------------------------

CALLS = [
    ("set", lambda c: c.set("k", b"v"), True),
    ("add", lambda c: c.add("new", b"v"), True),
    ("replace", lambda c: c.replace("k", b"w"), True),
    ("get", lambda c: c.get("k"), b"v"),
    ("gets", lambda c: c.gets("k")[0], b"v"),
    ("cas", lambda c: c.cas("k", b"x", c.gets("k")[1]), True),
    ("get_many", lambda c: c.get_multi(["k", "missing"]), {"k": b"v"}),
    ("set_many", lambda c: c.set_multi({"a": b"1", "b": b"2"}), []),
    ("delete", lambda c: c.delete("k"), True),
    ("delete_many", lambda c: c.delete_multi(["k", "n"]), True),
    ("incr", lambda c: c.incr("n", 2), 3),
    ("decr", lambda c: c.decr("n", 1), 0),
    ("flush_all", lambda c: c.flush_all(), True),
    ("stats", lambda c: sorted(c.stats()), None),
]


@pytest.mark.parametrize("resource,call,expected", CALLS, ids=[c[0] for c in CALLS])
def test_each_command_is_one_span_on_its_server(memcached, spans, patched, resource, call, expected):
    c = make(memcached)
    c.set("k", b"v")
    c.set("n", 1)
    spans.spans.clear()
    result = call(c)
    if expected is not None:
        assert result == expected
    found = [s for s in spans.memcached() if s.resource == resource]
    assert len(found) == 1, [s.resource for s in spans.memcached()]
    assert host_of(found[0]) == memcached and found[0].error == 0


@pytest.mark.skipif(VERSION < (0, 32), reason="set_multi_cas and get_cas= are new in bmemcached 0.32")
def test_cas_variants_since_0_32(memcached, spans, patched):
    c = make(memcached)
    ok, cas = c.set("k", b"v", get_cas=True)
    assert ok is True and cas
    assert c.get("k", get_cas=True) == (b"v", cas)
    assert set(c.set_multi_cas({"a": b"1"})) == {"a"}
    assert [s.resource for s in spans.memcached()] == ["set", "get", "set_multi_cas"]
    assert spans.memcached()[1].get_metric("db.row_count") == 1


def test_row_counts_stored_none_and_falsy(memcached, spans, patched):
    c = make(memcached)
    for key, value in [("none", None), ("zero", 0), ("empty", b"")]:
        c.set(key, value)
    spans.spans.clear()
    assert c.get("none") is None and c.get("zero") == 0 and c.get("empty") == b""
    assert c.get("missing", "default") == "default"
    assert c.gets("missing") == (None, None)
    assert c.get_multi(["zero", "empty", "missing"]) == {"zero": 0, "empty": b""}
    counts = [s.get_metric("db.row_count") for s in spans.memcached()]
    assert counts == [1, 1, 1, 0, 0, 2]


# --- several servers ----------------------------------------------------------------


def test_replicating_client_one_span_per_replica(memcached_nodes, spans, patched):
    c = make(*memcached_nodes)
    assert c.set("k", b"v") is True
    assert c.get("k") == b"v"
    assert c.get("missing") is None
    sets = [s for s in spans.memcached() if s.resource == "set"]
    gets = [s for s in spans.memcached() if s.resource == "get"]
    assert sorted(host_of(s) for s in sets) == sorted(memcached_nodes)
    # A hit is served by the first replica; a miss asks every one.
    assert [host_of(s) for s in gets] == [memcached_nodes[0]] + list(memcached_nodes)
    assert [s.get_metric("db.row_count") for s in gets] == [1, 0, 0, 0]


def test_distributed_client_spans_name_each_keys_node(memcached_nodes, spans, patched, command_enabled):
    c = make(*memcached_nodes, cls=bmemcached.DistributedClient)
    keys = ["key-%d" % i for i in range(20)]
    assert c.set_multi({k: b"v" for k in keys}) == []
    holders = {k: holder(memcached_nodes, k.encode()) for k in keys}
    spans.spans.clear()
    assert c.get_multi(keys) == {k: b"v" for k in keys}
    assert c.delete_multi(keys) is True
    for resource in ("get_many", "delete_many"):
        found = [s for s in spans.memcached() if s.resource == resource]
        assert len(found) > 1
        sent = []
        for span in found:  # each node's span lists the keys sent to it, and they are all there
            span_keys = span.get_tag("memcached.query").split()[1:]
            assert {holders[k] for k in span_keys} == {host_of(span)}
            sent += span_keys
        assert sorted(sent) == sorted(keys)
    gets = [s for s in spans.memcached() if s.resource == "get_many"]
    assert sum(s.get_metric("db.row_count") for s in gets) == len(keys)


def test_distributed_get_names_the_holder(memcached_nodes, spans, patched):
    c = make(*memcached_nodes, cls=bmemcached.DistributedClient)
    for i in range(10):
        c.set("key-%d" % i, b"v")
    for i, span in enumerate(spans.memcached()):
        assert host_of(span) == holder(memcached_nodes, ("key-%d" % i).encode())


def test_a_dead_replica_shows_on_its_own_span(memcached, dead_address, spans, patched):
    c = make(dead_address, memcached)
    assert c.set("k", b"v") is True  # any() of the replicas
    assert c.get("k") == b"v"
    dead_set, live_set = [s for s in spans.memcached() if s.resource == "set"]
    assert host_of(dead_set) == dead_address and dead_set.error == 1
    assert dead_set.get_tag("error.type") == "ConnectionRefusedError"
    assert host_of(live_set) == memcached and live_set.error == 0
    dead_get, live_get = [s for s in spans.memcached() if s.resource == "get"]
    assert dead_get.error == 1 and "Delaying reconnection attempt" in dead_get.get_tag("error.message")
    assert live_get.error == 0 and live_get.get_metric("db.row_count") == 1


# --- swallowed failures and errors ------------------------------------------------------


def test_dead_server_same_results_and_error_spans(dead_address, spans):
    def calls(c):
        return [c.set("k", b"v"), c.get("k", "d"), c.incr("n", 1), c.get_multi(["k"]), c.set_multi({"k": b"1"})]

    expected, got = untraced_and_traced(lambda: calls(make(dead_address)))
    assert got == expected == [False, "d", 0, {}, ["k"]]
    assert len(spans.memcached()) == 5 and all(s.error == 1 for s in spans.memcached())
    assert tracer.current_span() is None


def test_timeout_is_an_error_span(silent_server, spans, patched):
    c = make(silent_server, socket_timeout=0.3)
    assert c.get("k") is None
    span = spans.memcached()[0]
    assert span.error == 1 and span.get_tag("error.message") == "timed out"


def test_server_error_is_reraised_as_it_is(memcached, spans, patched):
    c = make(memcached)
    c.set("text", "abc")
    with pytest.raises(MemcachedException) as raised:
        c.incr("text", 1)
    span = spans.memcached()[-1]
    assert span.error == 1 and span.get_tag("error.type") == "bmemcached.exceptions.MemcachedException"
    assert span.get_tag("error.message") == str(raised.value)
    with pytest.raises(MemcachedException):
        c.set("x" * 300, b"v")  # refused by the server; it also closes the socket
    assert c.get("k") is None  # bmemcached then fails once, silently
    assert spans.memcached()[-1].error == 1
    assert tracer.current_span() is None


def test_keys_only_when_enabled(memcached, spans, patched, command_enabled):
    c = make(memcached)
    c.set("the-key", b"the-value")
    c.gets("the-key")
    c.get_multi(["the-key", "other"])
    assert [s.get_tag("memcached.query") for s in spans.memcached()] == [
        "set the-key",
        "gets the-key",
        "get_many the-key other",
    ]
    assert "the-value" not in str([s.get_tags() for s in spans.memcached()])


# --- SASL ------------------------------------------------------------------------------

SASL_USER, SASL_PASSWORD = "app", "s3cret-pw"
SASL_PLUGIN_DIRS = ("/usr/lib/*/sasl2", "/usr/lib/sasl2", "/usr/lib64/sasl2")  # where libsasl2-modules puts PLAIN


@pytest.fixture(scope="module")
def sasl_memcached(tmp_path_factory):
    """A memcached that requires SASL PLAIN (``-S``); needs ``sasl2-bin`` (saslpasswd2)."""
    saslpasswd2 = shutil.which("saslpasswd2") or (
        "/usr/sbin/saslpasswd2" if os.path.exists("/usr/sbin/saslpasswd2") else None
    )
    binary = shutil.which("memcached")
    plain = [p for where in SASL_PLUGIN_DIRS for p in glob.glob(where + "/libplain*")]
    if saslpasswd2 is None or binary is None or not plain:
        pytest.skip("SASL needs memcached, saslpasswd2 and PLAIN: apt-get install -y sasl2-bin libsasl2-modules")
    conf = tmp_path_factory.mktemp("sasl")
    db = conf / "sasldb2"
    subprocess.run(
        [saslpasswd2, "-p", "-a", "memcached", "-c", "-f", str(db), SASL_USER],
        input=SASL_PASSWORD.encode(),
        check=True,
    )
    (conf / "memcached.conf").write_text("mech_list: plain\nsasldb_path: %s\n" % db)
    port = free_port()
    cmd = [binary, "-S", "-U", "0", "-l", "127.0.0.1", "-p", str(port)]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    process = subprocess.Popen(
        cmd, env=dict(os.environ, SASL_CONF_PATH=str(conf)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until_serving(lambda: socket.create_connection(("127.0.0.1", port), timeout=1), "memcached -S", process)
    yield ("127.0.0.1", port)
    process.kill()
    process.wait()


def test_sasl_authenticated_client_is_traced(sasl_memcached, spans, patched):
    c = make(sasl_memcached, username=SASL_USER, password=SASL_PASSWORD)
    assert c.set("k", b"v") is True
    assert c.get("k") == b"v"
    found = spans.memcached()
    assert [s.resource for s in found] == ["set", "get"]
    assert all(host_of(s) == sasl_memcached and s.error == 0 for s in found)
    assert SASL_PASSWORD not in str([s.get_tags() for s in found])


def test_sasl_bad_credentials_same_error_and_an_error_span(sasl_memcached, spans):
    def attempt():
        try:
            make(sasl_memcached, username=SASL_USER, password="wrong").set("k", b"v")
        except Exception as exc:
            return exc
        return None

    expected, got = untraced_and_traced(attempt)
    assert isinstance(expected, MemcachedException)
    assert (type(got), str(got), got.code) == (type(expected), str(expected), expected.code)
    span = spans.memcached()[0]
    assert span.resource == "set" and span.error == 1
    assert span.get_tag("error.type") == "bmemcached.exceptions.MemcachedException"
    assert "wrong" not in str(span.get_tags())


# --- threads: Protocol is a threading.local ------------------------------------------------


@pytest.mark.parametrize("cls", ["ReplicatingClient", "DistributedClient"])
def test_override_and_pin_reach_spans_from_every_thread(memcached, spans, patched, cls):
    overridden = make(memcached, cls=getattr(bmemcached, cls))
    pinned = make(memcached, cls=getattr(bmemcached, cls))
    ddtrace_memcached.override(overridden, service="sessions", tags={"team": "web"})
    Pin.override(pinned, service="pinned", tags={"pinned": "yes"})

    def work(i):
        assert overridden.set("t%d" % i, b"v") is True
        assert pinned.get("t%d" % i) == b"v"

    run_threads(work, 4)
    found = spans.memcached()
    assert len(found) == 8
    for span in found:
        if span.resource == "get":
            assert span.service == "pinned" and span.get_tag("pinned") == "yes"
        else:
            assert span.service == "sessions" and span.get_tag("team") == "web"


def test_override_and_pin_on_a_protocol_are_seen_from_other_threads(memcached, spans, patched):
    c = make(memcached)
    ddtrace_memcached.override(next(c.servers), service="one-server")
    run_threads(lambda i: c.set("k%d" % i, b"v"), 2)
    pinned = make(memcached)
    Pin.override(next(pinned.servers), tags={"pinned": "yes"})
    run_threads(lambda i: pinned.get("k%d" % i), 2)
    assert [s.service for s in spans.memcached()] == ["one-server", "one-server", "memcached", "memcached"]
    assert [s.get_tag("pinned") for s in spans.memcached()] == [None, None, "yes", "yes"]


# --- clients ---------------------------------------------------------------------------


def test_subclass_overriding_a_command_makes_one_span_named_after_it(memcached, spans, patched):
    class AppClient(bmemcached.DistributedClient):
        def get(self, key, default=None, get_cas=False):
            return super().get("app:" + key, default, get_cas)

    c = AppClient([spec(memcached)])
    assert isinstance(c, bmemcached.DistributedClient)
    c.set("app:k", b"v")
    assert c.get("k") == b"v"
    assert [s.resource for s in spans.memcached()] == ["set", "get"]


@pytest.mark.parametrize("n", [pytest.param(300, id="300"), pytest.param(10_000, id="10k", marks=pytest.mark.stress)])
def test_many_commands_then_unpatch_restores_bmemcached(memcached, spans, n):
    protocol = bmemcached.protocol.Protocol
    original = {name: vars(protocol)[name] for name in ("get", "set", "_connection_error")}
    ddtrace_memcached.patch()
    try:
        c = make(memcached)
        for i in range(n):
            c.set("k%d" % (i % 20), b"v")
            c.get_multi(["k%d" % (i % 20), "missing"])
    finally:
        ddtrace_memcached.unpatch()
    assert len(spans.memcached()) == 2 * n and all(s.finished for s in spans.memcached())
    assert {name: vars(protocol)[name] for name in original} == original
    assert "_datadog_pin" not in vars(protocol)
    assert "get" not in vars(bmemcached.ReplicatingClient) or not hasattr(
        vars(bmemcached.ReplicatingClient)["get"], "__wrapped__"
    )
    assert tracer.current_span() is None


# --- security ---------------------------------------------------------------------------

SECRET = "s3cr7-value-of-the-app"


def test_no_value_or_password_in_any_tag(memcached, spans, patched, command_enabled):
    c = make(memcached, username="user", password=SECRET + "-pw")  # a server without SASL accepts it
    c.set("k", SECRET)
    c.add("k2", SECRET.encode())
    c.replace("k", SECRET)
    c.cas("k", SECRET, c.gets("k")[1])
    c.set_multi({"a": SECRET, "b": {"nested": SECRET}})
    c.get_multi(["a", "b", "k"])
    c.get("k")
    assert len(spans.memcached()) == 8
    for span in spans.memcached():
        assert SECRET not in str(span.get_tags()) + str(span.get_metrics())
        assert span.get_tag("memcached.query")


def test_dead_server_error_never_shows_the_password(dead_address, spans, patched):
    c = make(dead_address, username="user", password=SECRET)
    assert c.set("k", b"v") is False
    span = spans.memcached()[0]
    assert span.error == 1 and SECRET not in str(span.get_tags())
