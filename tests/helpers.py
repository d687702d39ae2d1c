"""What the test modules share about spans, patching and threads: ddtrace's ``Pin``, the
host a span names, a run untraced then traced, and threads started together."""

import threading

import ddtrace

import ddtrace_memcached

# ddtrace's Pin: private from ddtrace 4, deprecated in ddtrace.trace before.
if int(ddtrace.__version__.split(".")[0]) >= 4:
    from ddtrace._trace.pin import Pin  # noqa: F401
else:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ddtrace.trace import Pin  # noqa: F401


def host_of(span) -> tuple:
    """The (host, port) that a span names: ``out.host`` and ``network.destination.port``."""
    return (span.get_tag("out.host"), span.get_metric("network.destination.port"))


def untraced_and_traced(run) -> tuple:
    """``run()`` unpatched, then patched (for that call only): what the app sees, both ways."""
    untraced = run()
    ddtrace_memcached.patch()
    try:
        traced = run()
    finally:
        ddtrace_memcached.unpatch()
    return untraced, traced


def run_threads(target, count):
    """Starts ``count`` threads on ``target(n)`` together; returns their results by n."""
    barrier = threading.Barrier(count)
    results, failures = {}, []

    def run(n):
        barrier.wait()
        try:
            results[n] = target(n)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append((n, exc))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert sorted(results) == list(range(count))
    return results
