"""Security: spans never hold a cached value; keys only when opted in; no huge tags.

- Every command of ``COMMANDS``, on every client type, stores, reads and sends distinctive
  marker values and keys; no tag name or value and no metric name of any span holds a value
  marker, with ``command_enabled`` off or on. Key markers appear only with it on, and then
  in ``memcached.query``. The same end to end: an app under ``ddtrace-run`` with
  ``DD_TRACE_MEMCACHED_COMMAND_ENABLED`` false or true, checked in what the agent received.
- Huge key lists, keys and raw commands: ``memcached.query`` is cut at the documented
  ``QUERY_MAX_LENGTH`` and ends with ``...``, and no span carries a multi-kilobyte tag.
"""

from collections.abc import Collection
import json
import os

from ddtrace import config
from pymemcache.client.base import Client
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheError
import pytest

from apps import ddtrace_run
from apps import run_python
from ddtrace_memcached import commands
from ddtrace_memcached.clients.pymemcache import ALL_COMMANDS
from ddtrace_memcached.clients.pymemcache import COMMANDS
from ddtrace_memcached.clients.pymemcache import HAS_RETRYING_CLIENT
from ddtrace_memcached.clients.pymemcache import VERSION as PYMEMCACHE_VERSION
from servers import ROOT

if HAS_RETRYING_CLIENT:
    from pymemcache.client.retrying import RetryingClient

VALUE_MARK = "SECRET" + "-VALUE-"  # split: a test's source line in error.stack must not hold it
KEY_MARK = "KEYMARK" + "-"
HAS_RAW_COMMAND = PYMEMCACHE_VERSION >= (4, 0)
TAG_BUDGET = 4 * commands.QUERY_MAX_LENGTH  # bytes: far below the "multi-megabyte" of the issue


def value(n) -> bytes:
    return ("%s%d" % (VALUE_MARK, n)).encode()


def key(n) -> str:
    return "%s%d" % (KEY_MARK, n)


def span_text(span) -> str:
    """Every tag name and value and every metric name of the span, as one text."""
    return json.dumps([sorted(span.get_tags().items()), sorted(span.get_metrics())], default=str)


def _cas(c):
    c.set(key(8), value(80), noreply=False)
    return c.cas(key(8), value(81), c.gets(key(8))[1], noreply=False)


def _raw_set(c):
    return c.raw_command(
        b"set %s 0 0 %d\r\n%s" % (key(20).encode(), len(value(20)), value(20)), end_tokens=b"STORED\r\n"
    )


def _refused(call):
    """Runs a command the server refuses (shutdown without -A): the error is expected."""

    def run(c):
        try:
            call(c)
        except MemcacheError:
            pass

    return run


# Each command of the table, called with marker keys and values; reads hit stored values.
RECIPES = {
    "set": lambda c: c.set(key(1), value(1), noreply=False),
    "set_many": lambda c: c.set_many({key(2): value(2), key(3): value(3)}, noreply=False),
    "set_multi": lambda c: c.set_multi({key(4): value(4)}, noreply=False),
    "add": lambda c: c.add(key(5), value(5), noreply=False),
    "replace": lambda c: c.replace(key(1), value(6), noreply=False),
    "append": lambda c: c.append(key(1), value(7), noreply=False),
    "prepend": lambda c: c.prepend(key(1), value(8), noreply=False),
    "cas": _cas,
    "get": lambda c: c.get(key(1)),
    "get_many": lambda c: c.get_many([key(2), key(3)]),
    "get_multi": lambda c: c.get_multi([key(4)]),
    "gets": lambda c: c.gets(key(2)),
    "gets_many": lambda c: c.gets_many([key(2), key(3)]),
    "touch": lambda c: c.touch(key(2), 60, noreply=False),
    "incr": lambda c: (c.set(key(9), b"10", noreply=False), c.incr(key(9), 5)),
    "decr": lambda c: c.decr(key(9), 1),
    "delete": lambda c: c.delete(key(5), noreply=False),
    "delete_many": lambda c: c.delete_many([key(2), key(3)], noreply=False),
    "delete_multi": lambda c: c.delete_multi([key(4)], noreply=False),
    "stats": lambda c: c.stats("settings"),
    "version": lambda c: c.version(),
    "cache_memlimit": lambda c: c.cache_memlimit(64),
    "raw_command": lambda c: (_raw_set(c), c.raw_command("get " + key(20), end_tokens=b"END\r\n")),
    "shutdown": _refused(lambda c: c.shutdown()),
    "flush_all": lambda c: c.flush_all(),
    "quit": lambda c: c.quit(),
}
KEYLESS = {"stats", "version", "cache_memlimit", "shutdown", "flush_all", "quit"}


def test_every_command_has_a_recipe():
    assert {c.method for c in ALL_COMMANDS} == set(RECIPES)


KINDS = ["client", "pooled", "hash"] + (["retrying"] if HAS_RETRYING_CLIENT else [])


def make(kind, memcached, memcached_nodes):
    if kind == "client":
        return Client(memcached)
    if kind == "pooled":
        return PooledClient(memcached)
    if kind == "hash":
        return HashClient(memcached_nodes)
    return RetryingClient(Client(memcached), attempts=2, retry_delay=0)


@pytest.fixture(params=[False, True], ids=["command_enabled=false", "command_enabled=true"])
def command_setting(request, monkeypatch):
    monkeypatch.setitem(config.memcached, "command_enabled", request.param)
    return request.param


@pytest.mark.parametrize("kind", KINDS)
def test_no_value_in_any_span_and_keys_only_when_enabled(
    kind, command_setting, memcached, memcached_nodes, spans, patched
):
    """Every command this client type has: no span holds a value marker; key markers are in
    memcached.query when command_enabled is on, and in no tag when it is off."""
    client = make(kind, memcached, memcached_nodes)
    ran = []
    try:
        for command in COMMANDS:
            method = command.method
            if kind != "retrying" and not hasattr(client, method):
                continue  # HashClient has no stats, raw_command...
            before = len(spans.memcached())
            RECIPES[method](client)
            made = spans.memcached()[before:]
            assert made, "%s made no span" % method
            ran.append(method)
            for span in made:
                text = span_text(span)
                assert VALUE_MARK not in text, (method, span.get_tags())
                query = span.get_tag("memcached.query")
                if command_setting:
                    assert query is not None and len(query) <= commands.QUERY_MAX_LENGTH
                    assert (KEY_MARK in query) == (span.resource not in KEYLESS), (method, query)
                    assert KEY_MARK not in text.replace(json.dumps(query), ""), (method, span.get_tags())
                else:
                    assert query is None and KEY_MARK not in text, (method, span.get_tags())
    finally:
        client.close()
    if kind == "client":
        assert ran == [c.method for c in COMMANDS]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.set(key(1) + " space", value(1)), id="whitespace"),
        pytest.param(lambda c: c.get(key(1) + "\n"), id="newline"),
        pytest.param(lambda c: c.get_many([key(1), key(2) + "\x00"]), id="nul"),
        pytest.param(lambda c: c.delete(key(1) * 30), id="too-long"),
        pytest.param(lambda c: c.get(key(1) + "é"), id="non-ascii"),
    ],
)
def test_keys_of_illegal_key_errors_only_when_enabled(call, memcached, spans, patched, monkeypatch):
    """With command_enabled off, no tag holds a key, also when pymemcache refuses the key
    (its exception message quotes the key: 'Key contains whitespace: b"..."')."""
    monkeypatch.setitem(config.memcached, "command_enabled", False)
    with pytest.raises(MemcacheError):
        call(Client(memcached))
    (span,) = spans.memcached()
    assert span.error == 1
    assert KEY_MARK not in span_text(span), span.get_tags()


# --- the same, end to end: environment variable, ddtrace-run, agent ---------------------------

AGENT_APP = """
from pymemcache.client.base import Client

client = Client({address!r}, default_noreply=False)
for n in range(3):
    key, value = "{key}%d" % n, b"{value}%d" % n
    client.set(key, value)
    assert client.get(key) == value
client.set_many({{"{key}many": b"{value}many"}})
assert client.get_many(["{key}many", "{key}absent"]) == {{"{key}many": b"{value}many"}}
raw_value = b"{value}raw"
if hasattr(client, "raw_command"):  # pymemcache >= 4.0
    client.raw_command(b"set {key}raw 0 0 %d\\r\\n%s" % (len(raw_value), raw_value), end_tokens=b"STORED\\r\\n")
"""


@pytest.mark.parametrize("enabled", ["false", "true"])
def test_agent_receives_no_value_and_keys_only_when_enabled(enabled, memcached, test_agent):
    """Under ddtrace-run, DD_TRACE_MEMCACHED_COMMAND_ENABLED decides whether the agent gets
    the keys (in memcached.query); it never gets a value."""
    token = "test_security.env.%s" % enabled
    test_agent.start(token)
    env = test_agent.env(token, env_header=False, DD_TRACE_MEMCACHED_COMMAND_ENABLED=enabled)
    code = AGENT_APP.format(address=tuple(memcached), key=KEY_MARK, value=VALUE_MARK)
    proc = run_python(code, env=env, argv_prefix=ddtrace_run())
    assert proc.returncode == 0, proc.stderr
    expected = 9 if HAS_RAW_COMMAND else 8
    traces = test_agent.wait_for_traces(token, expected)
    received = [s for trace in traces for s in trace if s["name"] == "memcached.command"]
    assert len(received) == expected
    for span in received:
        text = json.dumps([span["meta"], sorted(span["metrics"])])
        assert VALUE_MARK not in text, span["meta"]
        query = span["meta"].get("memcached.query")
        if enabled == "true":
            assert query and KEY_MARK in query, span["meta"]
        else:
            assert query is None and KEY_MARK not in text, span["meta"]


# --- huge keys and key lists ------------------------------------------------------------------


def test_the_cap_is_documented():
    """The cap users read about is the one enforced."""
    documented = "%d characters" % commands.QUERY_MAX_LENGTH
    readme = os.path.join(ROOT, "README.md")
    with open(readme) as f:
        assert documented in f.read()


def _keys(count, width=12):
    return ["k%0*d" % (width - 1, i) for i in range(count)]


HUGE = {
    "get_many-10000-keys": (lambda c, ks: c.get_many(ks), "get_many", 10_000),
    "get_multi-10000-keys": (lambda c, ks: c.get_multi(ks), "get_many", 10_000),
    "gets_many-10000-keys": (lambda c, ks: c.gets_many(ks), "gets_many", 10_000),
    "set_many-10000-keys": (lambda c, ks: c.set_many({k: b"v" for k in ks}, noreply=False), "set_many", 10_000),
    "delete_many-10000-keys": (lambda c, ks: c.delete_many(ks, noreply=False), "delete_many", 10_000),
    "stats-5000-arguments": (lambda c, ks: Client(c.server).stats(*ks), "stats", 5_000),
}


@pytest.mark.parametrize("name", list(HUGE))
def test_huge_key_lists_are_cut(name, memcached, spans, patched, command_enabled):
    """memcached.query is the start of the full query, cut at QUERY_MAX_LENGTH and ending
    with '...'; every other tag stays small."""
    call, resource, count = HUGE[name]
    keys = _keys(count)
    client = Client(memcached, key_prefix=b"p:")
    try:
        call(client, keys)
    except (MemcacheError, OSError):
        pass  # the server refuses a 60 KB stats line, or resets: the span is what matters here
    (span,) = spans.memcached()
    query = span.get_tag("memcached.query")
    assert len(query) <= commands.QUERY_MAX_LENGTH and query.endswith(commands.TRUNCATED)
    prefix = "" if resource == "stats" else "p:"
    full = " ".join([resource] + [prefix + k for k in keys])
    kept = query[: -len(commands.TRUNCATED)]
    assert full.startswith(kept) and len(kept) >= commands.QUERY_MAX_LENGTH - 20
    assert len(span_text(span)) < TAG_BUDGET, {k: len(v) for k, v in span.get_tags().items()}


class CountingKeys(Collection):
    """A collection of keys that counts how many of them were read."""

    def __init__(self, keys):
        self.keys = keys
        self.read = 0

    def __len__(self):
        return len(self.keys)

    def __contains__(self, key):
        return key in self.keys

    def __iter__(self):
        for key in self.keys:
            self.read += 1
            yield key


@pytest.mark.parametrize("method", ["get_many", "set_many", "delete_many"])
def test_the_query_of_a_huge_key_list_reads_only_what_it_keeps(method):
    """Building memcached.query stops at the cap: of 100,000 keys, it reads about as many
    as fit in QUERY_MAX_LENGTH characters, not all of them."""
    (command,) = [c for c in COMMANDS if c.method == method]
    keys = CountingKeys(_keys(100_000))
    query = commands.query(command, (keys,), {}, b"")
    kept = len(query.split(" ")) - 1  # the resource, then one word per key
    assert 0 < keys.read <= kept + 1, (keys.read, kept)


@pytest.mark.parametrize("use_pooling", [False, True], ids=["plain", "pooled"])
def test_huge_get_many_on_a_hash_client_is_cut_per_node(use_pooling, memcached_nodes, spans, patched, command_enabled):
    """A HashClient get_many of 10,000 keys: one span per node, each query cut."""
    client = HashClient(memcached_nodes, use_pooling=use_pooling)
    assert client.get_many(_keys(10_000)) == {}
    got = spans.memcached()
    assert len(got) == len(memcached_nodes)
    for span in got:
        query = span.get_tag("memcached.query")
        assert len(query) <= commands.QUERY_MAX_LENGTH and query.endswith(commands.TRUNCATED)
        assert len(span_text(span)) < TAG_BUDGET


@pytest.mark.parametrize("enabled", [False, True], ids=["command_enabled=false", "command_enabled=true"])
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c, k: c.get(k), id="get"),
        pytest.param(lambda c, k: c.set(k, b"v", noreply=False), id="set"),
        pytest.param(lambda c, k: c.get_many(["ok", k]), id="get_many"),
    ],
)
def test_a_one_megabyte_key_makes_no_huge_tag(call, enabled, memcached, spans, patched, monkeypatch):
    """A 1 MB key (refused by pymemcache): no tag of its error span is anywhere near 1 MB."""
    monkeypatch.setitem(config.memcached, "command_enabled", enabled)
    with pytest.raises(MemcacheError):
        call(Client(memcached), "k" * (1024 * 1024))
    (span,) = spans.memcached()
    assert span.error == 1
    sizes = {name: len(str(text)) for name, text in span.get_tags().items()}
    assert len(span_text(span)) < TAG_BUDGET, sizes


@pytest.mark.skipif(not HAS_RAW_COMMAND, reason="Client.raw_command needs pymemcache >= 4.0")
def test_a_huge_raw_command_line_is_cut(memcached, spans, patched, command_enabled):
    """raw_command with a 100 KB first line: the query is cut, the value line dropped."""
    client = Client(memcached)
    line = "set " + " ".join(_keys(8_000))
    with pytest.raises((MemcacheError, OSError)):  # refused, or the connection reset
        client.raw_command(line + "\r\n" + VALUE_MARK)
    (span,) = spans.memcached()
    query = span.get_tag("memcached.query")
    assert len(query) == commands.QUERY_MAX_LENGTH and query.endswith(commands.TRUNCATED)
    assert line.startswith(query[: -len(commands.TRUNCATED)])
    assert VALUE_MARK not in span_text(span) and len(span_text(span)) < TAG_BUDGET
