"""A scriptable OpenAI-compatible chat server for tests (127.0.0.1, free port, threads).

Each POST to .../chat/completions takes the next action of `script` (then `default`):
    ("ok",)                          a canned chat completion
    ("status", code, headers, body)  an error answer, e.g. ("status", 429, {"Retry-After": "1"}, {...})
    ("hang", seconds)                say nothing for that long (past the client's timeout), then drop it
    ("sleep", seconds)               wait, then a canned completion
The canned completion has min(n, choices_cap) choices whose text names the seed and choice index.
It records every request (headers and JSON body) and the most requests it ever had in flight at once.
`kill()` (or `kill_after=N`: on receiving the N-th request) makes it die as a crashed server does: the
requests in flight and every open connection are dropped unanswered, new connections refused; `answered`
holds the bodies it sent a completion for.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class FaultServer:
    def __init__(self, script: list[tuple] | None = None, default: tuple = ("ok",), choices_cap: int | None = None,
                 delay: float | Callable[[dict], float] = 0.0, kill_after: int | None = None):
        self.script = list(script or [])
        self.default = default
        self.choices_cap = choices_cap
        self.delay = delay
        self.received: list[dict[str, Any]] = []  # {"path", "headers", "body", "time"}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.kill_after = kill_after
        self.answered: list[dict[str, Any]] = []
        self._killed = threading.Event()
        self._connections: set = set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                with owner._lock:
                    owner._connections.add(self.connection)

            def do_GET(self):
                owner._send(self, 200, {}, {"status": "ok"})

            def do_POST(self):
                owner._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ handling

    @property
    def attempts(self) -> int:
        return len(self.received)

    def _send(self, handler, code: int, headers: dict, body: Any) -> None:
        data = json.dumps(body).encode()
        try:
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                handler.send_header(k, v)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client gave up (timeout)
            pass

    def _handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {}
        if self._killed.is_set():  # a request on a connection that outlived the kill
            handler.close_connection = True
            return
        with self._lock:
            self.received.append({"path": handler.path, "headers": {k.lower(): v for k, v in handler.headers.items()}, "body": body, "time": time.monotonic()})
            action = self.script.pop(0) if self.script else self.default
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            dies = self.kill_after is not None and len(self.received) == self.kill_after
        if dies:  # (here, not in another thread: this request is surely one of those dropped)
            self.kill()
        try:
            kind = action[0]
            if kind == "status":
                _, code, headers, payload = action
                self._send(handler, code, headers, payload)
            elif kind == "hang":
                self._stopping.wait(action[1])
                handler.close_connection = True
            else:
                wait = action[1] if kind == "sleep" else (self.delay(body) if callable(self.delay) else self.delay)
                if wait:
                    self._stopping.wait(wait)
                with self._lock:  # (the kill takes the same lock: an answer counted is one sent before it)
                    killed = self._killed.is_set()
                    if not killed:
                        self.answered.append(body)
                if killed:
                    handler.close_connection = True
                    return
                self._send(handler, 200, {}, self.completion(body))
        finally:
            with self._lock:
                self.in_flight -= 1

    def completion(self, body: dict) -> dict:
        n = int(body.get("n") or 1)
        k = n if self.choices_cap is None else min(n, self.choices_cap)
        seed = body.get("seed")
        last = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        if isinstance(last, list):
            last = " ".join(p.get("text", "") for p in last if p.get("type") == "text")
        choices = [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": f"reply seed={seed} choice={i}: {str(last)[:40]}"}}
                   for i in range(k)]
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": body.get("model", "m"),
                "choices": choices, "usage": {"prompt_tokens": 11, "completion_tokens": 7 * k, "total_tokens": 11 + 7 * k}}

    # ------------------------------------------------------------------ lifetime

    def kill(self) -> None:
        """Die mid-run: refuse new connections, drop every open one (in flight or idle) unanswered."""
        import socket

        with self._lock:
            if self._killed.is_set():
                return
            self._killed.set()
        self._stopping.set()  # wake the handlers that wait (they see the kill and answer nothing)
        self.httpd.shutdown()
        self.httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self._killed.is_set():
            self._thread.join(timeout=5)
            return
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FaultServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
