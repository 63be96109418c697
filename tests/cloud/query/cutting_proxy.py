"""An HTTP proxy in front of a real InfluxDB that cuts every streamed /query answer after
its first `keep` JSON documents, and ends the response cleanly.

A fake cut on real answers: InfluxDB 1.6 itself never ends a streamed (chunked=true)
answer early without an error, so nothing real here can show what the query layer does
with a stream whose last piece still says `partial` (a proxy's or a later server's limit).
Everything else (status, body of errors, /ping) passes through unchanged.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@contextmanager
def cutting_proxy(upstream_url: str, keep: int) -> Iterator[str]:
    """Yields the proxy's URL; `keep`: the documents of each answer passed on."""
    up = urlsplit(upstream_url)
    host, port = up.hostname or "127.0.0.1", up.port

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("authorization", "content-type")}
            conn = http.client.HTTPConnection(host, port, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            if self.path.startswith("/query") and answer.status == 200:
                data = b"".join(data.splitlines(keepends=True)[:keep])
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.getheader("Content-Type") or "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _forward
        do_POST = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
