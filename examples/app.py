"""A small web-style app that reads through a memcached cache.

``handle_request`` serves a user profile: it looks the profile up in a HashClient
over two memcached servers (``MEMCACHED_SERVERS=host:port,host:port``), loads it
from the "database" on a miss and caches it. Run it under ``ddtrace-run``: every
memcached command shows up as a span under the request's span.

With ``DEMO_PRINT_TRACES=1`` it prints each trace it produced as a tree.
"""

import os
import time

from ddtrace.trace import tracer
from pymemcache.client.hash import HashClient
from pymemcache.serde import pickle_serde

cache = HashClient(
    [tuple(s.rsplit(":", 1)) for s in os.environ.get("MEMCACHED_SERVERS", "127.0.0.1:11211").split(",")],
    serde=pickle_serde,
    key_prefix=b"demo:",
)

DATABASE = {user_id: {"id": user_id, "name": "user-%d" % user_id} for user_id in range(1, 6)}


def load_from_database(user_id):
    with tracer.trace("db.load_profile", resource="SELECT profile"):
        time.sleep(0.002)
        return DATABASE.get(user_id)


def handle_request(user_id):
    with tracer.trace("web.request", resource="GET /users/%d" % user_id, span_type="web"):
        profile = cache.get("profile:%d" % user_id)
        if profile is None:
            profile = load_from_database(user_id)
            cache.set("profile:%d" % user_id, profile, expire=60)
        cache.incr("views:%d" % user_id, 1) or cache.set("views:%d" % user_id, 1)
        friends = cache.get_many(["profile:%d" % f for f in range(1, 6) if f != user_id])
        return profile, len(friends)


def _print_traces():
    from ddtrace.trace import TraceFilter

    class PrintTraces(TraceFilter):
        def process_trace(self, trace):
            children = {}
            for span in trace:
                children.setdefault(span.parent_id, []).append(span)
            ids = {span.span_id for span in trace}

            def draw(span, depth):
                tags = span.get_tags()
                extra = ["%s=%s" % (k, tags[k]) for k in ("out.host", "memcached.query") if k in tags]
                port = span.get_metric("network.destination.port")
                if port:
                    extra[0:1] = ["%s:%d" % (tags["out.host"], port)]
                rows = span.get_metric("db.row_count")
                if rows is not None:
                    extra.append("rows=%d" % rows)
                print(
                    "%s%s  [%s] %s  %.2fms %s%s"
                    % (
                        "  " * depth,
                        span.name,
                        span.service,
                        span.resource,
                        span.duration * 1000,
                        " ".join(extra),
                        "  ERROR" if span.error else "",
                    )
                )
                for child in children.get(span.span_id, []):
                    draw(child, depth + 1)

            for root in trace:
                if root.parent_id not in ids:
                    draw(root, 0)
            print()
            return None  # printed, not sent: the demo runs without an agent

    tracer.configure(trace_processors=[PrintTraces()])


if __name__ == "__main__":
    if os.environ.get("DEMO_PRINT_TRACES"):
        _print_traces()
    for user in (1, 2, 1):
        handle_request(user)
    tracer.flush()
