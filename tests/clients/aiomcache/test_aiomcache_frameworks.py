"""Real users, end to end under ``ddtrace-run``: an aiohttp app (ddtrace's aiohttp
integration on, the server traced with ``trace_app``) caching with aiocache's
``MemcachedCache`` (aiomcache).

Concurrent requests each do several cache calls: each request's trace holds exactly the
memcached spans of its own cache calls, as children of its request span, each naming the
server; none lands in another request's trace.
"""

import json

import pytest

from apps import app
from apps import ddtrace_run
from apps import run_python
from apps import spans_of

pytest.importorskip("aiomcache")
pytest.importorskip("aiocache")
pytest.importorskip("aiohttp")

IDS_MARK = "@@IDS@@"

SETUP = """
import asyncio

import aiohttp
from aiohttp import web
from aiocache import Cache
from ddtrace.contrib.aiohttp import trace_app


async def handler(request):
    cache = request.app["cache"]
    key = request.match_info["key"]
    await cache.set(key, {"n": 1}, ttl=30)
    value = await cache.get(key)
    assert await cache.multi_get([key, "missing"]) == [{"n": 1}, None]
    assert await cache.exists(key)
    await cache.increment(key + "-count", 2)  # missing: aiomcache's incr raises, aiocache sets
    await cache.delete(key)
    return web.json_response({"key": key, "value": value})


async def main():
    application = web.Application()
    application["cache"] = Cache(Cache.MEMCACHED, endpoint=ADDRESS[0], port=ADDRESS[1], namespace="demo")
    application.router.add_get("/cache/{key}", handler)
    trace_app(application, service="web")
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    async def hit(session, key):
        async with session.get("http://127.0.0.1:%d/cache/%s" % (port, key)) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async with aiohttp.ClientSession() as session:
        replies = await asyncio.gather(*(hit(session, "user%d" % n) for n in range(REQUESTS)))
    assert [r["value"] for r in replies] == [{"n": 1}] * REQUESTS
    await application["cache"].close()
    await runner.cleanup()


asyncio.run(main())
_tracer.flush()
print({mark!r} + _json.dumps([
    dict(span_id=s.span_id, parent_id=s.parent_id, trace_id=s.trace_id, url=s.get_tag("http.url"))
    for s in _Keep.spans
]))
"""

REQUESTS = 5
# aiocache's calls, as aiomcache commands: set, get, multi_get, exists (append of b""),
# increment (incr, NOT_FOUND, then set), delete.
PER_REQUEST = ["set", "get", "get_many", "append", "incr", "set", "delete"]


def test_aiohttp_app_with_aiocache(memcached):
    code = app(["REQUESTS = %d" % REQUESTS, SETUP.replace("{mark!r}", repr(IDS_MARK))], memcached)
    proc = run_python(code, argv_prefix=ddtrace_run())
    spans = spans_of(proc)
    line = next(line for line in proc.stdout.splitlines() if line.startswith(IDS_MARK))
    ids = json.loads(line[len(IDS_MARK) :])
    assert len(ids) == len(spans)
    for span, extra in zip(spans, ids):
        span.update(extra)
    requests = [s for s in spans if s["component"] == "aiohttp" and s["resource"] == "GET /cache/{key}"]
    assert len(requests) == REQUESTS, [(s["name"], s["component"], s["resource"]) for s in spans]
    ours = [s for s in spans if s["component"] == "memcached"]
    assert len(ours) == REQUESTS * len(PER_REQUEST)
    for request in requests:
        mine = [s for s in ours if s["parent_id"] == request["span_id"]]
        assert [s["resource"] for s in mine] == PER_REQUEST, request["url"]
        for span in mine:
            assert span["trace_id"] == request["trace_id"]
            assert span["name"] == "memcached.command" and span["service"] == "memcached"
            assert span["tags"]["out.host"] == memcached[0]
            assert span["tags"]["db.system"] == "memcached"
            assert "memcached.query" not in span["tags"]
            # aiocache's increment of a missing key: aiomcache raises NOT_FOUND, aiocache sets;
            # a miss that the app handles, not a cache failure.
            assert span["error"] == 0, span
            assert span["tags"].get("db.response.status_code") == ("NOT_FOUND" if span["resource"] == "incr" else None)
