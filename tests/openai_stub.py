"""A small real OpenAI-compatible HTTP server for tests (stdlib ``http.server`` on 127.0.0.1):
subclass :class:`StubHandler` with a ``do_POST`` and start it with :func:`serve`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubHandler(BaseHTTPRequestHandler):
    """Answers ``GET /v1/models`` with ``served_model``; ``send_json`` writes one JSON reply."""

    served_model = "served-model"

    def send_json(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def completion(
        self,
        model: str,
        text: str,
        finish: str,
        stop_reason: str | None = None,
        usage: tuple[int, int] = (9, 1),
    ) -> None:
        """One ``/v1/completions`` reply; ``usage`` is (prompt tokens, completion tokens)."""
        choice = {"index": 0, "text": text, "finish_reason": finish, "stop_reason": stop_reason}
        counts = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
        counts["total_tokens"] = sum(usage)
        self.send_json(200, {"id": "c", "object": "text_completion", "model": model,
                             "choices": [choice], "usage": counts})  # fmt: skip

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            model = {"id": self.served_model, "object": "model"}
            self.send_json(200, {"object": "list", "data": [model]})
        else:
            self.send_json(404, {"error": {"message": "no such route"}})

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(handler: type[StubHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free port; yields the base URL (``http://127.0.0.1:PORT/v1``)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
