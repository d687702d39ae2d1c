"""Real servers for the tests and the demo: memcached and Datadog's APM test agent.

Both run as processes on free 127.0.0.1 ports. This module needs only the standard
library, so ``scripts/demo`` uses it too.
"""

from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import List
from typing import Optional
import urllib.error
import urllib.parse
import urllib.request

TOKEN_HEADER = "X-Datadog-Test-Session-Token"
ENV_HEADER = "X-Datadog-Trace-Env-Variables"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT_DIR = os.path.join(ROOT, "snapshots")

# The agent's checks, as dd-trace-py runs them, plus the two that need the
# X-Datadog-Trace-Env-Variables header (see TestAgent.env).
CHECKS = (
    "trace_count_header",
    "meta_tracer_version_header",
    "trace_content_length",
    "trace_peer_service",
    "trace_dd_service",
)
# What varies from run to run or machine to machine, and nothing else: ids and times are
# not compared; the rest is also left out of the snapshot files.
IGNORED_ATTRS = ("span_id", "trace_id", "parent_id", "duration", "start")
REMOVED_ATTRS = (
    "metrics.process_id",
    "meta.runtime-id",
    "meta._dd.p.tid",
    "meta._dd.tags.process",  # holds the app's directory
    "meta._dd.base_service",  # the script's name, where DD_SERVICE is set
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(connect, what: str, process=None, timeout: float = 10.0) -> None:
    """Calls ``connect()`` until it returns a socket, or fails when ``process`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect().close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError("%s exited with %s" % (what, process.returncode))
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not start within %ss" % (what, timeout))
            time.sleep(0.01)


def _started(process: subprocess.Popen, connect, what: str) -> None:
    """Waits for ``process`` to serve; kills it if it does not, or if interrupted."""
    try:
        wait_until_serving(connect, what, process)
    except BaseException:
        process.kill()
        process.wait()
        raise


class MemcachedProcess:
    """A memcached server process on 127.0.0.1 (or a unix socket)."""

    def __init__(self, unix_path: Optional[str] = None, port: Optional[int] = None):
        binary = shutil.which("memcached")
        if binary is None:
            raise RuntimeError("memcached is not installed: apt-get install -y memcached")
        self.unix_path = unix_path
        self.port = None if unix_path else (port or free_port())
        cmd = [binary, "-U", "0", "-m", "64"]
        cmd += ["-s", unix_path] if unix_path else ["-l", "127.0.0.1", "-p", str(self.port)]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _started(self.process, self._connect, "memcached")

    @property
    def address(self):
        return self.unix_path or ("127.0.0.1", self.port)

    def _connect(self):
        if self.unix_path:
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.unix_path)
            return s
        return socket.create_connection(("127.0.0.1", self.port), timeout=1)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


class TestAgent:
    """Datadog's APM test agent: started here, or one already running at ``url``.

    Each test uses its own session token: ``start(token)``, then the traced code sends
    with the token header (see :meth:`env` and :meth:`headers`), then ``snapshot(token)``
    or ``traces(token)``.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, url: Optional[str] = None, snapshot_dir: str = SNAPSHOT_DIR, ci: bool = True):
        self.process = None
        if url is None:
            # This interpreter's venv first, then PATH (scripts/bootstrap's venv, under riot).
            search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
            binary = shutil.which("ddapm-test-agent", path=search)
            if binary is None:
                raise RuntimeError("ddapm-test-agent is not installed: pip install ddapm-test-agent")
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("DD_")}  # no agent to forward to
            env.update(
                SNAPSHOT_DIR=snapshot_dir,
                SNAPSHOT_CI="1" if ci else "0",
                ENABLED_CHECKS=",".join(CHECKS),
                DD_POOL_TRACE_CHECK_FAILURES="true",  # kept per session, read by check_failures()
            )
            cmd = [binary, "--host", "127.0.0.1", "--port", str(port)]
            cmd += ["--otlp-http-port", str(free_port()), "--otlp-grpc-port", str(free_port())]
            self.log = open(os.path.join(_log_dir(), "test-agent-%d.log" % port), "w")
            self.process = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
            url = "http://127.0.0.1:%d" % port
            _started(self.process, lambda: socket.create_connection(("127.0.0.1", port), timeout=1), "test agent")
        self.url = url.rstrip("/")
        self.proxy = EnvHeaderProxy(self.url)

    def stop(self) -> None:
        self.proxy.stop()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.log.close()

    # --- session API

    def _get(self, path: str, **params):
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        request = urllib.request.Request("%s%s?%s" % (self.url, path, query))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def start(self, token: str) -> None:
        status, body = self._get("/test/session/start", test_session_token=token)
        assert status == 200, body

    def snapshot(self, token: str, removes=()) -> None:
        """Compares the session's traces with ``snapshots/<token>.json``; fails with the diff.

        ``removes`` adds to REMOVED_ATTRS: attributes neither compared nor stored.
        """
        removes = REMOVED_ATTRS + tuple(removes)
        status, body = self._get(
            "/test/session/snapshot",
            test_session_token=token,
            ignores=",".join(IGNORED_ATTRS + removes),
            removes=",".join(removes),
        )
        assert status == 200, "snapshot %s does not match:\n%s" % (token, body)

    def check_failures(self, token: str) -> None:
        """Fails with the agent's report if any of its CHECKS failed on the session's payloads."""
        status, body = self._get("/test/trace_check/failures", test_session_token=token)
        assert status == 200, body

    def traces(self, token: str) -> List[list]:
        """The traces the agent received in the session: lists of span dicts."""
        status, body = self._get("/test/session/traces", test_session_token=token)
        assert status == 200, body
        return json.loads(body)

    def wait_for_traces(self, token: str, count: int, timeout: float = 10.0) -> List[list]:
        """Polls until at least ``count`` traces arrived (a writer flushes every second)."""
        deadline = time.monotonic() + timeout
        while True:
            traces = self.traces(token)
            if len(traces) >= count or time.monotonic() > deadline:
                return traces
            time.sleep(0.05)

    # --- what the traced code sends with

    def env(self, token: str, env_header: bool = True, **settings: str) -> dict:
        """Environment for a process that traces into the session, with ``settings``.

        Its payloads go through :class:`EnvHeaderProxy`, which adds the ``DD_`` settings
        as the header that the agent's ``trace_peer_service`` and ``trace_dd_service``
        checks read (unless ``env_header`` is false).
        """
        if env_header:
            self.proxy.settings[token] = {k: v for k, v in settings.items() if k.startswith("DD_")}
        return dict(
            settings,
            DD_TRACE_AGENT_URL=self.proxy.url,
            _DD_TRACE_WRITER_ADDITIONAL_HEADERS="%s:%s" % (TOKEN_HEADER, token),
        )


class EnvHeaderProxy:
    """Forwards requests to the agent, adding ``X-Datadog-Trace-Env-Variables``.

    The agent's peer-service and service checks inspect only payloads that carry this
    header, and ddtrace's native writer cannot add it (its additional-headers setting
    passes on only the session token). dd-trace-js's test harness adds it the same way.
    The header holds the ``DD_`` settings registered for the payload's session token.
    """

    def __init__(self, agent_url: str):
        self.settings = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                skip = ("host", "connection", "content-length", "transfer-encoding")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                settings = proxy.settings.get(self.headers.get(TOKEN_HEADER, ""))
                if settings:
                    # The agent splits the value on "," and "=": values holding either are left out.
                    pairs = ["%s=%s" % kv for kv in sorted(settings.items()) if not set(kv[1]) & set(",=")]
                    headers[ENV_HEADER] = ",".join(pairs)
                request = urllib.request.Request(agent_url + self.path, data=body, headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, content, kind = response.status, response.read(), response.headers.get("Content-Type")
                except urllib.error.HTTPError as error:
                    status, content, kind = error.code, error.read(), error.headers.get("Content-Type")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind or "text/plain")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the tracer stopped waiting (at exit): the agent has the payload

            do_GET = do_POST = do_PUT = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="env-header-proxy", daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _log_dir() -> str:
    directory = os.path.join(ROOT, ".test-logs")
    os.makedirs(directory, exist_ok=True)
    return directory
