"""README's first command: examples/app.py under ddtrace-run prints the traces it made."""

from pathlib import Path
import re

from conftest import ddtrace_run
from conftest import run_python

APP = Path(__file__).resolve().parent.parent / "examples" / "app.py"
LINE = re.compile(
    r"^(?P<indent> *)(?P<name>\S+)  \[(?P<service>[^\]]+)\] (?P<resource>.+?)  (?P<ms>[\d.]+)ms(?P<rest>.*)$"
)


def test_demo_app_traces_each_request_with_its_memcached_commands(memcached_nodes):
    servers = ",".join("%s:%d" % node for node in memcached_nodes[:2])
    proc = run_python(
        APP.read_text(),
        env={"MEMCACHED_SERVERS": servers, "DEMO_PRINT_TRACES": "1", "DD_SERVICE": "demo-app"},
        argv_prefix=ddtrace_run(),
    )
    assert proc.returncode == 0, proc.stderr
    traces = [block.splitlines() for block in proc.stdout.strip().split("\n\n")]
    assert len(traces) == 3  # three requests
    ports = {str(port) for _, port in memcached_nodes[:2]}
    for trace in traces:
        spans = [LINE.match(line).groupdict() for line in trace]
        root, children = spans[0], spans[1:]
        assert (root["indent"], root["name"], root["service"]) == ("", "web.request", "demo-app")
        cache = [s for s in children if s["name"] == "memcached.command"]
        assert all(s["indent"] == "  " and s["service"] == "memcached" for s in cache)
        assert cache[0]["resource"] == "get"
        assert any(s["resource"] == "get_many" for s in cache)
        for span in cache:
            host_port = span["rest"].split()[0]
            assert host_port.rsplit(":", 1)[1] in ports
            assert "value" not in span["rest"] and "user-" not in span["rest"]
    first_request, _, third_request = traces
    # The first request misses and loads from the database; the repeat hits the cache.
    assert "rows=0" in first_request[1] and any("db.load_profile" in line for line in first_request)
    assert "rows=1" in third_request[1] and not any("db.load_profile" in line for line in third_request)
