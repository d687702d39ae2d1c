"""Differential testing: tracing must never change what the application sees.

Hypothesis generates sequences of pymemcache calls that mix valid commands with bad input
(illegal, unicode, bytes, empty, ``None`` and int keys; values over the server's 1 MB item
limit; odd types; bad cas tokens, increments and expiry times), on a ``Client`` or a
``PooledClient`` with drawn settings (key prefix, unicode keys, pickle serde, noreply,
``command_enabled``). Each sequence runs untraced (``unpatch()``) against one fresh memcached,
then traced (``patch()``) against another, and:

- every step has the same outcome: its result, or its exception's type, args, message and
  the pymemcache frames it was raised from (a re-created exception has none of them);
- the traced run gives exactly one finished span per call, with the call's resource, an
  error span (``error.type``, ``error.message``) exactly for the calls that raised, and no
  span left active.

The CI run is derandomized (a fixed seed) and asserts how many calls it made, and that every
command and plenty of failures were among them, so it cannot silently shrink. The larger run
(marked ``stress``) makes ``MEMCACHED_DIFFERENTIAL_EXAMPLES`` examples (default 1000), e.g.::

    MEMCACHED_DIFFERENTIAL_EXAMPLES=5000 pytest -m stress tests/clients/pymemcache/test_differential.py
"""

import collections
import operator
import os
from typing import NamedTuple

from ddtrace import config
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from pymemcache.client.base import Client
from pymemcache.client.base import PooledClient
from pymemcache.serde import pickle_serde
import pytest

import ddtrace_memcached
from ddtrace_memcached import commands
from ddtrace_memcached.clients.pymemcache import COMMANDS
from reliability import CountingSockets
from reliability import ServerSocket
from reliability import assert_active
from reliability import assert_span_of
from reliability import outcome_of
from reliability import patch_state_kept
from servers import MemcachedProcess

CI_EXAMPLES = 200
CI_MIN_CALLS = 3000
STRESS_EXAMPLES = int(os.environ.get("MEMCACHED_DIFFERENTIAL_EXAMPLES", "1000"))

RESOURCES = {c.method: c.resource for c in COMMANDS}
ITEM_OPS = {"[]": ("get", operator.getitem), "[]=": ("set", operator.setitem), "del []": ("delete", operator.delitem)}
RESOURCES.update({op: resource for op, (resource, _) in ITEM_OPS.items()})


class Server(NamedTuple):
    address: tuple
    control: ServerSocket  # the test's own connection: flush_all, and waiting for closes


@pytest.fixture(scope="module")
def two_servers():
    """Two fresh memcached: one for the untraced runs, one for the traced runs."""
    processes = [MemcachedProcess(), MemcachedProcess()]
    servers = [Server(p.address, ServerSocket(p.address)) for p in processes]
    yield servers
    for server in servers:
        server.control.close()
    for process in processes:
        process.stop()


# --- what is generated ---------------------------------------------------------------------


class Abbreviated(bytes):
    """A value over memcached's 1 MB item limit, shown short in Hypothesis' reports."""

    def __repr__(self):
        return "<%d bytes>" % len(self)


TOO_LARGE = Abbreviated(b"x" * (1024 * 1024 + 1))
LAST_CAS = "<the cas token of the last gets>"


class Step(NamedTuple):
    method: str
    args: tuple = ()
    kwargs: dict = {}

    def __repr__(self):
        text = ", ".join([repr(a) for a in self.args] + ["%s=%r" % kv for kv in self.kwargs.items()])
        return "%s(%s)" % (self.method, text if len(text) < 300 else text[:300] + "...")


# Both servers must end every sequence in the same state. pymemcache closes the connection at
# the first error reply; commands pipelined behind it (set_many, delete_many), or behind an
# error reply that a noreply command left unread, may or may not have run, as the client's
# reset races them. So what makes the server itself reply an error (an empty key, a cas token
# over 64 bits) goes only where a reply is read and nothing is pipelined: single-key reads,
# incr/decr and cas with a reply; a value over the item limit only alone in a set_many.
GOOD_KEYS = ["k0", "k1", b"k1", "n", b"b\xc3\xa9", "ctl\x01", "k" * 248, "k" * 249, "k" * 250]
BAD_KEYS = ["a b", " lead", "tab\t", "nl\n", "cr\r", "nul\x00", "vt\x0b", "k" * 251, b"k" * 300, None, 42, 4.2]
BAD_KEYS += ["clé", "\u2603", b"\xff\xfe"]
EMPTY_KEYS = ["", b""]
UNHASHABLE_KEYS = [["k0"], {"k": 1}]
HASHABLE_KEYS = st.one_of(st.sampled_from(GOOD_KEYS), st.sampled_from(GOOD_KEYS), st.sampled_from(BAD_KEYS))
KEYS = st.one_of(HASHABLE_KEYS, st.sampled_from(UNHASHABLE_KEYS))
READ_KEYS = st.one_of(KEYS, st.sampled_from(EMPTY_KEYS))
SMALL_VALUES = [b"v", b"", b"v" * 100, b"\r\nEND\r\n", "text", "naïve", 0, 42, -1, 1.5, None, True, ["l", 1], {"d": 1}]
VALUES = st.sampled_from(SMALL_VALUES + [TOO_LARGE])
KEY_LISTS = st.one_of(
    st.lists(HASHABLE_KEYS, max_size=5),
    st.sampled_from(["abc", None, 42, ("k0", "k1"), b"k0", [["k0"]]]),
)
READ_KEY_LISTS = st.one_of(KEY_LISTS, st.lists(st.one_of(HASHABLE_KEYS, st.sampled_from(EMPTY_KEYS)), max_size=5))
MAPPINGS = st.one_of(
    st.dictionaries(HASHABLE_KEYS, st.sampled_from(SMALL_VALUES), max_size=4),
    st.sampled_from([[("k0", b"v")], None, "k0", {}, {"k0": TOO_LARGE}]),
)
EXPIRES = st.sampled_from([0, 3600, -1, "60", 1.5, None])
NOREPLY = st.sampled_from([False, True, None])
STORE_OPTIONS = st.fixed_dictionaries({}, optional={"expire": EXPIRES, "noreply": NOREPLY})
DELTAS = st.sampled_from([0, 1, 7, 2**64 - 1, 2**64, -1, "1", 1.5, None, b"1"])
CAS_TOKENS = st.sampled_from([LAST_CAS, LAST_CAS, b"1", 1, "abc", None, -5, 2**70, b"", "", "\u0661\u0662", 1.5])
CAS_NOREPLY = st.fixed_dictionaries({}, optional={"noreply": st.just(False)})
# Not "items" or "slabs": which slab classes they list depends on memcached's background threads.
STATS_ARGS = st.sampled_from([(), ("settings",), ("bogus",), (42,)])
RAW_COMMANDS = st.sampled_from(
    [
        (("version",), {}),
        (("bogus",), {}),
        (("get k0",), {"end_tokens": b"END\r\n"}),
        (("set raw 0 0 1\r\nx",), {"end_tokens": b"STORED\r\n"}),
        (("mn",), {}),
    ]
)


def _steps():
    def store(method):
        return st.builds(lambda k, v, o: Step(method, (k, v), o), KEYS, VALUES, STORE_OPTIONS)

    def many(method, options=st.just({}), keys=KEY_LISTS):
        return st.builds(lambda ks, o: Step(method, (ks,), o), keys, options)

    def one(method, options=st.just({}), keys=KEYS):
        return st.builds(lambda k, o: Step(method, (k,), o), keys, options)

    noreply_only = st.fixed_dictionaries({}, optional={"noreply": NOREPLY})
    by_method = {
        "set": store("set"),
        "add": store("add"),
        "replace": store("replace"),
        "append": store("append"),
        "prepend": store("prepend"),
        "set_many": st.builds(lambda m, o: Step("set_many", (m,), o), MAPPINGS, STORE_OPTIONS),
        "set_multi": st.builds(lambda m, o: Step("set_multi", (m,), o), MAPPINGS, STORE_OPTIONS),
        "cas": st.builds(lambda k, v, t, o: Step("cas", (k, v, t), o), KEYS, VALUES, CAS_TOKENS, CAS_NOREPLY),
        "get": st.one_of(
            one("get", keys=READ_KEYS),
            st.builds(lambda k, d: Step("get", (k, d)), READ_KEYS, st.sampled_from([None, "dflt", 0])),
        ),
        "gets": one("gets", keys=READ_KEYS),
        "get_many": many("get_many", keys=READ_KEY_LISTS),
        "get_multi": many("get_multi", keys=READ_KEY_LISTS),
        "gets_many": many("gets_many", keys=READ_KEY_LISTS),
        "delete": one("delete", noreply_only),
        "delete_many": many("delete_many", noreply_only),
        "delete_multi": many("delete_multi", noreply_only),
        "incr": st.builds(lambda k, d, o: Step("incr", (k, d), o), READ_KEYS, DELTAS, noreply_only),
        "decr": st.builds(lambda k, d, o: Step("decr", (k, d), o), READ_KEYS, DELTAS, noreply_only),
        "touch": st.builds(lambda k, e, o: Step("touch", (k, e), o), KEYS, EXPIRES, noreply_only),
        "stats": STATS_ARGS.map(lambda args: Step("stats", args)),
        "version": st.just(Step("version")),
        "flush_all": st.builds(
            lambda d, o: Step("flush_all", (), dict(o, delay=d)), st.sampled_from([0, "soon"]), noreply_only
        ),
        "quit": st.just(Step("quit")),
        "cache_memlimit": st.sampled_from([64, "64MB", 0]).map(lambda mb: Step("cache_memlimit", (mb,))),
        "shutdown": st.just(Step("shutdown")),
        "raw_command": RAW_COMMANDS.map(lambda a: Step("raw_command", *a)),
        "[]": st.builds(lambda k: Step("[]", (k,)), READ_KEYS),
        "[]=": st.builds(lambda k, v: Step("[]=", (k, v)), KEYS, VALUES),
        "del []": st.builds(lambda k: Step("del []", (k,)), KEYS),
    }
    # Every command of this pymemcache, and the item operators; a set before reads, often.
    available = [by_method[c.method] for c in COMMANDS] + [by_method[op] for op in ITEM_OPS]
    assert len(available) == len(COMMANDS) + len(ITEM_OPS)
    return st.one_of(store("set"), *available)


STEPS = st.lists(_steps(), min_size=15, max_size=60)
CLIENTS = st.fixed_dictionaries(
    {
        "pooled": st.booleans(),
        "key_prefix": st.sampled_from([b"", b"p:"]),
        "allow_unicode_keys": st.booleans(),
        "serde": st.sampled_from([None, pickle_serde]),
        "default_noreply": st.booleans(),
        "command_enabled": st.booleans(),
    }
)


# --- running one sequence ------------------------------------------------------------------


def _new_client(address, options, sockets):
    kwargs = {k: v for k, v in options.items() if k not in ("pooled", "command_enabled")}
    kwargs.update(connect_timeout=5, timeout=5, socket_module=sockets)
    kwargs.update(no_delay=True)  # no Nagle stall after noreply commands
    return PooledClient(address, max_pool_size=2, **kwargs) if options["pooled"] else Client(address, **kwargs)


def _call(client, step, state):
    if step.method in ITEM_OPS:
        return ITEM_OPS[step.method][1](client, *step.args)
    args = tuple(state.get("cas", b"1") if a is LAST_CAS else a for a in step.args)
    result = getattr(client, step.method)(*args, **step.kwargs)
    if step.method == "gets" and result[1] is not None:
        state["cas"] = result[1]
    if step.method == "stats":
        return sorted(result)  # the values hold pid, uptime, time...: only the keys are compared
    return result


def _supported(steps, client):
    """The steps whose method this kind of client has (PooledClient lacks cache_memlimit)."""
    return [s for s in steps if s.method in ITEM_OPS or hasattr(type(client), s.method)]


def _sockets(client) -> list:
    """The client's open sockets (a PooledClient's, in its pool)."""
    clients = [client]
    if isinstance(client, PooledClient):
        clients = list(client.client_pool._free_objs) + list(client.client_pool._used_objs)
    return [c.sock for c in clients if c.sock is not None]


def _run(server, options, steps, on_step):
    """Runs ``steps`` on a new client; calls ``on_step(step, outcome, exception)`` after each.

    Returns [(step, outcome)]. After each step, waits until the server has closed every
    connection the client closed (after ``quit``, or an error, noreply commands may still be
    in them), so that they cannot race the next step's new connection.
    """
    server.control.flush_all()
    sockets, accepted = CountingSockets(), server.control.accepted()
    client, state, outcomes = _new_client(server.address, options, sockets), {}, []
    try:
        for step in _supported(steps, client):
            outcome, exc = outcome_of(lambda: _call(client, step, state))
            if exc is not None or step.method == "quit":  # what may close a connection
                server.control.wait_for_clients(accepted + sockets.made, _sockets(client))
            outcomes.append((step, outcome))
            on_step(step, outcome, exc)
    finally:
        client.close()
    server.control.wait_for_clients(accepted + sockets.made)  # nothing of this run reaches the next example
    return outcomes


class Tally:
    """What the traced runs did: calls, calls that raised, and calls per method."""

    def __init__(self):
        self.calls = 0
        self.raised = 0
        self.methods = collections.Counter()


def run_differential(servers, recorder, max_examples: int) -> Tally:
    tally = Tally()
    untraced_server, traced_server = servers

    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(options=CLIENTS, steps=STEPS)
    def same_outcomes(options, steps):
        ddtrace_memcached.unpatch()
        recorder.spans.clear()
        untraced = _run(untraced_server, options, steps, lambda *_: None)
        assert recorder.spans == [], "the untraced run made spans"

        ddtrace_memcached.patch()
        config.memcached["command_enabled"] = options["command_enabled"]

        def check_span(step, outcome, exc):
            got, recorder.spans[:] = list(recorder.spans), []
            assert len(got) == 1, "%r gave %d spans: %r" % (step, len(got), [s.resource for s in got])
            # c[key] raises KeyError itself on a miss, after a get that went fine.
            miss = step.method == "[]" and isinstance(exc, KeyError)
            assert_span_of(got[0], RESOURCES[step.method], None if miss else exc)
            query = got[0].get_tag("memcached.query")
            if options["command_enabled"]:
                assert query is not None and len(query) <= commands.QUERY_MAX_LENGTH, query
            else:
                assert query is None
            assert_active(None)
            tally.calls += 1
            tally.raised += exc is not None
            tally.methods[step.method] += 1

        traced = _run(traced_server, options, steps, check_span)
        assert len(traced) == len(untraced)
        for (step, before), (_, after) in zip(untraced, traced):
            assert after == before, "%r: untraced %r, traced %r" % (step, before, after)

    with patch_state_kept():
        same_outcomes()
    return tally


def test_traced_matches_untraced(two_servers, spans):
    """CI size: a fixed-seed run of a few thousand calls, every command and many failures."""
    tally = run_differential(two_servers, spans, CI_EXAMPLES)
    print("differential: %d calls (%d raised) in %d examples" % (tally.calls, tally.raised, CI_EXAMPLES))
    assert tally.calls >= CI_MIN_CALLS, tally.calls
    assert tally.raised >= tally.calls // 5, (tally.raised, tally.calls)
    expected = {c.method for c in COMMANDS} | set(ITEM_OPS)
    assert set(tally.methods) == expected
    assert min(tally.methods.values()) >= 20, tally.methods


@pytest.mark.stress
def test_traced_matches_untraced_large(two_servers, spans):
    """The larger run: MEMCACHED_DIFFERENTIAL_EXAMPLES examples (default 1000)."""
    tally = run_differential(two_servers, spans, STRESS_EXAMPLES)
    print("differential (stress): %d calls (%d raised) in %d examples" % (tally.calls, tally.raised, STRESS_EXAMPLES))
    assert tally.calls >= STRESS_EXAMPLES * 10, tally.calls
