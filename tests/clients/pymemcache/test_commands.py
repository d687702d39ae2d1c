"""One span per memcached command: names, resources, tags, row counts, keys, client types.

Every test talks to real memcached processes (see ``conftest.py``); nothing is mocked.
Version-gated pymemcache features are gated on ``ddtrace_memcached.clients.pymemcache.VERSION``.
"""

import os
import shutil
import subprocess
from typing import Any
from typing import Callable
from typing import Dict
from typing import NamedTuple

import pymemcache
from pymemcache.client import base as pymemcache_base
from pymemcache.client.base import Client
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheUnknownCommandError
from pymemcache.serde import pickle_serde
import pytest

import ddtrace_memcached
from ddtrace_memcached import commands
from ddtrace_memcached.clients.pymemcache import ALL_COMMANDS
from ddtrace_memcached.clients.pymemcache import COMMANDS as PATCHED_COMMANDS
from ddtrace_memcached.clients.pymemcache import VERSION as PYMEMCACHE_VERSION
from servers import MemcachedProcess
from servers import free_port
from servers import wait_until_serving

HAS_SHUTDOWN = PYMEMCACHE_VERSION >= (3, 5)
HAS_RAW_COMMAND = PYMEMCACHE_VERSION >= (4, 0)
HAS_RETRYING_CLIENT = PYMEMCACHE_VERSION >= (3, 5)
HAS_SERVER_STRINGS = hasattr(pymemcache_base, "normalize_server_spec")

needs_shutdown = pytest.mark.skipif(not HAS_SHUTDOWN, reason="Client.shutdown needs pymemcache >= 3.5")
needs_raw_command = pytest.mark.skipif(not HAS_RAW_COMMAND, reason="Client.raw_command needs pymemcache >= 4.0")
needs_retrying_client = pytest.mark.skipif(not HAS_RETRYING_CLIENT, reason="RetryingClient needs pymemcache >= 3.5")

ALIASES = {"get_multi": "get_many", "set_multi": "set_many", "delete_multi": "delete_many"}

# A value that must never show up in a span: a distinctive string is easy to search for.
SECRET = b"s3cr7-value-0f-the-app"


# --- helpers and extra fixtures ----------------------------------------------------------


class captured:
    """Context manager: the spans finished inside the ``with`` block.

    ``spans``: the memcached ones (``component:memcached``); ``all``: every span, so that a
    stray span without our tags (say, one for a wrapper client's own call) is seen too.
    """

    def __init__(self, recorder):
        self.recorder = recorder
        self.spans = []
        self.all = []

    def __enter__(self):
        self._start = len(self.recorder.memcached())
        self._start_all = len(self.recorder.spans)
        return self

    def __exit__(self, *exc_info):
        self.spans = self.recorder.memcached()[self._start :]
        self.all = self.recorder.spans[self._start_all :]
        return False

    @property
    def one(self):
        """The one span of the block; fails if there is any other span."""
        assert len(self.all) == 1, [(s.name, s.resource, s.get_tags()) for s in self.all]
        assert len(self.spans) == 1, [(s.resource, s.get_tags()) for s in self.spans]
        return self.spans[0]

    def memcached_only(self):
        """Every span of the block is a tagged memcached span."""
        assert self.all == self.spans, [(s.name, s.resource, s.get_tags()) for s in self.all]
        return self.spans


def assert_server_tags(span, host, port):
    """The tags every span carries, for a TCP server ``host:port``."""
    assert span.name == "memcached.command"
    assert span.span_type == "cache"
    assert span.service == "memcached"
    assert span.get_tag("component") == "memcached"
    assert span.get_tag("span.kind") == "client"
    assert span.get_tag("db.system") == "memcached"
    assert span.get_tag("out.host") == host
    assert span.get_tag("server.address") == host
    assert span.get_metric("network.destination.port") == port
    assert span.get_metric("_dd.measured") == 1


def all_tag_text(span):
    """Every tag name and value of ``span``, as one string."""
    return " ".join("%s=%s" % (k, v) for k, v in span.get_tags().items())


class ShutdownEnabledMemcached(MemcachedProcess):
    """A ``MemcachedProcess`` started with ``-A``, so that it accepts ``shutdown``."""

    def __init__(self):
        binary = shutil.which("memcached")
        if binary is None:
            raise RuntimeError("memcached is not installed")
        self.unix_path = None
        self.port = free_port()
        cmd = [binary, "-U", "0", "-m", "64", "-A", "-l", "127.0.0.1", "-p", str(self.port)]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_serving(self._connect, "memcached -A", self.process)


@pytest.fixture
def throwaway_memcached():
    """Starts memcached processes for one test (``-A`` with shutdown=True); kills them after."""
    started = []

    def start(shutdown=False):
        server = ShutdownEnabledMemcached() if shutdown else MemcachedProcess()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def unpatched_first():
    """Makes sure the test starts unpatched; unpatches whatever the test patched."""
    ddtrace_memcached.unpatch()
    yield
    ddtrace_memcached.unpatch()


# --- 1. every command of the table, on a plain Client ----------------------------------


class Recipe(NamedTuple):
    """A realistic call of one command: ``setup`` (untimed) -> ctx; ``call``; ``check``."""

    call: Callable[[Client, Dict], Any]
    check: Callable[[Any, Dict], bool]
    setup: Callable[[Client], Dict] = lambda c: {}


def _stored(c, **items):
    for key, value in items.items():
        assert c.set(key, value, noreply=False) is True
    return {}


def _with_cas(c):
    _stored(c, k=b"v")
    return {"cas": c.gets("k")[1]}


def _current_memlimit_mb(c):
    return {"mb": c.stats()[b"limit_maxbytes"] // (1024 * 1024)}


RECIPES = {
    "set": Recipe(lambda c, ctx: c.set("k", b"v", expire=60, noreply=False), lambda r, ctx: r is True),
    "set_many": Recipe(lambda c, ctx: c.set_many({"a": b"1", "b": b"2"}, noreply=False), lambda r, ctx: r == []),
    "set_multi": Recipe(lambda c, ctx: c.set_multi({"a": b"1", "b": b"2"}, noreply=False), lambda r, ctx: r == []),
    "add": Recipe(lambda c, ctx: c.add("fresh", b"v", noreply=False), lambda r, ctx: r is True),
    "replace": Recipe(
        lambda c, ctx: c.replace("k", b"v2", noreply=False), lambda r, ctx: r is True, lambda c: _stored(c, k=b"v")
    ),
    "append": Recipe(
        lambda c, ctx: c.append("k", b"-tail", noreply=False), lambda r, ctx: r is True, lambda c: _stored(c, k=b"v")
    ),
    "prepend": Recipe(
        lambda c, ctx: c.prepend("k", b"head-", noreply=False), lambda r, ctx: r is True, lambda c: _stored(c, k=b"v")
    ),
    "cas": Recipe(lambda c, ctx: c.cas("k", b"v2", ctx["cas"], noreply=False), lambda r, ctx: r is True, _with_cas),
    "get": Recipe(lambda c, ctx: c.get("k"), lambda r, ctx: r == b"v", lambda c: _stored(c, k=b"v")),
    "get_many": Recipe(
        lambda c, ctx: c.get_many(["a", "b", "missing"]),
        lambda r, ctx: r == {"a": b"1", "b": b"2"},
        lambda c: _stored(c, a=b"1", b=b"2"),
    ),
    "get_multi": Recipe(
        lambda c, ctx: c.get_multi(["a", "b", "missing"]),
        lambda r, ctx: r == {"a": b"1", "b": b"2"},
        lambda c: _stored(c, a=b"1", b=b"2"),
    ),
    "gets": Recipe(lambda c, ctx: c.gets("k"), lambda r, ctx: r == (b"v", ctx["cas"]), _with_cas),
    "gets_many": Recipe(
        lambda c, ctx: c.gets_many(["k", "missing"]), lambda r, ctx: r == {"k": (b"v", ctx["cas"])}, _with_cas
    ),
    "delete": Recipe(
        lambda c, ctx: c.delete("k", noreply=False), lambda r, ctx: r is True, lambda c: _stored(c, k=b"v")
    ),
    "delete_many": Recipe(
        lambda c, ctx: c.delete_many(["a", "b"], noreply=False), lambda r, ctx: r is True, lambda c: _stored(c, a=b"1")
    ),
    "delete_multi": Recipe(
        lambda c, ctx: c.delete_multi(["a", "b"], noreply=False), lambda r, ctx: r is True, lambda c: _stored(c, a=b"1")
    ),
    "incr": Recipe(lambda c, ctx: c.incr("n", 5), lambda r, ctx: r == 15, lambda c: _stored(c, n=b"10")),
    "decr": Recipe(lambda c, ctx: c.decr("n", 3), lambda r, ctx: r == 7, lambda c: _stored(c, n=b"10")),
    "touch": Recipe(
        lambda c, ctx: c.touch("k", expire=60, noreply=False), lambda r, ctx: r is True, lambda c: _stored(c, k=b"v")
    ),
    "stats": Recipe(lambda c, ctx: c.stats(), lambda r, ctx: b"pid" in r and b"curr_items" in r),
    "version": Recipe(lambda c, ctx: c.version(), lambda r, ctx: isinstance(r, bytes) and r[:1].isdigit()),
    "flush_all": Recipe(lambda c, ctx: c.flush_all(noreply=False), lambda r, ctx: r is True),
    "quit": Recipe(lambda c, ctx: c.quit(), lambda r, ctx: r is None, lambda c: {"connected": c.version()}),
    "cache_memlimit": Recipe(
        lambda c, ctx: c.cache_memlimit(ctx["mb"]), lambda r, ctx: r is True, _current_memlimit_mb
    ),
    "shutdown": Recipe(lambda c, ctx: c.shutdown(), lambda r, ctx: r is None),
    "raw_command": Recipe(
        lambda c, ctx: c.raw_command("set raw 0 0 5\r\nvalue", end_tokens=b"STORED\r\n"), lambda r, ctx: r == b""
    ),
}


def test_every_command_of_the_table_has_a_recipe():
    """The table-driven test below covers every command of ``COMMANDS`` (none forgotten)."""
    assert {c.method for c in ALL_COMMANDS} == set(RECIPES)


def test_table_matches_the_installed_pymemcache():
    """``commands_for`` keeps exactly the table's commands that this pymemcache's Client has."""
    available = {c.method for c in ALL_COMMANDS if hasattr(Client, c.method)}
    assert {c.method for c in PATCHED_COMMANDS} == available


def test_aliases_are_normalized_in_the_table():
    """Each alias maps to its canonical resource, every other command to its own name."""
    for command in ALL_COMMANDS:
        assert command.resource == ALIASES.get(command.method, command.method)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: c.method)
def test_each_command_is_one_span(command, memcached, throwaway_memcached, spans, patched):
    """One realistic call of each command = exactly one ``memcached.command`` span, with the
    normalized resource and the server tags; the call's result is the usual one."""
    if PYMEMCACHE_VERSION < command.since:
        pytest.skip("pymemcache %s has no %s" % (pymemcache.__version__, command.method))
    if command.method == "shutdown":
        server = throwaway_memcached(shutdown=True)
        address = server.address
    else:
        address = memcached
    recipe = RECIPES[command.method]
    client = Client(address)
    ctx = recipe.setup(client)

    error = None
    with captured(spans) as cap:
        try:
            result = recipe.call(client, ctx)
        except Exception as e:  # only shutdown may be refused by the server
            if command.method != "shutdown":
                raise
            error = e

    span = cap.one
    assert span.resource == ALIASES.get(command.method, command.method)
    assert_server_tags(span, address[0], address[1])
    if error is None:
        assert span.error == 0
        assert recipe.check(result, ctx), result
    else:
        assert span.error == 1
        assert type(error).__name__ in span.get_tag("error.type")
    client.close()


@needs_shutdown
def test_shutdown_accepted_stops_the_server(throwaway_memcached, spans, patched):
    """``shutdown`` on a server started with ``-A``: one clean span, and the server exits."""
    server = throwaway_memcached(shutdown=True)
    client = Client(server.address)
    assert client.version()
    with captured(spans) as cap:
        assert client.shutdown() is None
    span = cap.one
    assert span.resource == "shutdown"
    assert span.error == 0
    assert_server_tags(span, *server.address)
    assert server.process.wait(timeout=10) is not None


@needs_shutdown
def test_shutdown_refused_is_an_error_span(throwaway_memcached, spans, patched):
    """``shutdown`` on a server without ``-A``: the server's error reaches the app unchanged
    and the span records it."""
    server = throwaway_memcached()
    client = Client(server.address)
    with captured(spans) as cap, pytest.raises(MemcacheUnknownCommandError) as raised:
        client.shutdown()
    span = cap.one
    assert span.resource == "shutdown"
    assert span.error == 1
    assert "MemcacheUnknownCommandError" in span.get_tag("error.type")
    assert span.get_tag("error.message") == str(raised.value)
    assert server.process.poll() is None  # still running


def test_error_reaches_the_app_unchanged(memcached, spans, patched):
    """A command the server refuses (incr of a non-number) raises the client's exception
    and gives one error span."""
    from pymemcache.exceptions import MemcacheClientError

    client = Client(memcached)
    client.set("word", b"abc", noreply=False)
    with captured(spans) as cap, pytest.raises(MemcacheClientError):
        client.incr("word", 1)
    span = cap.one
    assert span.resource == "incr"
    assert span.error == 1
    assert "MemcacheClientError" in span.get_tag("error.type")


# --- 2. mapping protocol -------------------------------------------------------------------


def test_item_access_is_get_set_delete(memcached, spans, patched):
    """``c[k] = v``, ``c[k]`` and ``del c[k]`` give one span each: set, get, delete."""
    client = Client(memcached, default_noreply=False)
    with captured(spans) as setting:
        client["item"] = b"value"
    with captured(spans) as getting:
        assert client["item"] == b"value"
    with captured(spans) as deleting:
        del client["item"]
    with captured(spans) as missing, pytest.raises(KeyError):
        client["item"]

    assert setting.one.resource == "set"
    assert getting.one.resource == "get"
    assert getting.one.get_metric("db.row_count") == 1
    assert deleting.one.resource == "delete"
    assert missing.one.resource == "get"
    assert missing.one.get_metric("db.row_count") == 0
    for cap in (setting, getting, deleting, missing):
        assert_server_tags(cap.one, *memcached)


# --- 3. tags ---------------------------------------------------------------------------------


def test_tags_on_a_tcp_client(memcached, spans, patched):
    """Every span of a TCP client has the component, kind, system, host and port tags."""
    client = Client(memcached)
    with captured(spans) as cap:
        client.set("k", b"v", noreply=False)
        client.get("k")
        client.get_many(["k", "x"])
        client.delete("k", noreply=False)
        client.version()
    assert [s.resource for s in cap.memcached_only()] == ["set", "get", "get_many", "delete", "version"]
    for span in cap.memcached_only():
        assert_server_tags(span, *memcached)
        assert span.error == 0


def test_tags_on_a_unix_socket_client(memcached_unix, spans, patched):
    """A unix socket client: out.host and server.address are the socket path, no port."""
    client = Client(memcached_unix)
    with captured(spans) as cap:
        assert client.set("unix-key", b"v", noreply=False) is True
        assert client.get("unix-key") == b"v"
    assert [s.resource for s in cap.memcached_only()] == ["set", "get"]
    for span in cap.memcached_only():
        assert span.get_tag("component") == "memcached"
        assert span.get_tag("span.kind") == "client"
        assert span.get_tag("db.system") == "memcached"
        assert span.get_tag("out.host") == memcached_unix
        assert span.get_tag("server.address") == memcached_unix
        assert span.get_metric("network.destination.port") is None
        assert "network.destination.port" not in span.get_metrics()
        assert span.get_metric("_dd.measured") == 1


@pytest.mark.skipif(not HAS_SERVER_STRINGS, reason="this pymemcache does not parse 'host:port' strings")
def test_tags_on_a_host_port_string_client(memcached, spans, patched):
    """``Client(server="host:port")``: the span has the parsed host and port."""
    host, port = memcached
    client = Client(server="%s:%d" % (host, port))
    with captured(spans) as cap:
        assert client.set("k", b"v", noreply=False) is True
    assert_server_tags(cap.one, host, port)


# --- 4. row counts, and results identical to an untraced client ---------------------------


def _normalize_cas(result):
    """Replaces cas unique values (they grow with every write) by a placeholder."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], bytes) and result[1].isdigit():
        return (result[0], "<cas>")
    if isinstance(result, dict):
        return {k: _normalize_cas(v) for k, v in result.items()}
    return result


# (label, call, expected db.row_count); the store calls come first and are not reads.
READ_SEQUENCE = [
    ("set hit", lambda c, p: c.set("hit", b"value", noreply=False), None),
    ("set falsy", lambda c, p: c.set("empty", b"", noreply=False), None),
    ("set zero", lambda c, p: p.set("zero", 0, noreply=False), None),
    ("set none", lambda c, p: p.set("none", None, noreply=False), None),
    ("get hit", lambda c, p: c.get("hit"), 1),
    ("get miss", lambda c, p: c.get("miss"), 0),
    ("get stored b''", lambda c, p: c.get("empty"), 1),
    ("get stored b'' default", lambda c, p: c.get("empty", default="x"), 1),
    ("get miss default kw", lambda c, p: c.get("miss", default="x"), 0),
    ("get miss default positional", lambda c, p: c.get("miss", "x"), 0),
    ("get hit default", lambda c, p: c.get("hit", default="x"), 1),
    ("get stored 0", lambda c, p: p.get("zero"), 1),
    ("get stored None", lambda c, p: p.get("none"), 1),
    ("get stored None default", lambda c, p: p.get("none", default="x"), 1),
    ("get_many some", lambda c, p: c.get_many(["hit", "empty", "miss"]), 2),
    ("get_many none found", lambda c, p: c.get_many(["miss", "miss2"]), 0),
    ("get_many None and 0", lambda c, p: p.get_many(["none", "zero", "miss"]), 2),
    ("get_multi some", lambda c, p: c.get_multi(["hit", "miss"]), 1),
    # The result is keyed by the keys as the app gave them: bytes stay bytes.
    ("get_many bytes keys", lambda c, p: c.get_many([b"hit", b"empty", b"miss"]), 2),
    ("get_many mixed keys", lambda c, p: c.get_many([b"hit", "empty"]), 2),
    ("gets hit", lambda c, p: c.gets("hit"), 1),
    ("gets stored b''", lambda c, p: c.gets("empty"), 1),
    ("gets miss", lambda c, p: c.gets("miss"), 0),
    ("gets miss defaults", lambda c, p: c.gets("miss", "d", "cas-d"), 0),
    ("gets miss defaults kw", lambda c, p: c.gets("miss", default="d", cas_default="cas-d"), 0),
    ("gets stored None", lambda c, p: p.gets("none"), 1),
    ("gets_many some", lambda c, p: c.gets_many(["hit", "empty", "miss"]), 2),
    ("gets_many None", lambda c, p: p.gets_many(["none", "miss"]), 1),
    ("gets_many bytes keys", lambda c, p: c.gets_many([b"hit", b"miss"]), 1),
]


def _run_read_sequence(address, recorder):
    """Runs READ_SEQUENCE on fresh clients; returns [(label, result, spans of the call)]."""
    plain = Client(address)
    pickled = Client(address, serde=pickle_serde)
    plain.flush_all(noreply=False)
    out = []
    for label, call, _ in READ_SEQUENCE:
        with captured(recorder) as cap:
            result = call(plain, pickled)
        out.append((label, _normalize_cas(result), cap.memcached_only()))
    plain.close()
    pickled.close()
    return out


def test_reads_row_count_and_results_unchanged(memcached, spans, unpatched_first):
    """db.row_count on reads is the number of keys found (falsy and None values are hits, a
    returned default is a miss), and every result is what an untraced client returns."""
    untraced = _run_read_sequence(memcached, spans)
    assert all(not s for _, _, s in untraced), "unpatched client made spans"

    ddtrace_memcached.patch()
    traced = _run_read_sequence(memcached, spans)

    assert [(label, result) for label, result, _ in traced] == [(label, result) for label, result, _ in untraced]
    for (label, _, expected_rows), (_, _, call_spans) in zip(READ_SEQUENCE, traced):
        assert len(call_spans) == 1, label
        (span,) = call_spans
        assert span.error == 0, label
        assert span.get_metric("db.row_count") == expected_rows, label


def test_row_count_values_are_the_app_results(memcached, spans, patched):
    """Spot checks on results: a falsy hit, a default returned on a miss, a None pickled hit."""
    client = Client(memcached)
    pickled = Client(memcached, serde=pickle_serde)
    client.set("empty", b"", noreply=False)
    pickled.set("none", None, noreply=False)
    pickled.set("zero", 0, noreply=False)
    sentinel = object()
    with captured(spans) as cap:
        assert client.get("empty", default=sentinel) == b""
        assert client.get("miss", default=sentinel) is sentinel
        assert pickled.get("none", default=sentinel) is None
        assert pickled.get("zero", default=sentinel) == 0
        assert client.gets("miss", sentinel, sentinel) == (sentinel, sentinel)
    assert [s.get_metric("db.row_count") for s in cap.memcached_only()] == [1, 0, 1, 1, 0]


def test_writes_have_no_row_count(memcached, spans, patched):
    """Only reads get db.row_count."""
    client = Client(memcached)
    with captured(spans) as cap:
        client.set("k", b"v", noreply=False)
        client.set_many({"a": b"1"}, noreply=False)
        client.delete("k", noreply=False)
        client.stats()
    assert len(cap.memcached_only()) == 4
    for span in cap.memcached_only():
        assert span.get_metric("db.row_count") is None


# --- 5. memcached.query -------------------------------------------------------------------


def test_query_holds_prefixed_keys(memcached, spans, patched, command_enabled):
    """memcached.query is "<resource> <keys...>" with key_prefix, for one key, set_many's
    dict keys, get_many's list, aliases, and stats arguments (which get no prefix)."""
    client = Client(memcached, key_prefix=b"p:")
    unprefixed = Client(memcached)  # pymemcache 3.x prefixes stats arguments too
    with captured(spans) as cap:
        client.set("k1", SECRET, noreply=False)
        client.get("k1")
        client.set_many({"a": SECRET, "b": SECRET}, noreply=False)
        client.set_multi({"c": SECRET}, noreply=False)
        client.get_many(["a", "b", "c"])
        client.get_multi(["a"])
        client.gets_many(["a", "zz"])
        client.delete_many(["a", "b"], noreply=False)
        client.touch("k1", 10, noreply=False)
        unprefixed.stats("settings")
        client.version()
    assert [s.get_tag("memcached.query") for s in cap.memcached_only()] == [
        "set p:k1",
        "get p:k1",
        "set_many p:a p:b",
        "set_many p:c",
        "get_many p:a p:b p:c",
        "get_many p:a",
        "gets_many p:a p:zz",
        "delete_many p:a p:b",
        "touch p:k1",
        "stats settings",
        "version",
    ]


def test_query_never_holds_a_value(memcached, spans, patched, command_enabled):
    """No tag of any span contains a stored value, whatever the storage command."""
    client = Client(memcached, key_prefix=b"p:")
    secret = SECRET.decode()
    with captured(spans) as cap:
        client.set("k", SECRET, noreply=False)
        client.add("k2", SECRET, noreply=False)
        client.replace("k", SECRET, noreply=False)
        client.append("k", SECRET, noreply=False)
        client.prepend("k", SECRET, noreply=False)
        cas = client.gets("k")[1]
        client.cas("k", SECRET, cas, noreply=False)
        client.set_many({"m1": SECRET, "m2": SECRET}, noreply=False)
        assert client.get("k") == SECRET
        assert client.get_many(["m1"]) == {"m1": SECRET}
        if HAS_RAW_COMMAND:
            client.raw_command(b"set raw 0 0 %d\r\n%s" % (len(SECRET), SECRET), end_tokens=b"STORED\r\n")
    assert len(cap.memcached_only()) >= 10
    for span in cap.memcached_only():
        assert span.get_tag("memcached.query") is not None
        assert secret not in all_tag_text(span), span.get_tags()


def test_no_query_tag_unless_enabled(memcached, spans, patched):
    """Without command_enabled there is no memcached.query tag at all."""
    client = Client(memcached, key_prefix=b"p:")
    with captured(spans) as cap:
        client.set("k", b"v", noreply=False)
        client.get("k")
        client.get_many(["k"])
        Client(memcached).stats("settings")
    assert len(cap.memcached_only()) == 4
    for span in cap.memcached_only():
        assert "memcached.query" not in span.get_tags()


def test_query_of_a_huge_get_many_is_truncated(memcached, spans, patched, command_enabled):
    """A get_many of 10,000 keys: the query is cut to QUERY_MAX_LENGTH and ends with "...";
    what it keeps is the start of the full query; the result is still complete."""
    client = Client(memcached, key_prefix=b"p:")
    keys = ["key-%05d" % i for i in range(10000)]
    client.set_many({k: b"1" for k in keys[:50]}, noreply=False)
    with captured(spans) as cap:
        result = client.get_many(keys)
    assert result == {k: b"1" for k in keys[:50]}
    span = cap.one
    assert span.get_metric("db.row_count") == 50
    query = span.get_tag("memcached.query")
    assert len(query) <= commands.QUERY_MAX_LENGTH
    assert query.endswith(commands.TRUNCATED)
    full = "get_many " + " ".join("p:" + k for k in keys)
    kept = query[: -len(commands.TRUNCATED)]
    assert full.startswith(kept)
    assert len(kept) >= commands.QUERY_MAX_LENGTH - len(commands.TRUNCATED) - 1


def test_get_many_of_a_generator(memcached, spans, patched, command_enabled):
    """get_many(generator): traced, every key of the generator still reaches the server (the
    tracer does not consume it), and the query holds no key."""
    client = Client(memcached)
    keys = ["gen-%d" % i for i in range(20)]
    before = client.stats()
    with captured(spans) as cap:
        result = client.get_many(k for k in keys)
    after = client.stats()
    assert result == {}
    assert after[b"cmd_get"] - before[b"cmd_get"] == len(keys)
    assert after[b"get_misses"] - before[b"get_misses"] == len(keys)
    span = cap.one
    assert span.resource == "get_many"
    assert span.error == 0
    assert span.get_metric("db.row_count") == 0
    query = span.get_tag("memcached.query")
    assert query == "get_many"
    assert not any(k in query for k in keys)


def test_get_many_of_a_generator_with_hits_behaves_as_untraced(memcached, spans, unpatched_first):
    """pymemcache's own get_many reads its ``keys`` twice, so a generator with hits fails
    untraced; traced, the app sees exactly the same outcome (and the span records it)."""

    def run():
        client = Client(memcached)
        client.flush_all(noreply=False)
        client.set("g1", b"v", noreply=False)
        try:
            return ("result", client.get_many(k for k in ["g1", "g2"]))
        except Exception as e:
            return ("raised", type(e), e.args)

    untraced = run()
    ddtrace_memcached.patch()
    with captured(spans) as cap:
        traced = run()
    assert traced == untraced
    get_many_spans = [s for s in cap.memcached_only() if s.resource == "get_many"]
    assert len(get_many_spans) == 1
    assert get_many_spans[0].error == (1 if untraced[0] == "raised" else 0)


@needs_raw_command
def test_raw_command_query_is_its_first_line(memcached, spans, patched, command_enabled):
    """raw_command("set k 0 0 5\\r\\nvalue"): one span, query = the first line only."""
    client = Client(memcached)
    with captured(spans) as cap:
        assert client.raw_command("set rawk 0 0 5\r\nv4lu3", end_tokens=b"STORED\r\n") == b""
    span = cap.one
    assert span.resource == "raw_command"
    assert span.get_tag("memcached.query") == "set rawk 0 0 5"
    assert "v4lu3" not in all_tag_text(span)
    assert client.get("rawk") == b"v4lu3"


# --- 6. HashClient -------------------------------------------------------------------------


def _node_of(hash_client, key):
    return tuple(hash_client._get_client(key).server)


@pytest.mark.parametrize("use_pooling", [False, True], ids=["plain", "pooled"])
def test_hash_client_set_is_one_span_on_its_node(memcached_nodes, spans, patched, use_pooling):
    """HashClient.set / get / delete of one key: exactly one span each, tagged with the node
    the key maps to; a get miss returns the default and counts 0."""
    hash_client = HashClient(memcached_nodes, use_pooling=use_pooling)
    nodes = {}
    for i in range(60):  # keys on every node
        nodes.setdefault(_node_of(hash_client, "key-%d" % i), "key-%d" % i)
    assert len(nodes) == len(memcached_nodes)
    for (host, port), key in nodes.items():
        with captured(spans) as cap:
            assert hash_client.set(key, b"v", noreply=False) is True
        assert cap.one.resource == "set"
        assert_server_tags(cap.one, host, port)
        with captured(spans) as cap:
            assert hash_client.get(key) == b"v"
        assert cap.one.resource == "get"
        assert cap.one.get_metric("db.row_count") == 1
        assert_server_tags(cap.one, host, port)
        with captured(spans) as cap:
            assert hash_client.delete(key, noreply=False) is True
            assert hash_client.get(key, default="gone") == "gone"
        assert [s.resource for s in cap.memcached_only()] == ["delete", "get"]
        assert cap.memcached_only()[1].get_metric("db.row_count") == 0
        for span in cap.memcached_only():
            assert_server_tags(span, host, port)


@pytest.mark.parametrize("use_pooling", [False, True], ids=["plain", "pooled"])
def test_hash_client_get_many_is_one_span_per_node(memcached_nodes, spans, patched, use_pooling):
    """HashClient.get_many of 30 keys: one span per node that got keys, each with its own
    port, row counts summing to the keys found, and no span for the HashClient call itself."""
    hash_client = HashClient(memcached_nodes, use_pooling=use_pooling)
    keys = ["many-%d" % i for i in range(30)]
    stored = keys[::2] + keys[1:6:2]  # 18 of the 30
    hash_client.set_many({k: b"v-" + k.encode() for k in stored}, noreply=False)

    expected_rows = {}
    for key in keys:
        node = _node_of(hash_client, key)
        expected_rows.setdefault(node, 0)
        expected_rows[node] += key in stored
    assert len(expected_rows) > 1, "keys should spread over the nodes"

    with captured(spans) as cap:
        result = hash_client.get_many(keys)
    assert result == {k: b"v-" + k.encode() for k in stored}

    assert len(cap.memcached_only()) == len(expected_rows)
    rows = {}
    for span in cap.memcached_only():
        assert span.resource == "get_many"
        node = (span.get_tag("out.host"), span.get_metric("network.destination.port"))
        assert node in expected_rows, node
        assert_server_tags(span, *node)
        rows[node] = span.get_metric("db.row_count")
    assert rows == expected_rows
    assert sum(rows.values()) == len(stored)


@pytest.mark.parametrize("use_pooling", [False, True], ids=["plain", "pooled"])
def test_hash_client_set_many_and_aliases(memcached_nodes, spans, patched, use_pooling, command_enabled):
    """HashClient.set_multi / get_multi: spans per node, resources normalized, each node's
    query holds only that node's keys."""
    hash_client = HashClient(memcached_nodes, use_pooling=use_pooling)
    keys = ["alias-%d" % i for i in range(30)]
    by_node = {}
    for key in keys:
        by_node.setdefault(_node_of(hash_client, key), []).append(key)
    with captured(spans) as setting:
        assert hash_client.set_multi({k: b"1" for k in keys}, noreply=False) == []
    with captured(spans) as getting:
        assert hash_client.get_multi(keys) == {k: b"1" for k in keys}
    for cap, resource in ((setting, "set_many"), (getting, "get_many")):
        assert len(cap.memcached_only()) == len(by_node)
        for span in cap.memcached_only():
            node = (span.get_tag("out.host"), span.get_metric("network.destination.port"))
            assert span.resource == resource
            assert span.get_tag("memcached.query") == " ".join([resource] + by_node[node])


# --- 7. PooledClient -----------------------------------------------------------------------


def test_pooled_client_one_span_per_command(memcached, spans, patched):
    """PooledClient: one span per command, with the server's host tags."""
    pooled = PooledClient(memcached, max_pool_size=2)
    with captured(spans) as cap:
        assert pooled.set("k", b"v", noreply=False) is True
        assert pooled.get("k") == b"v"
        assert pooled.get("miss", default="d") == "d"
        assert pooled.get_many(["k", "miss"]) == {"k": b"v"}
        assert pooled.set("n", b"1", noreply=False) is True
        assert pooled.incr("n", 2) == 3
        assert pooled.delete("k", noreply=False) is True
    assert [s.resource for s in cap.memcached_only()] == ["set", "get", "get", "get_many", "set", "incr", "delete"]
    assert [s.get_metric("db.row_count") for s in cap.memcached_only()] == [None, 1, 0, 1, None, None, None]
    for span in cap.memcached_only():
        assert_server_tags(span, *memcached)
        assert span.error == 0


# --- 8. RetryingClient ---------------------------------------------------------------------


@needs_retrying_client
def test_retrying_client_on_a_dead_server(dead_address, spans, patched):
    """3 attempts on a dead server: 3 error spans numbered 1, 2, 3, and the app gets the
    ConnectionRefusedError."""
    from pymemcache.client.retrying import RetryingClient

    client = RetryingClient(Client(dead_address, connect_timeout=2), attempts=3, retry_delay=0)
    with captured(spans) as cap, pytest.raises(ConnectionRefusedError):
        client.get("k")
    assert len(cap.memcached_only()) == 3
    assert [s.get_metric("memcached.retry.attempt") for s in cap.memcached_only()] == [1, 2, 3]
    for span in cap.memcached_only():
        assert span.resource == "get"
        assert span.error == 1
        assert "ConnectionRefusedError" in span.get_tag("error.type")
        assert_server_tags(span, *dead_address)


@needs_retrying_client
def test_retrying_client_around_a_pooled_client(dead_address, spans, patched):
    """The attempt number reaches the spans through a PooledClient too."""
    from pymemcache.client.retrying import RetryingClient

    client = RetryingClient(PooledClient(dead_address, connect_timeout=2), attempts=2, retry_delay=0)
    with captured(spans) as cap, pytest.raises(ConnectionRefusedError):
        client.set("k", b"v", noreply=False)
    assert [s.get_metric("memcached.retry.attempt") for s in cap.memcached_only()] == [1, 2]
    for span in cap.memcached_only():
        assert span.resource == "set"
        assert span.error == 1
        assert_server_tags(span, *dead_address)


@needs_retrying_client
def test_retrying_client_on_a_healthy_server(memcached, spans, patched):
    """A RetryingClient call that succeeds first time: one span, attempt 1; a plain call
    afterwards has no attempt metric."""
    from pymemcache.client.retrying import RetryingClient

    inner = Client(memcached)
    client = RetryingClient(inner, attempts=3, retry_delay=0)
    with captured(spans) as cap:
        assert client.set("k", b"v", noreply=False) is True
    span = cap.one
    assert span.resource == "set"
    assert span.error == 0
    assert span.get_metric("memcached.retry.attempt") == 1
    assert_server_tags(span, *memcached)
    with captured(spans) as cap:
        assert client.get("k") == b"v"
    assert cap.one.get_metric("memcached.retry.attempt") == 1
    assert cap.one.get_metric("db.row_count") == 1
    with captured(spans) as cap:
        assert inner.get("k") == b"v"
    assert cap.one.get_metric("memcached.retry.attempt") is None


# --- 9. classes, patch and unpatch --------------------------------------------------------


def test_classes_are_unchanged_by_patch(memcached, spans, patched):
    """After patch, pymemcache.Client is still the base Client class and isinstance works."""
    client = Client(memcached)
    assert isinstance(client, pymemcache_base.Client)
    assert pymemcache.Client is pymemcache_base.Client
    assert pymemcache.Client is Client
    assert type(client) is Client
    with captured(spans) as cap:
        client.version()
    assert cap.one.resource == "version"


def test_client_created_before_patch_is_traced(memcached, spans, unpatched_first):
    """A Client made before patch() is traced after it; after unpatch() nothing is traced."""
    client = Client(memcached)
    with captured(spans) as before:
        client.set("k", b"v", noreply=False)
    assert before.memcached_only() == []

    ddtrace_memcached.patch()
    with captured(spans) as during:
        assert client.get("k") == b"v"
    assert during.one.resource == "get"
    assert_server_tags(during.one, *memcached)

    ddtrace_memcached.unpatch()
    with captured(spans) as after:
        assert client.get("k") == b"v"
        client.set("k2", b"v", noreply=False)
        client.get_many(["k", "k2"])
        fresh = Client(memcached)
        assert fresh.get("k") == b"v"
    assert after.memcached_only() == []


def test_patch_is_idempotent(memcached, spans, unpatched_first):
    """patch() twice still gives one span per command; one unpatch() removes it."""
    ddtrace_memcached.patch()
    ddtrace_memcached.patch()
    client = Client(memcached)
    with captured(spans) as cap:
        client.set("k", b"v", noreply=False)
    assert cap.one.resource == "set"
    ddtrace_memcached.unpatch()
    with captured(spans) as cap:
        client.set("k", b"v", noreply=False)
    assert cap.memcached_only() == []


@needs_retrying_client
def test_unpatch_removes_the_pin_accessors_of_retrying_client(unpatched_first):
    """RetryingClient gets Pin accessors while patched, and is left as it was by unpatch()."""
    from pymemcache.client.retrying import RetryingClient

    from ddtrace_memcached.overrides import PIN_ACCESSORS

    ddtrace_memcached.patch()
    assert set(PIN_ACCESSORS) <= set(vars(RetryingClient))
    ddtrace_memcached.unpatch()
    assert not set(PIN_ACCESSORS) & set(vars(RetryingClient))


def test_server_tags_cache_is_bounded(tmp_path, spans, patched):
    """out.host is computed once per server and cached: a process that sees thousands of
    servers (here unix sockets that do not exist) keeps the cache bounded, and each span
    still names its own server."""
    from ddtrace_memcached.clients.pymemcache import LIBRARY

    paths = [str(tmp_path / ("missing-%d.sock" % i)) for i in range(3000)]
    for path in paths:
        with pytest.raises(OSError):
            Client(path, connect_timeout=1).get("k")
    assert 0 < len(LIBRARY.server_tags) <= 1024
    assert [s.get_tag("out.host") for s in spans.memcached()] == paths
    assert all(s.error == 1 for s in spans.memcached())


def test_subclass_is_traced(memcached, spans, patched):
    """A subclass of Client is traced, once per command, also when it overrides a method."""

    class AppClient(Client):
        def get(self, key, default=None):
            return super().get(key, default)

    client = AppClient(memcached)
    assert isinstance(client, Client)
    with captured(spans) as cap:
        client.set("k", b"v", noreply=False)
        assert client.get("k") == b"v"
        assert client.get("miss", "d") == "d"
    assert [s.resource for s in cap.memcached_only()] == ["set", "get", "get"]
    assert [s.get_metric("db.row_count") for s in cap.memcached_only()] == [None, 1, 0]
    for span in cap.memcached_only():
        assert_server_tags(span, *memcached)
