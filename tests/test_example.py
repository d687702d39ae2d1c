"""README's first command: ``scripts/demo.py`` runs ``examples/app.py`` under ddtrace-run and
draws the traces that the APM test agent received. It runs here end to end, as a user runs
it, and its output is read back as trees; the renderer is also tested on a hand-built trace,
so that a drawing bug fails on its own.
"""

import importlib.util
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"
_spec = importlib.util.spec_from_file_location("demo", str(DEMO))
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)

TREE = r"(?P<tree>(?:├─ |└─ |│  |   )*)"
SPAN_LINE = re.compile(
    TREE + r"(?P<name>\S+) +(?P<service>\S+) +▕(?P<bar>[█ ]{%d})▏ +(?P<ms>\d+\.\d\d) ms  (?P<what>.*)$" % demo.BAR_WIDTH
)
ERROR_LINE = re.compile(TREE + r"! (?P<type>[\w.]+): (?P<message>.*)$")
SUMMARY = re.compile(r"(\d+) traces, (\d+) memcached spans, (\d+) errors?: what the APM test agent at (\S+) received$")
# What the app stores: its profiles' fields and the photo. The tree must show keys, never these.
VALUES = ("Alice", "Bob", "Carol", "Dave", "friends", "photo", "PNG")


def run_demo(env: dict) -> subprocess.CompletedProcess:
    """``scripts/demo.py`` in a new interpreter of this venv; fails first if a tool is missing."""
    missing = [tool for tool in ("ddtrace-run", "ddapm-test-agent") if demo.find_tool(tool) is None]
    assert not missing, "%s not next to %s nor on PATH: install requirements/dev.txt (scripts/bootstrap)" % (
        " and ".join(missing),
        sys.executable,
    )
    return subprocess.run(
        [sys.executable, str(DEMO)], env=env, capture_output=True, text=True, encoding="utf-8", timeout=120
    )


def parse(lines):
    """The drawn traces: for each, its spans as dicts of SPAN_LINE's fields plus ``depth`` and,
    for an error, ``error``: its type and message. Fails on any line that is neither a span nor an error."""
    traces = []
    for line in lines:
        if not line:
            traces.append([])
            continue
        span, error = SPAN_LINE.match(line), ERROR_LINE.match(line)
        assert span or error, "not a span line: %r" % line
        if span:
            traces[-1].append(dict(span.groupdict(), depth=len(span["tree"]) // 3))
        else:
            assert traces[-1][-1]["what"].endswith("  ERROR"), "an error line under a span without ERROR: %r" % line
            traces[-1][-1]["error"] = (error["type"], error["message"])
    return traces


def test_demo_draws_the_traces_the_agent_received(reused_agent_url):
    # The app's clients (riot's pylibmc suite has both).
    pytest.importorskip("pylibmc")
    pytest.importorskip("pymemcache")
    # Reuses what the suite was told to reuse (docker compose); the demo starts the rest.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DD_") and k != "MEMCACHED_SERVERS"}
    if reused_agent_url:
        env["DD_TRACE_AGENT_URL"] = reused_agent_url
    if os.environ.get("MEMCACHED_HASH_SERVERS"):
        env["MEMCACHED_SERVERS"] = ",".join(os.environ["MEMCACHED_HASH_SERVERS"].split(",")[:2])
    env["PYTHONIOENCODING"] = "utf-8"  # the box characters, whatever the CI's locale
    proc = run_demo(env)
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    out = proc.stdout.splitlines()
    assert demo.KEY_CAPTURE_NOTE in out  # the demo says it turns key capture on, and why
    servers = next(line for line in out if line.startswith("--- memcached ")).split()[2]
    assert len(set(servers.split(","))) == 2, servers
    server = re.compile("  (%s)(  |$)" % "|".join(re.escape(s) for s in servers.split(",")))
    header = next(i for i, line in enumerate(out) if line.startswith("span "))
    assert out[-2] == "" and SUMMARY.match(out[-1]), out[-2:]
    traces = parse(out[header + 1 : -2])
    output = "\n".join(out)

    # One trace per request, in the order the app served them.
    assert [t[0]["what"].split("  ")[1] for t in traces] == [
        "/users/alice",
        "/users/bob",
        "/users/alice",
        "/users/dave",
    ], output
    for trace in traces:
        root, children = trace[0], trace[1:]
        assert (root["depth"], root["name"], root["service"]) == (0, "web.request", "demo-app"), output
        assert root["what"].startswith("GET /users/{name}  ") and root["what"].endswith("  status=200"), output
        assert root["bar"] == "█" * demo.BAR_WIDTH  # the root spans its trace
        assert children and all(span["depth"] == 1 for span in children), output
        assert [s["tree"] for s in children] == ["├─ "] * (len(children) - 1) + ["└─ "], output
        for span in children:
            assert re.fullmatch(r" *█+ *", span["bar"]), span  # one piece, somewhere in the trace
            assert span["name"] in ("memcached.command", "db.load_profile"), span
            if span["name"] == "memcached.command":
                assert span["service"] == "memcached", span
                command = span["what"].split()[0]
                assert command in ("get", "set", "incr", "get_many"), span
                assert server.search(span["what"]), "not one of %s: %s" % (servers, span)
        # The session, kept by pylibmc, is written last, on one of the same servers.
        last = children[-1]
        assert re.match(r"set \S*session:\w+  ", last["what"]) and server.search(last["what"]), last
        # Reads come first and carry the keys found; every request reads its user's profile.
        first = children[0]
        assert first["name"] == "memcached.command" and re.match(r"get \S*user:\w+  ", first["what"]), output
        assert re.search(r"  rows=[01]$", first["what"]), first
        assert any(s["what"].startswith("get_many ") and "  rows=" in s["what"] for s in children), output

    alice_miss, bob_miss, alice_hit, dave = traces
    # The keys as sent, with the client's key_prefix: ddtrace's own pymemcache integration,
    # which the demo would show otherwise, leaves it out.
    prefix = re.match(r"get (\S*)user:alice  ", alice_miss[1]["what"]).group(1)
    if "MEMCACHED_SERVERS" in env:  # reused servers: a prefix of the run's own
        assert re.fullmatch(r"demo-\w+:", prefix), alice_miss[1]
    else:
        assert prefix == "app:", alice_miss[1]
    for span in [s for trace in traces for s in trace if s["name"] == "memcached.command"]:
        keys = span["what"].split("  ")[0].split()[1:]
        assert keys and all(key.startswith(prefix) for key in keys), span
    for trace in (alice_miss, bob_miss, dave):
        names = [s["name"] for s in trace[1:]]
        assert trace[1]["what"].endswith("rows=0"), trace[1]  # a miss...
        assert names[1] == "db.load_profile", names  # ...then the database...
        assert trace[3]["what"].startswith("set "), trace[3]  # ...then the cache
    assert alice_hit[1]["what"].endswith("rows=1"), alice_hit[1]
    assert "db.load_profile" not in [s["name"] for s in alice_hit], alice_hit

    # The one error: dave's profile is too large to cache; the app serves it anyway.
    errors = [span for trace in traces for span in trace if span["what"].endswith("ERROR")]
    assert errors == [dave[3]], output
    error_type, message = dave[3]["error"]
    assert error_type == "pymemcache.exceptions.MemcacheServerError", dave[3]
    assert "object too large for cache" in message, dave[3]

    spans = [span for trace in traces for span in trace]
    memcached = [span for span in spans if span["name"] == "memcached.command"]
    count_traces, count_memcached, count_errors, agent_url = SUMMARY.match(out[-1]).groups()
    assert (int(count_traces), int(count_memcached), int(count_errors)) == (4, len(memcached), 1), out[-1]
    assert agent_url.startswith("http://"), out[-1]
    leaked = [value for value in VALUES if value in output]
    assert not leaked, "cached values in the output: %s\n%s" % (leaked, output)


# --- the renderer, on a hand-built trace

MS = 1000000


def span(span_id, parent_id, name, start_ms, duration_ms, service="app", resource="r", error=0, meta=None, **metrics):
    return dict(
        span_id=span_id,
        parent_id=parent_id,
        trace_id=1,
        name=name,
        service=service,
        resource=resource,
        start=1700000000000000000 + start_ms * MS,
        duration=duration_ms * MS,
        error=error,
        meta=meta or {},
        metrics=metrics,
    )


TRACE = [
    span(3, 1, "db.query", 10, 50, service="db", resource="SELECT 1"),
    span(1, 0, "web.request", 0, 100, resource="GET /"),
    span(
        4,
        3,
        "memcached.command",
        20,
        10,
        service="memcached",
        resource="get",
        error=1,
        meta={"out.host": "cache1", "error.type": "KeyError", "error.message": "boom"},
        **{"network.destination.port": 11211},
    ),
    span(5, 1, "memcached.command", 90, 10, service="memcached", resource="set", meta={"out.host": "/tmp/mc.sock"}),
    span(
        2,
        1,
        "memcached.command",
        0,
        1,
        service="memcached",
        resource="get_many",
        meta={"out.host": "cache2", "memcached.query": "get_many k1 k2"},
        **{"network.destination.port": 11212, "db.row_count": 1},
    ),
]


def test_render_draws_the_tree_and_a_waterfall():
    lines = demo.render([TRACE], width=10)
    assert lines[1:] == [
        "",
        "web.request              app        ▕██████████▏ 100.00 ms  GET /",
        "├─ memcached.command     memcached  ▕█         ▏   1.00 ms  get_many k1 k2  cache2:11212  rows=1",
        "├─ db.query              db         ▕ █████    ▏  50.00 ms  SELECT 1",
        "│  └─ memcached.command  memcached  ▕  █       ▏  10.00 ms  get  cache1:11211  ERROR",
        "│        ! KeyError: boom",
        "└─ memcached.command     memcached  ▕         █▏  10.00 ms  set  /tmp/mc.sock",
    ]
    assert lines[0].split()[:4] == ["span", "service", "waterfall", "duration"]


def test_render_ascii_and_trace_order():
    later = [dict(s, start=s["start"] + 500 * MS, trace_id=2) for s in TRACE[1:2]]
    lines = demo.render([later, TRACE[1:2]], ascii=True, width=4)
    assert lines[1:] == [
        "",
        "web.request  app      [####] 100.00 ms  GET /",
        "",
        "web.request  app      [####] 100.00 ms  GET /",
    ]
    orphan = [dict(TRACE[0], parent_id=99)]  # its parent is in no trace it came with: a root
    assert demo.render([orphan], ascii=True, width=4)[2].startswith("db.query  db       [####]")


def test_bar_covers_the_cells_a_span_touches():
    assert demo.bar(0, 100, 100, width=10) == "█" * 10
    assert demo.bar(0, 1, 1000, width=10, full="#", empty=".") == "#........."  # too short: one cell
    assert demo.bar(999, 1, 1000, width=10, full="#", empty=".") == ".........#"
    assert demo.bar(1000, 0, 1000, width=10, full="#", empty=".") == ".........#"  # ends the trace
    assert demo.bar(250, 500, 1000, width=10, full="#", empty=".") == "..######.."
    assert demo.bar(0, 110, 1000, width=10, full="#", empty=".") == "##........"  # into a second cell
    assert demo.bar(0, 0, 0, width=3, full="#", empty=".") == "###"  # a trace of no time


def test_summary_counts_traces_memcached_spans_and_errors():
    assert demo.summary([TRACE], "http://agent:1") == (
        "1 trace, 3 memcached spans, 1 error: what the APM test agent at http://agent:1 received"
    )
