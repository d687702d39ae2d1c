"""The variants, as the measured process sets them up: untraced, ours, ddtrace's built-in
integrations, OpenTelemetry's, and the floor.

The variants cannot share a process: ours, ddtrace's built-in integrations and
OpenTelemetry's all patch pymemcache. Each setup returns pymemcache's ``Client``,
``HashClient`` and ``PooledClient`` classes as that variant has them; the other clients
are made by their adapters (``worker.py``), whose calls the floor wraps in spans of its
own. Every variant, ``untraced`` included, runs ddtrace with the same root spans: the app
is traced, and only what each integration adds to its memcached commands differs.

The floor's spans are hand-written, with the integration's fixed tags taken from
``ddtrace_memcached.tagging`` (the one definition of the span model, see
:func:`floor_tags`), so that they are the spans ours makes (``overhead.py`` checks that
their signatures agree) and only their cost differs. Everything is imported inside the
setups: the measured process sets its variant up first.
"""

from ddtrace_memcached import registry

ROOT_SPAN = "web.request"
SERVICE = "memcached"  # the service of ours' spans (settings.register's default)


def span_counter():
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
                        self.samples[span.resource] = span_signature(span)
            return trace

    counter = Counter()
    enabled = tracer.enabled
    tracer.configure(trace_processors=[counter])
    tracer.enabled = enabled  # configure() enables the tracer again (ddtrace 4.16)
    return counter


def span_signature(span) -> dict:
    """What a span carries, but its ids and the process's."""
    return dict(
        name=span.name,
        service=span.service,
        resource=span.resource,
        span_type=span.span_type,
        tags={k: v for k, v in span.get_tags().items() if k != "runtime-id"},
        metrics={k: v for k, v in span.get_metrics().items() if k != "process_id"},
    )


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
    """ddtrace's own integrations, for the clients the registry names one for (and that are installed)."""
    import importlib.util

    import ddtrace

    ddtrace.patch(**{c.builtin: importlib.util.find_spec(c.module) is not None for c in registry.CLIENTS if c.builtin})
    import pymemcache.client.base
    import pymemcache.client.hash

    # Its proxies replace the module attributes: look them up after patching.
    return pymemcache.client.base.Client, pymemcache.client.hash.HashClient, pymemcache.client.base.PooledClient


def floor_setup():
    """What a floor variant needs: ddtrace's tracer, the span model, and :func:`floor_tags`."""
    from ddtrace.trace import tracer

    from ddtrace_memcached import settings
    from ddtrace_memcached import tagging

    # config.memcached, as ours has it: ddtrace then tags a span whose service is
    # memcached with _dd.svc_src:memcached, as it does ours (else m, manual).
    settings.register()
    return tracer, tagging, floor_tags()


def floor_tags():
    """``tags(span, server)``: the fixed tags of ``tagging.fixed(host, port)``, each through
    ``set_tag`` or ``set_metric`` as ``tagging.set_public`` chooses, written out as the
    statements of a hand-written span: one call per tag, its name and value inline.

    Generated from the span model, so that the floor sets exactly the integration's tags;
    unrolled, because ``set_public``'s loop over the mapping costs some 3k instructions per
    span more than the calls it makes (2 % of the floor), which ours does not pay on
    ddtrace 4.1+ (one native call) and the floor is there to leave out.
    """
    from ddtrace_memcached import tagging

    host, port = object(), object()  # stand-ins, to tell where fixed() puts the server
    names = {id(host): "host", id(port): "port"}
    lines = ["def tags(span, server):", "    host, port = server"]
    for key, value in tagging.fixed(host, port).items():
        method = "set_metric" if key in tagging.METRICS else "set_tag"
        lines.append("    span.%s(%r, %s)" % (method, key, names.get(id(value)) or repr(value)))
    namespace = {}
    exec("\n".join(lines), namespace)
    return namespace["tags"]


def _floor():
    """A plain client call inside one hand-written span with our tags: what the tracer costs."""
    from pymemcache.client.base import Client
    from pymemcache.client.base import PooledClient
    from pymemcache.client.hash import HashClient

    tracer, tagging, tags = floor_setup()
    OPERATION, SPAN_TYPE, ROW_COUNT = tagging.OPERATION, tagging.SPAN_TYPE, tagging.ROW_COUNT

    class FloorClient(Client):
        def get(self, key, default=None):
            with tracer.trace(OPERATION, service=SERVICE, resource="get", span_type=SPAN_TYPE) as span:
                tags(span, self.server)
                result = Client.get(self, key, default)
                span.set_metric(ROW_COUNT, 0 if result is default else 1)
                return result

        def get_many(self, keys):
            with tracer.trace(OPERATION, service=SERVICE, resource="get_many", span_type=SPAN_TYPE) as span:
                tags(span, self.server)
                result = Client.get_many(self, keys)
                span.set_metric(ROW_COUNT, len(result))
                return result

        def set(self, key, value, expire=0, noreply=None, flags=None):
            with tracer.trace(OPERATION, service=SERVICE, resource="set", span_type=SPAN_TYPE) as span:
                tags(span, self.server)
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

    from pymemcache.client.base import Client
    import wrapt

    tracer, tagging, tags = floor_setup()
    OPERATION, SPAN_TYPE, ROW_COUNT = tagging.OPERATION, tagging.SPAN_TYPE, tagging.ROW_COUNT

    def wrapper(resource, wrapped, instance, args, kwargs):
        with tracer.trace(OPERATION, service=SERVICE, resource=resource, span_type=SPAN_TYPE) as span:
            tags(span, instance.server)
            result = wrapped(*args, **kwargs)
            if resource == "get":
                span.set_metric(ROW_COUNT, 0 if result is None else 1)
            elif resource == "get_many":
                span.set_metric(ROW_COUNT, len(result))
            return result

    for method in ("get", "get_many", "set"):
        wrapt.wrap_function_wrapper(Client, method, partial(wrapper, method))
    return _untraced()


def otel():
    """OpenTelemetry's pymemcache instrumentation: the classes, then a function that counts
    the spans exported and one that flushes them."""
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
    # name: set-up, returning (Client, HashClient, PooledClient); otel: see otel()
    "untraced": _untraced,
    "ours": _ours,
    "ours-ref": _ours,
    "builtin": _builtin,
    "floor": _floor,
    "floor-wrapt": _floor_wrapt,
}
