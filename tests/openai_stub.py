"""A loopback OpenAI-compatible chat server for runner tests: fixed latency, request counting per issue.

Run standalone (``python tests/openai_stub.py --latency 0.3``) it prints its URL and serves until killed.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer_for(messages: list[dict]) -> str:
    system = messages[0]["content"] if messages else ""
    if "JSON" in system:
        return json.dumps({"type": "bug", "component": "core", "severity": "high"})
    return "Change `src/app.py` to handle the missing key.\n```python\nvalue = config.get('port', 80)\n```"


class StubServer:
    """Counts requests by issue number (taken from the prompt's 'Issue #N')."""

    def __init__(self, latency_s: float = 0.0, port: int = 0) -> None:
        self.latency_s = latency_s
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                user = body["messages"][-1]["content"]
                match = re.search(r"Issue #(\S+):", user)
                mode = "classify" if "JSON" in body["messages"][0]["content"] else "other"
                key = f"{match.group(1) if match else '?'}:{mode}:{body.get('seed')}"
                with stub.lock:
                    stub.counts[key] += 1
                    stub.total += 1
                time.sleep(stub.latency_s)
                payload = json.dumps(
                    {
                        "id": "chatcmpl-stub",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": "stub-model",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": answer_for(body["messages"])},
                            }
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def start(self) -> StubServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    latency = float(sys.argv[sys.argv.index("--latency") + 1]) if "--latency" in sys.argv else 0.0
    server = StubServer(latency).start()
    print(server.url, flush=True)
    threading.Event().wait()
