"""Concurrency and processes: every span lands under the right parent, none is lost.

- threads sharing a ``PooledClient``, each under its own span: exact span counts per thread,
  and per-client overrides and retry attempts that never leak from one thread to another;
- asyncio code calling pymemcache in executor threads: ``asyncio.to_thread`` and
  ``run_in_executor`` with a copied context keep the task's span as parent; a plain
  ``run_in_executor`` carries no context (Python's documented behaviour), so its spans are
  new traces, never parented to another task's span;
- gevent (monkey-patched) greenlets, each under its own span, in a subprocess;
- ``os.fork()``: the child's commands are traced and delivered to the agent, under
  ``ddtrace-run``, as are the parent's.
"""

import asyncio
import collections
import contextvars
import functools
import json
import os

from ddtrace.trace import tracer
from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheIllegalInputError
import pytest

from apps import ddtrace_run
from apps import run_python
import ddtrace_memcached
from ddtrace_memcached.clients.pymemcache import HAS_RETRYING_CLIENT
from helpers import run_threads

if HAS_RETRYING_CLIENT:
    from pymemcache.client.retrying import RetryingClient

THREADS = 8
CALLS_PER_THREAD = 400


def children_of(spans, parent):
    mine = [s for s in spans if s.parent_id == parent.span_id]
    assert all(s.trace_id == parent.trace_id for s in mine)
    return mine


# --- threads --------------------------------------------------------------------------------


def test_threads_share_a_pooled_client(memcached, spans, patched):
    """8 threads, each under its own span, share a PooledClient for 400 calls each (some of
    them failing): each thread's span has exactly its own calls as children, error spans
    exactly for its failures, and every answer is its own."""
    client = PooledClient(memcached, max_pool_size=THREADS, default_noreply=False)

    def work(n):
        calls, failed, wrong = 0, 0, []
        with tracer.trace("worker", resource=str(n)) as parent:
            for i in range(CALLS_PER_THREAD // 4):
                key = "t%d-%d" % (n, i % 7)
                value = b"t%d-%d" % (n, i)
                client.set(key, value)
                got = [client.get(key), client.get_many([key, "t%d-absent" % n])]
                if got != [value, {key: value}]:
                    wrong.append(got)
                try:
                    if i % 10 == 0:
                        client.get("bad key %d" % n)
                    else:
                        client.delete(key)
                except MemcacheIllegalInputError:
                    failed += 1
                calls += 4
                if tracer.current_span() is not parent:
                    wrong.append(tracer.current_span())
        return parent, calls, failed, wrong, tracer.current_span()

    results = run_threads(work, THREADS)
    client.close()
    memcached_spans = spans.memcached()
    for n, (parent, calls, failed, wrong, active) in results.items():
        assert wrong == [] and active is None, (n, wrong[:3], active)
        mine = children_of(memcached_spans, parent)
        assert len(mine) == calls == CALLS_PER_THREAD
        assert all(s.duration is not None for s in mine)
        assert sum(s.error for s in mine) == failed == CALLS_PER_THREAD // 40
        assert collections.Counter(s.resource for s in mine) == {
            "set": 100,
            "get": 110,
            "get_many": 100,
            "delete": 90,
        }
    assert len(memcached_spans) == THREADS * CALLS_PER_THREAD


def test_overrides_and_attempts_stay_in_their_thread(memcached, spans, patched):
    """Threads interleave a plain PooledClient, one with an override and (pymemcache >= 3.5)
    a RetryingClient: the override's tags and the attempt metric appear on exactly the spans
    of the calls that went through those clients, never on another thread's."""
    plain = PooledClient(memcached, max_pool_size=THREADS)
    tagged = PooledClient(memcached, max_pool_size=THREADS)
    ddtrace_memcached.override(tagged, service="tagged-svc", tags={"client.kind": "tagged"})
    kinds = {"plain": plain, "tagged": tagged}
    if HAS_RETRYING_CLIENT:
        kinds["retrying"] = RetryingClient(PooledClient(memcached, max_pool_size=THREADS), attempts=2, retry_delay=0)
    names = sorted(kinds)

    def work(n):
        made = collections.Counter()
        with tracer.trace("worker", resource=str(n)) as parent:
            for i in range(150):
                name = names[(i + n) % len(names)]
                kinds[name].get("k%d" % n)
                made[name] += 1
        return parent, made

    results = run_threads(work, THREADS)
    memcached_spans = spans.memcached()
    for parent, made in results.values():
        seen = collections.Counter()
        for span in children_of(memcached_spans, parent):
            tagged_span = span.get_tag("client.kind") == "tagged"
            assert tagged_span == (span.service == "tagged-svc")
            attempt = span.get_metric("memcached.retry.attempt")
            assert attempt in (None, 1)
            assert not (tagged_span and attempt), "a span got both the override and an attempt"
            seen["tagged" if tagged_span else "retrying" if attempt else "plain"] += 1
        assert seen == made
    assert len(memcached_spans) == THREADS * 150
    for client in kinds.values():
        client.close()


# --- asyncio --------------------------------------------------------------------------------

TASKS = 10
JOBS_PER_TASK = 4
CALLS_PER_JOB = 3


def _job(client, task, job):
    """Blocking pymemcache code, run in an executor thread; returns the span active after it."""
    key = "a%d-%d" % (task, job)
    assert client.set(key, b"v", noreply=False) is True
    assert client.get(key) == b"v"
    with pytest.raises(MemcacheIllegalInputError):
        client.get("bad key")
    return tracer.current_span()


def _run_tasks(memcached, submit):
    """TASKS tasks, each under its own span, each awaiting JOBS_PER_TASK jobs at once through
    ``submit(loop, fn)``; returns [(task span, [the span active in each job after it ran])]."""
    client = PooledClient(memcached, max_pool_size=THREADS)

    async def task(n):
        loop = asyncio.get_running_loop()
        with tracer.trace("task", resource=str(n)) as span:
            jobs = [submit(loop, functools.partial(_job, client, n, j)) for j in range(JOBS_PER_TASK)]
            after = await asyncio.gather(*jobs)
            assert tracer.current_span() is span
        return span, after

    async def main():
        return await asyncio.gather(*[task(n) for n in range(TASKS)])

    results = asyncio.run(main())
    client.close()
    assert tracer.current_span() is None
    return results


def _assert_parented(spans, results):
    memcached_spans = spans.memcached()
    for task_span, active_after in results:
        assert active_after == [task_span] * JOBS_PER_TASK  # the job's context: the task's span
        mine = children_of(memcached_spans, task_span)
        assert len(mine) == JOBS_PER_TASK * CALLS_PER_JOB
        assert sum(s.error for s in mine) == JOBS_PER_TASK
    assert len(memcached_spans) == TASKS * JOBS_PER_TASK * CALLS_PER_JOB


def test_asyncio_to_thread_keeps_parents(memcached, spans, patched):
    """asyncio.to_thread copies the task's context: the spans are children of the task's span."""
    results = _run_tasks(memcached, lambda loop, fn: asyncio.to_thread(fn))
    _assert_parented(spans, results)


def test_run_in_executor_with_copied_context_keeps_parents(memcached, spans, patched):
    """run_in_executor(None, copy_context().run, fn), what to_thread does by hand: the same."""
    results = _run_tasks(memcached, lambda loop, fn: loop.run_in_executor(None, contextvars.copy_context().run, fn))
    _assert_parented(spans, results)


def test_plain_run_in_executor_starts_new_traces(memcached, spans, patched):
    """A plain run_in_executor carries no context into the thread (Python's behaviour): each
    command is a root span of its own trace, with nothing left active in the worker thread,
    and never a child of any task's span."""
    results = _run_tasks(memcached, lambda loop, fn: loop.run_in_executor(None, fn))
    memcached_spans = spans.memcached()
    assert len(memcached_spans) == TASKS * JOBS_PER_TASK * CALLS_PER_JOB
    task_traces = {task_span.trace_id for task_span, _ in results}
    for span in memcached_spans:
        assert span.parent_id in (None, 0)
        assert span.trace_id not in task_traces
        assert span.duration is not None
    assert len({s.trace_id for s in memcached_spans}) == len(memcached_spans)
    assert all(after == [None] * JOBS_PER_TASK for _, after in results)


# --- gevent ---------------------------------------------------------------------------------

GEVENT_APP = """
from gevent import monkey

monkey.patch_all()

import json

import gevent
from ddtrace.trace import TraceFilter
from ddtrace.trace import tracer
from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheIllegalInputError

import ddtrace_memcached

ddtrace_memcached.patch()


class Keep(TraceFilter):
    spans = []

    def process_trace(self, trace):
        self.spans.extend(trace)
        return None


tracer.configure(trace_processors=[Keep()])
client = PooledClient({address!r}, max_pool_size=12)


def work(n):
    wrong = []
    with tracer.trace("greenlet", resource=str(n)) as parent:
        for i in range(30):
            client.set("g%d" % n, b"%d-%d" % (n, i), noreply=False)
            gevent.sleep(0)
            if client.get("g%d" % n) != b"%d-%d" % (n, i):
                wrong.append(i)
            if i % 10 == 0:
                try:
                    client.get("bad key")
                except MemcacheIllegalInputError:
                    pass
            if tracer.current_span() is not parent:
                wrong.append("active")
    return dict(span_id=parent.span_id, trace_id=parent.trace_id, wrong=wrong, after=tracer.current_span() is None)


greenlets = [gevent.spawn(work, n) for n in range(12)]
gevent.joinall(greenlets, raise_error=True)
tracer.flush()
print(json.dumps(dict(
    greenlets=[g.value for g in greenlets],
    spans=[
        dict(name=s.name, resource=s.resource, span_id=s.span_id, trace_id=s.trace_id, parent_id=s.parent_id,
             error=s.error, finished=s.duration is not None)
        for s in Keep.spans
    ],
)))
"""


def test_gevent_greenlets_keep_their_parents(memcached):
    """12 monkey-patched greenlets share a PooledClient, each under its own
    span: each span's memcached children are exactly its own 72 calls, 3 of them errors."""
    pytest.importorskip("gevent")
    proc = run_python(GEVENT_APP.format(address=tuple(memcached)))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    memcached_spans = [s for s in report["spans"] if s["name"] == "memcached.command"]
    assert len(report["greenlets"]) == 12
    for greenlet in report["greenlets"]:
        assert greenlet["wrong"] == [] and greenlet["after"], greenlet
        mine = [s for s in memcached_spans if s["parent_id"] == greenlet["span_id"]]
        assert all(s["trace_id"] == greenlet["trace_id"] and s["finished"] for s in mine)
        assert len(mine) == 30 * 2 + 3
        assert sum(s["error"] for s in mine) == 3
    assert len(memcached_spans) == 12 * 63


# --- os.fork() --------------------------------------------------------------------------------

FORK_APP = """
import os
import sys

from ddtrace.trace import tracer
from pymemcache.client.base import Client

import ddtrace_memcached


def work(role, count):
    client = Client({address!r}, default_noreply=False)
    ddtrace_memcached.override(client, tags={{"app.role": role}})
    with tracer.trace("app.work", resource=role):
        for i in range(count):
            assert client.set("%s-%d" % (role, i), role.encode()) is True
            assert client.get("%s-%d" % (role, i)) == role.encode()
    client.close()


work("parent-before-fork", 2)
pid = os.fork()
if pid == 0:
    work("child", 3)
    sys.exit(0)  # a normal exit: ddtrace's exit handler sends what is left
work("parent-after-fork", 4)
_, status = os.waitpid(pid, 0)
print("child", pid, "exit status", status)
assert status == 0
# After a fork, ddtrace 4.16 loses a parent's unsent traces at exit, and sometimes aborts
# (SIGABRT) at exit, with or without this integration (a bare tracer.trace() app does both).
# So the parent flushes, then exits without running the interpreter's teardown.
tracer.flush()
sys.stdout.flush()
os._exit(0)
"""


def test_fork_child_spans_are_delivered(memcached, test_agent):
    """Under ddtrace-run, a forked child's commands are traced and reach the agent, with the
    child's process id, as do the parent's from before and after the fork."""
    token = "test_concurrency.fork"
    test_agent.start(token)
    env = test_agent.env(token, env_header=False, DD_SERVICE="fork-app")
    proc = run_python(FORK_APP.format(address=tuple(memcached)), env=env, argv_prefix=ddtrace_run())
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    child_pid = int(proc.stdout.split()[1])

    traces = test_agent.wait_for_traces(token, 3)
    by_role = {}
    for trace in traces:
        (root,) = [s for s in trace if s["name"] == "app.work"]
        assert root["resource"] not in by_role
        by_role[root["resource"]] = (root, [s for s in trace if s["name"] == "memcached.command"])
    assert sorted(by_role) == ["child", "parent-after-fork", "parent-before-fork"]
    pids = {}
    for role, count in (("parent-before-fork", 2), ("child", 3), ("parent-after-fork", 4)):
        root, commands = by_role[role]
        assert [s["resource"] for s in commands] == ["set", "get"] * count
        for span in commands:
            assert span["parent_id"] == root["span_id"] and span["trace_id"] == root["trace_id"]
            assert span["meta"]["app.role"] == role
            assert span["meta"]["component"] == "memcached"
            assert span["error"] == 0
        pids[role] = root["metrics"]["process_id"]
    assert pids["child"] == child_pid
    assert pids["parent-before-fork"] == pids["parent-after-fork"] != child_pid
    assert os.getpid() not in pids.values()
