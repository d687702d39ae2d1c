"""What the benchmark runs: its workloads and variants, and the spans each variant makes.

Workloads: pymemcache's commands and its scaling series (keys per ``get_many``, servers in
a ``HashClient``, threads on a ``PooledClient``); then ``get`` and ``set`` of every other
client of ``ddtrace_memcached.registry`` that is installed, through its test adapter
(``tests/adapters/<module>.py``), so that a client added to the registry gets its rows
here with no change to the benchmarks. Variants: untraced, ours, ddtrace's built-in
integrations (the registry's ``builtin`` column), OpenTelemetry's pymemcache
instrumentation, and the floor (a hand-written span with our tags).

Both sides import this module: the orchestrator for its tables, and the measured process
(``worker.py``) before it sets its variant up. So it imports only the standard library and
the registry, which imports nothing of ddtrace or of a client; :func:`batch` alone imports
a client (through its adapter), in the orchestrator only.
"""

import importlib
import importlib.util
import os
import sys

from ddtrace_memcached import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")  # the adapters, and the memcached servers

PYMEMCACHE = "pymemcache"  # the client of the scaling series, and of OpenTelemetry's instrumentation

# The pymemcache workloads, and the scaling series: keys per get_many, servers in a
# HashClient (the same 100 keys), threads sharing one PooledClient.
PYMEMCACHE_WORKLOADS = {
    # name: (what, commands per trace (about 50 spans), spans per command when traced)
    "get": ("get (hit)", 50, 1),
    "get_many_10": ("get_many, 10 keys", 50, 1),
    "get_many_100": ("get_many, 100 keys", 50, 1),
    "get_many_1000": ("get_many, 1000 keys", 50, 1),
    "set": ("set (noreply)", 50, 1),
    "hash1_get_many_100": ("HashClient get_many, 100 keys on 1 server", 50, 1),
    "hash_get_many_100": ("HashClient get_many, 100 keys on 3 servers", 16, 3),
    "hash10_get_many_100": ("HashClient get_many, 100 keys on 10 servers", 5, 10),
    "pooled_1": ("PooledClient get, 1 thread", 50, 1),
    "pooled_8": ("PooledClient get, 8 threads", 50, 1),
    "pooled_32": ("PooledClient get, 32 threads", 50, 1),
}
THREADS = {"pooled_1": 1, "pooled_8": 8, "pooled_32": 32}
HASH_SERVERS = {"hash1_get_many_100": 1, "hash_get_many_100": 3, "hash10_get_many_100": 10}
SERVERS = 1 + max(HASH_SERVERS.values())  # one for Client, the rest for the HashClients

SERIES = {
    # name: (unit, [(x, workload)]): what the cost per command must stay flat in
    "keys": ("key", [(10, "get_many_10"), (100, "get_many_100"), (1000, "get_many_1000")]),
    "servers": ("server", [(1, "hash1_get_many_100"), (3, "hash_get_many_100"), (10, "hash10_get_many_100")]),
    "threads": ("thread", [(1, "pooled_1"), (8, "pooled_8"), (32, "pooled_32")]),
}

OPS = ("get", "set")  # what every client is measured on


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# The other clients: get and set through their test adapter, on the first server.
OTHER_CLIENTS = tuple(c.module for c in registry.CLIENTS if c.module != PYMEMCACHE and _installed(c.module))

WORKLOADS = dict(PYMEMCACHE_WORKLOADS)
CLIENT_OF = {name: PYMEMCACHE for name in PYMEMCACHE_WORKLOADS}
OP_OF = {op: op for op in OPS}  # pymemcache's get and set
for _client in OTHER_CLIENTS:
    for _op in OPS:
        _name = "%s_%s" % (_client, _op)
        WORKLOADS[_name] = ("%s %s" % (_client, "get (hit)" if _op == "get" else _op), 50, 1)
        CLIENT_OF[_name], OP_OF[_name] = _client, _op

GET_SET = list(OP_OF)
"""``get`` and ``set`` of every installed client: what the instruction budget covers."""

BUILTIN_CLIENTS = tuple(c.module for c in registry.CLIENTS if c.builtin is not None)
"""The clients ddtrace's own integrations trace (``ddtrace.patch(<builtin>=True)``)."""

# Which clients' commands each variant traces (the others make no span in it).
COVERS = {
    "untraced": (),
    "builtin": BUILTIN_CLIENTS,
    "otel": (PYMEMCACHE,),
}
NOT_COVERED = {
    # ddtrace's built-in integration replaces pymemcache's Client class in its module;
    # PooledClient keeps the original as its client_class, so its commands are untraced.
    "builtin": set(THREADS),
}

VARIANTS = {
    # name: (what, spans per memcached command while the tracer is enabled)
    "untraced": ("untraced: memcached not instrumented", 0),
    "ours": ("ddtrace-memcached", 1),
    "ours-ref": ("ddtrace-memcached from --ref-src", 1),
    "builtin": ("ddtrace's built-in integrations (%s)" % ", ".join(BUILTIN_CLIENTS), 1),
    "otel": ("OpenTelemetry pymemcache instrumentation, SDK, no-op exporter", 1),
    "floor": ("hand-written tracer.trace() span with our tags", 1),
    "floor-wrapt": ("the floor's span in a wrapt wrapper on Client's methods", 1),
}


def expected_spans(variant: str, workload: str) -> float:
    """Spans per command of ``workload`` made by ``variant`` while the tracer is enabled."""
    covers = COVERS.get(variant)
    if covers is not None and CLIENT_OF[workload] not in covers:
        return 0
    if workload in NOT_COVERED.get(variant, ()):
        return 0
    return VARIANTS[variant][1] * WORKLOADS[workload][2]


def expected_spans_in(phase: str):
    """:func:`expected_spans` in ``phase``: none with the tracer disabled."""

    def expected(variant, workload):
        return 0 if phase == "disabled" else expected_spans(variant, workload)

    return expected


# Commands per measured batch, (CPU time, --quick, instructions): a batch takes some tens of
# milliseconds of CPU. A command of an asyncio client is a task on the adapter's event loop,
# about four times a plain command: its batches are smaller.
BATCHES = {
    "get_many_10": (500, 100, 500),
    "get_many_100": (250, 50, 100),
    "get_many_1000": (50, 10, 20),
    "hash1_get_many_100": (250, 50, 100),
    "hash_get_many_100": (48, 16, 32),
    "hash10_get_many_100": (20, 5, 10),
}
DEFAULT_BATCH = (1000, 100, 500)
ASYNC_BATCH = (500, 100, 200)
CPU, QUICK, INSTRUCTIONS = range(3)


def batch(name: str, kind: int) -> int:
    """Commands per batch of ``name``: ``kind`` is CPU, QUICK or INSTRUCTIONS."""
    if name in BATCHES:
        return BATCHES[name][kind]
    return (ASYNC_BATCH if _is_async(CLIENT_OF[name]) else DEFAULT_BATCH)[kind]


def _is_async(client: str) -> bool:
    """Whether ``client``'s adapter is an ``AsyncAdapter`` (importing it imports the client)."""
    if client == PYMEMCACHE:
        return False
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    return importlib.import_module("adapters.%s" % client).ADAPTER.is_async
