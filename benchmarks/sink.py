"""A stand-in Datadog agent that accepts trace payloads and counts them.

Run as its own process, so that what it spends is not counted in the benchmark's
workers. It listens on one port per worker (``python sink.py N``), prints the ports as
one JSON line, and serves until stdin closes:

- ``GET /info``: the endpoints a real agent advertises;
- ``PUT``/``POST /v0.4/traces``, ``/v0.5/traces``: 200 ``{"rate_by_service":{}}``; the
  payloads, traces (``X-Datadog-Trace-Count``) and, with ``msgpack``, spans are counted;
- ``GET /_bench/stats``: those counts, as JSON;
- anything else: 200 ``{}``.
"""

from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
import json
import sys
import threading

try:
    import msgpack
except ImportError:  # spans are then not counted, traces still are
    msgpack = None

INFO = {
    "version": "bench-sink",
    "endpoints": ["/v0.4/traces", "/v0.5/traces", "/info"],
    "client_drop_p0s": False,
    "span_meta_structs": True,
}


def count_spans(path: str, body: bytes):
    """Spans in a v0.4 (list of traces) or v0.5 ([strings, traces]) payload, or None."""
    if msgpack is None or not body:
        return None
    try:
        payload = msgpack.unpackb(body, raw=True, strict_map_key=False)
        traces = payload[1] if path.startswith("/v0.5") else payload
        return sum(len(trace) for trace in traces)
    except Exception:
        return None


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.payloads = 0
        self.traces = 0
        self.spans = 0
        self.bytes = 0
        self.paths = set()

    def as_dict(self) -> dict:
        with self.lock:
            return dict(
                payloads=self.payloads,
                traces=self.traces,
                spans=self.spans if msgpack is not None else None,
                bytes=self.bytes,
                paths=sorted(self.paths),
            )


def make_handler(counts: Counts):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self):
            if self.path.startswith("/info"):
                self._reply(INFO)
            elif self.path.startswith("/_bench/stats"):
                self._reply(counts.as_dict())
            else:
                self._reply({})

        def do_PUT(self):
            body = self._read_body()
            path = self.path.split("?", 1)[0]
            if path.endswith("/traces"):
                spans = count_spans(path, body)
                with counts.lock:
                    counts.payloads += 1
                    counts.traces += int(self.headers.get("X-Datadog-Trace-Count") or 0)
                    counts.spans += spans or 0
                    counts.bytes += len(body)
                    counts.paths.add(path)
                self._reply({"rate_by_service": {}})
            else:
                self._reply({})

        do_POST = do_PUT

        def log_message(self, *args):
            pass

    return Handler


def main() -> None:
    servers = []
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Counts()))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    print(json.dumps([s.server_address[1] for s in servers]), flush=True)
    sys.stdin.read()  # the parent closes stdin (or exits) to stop us


if __name__ == "__main__":
    main()
