"""Snapshot tests' apps: the fixed addresses their servers listen on, and :class:`Snapshot`,
one test's session in the APM test agent (what the ``snapshot`` fixture yields).

The token of a session, and so the snapshot files' names, is ``<module>.<test name>``:
the test module's basename, or its ``SNAPSHOT_PREFIX`` when it holds tests recorded under
another module's name (the asyncio clients' snapshots, recorded as ``test_snapshots_async``).
"""

import os
import subprocess
import sys
import textwrap

from apps import ddtrace_run
from apps import subprocess_env
from servers import TestAgent

# Fixed, so that the port metric and the socket path in the snapshots are real values.
SNAPSHOT_PORTS = (21211, 21212, 21213)
SNAPSHOT_DEAD_PORT = 21219
SNAPSHOT_SILENT_PORT = 21218
SNAPSHOT_SOCKET = "/tmp/ddtrace-memcached-snapshots/memcached.sock"


def token_prefix(module) -> str:
    """The first part of the snapshot tokens of the tests of ``module``."""
    return getattr(module, "SNAPSHOT_PREFIX", module.__name__.rpartition(".")[2])


def snapshot_server_strings(unix_prefix: str = "") -> str:
    """App code naming the snapshot servers as ``host:port`` strings (pylibmc, bmemcached,
    python-memcached): SERVER, the three NODES, SOCKET (the socket's path after
    ``unix_prefix``) and DEAD, where nothing listens."""
    return """
SERVER = "127.0.0.1:{port}"
NODES = {nodes!r}
SOCKET = {socket!r}
DEAD = "127.0.0.1:{dead}"
""".format(
        port=SNAPSHOT_PORTS[0],
        nodes=["127.0.0.1:%d" % port for port in SNAPSHOT_PORTS],
        socket=unix_prefix + SNAPSHOT_SOCKET,
        dead=SNAPSHOT_DEAD_PORT,
    )


ASYNC_ADDRESSES = """
import asyncio

from ddtrace.trace import tracer

PORTS = {ports!r}
SOCKET = {socket!r}
DEAD = {dead!r}
SILENT = {silent!r}


def silent_listener():
    import socket

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", SILENT))
    listener.listen(1)
    return listener
""".format(ports=list(SNAPSHOT_PORTS), socket=SNAPSHOT_SOCKET, dead=SNAPSHOT_DEAD_PORT, silent=SNAPSHOT_SILENT_PORT)
"""The asyncio apps' first lines: asyncio, the tracer, the snapshot ports (PORTS, DEAD,
SILENT), the SOCKET, and ``silent_listener()``, a socket on SILENT that never answers."""


class Snapshot:
    """One test's session in the test agent; see the ``snapshot`` fixture."""

    def __init__(self, agent: TestAgent, token: str, directory: str):
        self.agent = agent
        self.token = token
        self.directory = directory

    def env(self, env_header: bool = True, **settings) -> dict:
        """The app's environment: ``settings`` plus what sends its traces to this session."""
        settings.setdefault("DD_SERVICE", "snapshot-app")
        settings = {k: v for k, v in settings.items() if v is not None}  # None: leave unset
        return subprocess_env(**self.agent.env(self.token, env_header, **settings))

    def run(
        self, code: str, prelude: str = "", under_ddtrace_run: bool = True, env_header: bool = True, **settings
    ) -> subprocess.CompletedProcess:
        """Runs ``code`` as ``app.py`` (a fixed path) in a new interpreter, under ddtrace-run
        by default; ``settings`` are its environment (``DD_SERVICE=None`` leaves it unset).

        ``env_header=False`` keeps the settings from the agent's checks (see TestAgent.env).
        """
        path = os.path.join(self.directory, "app.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(prelude) + "\n" + textwrap.dedent(code))
        argv = [*(ddtrace_run() if under_ddtrace_run else []), sys.executable, "app.py"]
        env = self.env(env_header, **settings)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=self.directory)
        assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
        return proc
