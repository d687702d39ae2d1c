"""One variant of the benchmark in its own process, driven by ``overhead.py``.

The variants cannot share a process: ours, ddtrace's built-in integration and
OpenTelemetry's all patch pymemcache. ``python worker.py VARIANT`` sets one up, checks
that every workload returns the right values and makes the expected spans, prints one
JSON line, then answers one JSON line per request on stdin:

- ``{"run": WORKLOAD, "commands": N}``: runs about N commands in traces of about 50
  spans under a root span, flushes the writer, and reports the process CPU time
  (every thread: ddtrace encodes and sends in others), the main thread's, and the
  spans made; with ``"callgrind": true``, under valgrind, only those commands are
  instrumented;
- ``{"quit": true}``: flushes and exits.

Every variant, ``untraced`` included, runs ddtrace with the same root spans: the app
is traced, and only what each integration adds to its memcached commands differs.
Only the standard library is imported here at module level: ``overhead.py`` imports
this module for its tables.
"""

import gc
import json
import os
import subprocess
import sys
import time

ROOT_SPAN = "web.request"
OPERATION = "memcached.command"
VALUE = b"v" * 100

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

# The other clients the package traces: get and set through their test adapter
# (tests/adapters), on the first server. Async clients run each command to completion
# on the adapter's event loop, as their contract tests do.
OTHER_CLIENTS = ("pylibmc", "memcache", "bmemcached", "meta_memcache", "aiomcache", "emcache")
CLIENT_OF = {name: "pymemcache" for name in PYMEMCACHE_WORKLOADS}


def _available(client: str) -> bool:
    """Installed, and traced by this package (its module exists)."""
    import importlib.util

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    module = os.path.join(here, "ddtrace_memcached", "clients", client + ".py")
    return os.path.exists(module) and importlib.util.find_spec(client) is not None


WORKLOADS = dict(PYMEMCACHE_WORKLOADS)
for _client in OTHER_CLIENTS:
    if _available(_client):
        WORKLOADS[_client + "_get"] = ("%s get (hit)" % _client, 50, 1)
        WORKLOADS[_client + "_set"] = ("%s set" % _client, 50, 1)
        CLIENT_OF[_client + "_get"] = CLIENT_OF[_client + "_set"] = _client

# Which clients' commands each variant traces (the others make no span in it).
COVERS = {
    "untraced": (),
    "builtin": ("pymemcache", "pylibmc"),  # ddtrace's two built-in memcached integrations
    "otel": ("pymemcache",),
}
NOT_COVERED = {
    # ddtrace's built-in integration replaces pymemcache's Client class in its module;
    # PooledClient keeps the original as its client_class, so its commands are untraced.
    "builtin": set(THREADS),
}


def expected_spans(variant: str, workload: str) -> float:
    """Spans per command of ``workload`` made by ``variant`` while the tracer is enabled."""
    covers = COVERS.get(variant)
    if covers is not None and CLIENT_OF[workload] not in covers:
        return 0
    if workload in NOT_COVERED.get(variant, ()):
        return 0
    return VARIANTS[variant][1] * WORKLOADS[workload][2]


VARIANTS = {
    # name: (what, spans per memcached command while the tracer is enabled)
    "untraced": ("untraced: memcached not instrumented", 0),
    "ours": ("ddtrace-memcached", 1),
    "ours-ref": ("ddtrace-memcached from --ref-src", 1),
    "builtin": ("ddtrace's built-in pymemcache integration", 1),
    "otel": ("OpenTelemetry pymemcache instrumentation, SDK, no-op exporter", 1),
    "floor": ("hand-written tracer.trace() span with our tags", 1),
    "floor-wrapt": ("the floor's span in a wrapt wrapper on Client's methods", 1),
}


# --- variants: each sets itself up and returns pymemcache's Client, HashClient and
# PooledClient classes; the other clients are made by their adapters ----------------


def _ddtrace_counter():
    """Counts the spans ddtrace writes, other than the root spans, and keeps one for inspection."""
    from ddtrace.trace import TraceFilter
    from ddtrace.trace import tracer

    class Counter(TraceFilter):
        spans = 0  # the memcached spans
        written = 0  # all spans, root spans included: what the sink should receive
        samples = {}  # resource: the signature of its first span

        def process_trace(self, trace):
            self.written += len(trace)
            for span in trace:
                if span.name != ROOT_SPAN:
                    self.spans += 1
                    if span.resource not in self.samples:
                        self.samples[span.resource] = _span_signature(span)
            return trace

    counter = Counter()
    enabled = tracer.enabled
    tracer.configure(trace_processors=[counter])
    tracer.enabled = enabled  # configure() enables the tracer again (ddtrace 4.16)
    return counter


def _untraced():
    from pymemcache.client.base import Client
    from pymemcache.client.base import PooledClient
    from pymemcache.client.hash import HashClient

    return Client, HashClient, PooledClient


def _ours():
    import ddtrace_memcached

    ddtrace_memcached.patch()
    return _untraced()


def _builtin():
    import ddtrace

    ddtrace.patch(pymemcache=True, pylibmc=_available("pylibmc"))
    import pymemcache.client.base
    import pymemcache.client.hash

    # Its proxies replace the module attributes: look them up after patching.
    return pymemcache.client.base.Client, pymemcache.client.hash.HashClient, pymemcache.client.base.PooledClient


def _floor_tags(span, server):
    """Our tags, with the public API, as an app would write them."""
    host, port = server
    span.set_tag("component", "memcached")
    span.set_tag("span.kind", "client")
    span.set_tag("db.system", "memcached")
    span.set_tag("out.host", host)
    span.set_tag("server.address", host)
    span.set_metric("network.destination.port", port)
    span.set_metric("_dd.measured", 1)


def _register_memcached_config():
    """``config.memcached``, as ours has it: ddtrace then tags a span whose service is
    ``memcached`` with ``_dd.svc_src:memcached``, as it does ours (else ``m``, manual)."""
    from ddtrace_memcached import settings

    settings.register()


def _floor():
    """A plain client call inside one hand-written span with our tags: what the tracer costs."""
    from ddtrace.trace import tracer
    from pymemcache.client.base import Client
    from pymemcache.client.base import PooledClient
    from pymemcache.client.hash import HashClient

    _register_memcached_config()

    class FloorClient(Client):
        def get(self, key, default=None):
            with tracer.trace(OPERATION, service="memcached", resource="get", span_type="cache") as span:
                _floor_tags(span, self.server)
                result = Client.get(self, key, default)
                span.set_metric("db.row_count", 0 if result is default else 1)
                return result

        def get_many(self, keys):
            with tracer.trace(OPERATION, service="memcached", resource="get_many", span_type="cache") as span:
                _floor_tags(span, self.server)
                result = Client.get_many(self, keys)
                span.set_metric("db.row_count", len(result))
                return result

        def set(self, key, value, expire=0, noreply=None, flags=None):
            with tracer.trace(OPERATION, service="memcached", resource="set", span_type="cache") as span:
                _floor_tags(span, self.server)
                return Client.set(self, key, value, expire, noreply, flags)

    class FloorHashClient(HashClient):
        client_class = FloorClient

    class FloorPooledClient(PooledClient):
        client_class = FloorClient

    return FloorClient, FloorHashClient, FloorPooledClient


def _floor_wrapt():
    """The floor's span around ``Client``'s methods, put there with wrapt as ours is.

    Not in the default runs: it splits what ours adds over the floor into the cost of
    intercepting the call and the cost of our own code.
    """
    from functools import partial

    from ddtrace.trace import tracer
    from pymemcache.client.base import Client
    import wrapt

    _register_memcached_config()

    def wrapper(resource, wrapped, instance, args, kwargs):
        with tracer.trace(OPERATION, service="memcached", resource=resource, span_type="cache") as span:
            _floor_tags(span, instance.server)
            result = wrapped(*args, **kwargs)
            if resource == "get":
                span.set_metric("db.row_count", 0 if result is None else 1)
            elif resource == "get_many":
                span.set_metric("db.row_count", len(result))
            return result

    for method in ("get", "get_many", "set"):
        wrapt.wrap_function_wrapper(Client, method, partial(wrapper, method))
    return _untraced()


def _otel():
    from opentelemetry.instrumentation.pymemcache import PymemcacheInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    class NoopExporter(SpanExporter):
        spans = 0

        def export(self, spans):
            NoopExporter.spans += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    PymemcacheInstrumentor().instrument(tracer_provider=provider)
    return _untraced() + (lambda: NoopExporter.spans, provider.force_flush)


SETUPS = {
    "untraced": _untraced,
    "ours": _ours,
    "ours-ref": _ours,
    "builtin": _builtin,
    "floor": _floor,
    "floor-wrapt": _floor_wrapt,
}


def _callgrind(state: str) -> None:
    """Switches callgrind's instrumentation of this process on or off, once it has."""
    control = subprocess.Popen(
        ["callgrind_control", "-i", state, str(os.getpid())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while control.poll() is None:  # callgrind takes commands while a thread runs
        time.sleep(0.02)


# --- workloads ---------------------------------------------------------------------


def _per_thread(n: int, threads: int, per_trace: int, run) -> None:
    """``n`` calls of ``run`` shared by ``threads`` threads, each in traces of ``per_trace``
    under a root span of its own (a thread does not inherit the caller's active span)."""
    import threading

    from ddtrace.trace import tracer

    def work(count):
        while count > 0:
            with tracer.trace(ROOT_SPAN, service="bench-app", resource="GET /bench"):
                for _ in range(min(count, per_trace)):
                    run()
            count -= per_trace

    shares = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    pool = [threading.Thread(target=work, args=(share,)) for share in shares]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _pymemcache_batches(classes, servers):
    """One function per pymemcache workload that sends ``n`` commands, as app code would."""
    client_class, hash_class, pooled_class = classes
    client = client_class(servers[0])
    rings = {name: hash_class(servers[1 : 1 + count]) for name, count in HASH_SERVERS.items()}
    pooled = pooled_class(servers[0], max_pool_size=max(THREADS.values()))
    key = "bench:get"
    keys = {count: ["bench:k%d" % i for i in range(count)] for count in (10, 100, 1000)}
    hash_keys = ["bench:h%d" % i for i in range(100)]
    client.set_many({k: VALUE for k in [key] + keys[1000]}, noreply=False)
    for ring in rings.values():
        ring.set_many({k: VALUE for k in hash_keys}, noreply=False)

    def get(n):
        for _ in range(n):
            client.get(key)

    def get_many(count):
        def run(n):
            for _ in range(n):
                client.get_many(keys[count])

        return run

    def set_(n):
        for _ in range(n):
            client.set("bench:set", VALUE)

    def hash_get_many(ring):
        def run(n):
            for _ in range(n):
                ring.get_many(hash_keys)

        return run

    batches = {
        "get": get,
        "set": set_,
        **{"get_many_%d" % count: get_many(count) for count in keys},
        **{name: hash_get_many(ring) for name, ring in rings.items()},
    }
    checks = {
        "get": lambda: client.get(key) == VALUE,
        "set": lambda: client.set("bench:set", VALUE) is True,
        **{"get_many_%d" % c: (lambda c=c: len(client.get_many(keys[c])) == c) for c in keys},
        **{name: (lambda ring=ring: len(ring.get_many(hash_keys)) == 100) for name, ring in rings.items()},
    }
    for name, threads in THREADS.items():
        batches[name] = lambda n, threads=threads, name=name: _per_thread(
            n, threads, WORKLOADS[name][1], lambda: pooled.get(key)
        )
        checks[name] = lambda: pooled.get(key) == VALUE
    return batches, checks


def _adapter_batches(client_name: str, floor: bool, server):
    """get and set of another client, through its test adapter; the floor wraps each
    call in a hand-written span with our tags, as an app would."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from ddtrace.trace import tracer

    import adapters

    adapter = adapters.load(client_name)
    client = adapter.make([server])
    key = "bench:%s" % client_name
    adapter.set(client, key, VALUE)

    def traced(resource, call, rows=None):
        if not floor:
            return call()
        with tracer.trace(OPERATION, service="memcached", resource=resource, span_type="cache") as span:
            _floor_tags(span, server)
            result = call()
            if rows is not None:
                span.set_metric("db.row_count", rows(result))
            return result

    def get(n):
        for _ in range(n):
            traced("get", lambda: adapter.get(client, key), lambda r: 0 if r is None else 1)

    def set_(n):
        for _ in range(n):
            traced("set", lambda: adapter.set(client, key, VALUE))

    batches = {client_name + "_get": get, client_name + "_set": set_}
    checks = {
        client_name + "_get": lambda: traced("get", lambda: adapter.get(client, key)) == VALUE,
        client_name + "_set": lambda: traced("set", lambda: adapter.set(client, key, VALUE)) is not False,
    }
    return batches, checks


def _batches(classes, servers, floor: bool, only):
    batches, checks = _pymemcache_batches(classes, servers)
    for client_name in sorted({CLIENT_OF[name] for name in only} - {"pymemcache"}):
        more, more_checks = _adapter_batches(client_name, floor, servers[0])
        batches.update(more)
        checks.update(more_checks)
    return batches, checks


def _span_signature(span) -> dict:
    """What a span carries, but its ids and the process's."""
    return dict(
        name=span.name,
        service=span.service,
        resource=span.resource,
        span_type=span.span_type,
        tags={k: v for k, v in span.get_tags().items() if k != "runtime-id"},
        metrics={k: v for k, v in span.get_metrics().items() if k != "process_id"},
    )


def main() -> None:
    variant = sys.argv[1]
    servers = [tuple(s) for s in json.loads(os.environ["BENCH_SERVERS"])]
    out = sys.stdout
    sys.stdout = sys.stderr  # stdout carries the protocol only

    from ddtrace.trace import tracer

    counter = _ddtrace_counter()
    if variant == "otel":
        *classes, count, flush_otel = _otel()
    else:
        classes = SETUPS[variant]()
        count, flush_otel = (lambda: counter.spans), None

    def flush():
        tracer.flush()
        if flush_otel is not None:
            flush_otel()

    # BENCH_WORKLOADS: the workloads this process will run (default all): under
    # callgrind, each process runs one, and sets up and checks only that one.
    only = [n for n in os.environ.get("BENCH_WORKLOADS", "").split(",") if n] or list(WORKLOADS)
    batches, checks = _batches(classes, servers, variant.startswith("floor"), only)
    checks = {name: check for name, check in checks.items() if name in only}

    # Check: right results, and the spans each workload makes per command.
    spans_per_command = {}
    for name, check in checks.items():
        per_trace = WORKLOADS[name][1]
        flush()
        before = count()
        with tracer.trace(ROOT_SPAN, service="bench-app", resource="GET /bench"):
            for _ in range(per_trace):
                if not check():
                    raise SystemExit("%s: workload %s returned a wrong value" % (variant, name))
        commands = per_trace
        if name in THREADS:  # and in the workload's threads
            batches[name](per_trace)
            commands += per_trace
        flush()
        spans_per_command[name] = (count() - before) / commands
    module = sys.modules.get("ddtrace_memcached")
    ready = dict(
        variant=variant,
        pid=os.getpid(),
        tracer_enabled=tracer.enabled,
        spans_per_command=spans_per_command,
        span_signatures=counter.samples,
        ddtrace_memcached=getattr(module, "__file__", None),
    )
    gc.collect()
    gc.freeze()  # setup's objects: out of the collector's way, for every variant alike
    out.write(json.dumps(ready) + "\n")
    out.flush()

    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        name = request["run"]
        batch, per_trace = batches[name], WORKLOADS[name][1]
        traces = max(1, request["commands"] // per_trace)
        spans = count()
        if request.get("callgrind"):
            _callgrind("on")
        cpu, main_cpu = time.process_time(), time.thread_time()
        if name in THREADS:
            batch(traces * per_trace)
        else:
            for _ in range(traces):
                with tracer.trace(ROOT_SPAN, service="bench-app", resource="GET /bench"):
                    batch(per_trace)
        flush()
        main_cpu, cpu = time.thread_time() - main_cpu, time.process_time() - cpu
        if request.get("callgrind"):
            _callgrind("off")
        result = dict(cpu=cpu, main_cpu=main_cpu, commands=traces * per_trace, spans=count() - spans)
        out.write(json.dumps(result) + "\n")
        out.flush()
    flush()
    out.write(json.dumps(dict(spans=count(), written=counter.written)) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
