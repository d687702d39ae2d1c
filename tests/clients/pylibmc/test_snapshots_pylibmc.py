"""Snapshot tests of pylibmc apps: the traces they send to Datadog's APM test agent.

As ``tests/clients/pymemcache/test_snapshots.py`` (same fixtures, fixed ports): each app runs
in a new interpreter under ``ddtrace-run`` and asserts its own results; the ``snapshot``
fixture compares the agent's traces with ``snapshots/test_snapshots_pylibmc.<test>.json``.
"""

import pytest

pylibmc = pytest.importorskip("pylibmc")

from ddtrace_memcached.clients.pylibmc import ALL_COMMANDS  # noqa: E402
from snapshot_apps import snapshot_server_strings  # noqa: E402

PRELUDE = (
    """
import pylibmc
"""
    + snapshot_server_strings()
    + 'c = pylibmc.Client([SERVER], behaviors={"cas": True})\n'
)

pytestmark = pytest.mark.snapshot

# One app per command: its setup (traced too) and the command, asserting its result.
COMMAND_APPS = {
    "set": 'assert c.set("k", b"v", time=60) is True',
    "set_multi": 'assert c.set_multi({"a": b"1", "b": b"2"}) == []',
    "add": 'assert c.add("fresh", b"v") is True',
    "add_multi": 'c.set("a", b"1")\nassert c.add_multi({"a": b"x", "b": b"2"}) == ["a"]',
    "replace": 'c.set("k", b"v")\nassert c.replace("k", b"v2") is True',
    "append": 'c.set("k", b"v")\nassert c.append("k", b"-tail") is True',
    "prepend": 'c.set("k", b"v")\nassert c.prepend("k", b"head-") is True',
    "cas": 'c.set("k", b"v")\n_, token = c.gets("k")\nassert c.cas("k", b"v2", token) is True',
    "get": 'c.set("k", b"")\nassert c.get("k") == b""\nassert c.get("missing") is None',
    "gets": 'c.set("k", b"v")\nassert c.gets("k")[0] == b"v"\nassert c.gets("missing") == (None, None)',
    "get_multi": 'c.set("a", b"1")\nassert c.get_multi(["a", "missing"]) == {"a": b"1"}',
    "delete": 'c.set("k", b"v")\nassert c.delete("k") is True',
    "delete_multi": 'c.set("a", b"1")\nassert c.delete_multi(["a", "b"]) is False',
    "incr": 'c.set("n", b"10")\nassert c.incr("n", 5) == 15',
    "decr": 'c.set("n", b"10")\nassert c.decr("n", 3) == 7',
    "incr_multi": 'c.set_multi({"a": b"1", "b": b"2"})\nassert c.incr_multi(["a", "b"], delta=2) is None',
    "touch": 'c.set("k", b"v")\nassert c.touch("k", 60) is True',
    "get_stats": 'assert "curr_items" in c.get_stats()[0][1]',
    "flush_all": "assert c.flush_all() is True",
}


def test_every_command_has_an_app():
    assert set(COMMAND_APPS) == {command.method for command in ALL_COMMANDS}


@pytest.mark.parametrize("method", sorted(COMMAND_APPS))
def test_command(snapshot, method):
    snapshot.run(COMMAND_APPS[method], prelude=PRELUDE)


def test_mapping_forms(snapshot):
    """``c[key] = v``, ``c[key]``, ``key in c``, ``del c[key]``: one span of their command each."""
    snapshot.run(
        """
        c["k"] = b"v"
        assert c["k"] == b"v"
        assert "k" in c and "missing" not in c
        del c["k"]
        try:
            c["k"]
        except KeyError:
            pass
        else:
            raise SystemExit("no KeyError")
        """,
        prelude=PRELUDE,
    )


def test_three_servers(snapshot):
    """Each key's span names its server; a multi-key call on several servers names none
    and counts them (``memcached.servers``); server-wide commands count all three."""
    snapshot.run(
        """
        nodes = pylibmc.Client(NODES)
        for i in range(4):
            assert nodes.set("key-%d" % i, b"v") is True
        assert nodes.get("key-0") == b"v"
        assert len(nodes.get_multi(["key-%d" % i for i in range(4)])) == 4
        assert nodes.delete_multi(["key-0", "key-1"]) is True
        assert len(nodes.get_stats()) == 3
        """,
        prelude=PRELUDE,
    )


def test_unix_socket(snapshot):
    snapshot.run(
        """
        local = pylibmc.Client([SOCKET])
        assert local.set("k", b"v") is True
        assert local.get("k") == b"v"
        """,
        prelude=PRELUDE,
    )


def test_errors(snapshot):
    """NotFound (incr of a missing counter: a miss, NOT_FOUND, no error), a value too large (an error)."""
    snapshot.run(
        """
        def expect(error, call):
            try:
                call()
            except error:
                return
            raise SystemExit("no %s" % error.__name__)

        expect(pylibmc.NotFound, lambda: c.incr("missing"))
        expect(pylibmc.TooBig, lambda: c.set("big", b"x" * (2 * 1024 * 1024)))
        """,
        prelude=PRELUDE,
    )


# libmemcached 1.1 (pylibmc built from source) puts a pointer address and a source line in
# its messages: the unit tests check those; the snapshots hold libmemcached 1.0's (the wheels').
needs_libmemcached_1_0 = pytest.mark.skipif(
    not pylibmc.libmemcached_version.startswith("1.0."), reason="messages vary with libmemcached 1.1"
)


@pytest.mark.parametrize("capture", [False, True], ids=["keys-redacted", "keys-captured"])
def test_error_quoted_key(snapshot, capture):
    """cas of a missing key raises NotFound, whose message quotes the key ("error 16 from
    memcached_cas(<key>)", the same with libmemcached 1.0 and 1.1): a miss, so the span holds
    no message at all, redacted or not; ``memcached.query`` names the key only with capture
    on. Quoted keys in error messages: ``test_error_dead_server`` and tests/clients/pylibmc."""
    snapshot.run(
        """
        try:
            c.cas("user:1", b"v", 12345)
        except pylibmc.NotFound:
            pass
        else:
            raise SystemExit("no error")
        """,
        prelude=PRELUDE,
        DD_TRACE_MEMCACHED_COMMAND_ENABLED=str(capture).lower(),
    )


@needs_libmemcached_1_0
def test_error_dead_server(snapshot):
    snapshot.run(
        """
        try:
            pylibmc.Client([DEAD]).get("user:1")
        except pylibmc.ConnectionError:
            pass
        else:
            raise SystemExit("no error")
        """,
        prelude=PRELUDE,
    )


def test_key_capture(snapshot):
    snapshot.run(
        """
        assert c.set("user:1", b"secret") is True
        assert c.get_multi(["1", "2"], key_prefix="user:") == {"1": b"secret"}
        """,
        prelude=PRELUDE,
        DD_TRACE_MEMCACHED_COMMAND_ENABLED="true",
    )


def test_pools_and_overrides(snapshot):
    """An override on a client goes with its clones; one on a pool covers its reservations."""
    snapshot.run(
        """
        import ddtrace_memcached

        master = pylibmc.Client([SERVER])
        ddtrace_memcached.override(master, service="sessions-cache")
        mapped = pylibmc.ThreadMappedPool(master)
        with mapped.reserve() as mc:
            assert mc.set("k", b"v") is True
        pool = pylibmc.ClientPool(pylibmc.Client([SERVER]), 2)
        ddtrace_memcached.override(pool, service="pooled-cache", tags={"pool": "main"})
        with pool.reserve() as mc:
            assert mc.get("k") == b"v"
        """,
        prelude=PRELUDE,
    )


NAMING_APP = """
assert c.set("k", b"v") is True
assert c.get("k") == b"v"
"""


@pytest.mark.parametrize(
    "variant,settings",
    [("v0", {}), ("v1", {"DD_TRACE_SPAN_ATTRIBUTE_SCHEMA": "v1"})],
    ids=["v0", "v1"],
)
def test_naming(snapshot, variant, settings):
    snapshot.run(NAMING_APP, prelude=PRELUDE, **settings)


def test_coexistence_builtin_patched_too(snapshot):
    """``ddtrace.patch(pylibmc=True)`` under ddtrace-run: still one span per command, ours."""
    snapshot.run(NAMING_APP, prelude="import ddtrace\nddtrace.patch(pylibmc=True)\n" + PRELUDE)


def test_coexistence_left_to_the_builtin(snapshot):
    """pylibmc left out of ``DD_TRACE_MEMCACHED_CLIENTS``: ddtrace's built-in traces it."""
    snapshot.run(NAMING_APP, prelude=PRELUDE, DD_TRACE_MEMCACHED_CLIENTS="pymemcache")
