"""Leaks and stability: long runs keep memory flat and never stack wrappers.

Both run in a fresh interpreter, so that nothing else of the test session is measured, with
a ``TraceFilter`` that counts the spans and drops them (nothing kept, nothing sent):

- many commands (20,000 in CI; 100,000 under ``-m stress``), a tenth of them failing,
  with ``memcached.query`` on: exactly one span per command, one error span per failure,
  no span object left alive, and memory flat after a warmup (RSS from /proc/self/statm and
  Python allocations from tracemalloc);
- patch/unpatch cycles (100 in CI; 1,000 under ``-m stress``): after each ``patch()``,
  exactly one wrapper on every patched method and one span per command; after each
  ``unpatch()``, the original functions and no span; memory flat; and one span per command
  of every client type at the end.

The figures are printed (``pytest -s``).
"""

import json

import pytest

from apps import run_python

COMMON = """
import gc
import json
import os
import time
import tracemalloc

from ddtrace.trace import Span
from ddtrace.trace import TraceFilter
from ddtrace.trace import tracer
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheIllegalInputError

import ddtrace_memcached


class Count(TraceFilter):
    spans = 0
    errors = 0
    unfinished = 0

    def process_trace(self, trace):
        for span in trace:
            if span.name == "memcached.command":
                Count.spans += 1
                Count.errors += span.error
                Count.unfinished += span.duration is None
        return None  # dropped


tracer.configure(trace_processors=[Count()])
ADDRESS = {address!r}


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_spans():
    gc.collect()
    return sum(isinstance(o, Span) for o in gc.get_objects())


def report(**figures):
    print("@@FIGURES@@" + json.dumps(figures))
"""

COMMANDS_APP = """
ddtrace_memcached.patch()
client = Client(ADDRESS, default_noreply=False, no_delay=True)
client.set("n", b"0")
Count.spans = 0


def run(calls):
    # 10 commands a round, one of them failing.
    raised = 0
    for i in range(calls // 10):
        key = "key-%d" % (i % 100)
        client.set(key, b"v" * 100)
        client.get(key)
        client.get_many([key, "absent-%d" % (i % 7)])
        client.gets(key)
        client.incr("n", 1)
        client.touch(key, 60)
        client.append(key, b"+")
        client.delete(key)
        client.add(key, b"w")
        try:
            client.get("bad key %d" % i)
        except MemcacheIllegalInputError:
            raised += 1
    return raised


WARMUP = {warmup}
raised = run(WARMUP)
gc.collect()
if {trace_malloc}:
    tracemalloc.start()
rss_start, start = rss(), time.perf_counter()
traced_start = tracemalloc.get_traced_memory()[0]
raised += run({calls} - WARMUP)
gc.collect()
elapsed = time.perf_counter() - start
report(
    calls={calls},
    spans=Count.spans,
    errors=Count.errors,
    raised=raised,
    unfinished=Count.unfinished,
    live_spans=live_spans(),
    rss_start=rss_start,
    rss_growth=rss() - rss_start,
    traced_growth=tracemalloc.get_traced_memory()[0] - traced_start,
    us_per_call=elapsed / ({calls} - WARMUP) * 1e6,
)
"""

CYCLES_APP = """
import wrapt
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient

from ddtrace_memcached.clients.pymemcache import HAS_RETRYING_CLIENT
from ddtrace_memcached.clients.pymemcache import targets as pymemcache_targets

if HAS_RETRYING_CLIENT:
    from pymemcache.client.retrying import RetryingClient

# Every method the module wraps (Client's commands, HashClient's, PooledClient._create_client...).
targets = [(cls, method) for cls, method, _ in pymemcache_targets() if method in vars(cls)]
assert len(targets) > 20 and (PooledClient, "_create_client") in targets, targets
originals = {{t: vars(t[0])[t[1]] for t in targets}}
client = Client(ADDRESS, default_noreply=False, no_delay=True)
stacked, restored_wrong, span_counts = [], [], set()


def cycle(i):
    ddtrace_memcached.patch()
    if i % 10 == 0:
        ddtrace_memcached.patch()  # idempotent
    for cls, method in targets:
        wrapper = vars(cls)[method]
        if not isinstance(wrapper, wrapt.FunctionWrapper) or wrapper.__wrapped__ is not originals[cls, method]:
            stacked.append((i, cls.__name__, method))
    before = Count.spans
    client.set("k", b"v")
    client.get("k")
    patched_spans = Count.spans - before
    ddtrace_memcached.unpatch()
    for cls, method in targets:
        if vars(cls)[method] is not originals[cls, method]:
            restored_wrong.append((i, cls.__name__, method))
    before = Count.spans
    client.get("k")
    span_counts.add((patched_spans, Count.spans - before))


WARMUP = {warmup}
for i in range(WARMUP):
    cycle(i)
gc.collect()
tracemalloc.start()
rss_start, start = rss(), time.perf_counter()
for i in range(WARMUP, {cycles}):
    cycle(i)
gc.collect()
elapsed = time.perf_counter() - start
traced_growth = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()

# At the end: one span per command, on every client type.
ddtrace_memcached.patch()
clients = [client, PooledClient(ADDRESS), HashClient([ADDRESS])]
if HAS_RETRYING_CLIENT:
    clients.append(RetryingClient(Client(ADDRESS), attempts=2, retry_delay=0))
end_counts = []
for each in clients:
    for call in (lambda: each.set("k", b"v", noreply=False), lambda: each.get("k"), lambda: each.get_many(["k"])):
        before = Count.spans
        call()
        end_counts.append(Count.spans - before)
report(
    cycles={cycles},
    stacked=stacked[:5],
    restored_wrong=restored_wrong[:5],
    span_counts=sorted(span_counts),
    end_counts=end_counts,
    unfinished=Count.unfinished,
    live_spans=live_spans(),
    rss_growth=rss() - rss_start,
    traced_growth=traced_growth,
    ms_per_cycle=elapsed / ({cycles} - WARMUP) * 1e3,
)
"""

MB = 1024 * 1024


def figures_of(code: str, env=None) -> dict:
    proc = run_python(code, env=env, timeout=120)
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("@@FIGURES@@")]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0][len("@@FIGURES@@") :])


@pytest.mark.parametrize(
    "calls, trace_malloc",
    [pytest.param(20_000, True, id="20k"), pytest.param(100_000, False, id="100k", marks=pytest.mark.stress)],
)
def test_many_commands_keep_memory_flat(calls, trace_malloc, memcached):
    """One span per command, one error span per failure, none left alive, memory flat."""
    code = (COMMON + COMMANDS_APP).format(
        address=tuple(memcached), calls=calls, warmup=calls // 10, trace_malloc=trace_malloc
    )
    figures = figures_of(code, env={"DD_TRACE_MEMCACHED_COMMAND_ENABLED": "true"})
    print(
        "\n%(calls)d commands: %(us_per_call).0f us each; after warmup, RSS %(rss_start)d bytes, "
        "RSS growth %(rss_growth)d bytes, traced Python allocations growth %(traced_growth)d bytes" % figures
    )
    assert figures["spans"] == calls
    assert figures["errors"] == figures["raised"] == calls // 10
    assert figures["unfinished"] == 0
    assert figures["live_spans"] == 0
    assert figures["rss_growth"] < 4 * MB
    if trace_malloc:
        assert figures["traced_growth"] < 256 * 1024


@pytest.mark.parametrize(
    "cycles", [pytest.param(100, id="100"), pytest.param(1000, id="1000", marks=pytest.mark.stress)]
)
def test_patch_unpatch_cycles(cycles, memcached):
    """No wrapper stacking, originals restored, one span per command, memory flat."""
    code = (COMMON + CYCLES_APP).format(address=tuple(memcached), cycles=cycles, warmup=cycles // 10)
    figures = figures_of(code)
    print(
        "\n%(cycles)d patch/unpatch cycles: %(ms_per_cycle).2f ms each; after warmup, "
        "RSS growth %(rss_growth)d bytes, traced Python allocations growth %(traced_growth)d bytes" % figures
    )
    assert figures["stacked"] == [] and figures["restored_wrong"] == []
    assert figures["span_counts"] == [[2, 0]]  # patched: set + get; unpatched: nothing
    assert figures["end_counts"] == [1] * len(figures["end_counts"])
    assert figures["unfinished"] == 0
    assert figures["live_spans"] == 0
    assert figures["rss_growth"] < 2 * MB
    assert figures["traced_growth"] < 64 * 1024
