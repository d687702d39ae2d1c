"""libmc's own behaviour under the integration, against real memcached servers.

The contract (``tests/test_contract.py``) covers what every client keeps; here: every
command, the failures libmc swallows (``get_last_error()``), each as the app sees it
untraced and traced (result, code, ``get_last_strerror()``, what libmc prints) with its
span, the host of each key on three servers (asked of the servers themselves), with a
dead server and with failover, the commands that call one another (``get`` calls
``get_raw``), pools and ``ThreadedClient``, noreply clients, and an app under
``ddtrace-run``.
"""

import gc
import json
import sys
import time
import warnings

import pytest

libmc = pytest.importorskip("libmc")

from ddtrace.trace import tracer  # noqa: E402

from adapters import holder  # noqa: E402
from adapters import spec  # noqa: E402
from apps import app  # noqa: E402
from apps import ddtrace_run  # noqa: E402
from apps import run_python  # noqa: E402
from apps import spans_of  # noqa: E402
from conftest import flush  # noqa: E402
import ddtrace_memcached  # noqa: E402
from ddtrace_memcached.clients import libmc as ours  # noqa: E402
from helpers import Pin  # noqa: E402
from helpers import host_of  # noqa: E402
from helpers import run_threads  # noqa: E402
from helpers import untraced_and_traced  # noqa: E402
from servers import MemcachedProcess  # noqa: E402
from servers import free_port  # noqa: E402

INVALID_KEY = "libmc.MC_RETURN_INVALID_KEY_ERR"
PROGRAMMING = "libmc.MC_RETURN_PROGRAMMING_ERR"
SERVER_ERROR = "libmc.MC_RETURN_MC_SERVER_ERR"
RECV_ERROR = "libmc.MC_RETURN_RECV_ERR"


def make(*addresses, **options):
    return libmc.Client([spec(a) for a in addresses], **options)


def span_of(spans):
    found = spans.memcached()
    assert len(found) == 1, [(s.resource, s.get_tags()) for s in found]
    return found[0]


def seen(client, call):
    """What the app sees of ``call(client)``: its result or exception, then libmc's code."""
    try:
        result = call(client)
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))
    return ("ok", result, client.get_last_error(), client.get_last_strerror())


# --- every command: one span, its resource, its host, its result ---------------------------

SETUP = {"k": b"v", "n": b"10", "empty": b"", "none": None}
COMMANDS = [
    # (method, call, expected result, resource, rows)
    ("get", lambda c: c.get("k"), b"v", "get", 1),
    ("get_raw", lambda c: c.get_raw("k"), (b"v", 0), "get", 1),
    ("gets", lambda c: c.gets("k")[0], b"v", "gets", 1),
    (
        "get_multi",
        lambda c: c.get_multi(["k", "empty", "none", "missing"]),
        {"k": b"v", "empty": b"", "none": None},
        "get_many",
        3,
    ),
    ("get_list", lambda c: c.get_list(["k", "none", "missing"]), [b"v", None, None], "get_many", 2),
    ("set", lambda c: c.set("k", b"w"), True, "set", None),
    ("set_raw", lambda c: c.set_raw("k", b"w", 0, 0), True, "set", None),
    ("set_multi", lambda c: c.set_multi({"a": b"1", "b": b"2"}), True, "set_many", None),
    ("add", lambda c: c.add("fresh", b"v"), True, "add", None),
    ("replace", lambda c: c.replace("k", b"w"), True, "replace", None),
    ("append", lambda c: c.append("k", b"-tail"), True, "append", None),
    ("prepend", lambda c: c.prepend("k", b"head-"), True, "prepend", None),
    ("append_multi", lambda c: c.append_multi(["k", "empty"], b"+"), True, "append_many", None),
    ("prepend_multi", lambda c: c.prepend_multi(["k", "empty"], b"+"), True, "prepend_many", None),
    ("cas", lambda c: c.cas("k", b"w", 0, c.gets("k")[1]), True, "cas", None),
    ("delete", lambda c: c.delete("k"), True, "delete", None),
    ("delete_multi", lambda c: c.delete_multi(["k", "missing"]), True, "delete_many", None),
    ("incr", lambda c: c.incr("n", 5), 15, "incr", None),
    ("decr", lambda c: c.decr("n", 3), 7, "decr", None),
    ("touch", lambda c: c.touch("k", 60), True, "touch", None),
    ("expire", lambda c: c.expire("k"), True, "touch", None),
    ("version", lambda c: list(c.version()), None, "version", None),
    ("stats", lambda c: "curr_items" in next(iter(c.stats().values())), True, "stats", None),
    ("flush_all", lambda c: (c.toggle_flush_all_feature(True), c.flush_all())[1], None, "flush_all", None),
    ("quit", lambda c: c.quit(), True, "quit", None),
]


def test_every_command_is_tested():
    assert {c[0] for c in COMMANDS} == {cmd.method for cmd in ours.COMMANDS}


@pytest.mark.parametrize("method,call,expected,resource,rows", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_is_one_span(memcached, spans, method, call, expected, resource, rows):
    """One span of its resource naming its server, clean, counting its rows (a stored None
    and b"" are hits); the same result and code untraced."""

    def run():
        flush(memcached)
        c = make(memcached)
        c.set_multi(SETUP)
        spans.spans.clear()
        return seen(c, call)

    untraced, traced = untraced_and_traced(run)
    assert traced == untraced
    assert traced[0] == "ok" and traced[2] == libmc.MC_RETURN_OK, traced
    if expected is not None:
        assert traced[1] == expected
    found = spans.memcached()
    assert [s.resource for s in found[:-1]] == (["gets"] if method == "cas" else [])  # cas reads its token first
    span = found[-1]
    assert (span.resource, span.error, host_of(span)) == (resource, 0, memcached)
    assert span.get_metric("db.row_count") == rows
    assert span.get_tag("db.response.status_code") is None and span.get_tag("memcached.noreply") is None


def test_commands_that_call_commands_are_one_span(memcached, spans, patched):
    """``get`` calls ``self.get_raw``, ``set`` ``self.set_raw``, ``get_list`` ``self.get_multi``,
    ``expire`` ``self.touch``: each is one span, of the command the app called."""
    c = make(memcached)
    assert c.set("none", None) is True
    assert c.get("none") is None  # a stored None: a hit, that get_raw tells from a miss
    assert c.get("missing") is None
    assert c.get_list(["none", "missing"]) == [None, None]
    assert c.expire("none") is True
    found = spans.memcached()
    assert [s.resource for s in found] == ["set", "get", "get", "get_many", "touch"]
    assert [s.get_metric("db.row_count") for s in found] == [None, 1, 0, 1, None]


def test_large_values_are_one_span(memcached, spans, patched):
    """Over 1 MB, libmc splits a value into chunks, stored and read under other keys."""
    c = make(memcached)
    value = b"i" * 1_500_000
    assert c.set("large", value) is True
    assert c.get("large") == value
    assert c.get_multi(["large"]) == {"large": value}
    assert [(s.resource, s.get_metric("db.row_count")) for s in spans.memcached()] == [
        ("set", None),
        ("get", 1),
        ("get_many", 1),
    ]


# --- what libmc swallows: the app's view untraced and traced, and the span ------------------


class Case:
    """One call of the issue's table: ``call(client)`` after ``setup(client)``, what the app
    sees (result, get_last_error()), and the span's error type and miss."""

    def __init__(self, name, call, result, code, error=None, status=None, setup=None, rows=None):
        """``setup(client)``'s result, when given, is ``call``'s second argument."""
        self.name, self.call, self.result, self.code = name, call, result, code
        self.error, self.status, self.setup, self.rows = error, status, setup, rows


def _stale_token(c):
    token = c.gets("k")[1]
    c.set("k", b"changed")
    return token


def _bad_key_cases():
    for label, key in (("space", "a b"), ("too-long", "k" * 251), ("crlf", "a\r\nb")):
        for method, call, result in (
            ("get", lambda c, key=key: c.get(key), None),
            ("gets", lambda c, key=key: c.gets(key), None),
            ("incr", lambda c, key=key: c.incr(key, 1), None),
            ("set", lambda c, key=key: c.set(key, b"v"), False),
            ("delete", lambda c, key=key: c.delete(key), False),
            ("touch", lambda c, key=key: c.touch(key, 1), False),
        ):
            rows = 0 if method in ("get", "gets") else None
            yield Case("%s-%s" % (method, label), call, result, -2, INVALID_KEY, rows=rows)


LIVE_CASES = [
    Case("get-miss", lambda c: c.get("missing"), None, 0, rows=0),
    Case("delete-missing", lambda c: c.delete("missing"), True, 0),  # True either way: no miss to tell
    Case("add-existing", lambda c: c.add("k", b"x"), False, 0, status="NOT_STORED"),
    Case("replace-missing", lambda c: c.replace("missing", b"x"), False, 0, status="NOT_STORED"),
    Case("append-missing", lambda c: c.append("missing", b"x"), False, 0, status="NOT_STORED"),
    Case("prepend-missing", lambda c: c.prepend("missing", b"x"), False, 0, status="NOT_STORED"),
    Case("touch-missing", lambda c: c.touch("missing", 1), False, 0, status="NOT_FOUND"),
    # False for a stale token and a missing key alike: no miss to tell
    Case("cas-stale", lambda c, token: c.cas("k", b"w", 0, token), False, 0, setup=_stale_token),
    Case("cas-missing", lambda c: c.cas("missing", b"w", 0, 1), False, 0),
    Case("incr-missing", lambda c: c.incr("missing", 1), None, 0, status="NOT_FOUND"),
    Case("decr-missing", lambda c: c.decr("missing", 1), None, 0, status="NOT_FOUND"),
    Case("incr-not-a-number", lambda c: c.incr("k", 1), None, -3, PROGRAMMING),
    Case("get_multi-one-bad-key", lambda c: c.get_multi(["k", "a b"]), {"k": b"v"}, 0, INVALID_KEY, rows=1),
    Case("get_multi-all-bad", lambda c: c.get_multi(["a b"]), {}, -2, INVALID_KEY, rows=0),
    Case("set_multi-one-bad-key", lambda c: c.set_multi({"ok": b"1", "a b": b"2"}), False, 0, INVALID_KEY),
    Case("delete_multi-one-bad-key", lambda c: c.delete_multi(["k", "a b"]), False, 0, INVALID_KEY),
    *_bad_key_cases(),
]


@pytest.mark.parametrize("case", LIVE_CASES, ids=[c.name for c in LIVE_CASES])
def test_live_server_cases(memcached, spans, capfd, case):
    """A miss or "not stored" is no error (its ``db.response.status_code`` where the result
    tells it); a non-zero code is an error span of libmc's error, without the key; what the
    app sees (result, code, what libmc prints on stderr) is the same traced."""

    def run():
        flush(memcached)
        c = make(memcached)
        c.set("k", b"v")
        call = case.call
        if case.setup is not None:
            prepared = case.setup(c)
            call = lambda c: case.call(c, prepared)  # noqa: E731
        spans.spans.clear()
        outcome = seen(c, call)
        return outcome, capfd.readouterr().err

    untraced, traced = untraced_and_traced(run)
    assert traced == untraced
    assert traced[0][1:3] == (case.result, case.code), traced
    span = span_of(spans)
    assert host_of(span) == memcached and span.finished
    assert span.get_tag("error.type") == case.error, span.get_tags()
    assert span.error == (1 if case.error else 0)
    assert span.get_tag("db.response.status_code") == case.status
    assert span.get_metric("db.row_count") == case.rows
    if case.error:
        message = span.get_tag("error.message")
        assert message.startswith(traced[0][3] if case.code else "invalid_key_error: "), message
        assert "a b" not in message and "k" * 251 not in message


def test_incr_of_a_number_prints_what_libmc_prints(memcached, spans, capfd):
    """libmc prints the server's CLIENT_ERROR on stderr itself: once, traced as untraced."""

    def run():
        c = make(memcached)
        c.set("text", b"abc")
        c.incr("text", 1)
        return capfd.readouterr().err

    untraced, traced = untraced_and_traced(run)
    assert traced == untraced and traced.count("CLIENT_ERROR cannot increment or decrement non-numeric value") == 1


@pytest.mark.parametrize("key", [b"k", 5, None], ids=["bytes", "int", "none"])
def test_key_that_is_not_a_str_raises_as_untraced(memcached, spans, key):
    def run():
        c = make(memcached)
        return [
            seen(c, call) for call in (lambda c: c.get(key), lambda c: c.set(key, b"v"), lambda c: c.get_multi([key]))
        ]

    untraced, traced = untraced_and_traced(run)
    assert traced == untraced and all(outcome[:2] == ("raised", "TypeError") for outcome in traced), traced
    found = spans.memcached()
    assert [s.resource for s in found] == ["get", "set", "get_many"]
    assert all(s.error == 1 and s.get_tag("error.type") == "builtins.TypeError" for s in found)
    assert tracer.current_span() is None


DEAD_CASES = [
    Case("set", lambda c: c.set("k", b"v"), False, -4, SERVER_ERROR),
    Case("delete", lambda c: c.delete("k"), False, -4, SERVER_ERROR),
    Case("get", lambda c: c.get("k"), None, -4, SERVER_ERROR, rows=0),
    Case("incr", lambda c: c.incr("k", 1), None, -4, SERVER_ERROR),
    Case("get_multi", lambda c: c.get_multi(["k", "j"]), {}, -4, SERVER_ERROR, rows=0),
    Case("version", lambda c: c.version(), {}, -4, SERVER_ERROR),
    Case("quit", lambda c: c.quit(), False, -4, SERVER_ERROR),
]


@pytest.mark.parametrize("case", DEAD_CASES, ids=[c.name for c in DEAD_CASES])
def test_refused_server_cases(dead_address, spans, case):
    untraced, traced = untraced_and_traced(lambda: seen(make(dead_address), case.call))
    assert traced == untraced and traced[1:3] == (case.result, case.code), traced
    span = span_of(spans)
    assert host_of(span) == dead_address
    assert (span.error, span.get_tag("error.type")) == (1, SERVER_ERROR)
    assert span.get_metric("db.row_count") == case.rows
    assert span.get_tag("error.message").startswith("server_error (-4): ")


def test_stats_of_a_refused_server(dead_address, spans, patched):
    c = make(dead_address)
    assert c.stats() == {spec(dead_address): {}} and c.get_last_error() == -4
    assert span_of(spans).get_tag("error.type") == SERVER_ERROR


def test_server_killed_after_connecting(spans):
    """The next get finds the connection closed (recv_error), then the set a dead server."""
    port = free_port()

    def run():
        server = MemcachedProcess(port=port)
        try:
            c = make(server.address)
            outcomes = [seen(c, lambda c: c.set("k", b"v")), seen(c, lambda c: c.get("k"))]
        finally:
            server.stop()
        spans.spans.clear()
        return outcomes + [seen(c, lambda c: c.get("k")), seen(c, lambda c: c.set("k", b"v"))]

    untraced, traced = untraced_and_traced(run)
    assert traced == untraced
    assert [o[1:3] for o in traced] == [(True, 0), (b"v", 0), (None, -8), (False, -4)]
    get, set_ = spans.memcached()
    assert (get.get_tag("error.type"), set_.get_tag("error.type")) == (RECV_ERROR, SERVER_ERROR)
    assert host_of(get) == host_of(set_) == ("127.0.0.1", port)
    assert get.get_metric("db.row_count") == 0


def test_timeout_is_a_poll_timeout_error(silent_server, spans, patched):
    c = make(silent_server)
    c.config(libmc.MC_POLL_TIMEOUT, 100)
    assert c.get("k") is None and c.get_last_error() == libmc.MC_RETURN_POLL_TIMEOUT_ERR
    span = span_of(spans)
    assert span.get_tag("error.type") == "libmc.MC_RETURN_POLL_TIMEOUT_ERR" and host_of(span) == silent_server


# --- a live and a dead server: what libmc reports as 0 -----------------------------------------


def _keys_on_both(live, dead):
    """Keys of a client of [live, dead], half of them on each."""
    c = make(live, dead)
    keys = ["key-%d" % i for i in range(20)]
    on = {spec(a): [k for k in keys if c.get_host_by_key(k) == spec(a)] for a in (live, dead)}
    assert all(on.values()), on
    return keys, on


@pytest.mark.parametrize(
    "name,call,result",
    [
        ("set_multi", lambda c, keys: c.set_multi({k: b"v" for k in keys}), False),
        ("delete_multi", lambda c, keys: c.delete_multi(keys), False),
        ("append_multi", lambda c, keys: c.append_multi(keys, b"+"), False),
        ("get_multi", lambda c, keys: len(c.get_multi(keys)), None),
    ],
)
def test_multi_key_call_over_a_live_and_a_dead_server(memcached, dead_address, spans, name, call, result):
    """libmc leaves out the dead server's keys and reports 0 (another server answered): the
    span is an error naming that server, found by asking libmc whether it is alive; its host
    is the live server, the only one the call went to."""
    keys, on = _keys_on_both(memcached, dead_address)

    def run():
        c = make(memcached, dead_address)
        for key in on[spec(memcached)]:
            c.set(key, b"v")
        spans.spans.clear()
        return seen(c, lambda c: call(c, keys))

    untraced, traced = untraced_and_traced(run)
    assert traced == untraced and traced[2] == 0
    if result is not None:
        assert traced[1] is result
    else:
        assert traced[1] == len(on[spec(memcached)])
    span = span_of(spans)
    assert (span.error, span.get_tag("error.type")) == (1, SERVER_ERROR)
    assert "%s is down" % spec(dead_address) in span.get_tag("error.message")
    assert host_of(span) == memcached  # what served the call: the live server alone
    if name == "get_multi":
        assert span.get_metric("db.row_count") == len(on[spec(memcached)])


@pytest.mark.parametrize(
    "name,call",
    [
        ("version", lambda c: sorted(c.version())),
        ("stats", lambda c: sorted((k, bool(v)) for k, v in c.stats().items())),
        ("flush_all", lambda c: (c.toggle_flush_all_feature(True), c.flush_all())[1]),
    ],
)
def test_every_server_command_with_a_dead_server(memcached, dead_address, spans, name, call):
    """version(), stats() and flush_all() answer for the live server only, with 0: the span
    is an error naming the server missing from the answer."""
    untraced, traced = untraced_and_traced(lambda: seen(make(memcached, dead_address), call))
    assert traced == untraced and traced[2] == 0
    span = span_of(spans)
    assert (span.error, span.get_tag("error.type"), span.get_metric("memcached.servers")) == (1, SERVER_ERROR, 2)
    assert span.get_tag(
        "error.message"
    ) == "server_error: %s did not answer (libmc answered for the others, with 0)" % (spec(dead_address))


def test_quit_with_a_dead_server_cannot_tell(memcached, dead_address, spans, patched):
    """quit() returns True whatever the servers did: the span cannot tell (documented)."""
    assert make(memcached, dead_address).quit() is True
    assert span_of(spans).error == 0


def test_a_server_back_within_its_retry_time_stays_dead_as_untraced(memcached, spans):
    """Asking libmc whether a server is alive tries to reconnect it when its retry time has
    come, as the command is about to: traced, that attempt is made once, not twice, so a
    server back within its retry time (5 s) stays dead for libmc exactly as untraced."""
    port = free_port()
    dead = ("127.0.0.1", port)
    keys, on = _keys_on_both(memcached, dead)

    def run(failover):
        c = make(memcached, dead, failover=failover)
        first = seen(c, lambda c: c.set_multi({k: b"v" for k in keys}))  # the dead server: tried, still dead
        server = MemcachedProcess(port=port)
        try:
            then = [seen(c, lambda c: c.get_multi(keys)), seen(c, lambda c: c.get(on[spec(dead)][0]))]
        finally:
            server.stop()
        return [first] + then

    for failover in (False, True):
        untraced, traced = untraced_and_traced(lambda: run(failover))
        assert traced == untraced, failover
        if not failover:
            assert traced[1][1] == {k: b"v" for k in on[spec(memcached)]} and traced[2][1:3] == (None, -4)
        else:
            assert traced[1][1] == {k: b"v" for k in keys} and traced[2][1:3] == (b"v", 0)


# --- the host: the server that holds the key -------------------------------------------------


SINGLE_KEY_CALLS = [
    ("set", lambda c, k: c.set(k, b"v")),
    ("get", lambda c, k: c.get(k)),
    ("incr", lambda c, k: c.incr(k, 1)),
    ("touch", lambda c, k: c.touch(k, 60)),
    ("delete", lambda c, k: c.delete(k)),
]


@pytest.mark.parametrize("hash_fn", ["MC_HASH_MD5", "MC_HASH_FNV1A_32", "MC_HASH_CRC_32"])
def test_each_key_names_the_server_that_holds_it(memcached_nodes, spans, patched, hash_fn):
    c = make(*memcached_nodes, hash_fn=getattr(libmc, hash_fn))
    keys = ["key-%d" % i for i in range(24)]
    used = set()
    for key in keys:
        for name, call in SINGLE_KEY_CALLS:
            spans.spans.clear()
            call(c, key)
            if name == "set":
                where = holder(memcached_nodes, key.encode())
                used.add(where)
            (span,) = spans.memcached()
            assert host_of(span) == where, (name, key)
    assert len(used) == 3, "24 keys did not reach all 3 servers: the routing is not exercised"


def test_multi_key_call_names_a_host_only_when_one_server_holds_every_key(memcached_nodes, spans, patched):
    c = make(*memcached_nodes)
    keys = ["key-%d" % i for i in range(30)]
    assert c.set_multi({k: b"v" for k in keys}) is True
    by_server = {}
    for key in keys:
        by_server.setdefault(holder(memcached_nodes, key.encode()), []).append(key)
    assert len(by_server) == 3
    spans.spans.clear()
    for server, held in sorted(by_server.items()):
        assert c.get_multi(held) == {k: b"v" for k in held}
    assert c.get_multi(keys) == {k: b"v" for k in keys}
    assert c.delete_multi([by_server[s][0] for s in sorted(by_server)[:2]]) is True
    found = spans.memcached()
    assert [host_of(s) for s in found[:3]] == sorted(by_server)
    assert all(s.get_metric("memcached.servers") is None and s.error == 0 for s in found[:3])
    assert [(s.get_tag("out.host"), s.get_metric("memcached.servers")) for s in found[3:]] == [(None, 3), (None, 2)]
    assert found[3].get_metric("db.row_count") == 30


def test_every_server_commands_on_three_servers(memcached_nodes, spans, patched):
    c = make(*memcached_nodes)
    assert len(c.version()) == 3 and len(c.stats()) == 3
    for span in spans.memcached():
        assert span.get_tag("out.host") is None and span.get_metric("memcached.servers") == 3 and span.error == 0


def test_empty_multi_key_call_sends_nothing_and_is_no_error(memcached, spans, patched):
    """libmc reports server_error (-4) for a get_multi of no key: nothing was sent."""
    c = make(memcached)
    assert c.get_multi([]) == {} and c.get_last_error() == -4
    assert c.set_multi({}) is False and c.delete_multi([]) is False
    for span in spans.memcached():
        assert span.error == 0 and span.get_tag("out.host") is None and span.get_metric("memcached.servers") == 0


def test_failover_names_the_server_that_served_the_key(memcached_nodes, dead_address, spans, patched):
    """With ``failover=True`` a key of a dead server goes to the next live one on the ring,
    as ``get_realtime_host_by_key`` tells: the span names that one, and is no error."""
    live = memcached_nodes[:2]
    c = make(*live, dead_address, failover=True)
    plain = make(*live, dead_address)
    keys = ["key-%d" % i for i in range(30)]
    moved = [k for k in keys if plain.get_host_by_key(k) == spec(dead_address)]
    assert moved, "no key maps to the dead server"
    for key in keys:
        spans.spans.clear()
        assert c.set(key, b"v") is True
        (span,) = spans.memcached()
        assert span.error == 0 and host_of(span) == holder(live, key.encode()), key
    spans.spans.clear()
    assert c.get_multi(keys) == {k: b"v" for k in keys}
    (span,) = spans.memcached()
    assert span.error == 0 and span.get_metric("db.row_count") == 30 and span.get_metric("memcached.servers") == 2


def test_failover_with_no_live_server_names_the_keys_server(dead_address, spans, patched):
    other = ("127.0.0.1", free_port())
    c = make(dead_address, other, failover=True)
    assert c.set("k", b"v") is False and c.get_last_error() == -4
    span = span_of(spans)
    assert span.get_tag("error.type") == SERVER_ERROR
    assert spec(host_of(span)) == c.get_host_by_key("k")


def test_aliases_and_unix_sockets_name_their_address(memcached, memcached_unix, spans, patched):
    """libmc names a server by its alias (``host:port alias``) or socket path: the span names
    the address behind it."""
    c = libmc.Client(["%s:%d cache-a" % memcached, "%s cache-b" % memcached_unix])
    keys = ["key-%d" % i for i in range(10)]
    where = {k: c.get_host_by_key(k) for k in keys}
    assert set(where.values()) == {"cache-a", "cache-b"}
    for key in keys:
        spans.spans.clear()
        assert c.set(key, b"v") is True
        span = span_of(spans)
        if where[key] == "cache-a":
            assert host_of(span) == memcached
        else:
            assert (span.get_tag("out.host"), span.get_metric("network.destination.port")) == (memcached_unix, None)


def test_port_defaults_to_11211():
    assert ours.parse("localhost") == ("localhost:11211", ("localhost", 11211))
    assert ours.parse("10.0.0.1:11212 cache") == ("cache", ("10.0.0.1", 11212))
    assert ours.parse("/run/memcached.sock") == ("/run/memcached.sock", "/run/memcached.sock")


# --- what libmc drops before sending ------------------------------------------------------------


class NotEncodable:
    def __reduce__(self):
        raise TypeError("not picklable")


def test_a_value_libmc_cannot_encode_or_send(memcached, spans):
    """libmc returns None (and warns) for a value it cannot encode, False for one over its
    size limit, sends nothing, and leaves get_last_error() at the previous call's code: the
    span says nothing was sent, whatever that code."""

    def run():
        c = make(memcached)
        c.get("a b")  # get_last_error() -2, which the next calls leave as it is
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            outcomes = [
                seen(c, lambda c: c.set("k", NotEncodable())),
                seen(c, lambda c: c.set("k", b"x" * 11_000_000)),
                seen(c, lambda c: c.append_multi(["k"], b"x" * 1_000_001)),
            ]
        return outcomes, [str(w.message).split(",")[0] for w in warned]

    untraced, traced = untraced_and_traced(run)
    assert traced == untraced
    assert [o[1:3] for o in traced[0]] == [(None, -2), (False, -2), (None, -2)]
    assert traced[1] == ["[libmc] encode value failed"]
    found = [s for s in spans.memcached() if s.resource != "get"]
    assert [(s.resource, s.error, s.get_tag("error.type")) for s in found] == [
        ("set", 1, "libmc.NotSent"),
        ("set", 1, "libmc.NotSent"),
        ("append_many", 1, "libmc.NotSent"),
    ]


# --- get_last_error() -------------------------------------------------------------------------


def test_last_error_is_the_apps_in_every_thread(memcached, dead_address, spans, patched):
    """The span reads the code the call left, and reading it changes nothing: the app reads
    the same afterwards, and a client stays its thread's (libmc records the first thread to
    use it, and refuses writes from others: ThreadUnsafe, an error span)."""
    c = make(dead_address)
    assert c.get("k") is None
    assert (c.get_last_error(), c.get_last_strerror()) == (-4, "server_error")
    assert (c.get_last_error(), c.get_last_strerror()) == (-4, "server_error")
    errors = []

    def other(n):
        try:
            c.set("k", b"v")
        except libmc.ThreadUnsafe as exc:
            errors.append(exc)

    run_threads(other, 1)
    assert len(errors) == 1
    assert [(s.resource, s.get_tag("error.type")) for s in spans.memcached()] == [
        ("get", SERVER_ERROR),
        ("set", "libmc._client.ThreadUnsafe"),
    ]


# --- noreply -------------------------------------------------------------------------------------


def test_noreply_client_marks_its_writes(memcached, spans, patched):
    """``noreply=True`` sends every write without waiting: its spans say so and tell no miss."""
    c = make(memcached, noreply=True)
    assert c.set("k", b"v") is True
    assert c.add("k", b"v") is True  # not stored, but noreply cannot tell
    assert c.incr("missing", 1) is None
    assert c.set_multi({"a": b"1"}) is True
    assert c.get("k") == b"v"
    found = spans.memcached()
    assert [(s.resource, s.get_tag("memcached.noreply")) for s in found] == [
        ("set", "true"),
        ("add", "true"),
        ("incr", "true"),
        ("set_many", "true"),
        ("get", None),
    ]
    assert all(s.error == 0 and s.get_tag("db.response.status_code") is None for s in found)


# --- pools, ThreadedClient, subclasses, overrides ----------------------------------------------


def test_pool_workers_are_traced(memcached, spans, patched):
    """``ClientPool.client()`` hands out its compiled worker in a traced proxy: isinstance
    holds, the commands are spans under the pool's override, and a stored None read by a
    worker's ``get`` counts as a miss (its inner ``get_raw`` cannot be seen)."""
    pool = libmc.ClientPool([spec(memcached)])
    ddtrace_memcached.override(pool, service="pooled", tags={"pool": "main"})
    with pool.client() as mc:
        assert isinstance(mc, libmc._client.PyPoolClient)
        assert mc.set("k", b"v") is True and mc.set("none", None) is True
        assert mc.get("k") == b"v" and mc.get("none") is None
        assert mc.get_multi(["k", "none"]) == {"k": b"v", "none": None}
        assert mc.get("a b") is None and mc.get_last_error() == -2
        assert mc.servers == [spec(memcached)]
    found = spans.memcached()
    assert [(s.resource, s.get_metric("db.row_count"), s.error) for s in found] == [
        ("set", None, 0),
        ("set", None, 0),
        ("get", 1, 0),
        ("get", 0, 0),
        ("get_many", 2, 0),
        ("get", 0, 1),
    ]
    assert all((s.service, s.get_tag("pool"), host_of(s)) == ("pooled", "main", memcached) for s in found)


def test_pool_exception_in_the_block_returns_the_worker(memcached, spans, patched):
    pool = libmc.ClientPool([spec(memcached)])
    pool.config(libmc.MC_MAX_CLIENTS, 1)
    Pin.override(pool, service="pinned-pool")
    error = RuntimeError("app")
    with pytest.raises(RuntimeError) as raised:
        with pool.client() as mc:
            mc.set("k", b"v")
            raise error
    assert raised.value is error
    with pool.client() as mc:  # the only worker went back
        assert mc.get("k") == b"v"
    assert [s.service for s in spans.memcached()] == ["pinned-pool", "pinned-pool"]


def test_threaded_client_threads(memcached_nodes, spans, patched):
    """A ``ThreadedClient`` shared by threads: each thread's commands are its own spans,
    under its own span, naming the server of their key; its override covers them."""
    threaded = libmc.ThreadedClient([spec(a) for a in memcached_nodes])
    ddtrace_memcached.override(threaded, tags={"client": "threaded"})

    def work(n):
        with tracer.trace("thread.%d" % n) as parent:
            for i in range(20):
                key = "t%d-%d" % (n, i)
                assert threaded.set(key, b"v") is True
                assert threaded.get(key) == b"v"
        return parent

    parents = run_threads(work, 4)
    found = spans.memcached()
    assert len(found) == 4 * 40
    for n, parent in parents.items():
        mine = [s for s in found if s.parent_id == parent.span_id]
        assert len(mine) == 40 and all(s.trace_id == parent.trace_id and s.error == 0 for s in mine)
        for i, span in enumerate(s for s in mine if s.resource == "set"):
            assert host_of(span) == holder(memcached_nodes, b"t%d-%d" % (n, i))
    assert all(s.get_tag("client") == "threaded" for s in found)


def test_subclass_override_of_a_command_is_one_span(memcached, spans, patched):
    class AppClient(libmc.Client):
        def get(self, key):
            return super().get("app:" + key)

    c = AppClient([spec(memcached)])
    assert c.set("app:k", b"v") is True
    assert c.get("k") == b"v" and isinstance(c, libmc.Client)
    assert [s.resource for s in spans.memcached()] == ["set", "get"]


def test_client_made_before_patching_and_pickled(memcached, spans):
    import pickle

    c = make(memcached)
    ddtrace_memcached.patch()
    try:
        assert c.set("k", b"v") is True
        copy = pickle.loads(pickle.dumps(c))
        assert copy.get("k") == b"v"
    finally:
        ddtrace_memcached.unpatch()
    assert [s.resource for s in spans.memcached()] == ["set", "get"]


def test_disabled_tracer_same_results_no_spans(memcached, spans, patched):
    c = make(memcached)
    tracer.enabled = False
    try:
        assert c.set("k", b"v") is True and c.get("k") == b"v" and c.get_multi(["k"]) == {"k": b"v"}
        with libmc.ClientPool([spec(memcached)]).client() as mc:
            assert mc.get("k") == b"v"
    finally:
        tracer.enabled = True
    assert spans.memcached() == []


# --- keys, values and frames -------------------------------------------------------------------


def test_keys_in_query_only_when_enabled_with_the_prefix(memcached, spans, patched, command_enabled):
    c = make(memcached, prefix="app:")
    c.set("k1", b"s3cr7")
    c.get_multi(["k1", "k2"])
    c.set_multi({"k3": b"s3cr7"})
    assert [s.get_tag("memcached.query") for s in spans.memcached()] == [
        "set app:k1",
        "get_many app:k1 app:k2",
        "set_many app:k3",
    ]
    assert all("s3cr7" not in str(s.get_tags()) for s in spans.memcached())


def test_prefix_counts_in_the_key_length(memcached, spans, patched):
    """libmc checks the key as sent: with its prefix."""
    c = make(memcached, prefix="p" * 10)
    assert c.get_multi(["k", "k" * 245]) == {} and c.get_last_error() == 0
    assert span_of(spans).get_tag("error.type") == INVALID_KEY


def test_nothing_of_the_app_is_held_after_a_raise(memcached, spans, patched):
    """A TypeError that the app keeps keeps the frames it went through: none of ours holds
    the app's key or value (they are a bytes key and a value of the app's)."""
    key, value = b"held-%f" % time.time(), b"held-value-%f" % time.time()
    c = make(memcached)
    kept = []
    for call in (lambda: c.set(key, value), lambda: c.get(key), lambda: c.get_multi([key])):
        try:
            call()
        except TypeError as exc:
            kept.append(exc)
    assert len(kept) == 3
    gc.collect()
    holding = []
    for exc in kept:
        tb = exc.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if "ddtrace_memcached" in frame.f_code.co_filename:
                for name, local in frame.f_locals.items():
                    items = local if isinstance(local, (tuple, list)) else (local,)
                    if any(item is key or item is value for item in items):
                        holding.append((frame.f_code.co_name, name))
            tb = tb.tb_next
    assert holding == []
    assert sys.getrefcount(key) == sys.getrefcount(value)


# --- an app under ddtrace-run ------------------------------------------------------------------

APP = """
import libmc

live = "%s:%d" % ADDRESS
dead = "127.0.0.1:%d" % DEAD_PORT
c = libmc.Client([live])
results = []
results.append(c.set("k", b"v"))
results.append(c.set("text", b"abc"))
results.append(c.get("k"))
results.append(c.get("missing"))
results.append(c.add("k", b"x"))
results.append(c.incr("missing", 1))
results.append(c.incr("text", 1))
results.append(c.get("a b"))
results.append(c.get_multi(["k", "a b"]))
try:
    c.get(b"k")
except TypeError:
    results.append("TypeError")
d = libmc.Client([dead])
results.append(d.set("k", b"v"))
results.append(d.version())
both = libmc.Client([live, dead])
keys = [k for k in ("key-%d" % i for i in range(40)) if both.get_host_by_key(k) == dead][:1]
keys += [k for k in ("key-%d" % i for i in range(40)) if both.get_host_by_key(k) == live][:1]
results.append(both.set_multi(dict.fromkeys(keys, b"v")))
with libmc.ClientPool([live]).client() as mc:
    results.append(mc.get("k"))
results.append(libmc.ThreadedClient([live]).get("k"))
print("@@RESULTS", results)
_tracer.flush()
print("@@METRICS", _json.dumps([
    [s.get_metric("db.row_count"), s.get_metric("network.destination.port"), s.get_metric("memcached.servers")]
    for s in _Keep.spans
]))
"""


def test_app_under_ddtrace_run_gets_one_right_span_per_call(memcached):
    dead_port = free_port()
    proc = run_python(app(["DEAD_PORT = %d" % dead_port, APP], memcached), argv_prefix=ddtrace_run())
    found = spans_of(proc)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("@@RESULTS"))
    assert line == "@@RESULTS " + str(
        [True, True, b"v", None, False, None, None, None, {"k": b"v"}, "TypeError", False, {}, False, b"v", b"v"]
    )
    assert "CLIENT_ERROR cannot increment or decrement non-numeric value" in proc.stderr
    metrics = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("@@METRICS"))[10:])
    live, dead = memcached[1], dead_port
    expected = [
        # resource, error.type, db.response.status_code, [db.row_count, port, memcached.servers]
        ("set", None, None, [None, live, None]),
        ("set", None, None, [None, live, None]),
        ("get", None, None, [1, live, None]),
        ("get", None, None, [0, live, None]),
        ("add", None, "NOT_STORED", [None, live, None]),
        ("incr", None, "NOT_FOUND", [None, live, None]),
        ("incr", PROGRAMMING, None, [None, live, None]),
        ("get", INVALID_KEY, None, [0, live, None]),
        ("get_many", INVALID_KEY, None, [1, live, None]),
        ("get", "builtins.TypeError", None, [None, live, None]),
        ("set", SERVER_ERROR, None, [None, dead, None]),
        ("version", SERVER_ERROR, None, [None, dead, None]),
        ("set_many", SERVER_ERROR, None, [None, live, None]),
        ("get", None, None, [1, live, None]),
        ("get", None, None, [1, live, None]),
    ]
    got = [
        (s["resource"], s["tags"].get("error.type"), s["tags"].get("db.response.status_code"), m)
        for s, m in zip(found, metrics)
    ]
    assert got == expected
    assert all(s["name"] == "memcached.command" and s["component"] == "memcached" for s in found)
    assert all(s["error"] == (1 if e[1] else 0) for s, e in zip(found, expected))
