"""One variant of the benchmark in its own process, driven by ``overhead.py``.

``python worker.py VARIANT`` sets the variant up (``variants.py``), then its workloads
(``workloads.py``; ``BENCH_WORKLOADS``: only these), checks that each returns the right
values and makes the expected spans, prints one JSON line, then answers one JSON line
per request on stdin:

- ``{"run": WORKLOAD, "commands": N}``: runs about N commands in traces of about 50
  spans under a root span, flushes the writer, and reports the process CPU time
  (every thread: ddtrace encodes and sends in others), the main thread's, and the
  spans made; with ``"callgrind": true``, under callgrind, the batch is one counted
  part (``callgrind.py``), whose number it reports;
- ``{"quit": true}``: flushes, reports the spans and parts made, and exits.
"""

import gc
import json
import os
import sys
import time

import callgrind
import variants
from variants import ROOT_SPAN
from variants import SERVICE
from workloads import CLIENT_OF
from workloads import HASH_SERVERS
from workloads import PYMEMCACHE
from workloads import TESTS
from workloads import THREADS
from workloads import WORKLOADS

VALUE = b"v" * 100


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
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    import adapters

    adapter = adapters.load(client_name)
    client = adapter.make([server])
    key = "bench:%s" % client_name
    adapter.set(client, key, VALUE)
    if floor:
        tracer, tagging, tags = variants.floor_setup()
        operation, span_type, row_count = tagging.OPERATION, tagging.SPAN_TYPE, tagging.ROW_COUNT

    def traced(resource, call, rows=None):
        if not floor:
            return call()
        with tracer.trace(operation, service=SERVICE, resource=resource, span_type=span_type) as span:
            tags(span, server)
            result = call()
            if rows is not None:
                span.set_metric(row_count, rows(result))
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
    for client_name in sorted({CLIENT_OF[name] for name in only} - {PYMEMCACHE}):
        more, more_checks = _adapter_batches(client_name, floor, servers[0])
        batches.update(more)
        checks.update(more_checks)
    return batches, checks


def main() -> None:
    variant = sys.argv[1]
    servers = [tuple(s) for s in json.loads(os.environ["BENCH_SERVERS"])]
    out = sys.stdout
    sys.stdout = sys.stderr  # stdout carries the protocol only

    from ddtrace.trace import tracer

    counter = variants.span_counter()
    if variant == "otel":
        *classes, count, flush_otel = variants.otel()
    else:
        classes = variants.SETUPS[variant]()
        count, flush_otel = (lambda: counter.spans), None

    def flush():
        tracer.flush()
        if flush_otel is not None:
            flush_otel()

    # BENCH_WORKLOADS: the workloads this process will run (default all): it sets up and
    # checks only those.
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
            callgrind.start()
            callgrind.mark(collect=True)
        cpu, main_cpu = time.process_time(), time.thread_time()
        if name in THREADS:
            batch(traces * per_trace)
        else:
            for _ in range(traces):
                with tracer.trace(ROOT_SPAN, service="bench-app", resource="GET /bench"):
                    batch(per_trace)
        flush()
        main_cpu, cpu = time.thread_time() - main_cpu, time.process_time() - cpu
        part = callgrind.mark() if request.get("callgrind") else None
        result = dict(cpu=cpu, main_cpu=main_cpu, commands=traces * per_trace, spans=count() - spans)
        if part is not None:
            result["part"] = part
        out.write(json.dumps(result) + "\n")
        out.flush()
    flush()
    out.write(json.dumps(dict(spans=count(), written=counter.written, parts=callgrind.marks())) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
