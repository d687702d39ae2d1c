"""The integration at work: ``examples/app.py`` under ``ddtrace-run``, and the traces that
Datadog's APM test agent received from it, drawn as trees.

It starts two memcached servers and a test agent on free 127.0.0.1 ports, and stops them
at the end, or reuses running ones:

- ``MEMCACHED_SERVERS=host:port,host:port``: the app's memcached servers (the demo's keys
  then get a prefix of their own, so that its first requests miss);
- ``DD_TRACE_AGENT_URL=http://host:port``: a running ``ddapm-test-agent`` (the traces are
  read back from it, so not a Datadog Agent).

The app runs with ``DD_SERVICE=demo-app`` and ``DD_TRACE_MEMCACHED_COMMAND_ENABLED=true``
unless the environment sets them; other ``DD_`` settings pass through, e.g.
``DD_TRACE_SPAN_ATTRIBUTE_SCHEMA=v1``. Key capture is off by default in the integration; the
demo turns it on, and says so, so that each span shows the keys its command sent.

``--ascii`` draws with ASCII only (chosen by itself when stdout cannot encode the box
characters). ``ddtrace-run`` and ``ddapm-test-agent`` are looked up next to this
interpreter, then on PATH.

``scripts/demo`` installs what this needs into venvs of its own, then runs it.
"""

import argparse
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Dict
from typing import List
from typing import Optional
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "examples", "app.py")
BAR_WIDTH = 24

UNICODE = {"branch": "├─ ", "last": "└─ ", "pipe": "│  ", "space": "   ", "full": "█", "empty": " ", "edges": "▕▏"}
ASCII = {"branch": "|- ", "last": "`- ", "pipe": "|  ", "space": "   ", "full": "#", "empty": ".", "edges": "[]"}

KEY_CAPTURE = "DD_TRACE_MEMCACHED_COMMAND_ENABLED"
KEY_CAPTURE_NOTE = (
    "--- key capture on (%s=true; off by default): each memcached span shows the keys its command "
    "sent (memcached.query), never the values; set it to false to see the spans as they are by default" % KEY_CAPTURE
)

# What the app runs with, unless the environment says otherwise.
APP_SETTINGS = {
    "DD_SERVICE": "demo-app",
    KEY_CAPTURE: "true",  # KEY_CAPTURE_NOTE says so
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "DD_CRASHTRACKING_ENABLED": "false",
}


# --- drawing: traces in, lines out


def bar(offset: int, duration: int, total: int, width: int = BAR_WIDTH, full: str = "█", empty: str = " ") -> str:
    """A waterfall bar: the span's part of the trace's time, in ``width`` cells.

    Cells are whole characters: the bar covers every cell its time touches, at least one.
    """
    if total <= 0:
        return full * width
    first = min(width - 1, int(offset * width / total))
    end = min(width, max(first + 1, math.ceil((offset + duration) * width / total)))
    return empty * first + full * (end - first) + empty * (width - end)


def describe(span: dict) -> str:
    """What a span says beyond its name and service: its command (``memcached.query``, which
    starts with the resource) or resource, URL and status, peer, and rows found."""
    meta, metrics = span.get("meta") or {}, span.get("metrics") or {}
    resource = span.get("resource") or ""
    query = meta.get("memcached.query")
    parts = [query if query and query.split(" ", 1)[0] == resource else resource]
    if query and parts[0] != query:
        parts.append("query=" + query)
    if "http.url" in meta:
        parts.append(meta["http.url"])
    if "http.status_code" in meta:
        parts.append("status=%s" % meta["http.status_code"])
    if "out.host" in meta:
        port = metrics.get("network.destination.port")
        parts.append(meta["out.host"] if port is None else "%s:%d" % (meta["out.host"], port))
    if "db.row_count" in metrics:
        parts.append("rows=%d" % metrics["db.row_count"])
    return "  ".join(part for part in parts if part)


def render(traces: List[List[dict]], ascii: bool = False, width: int = BAR_WIDTH, color: bool = False) -> List[str]:
    """The traces as trees, one block per trace in start order. A span's line: tree and name,
    service, waterfall bar and duration, then :func:`describe`; an error's type and message
    follow on a line of their own.

    Spans whose parent is not in their trace are drawn as roots.
    """
    glyphs = ASCII if ascii else UNICODE
    paint = _paint if color else lambda text, _: text
    traces = sorted((t for t in traces if t), key=lambda t: min(s["start"] for s in t))
    rows = []  # (trace number, tree + name, tree under it, span, trace start, trace duration)
    for number, trace in enumerate(traces, 1):
        ids = {span["span_id"] for span in trace}
        children: Dict[Optional[int], List[dict]] = {}
        for span in sorted(trace, key=lambda s: (s["start"], s["span_id"])):
            children.setdefault(span["parent_id"] if span["parent_id"] in ids else None, []).append(span)
        start = min(s["start"] for s in trace)
        total = max(s["start"] + s["duration"] for s in trace) - start

        def walk(span, head, tail):
            kids = children.get(span["span_id"], [])
            below = tail + glyphs["pipe" if kids else "space"]  # under the span: its error
            rows.append((number, head + span["name"], below, span, start, total))
            for i, kid in enumerate(kids):
                last = i == len(kids) - 1
                walk(kid, tail + glyphs["last" if last else "branch"], tail + glyphs["space" if last else "pipe"])

        for root in children.get(None, []):
            walk(root, "", "")
    name_width = max([len("span")] + [len(row[1]) for row in rows])
    services = sorted({row[3].get("service") or "" for row in rows})
    service_width = max([len("service")] + [len(service) for service in services])
    left, right = glyphs["edges"]
    lines = [
        "%s  %s  %s %s  %s"
        % (
            "span".ljust(name_width),
            "service".ljust(service_width),
            "waterfall".center(width + 2),
            "duration",
            "resource or command, host, rows",
        )
    ]
    previous = None
    for number, name, below, span, start, total in rows:
        if number != previous:
            lines.append("")
            previous = number
        service = span.get("service") or ""
        drawn = bar(span["start"] - start, span["duration"], total, width, glyphs["full"], glyphs["empty"])
        what = describe(span) + ("  " + paint("ERROR", "error") if span.get("error") else "")
        lines.append(
            "%s  %s  %s%s%s %6.2f ms  %s"
            % (
                name.ljust(name_width),
                service.ljust(service_width),
                left,
                paint(drawn, services.index(service)),
                right,
                span["duration"] / 1e6,
                what,
            )
        )
        if span.get("error"):
            meta = span.get("meta") or {}
            lines.append(
                "%s%s %s: %s" % (below, paint("!", "error"), meta.get("error.type", "?"), meta.get("error.message", ""))
            )
    return lines


COLORS = ("36", "33", "35", "32", "34")  # bars, by service: cyan, yellow, magenta, green, blue


def _paint(text: str, what) -> str:
    code = "1;31" if what == "error" else COLORS[what % len(COLORS)]
    return "\033[%sm%s\033[0m" % (code, text)


def summary(traces: List[List[dict]], agent_url: str) -> str:
    spans = [span for trace in traces for span in trace]
    memcached = [span for span in spans if span.get("name") == "memcached.command"]
    errors = [span for span in spans if span.get("error")]
    counts = [_count(len(traces), "trace"), _count(len(memcached), "memcached span"), _count(len(errors), "error")]
    return "%s: what the APM test agent at %s received" % (", ".join(counts), agent_url)


def _count(n: int, what: str) -> str:
    return "%d %s%s" % (n, what, "" if n == 1 else "s")


# --- running


def find_tool(name: str) -> Optional[str]:
    """A console script of this interpreter's venv, else from PATH (where riot's venvs have it)."""
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which(name, path=search)


def _require(name: str) -> str:
    path = find_tool(name)
    if path is None:
        sys.exit("demo: %s is not next to %s nor on PATH: run scripts/demo, which installs it" % (name, sys.executable))
    return path


def app_env(agent, token: str, servers: str, key_prefix: Optional[str] = None) -> dict:
    """The app's environment: this one, the demo's settings, and the agent session to trace into."""
    env = dict(os.environ)
    for name, value in APP_SETTINGS.items():
        env.setdefault(name, value)
    settings = {k: v for k, v in env.items() if k.startswith("DD_") and k != "DD_TRACE_AGENT_URL"}
    env = {k: v for k, v in env.items() if not k.startswith("DD_")}
    env.update(agent.env(token, **settings))
    env["MEMCACHED_SERVERS"] = servers
    if key_prefix:
        env["CACHE_KEY_PREFIX"] = key_prefix
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ascii", action="store_true", help="draw with ASCII characters only")
    args = parser.parse_args(argv)
    ascii = args.ascii or not _can_encode(UNICODE["branch"] + UNICODE["full"] + UNICODE["edges"])
    # Ctrl-C and SIGTERM both unwind through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from servers import MemcachedProcess
    from servers import TestAgent

    ddtrace_run = _require("ddtrace-run")
    started = []

    def start(server, *args, **kwargs):
        with _signals_deferred():  # a server is stopped only once it is in the list
            started.append(server(*args, **kwargs))
        return started[-1]

    snapshot_dir = tempfile.mkdtemp(prefix="ddtrace-memcached-demo-")
    try:
        servers = os.environ.get("MEMCACHED_SERVERS")
        key_prefix = None
        if servers:
            key_prefix = "demo-%s:" % uuid.uuid4().hex[:8]  # their keys may hold a previous run's
            print("--- memcached %s (running)" % servers)
        else:
            servers = ",".join("%s:%d" % start(MemcachedProcess).address for _ in range(2))
            print("--- memcached %s (started)" % servers)
        agent_url = os.environ.get("DD_TRACE_AGENT_URL")
        if agent_url is None:
            _require("ddapm-test-agent")  # TestAgent looks for it the same way
        agent = start(TestAgent, url=agent_url, snapshot_dir=snapshot_dir, ci=False)
        print("--- APM test agent %s (%s)" % (agent.url, "running" if agent_url else "started"))
        token = "demo-%s" % uuid.uuid4().hex[:12]
        try:
            agent.start(token)
        except (AssertionError, OSError) as error:
            sys.exit("demo: %s is not an APM test agent (%s)" % (agent.url, error))

        if KEY_CAPTURE not in os.environ:
            print(KEY_CAPTURE_NOTE)
        print("--- ddtrace-run python examples/app.py")
        proc = subprocess.run(
            [ddtrace_run, sys.executable, APP],
            env=app_env(agent, token, servers, key_prefix),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        print(proc.stdout, end="")
        if proc.returncode != 0:
            sys.exit("demo: the app exited with %d" % proc.returncode)
        # The tracer sends what is left at exit, and waits for the agent's answer.
        traces = agent.wait_for_traces(token, 1)
        if not traces:
            sys.exit("demo: the agent received no traces")
        print()
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        for line in render(traces, ascii=ascii, color=color):
            print(line)
        print()
        print(summary(traces, agent.url))
        return 0
    finally:
        with _signals_deferred():  # a second Ctrl-C must not leave servers behind
            for server in reversed(started):
                server.stop()
            shutil.rmtree(snapshot_dir, ignore_errors=True)


@contextlib.contextmanager
def _signals_deferred():
    """Holds Ctrl-C and SIGTERM until the block is done, then acts on them."""
    received = []
    handled = [signum for signum in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(signum) != signal.SIG_IGN]
    previous = {signum: signal.signal(signum, lambda signum, _: received.append(signum)) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])  # now that the handlers are back


def _can_encode(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
