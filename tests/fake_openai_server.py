"""A small real OpenAI-compatible server on 127.0.0.1 for tests and benchmarks, scripted per test.

``POST /v1/chat/completions`` (plain and ``stream: true`` server-sent events) and ``GET /v1/models``.
Each HTTP connection gets its own thread, so hundreds of requests can be in flight at once; the server
records every request and the most it ever had in flight. Waits (latency, hangs) end when it stops.

    with running_fake_server(Behaviour(reply="hello", latency_s=0.05)) as server:
        ...  # point a backend at server.url
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | Callable[[dict[str, Any]], str]


@dataclass
class Behaviour:
    """What the server does; tests may change it between calls."""

    reply: Reply = "The fake model answers."
    reasoning: str | None = None  # sent as reasoning_content beside the reply, as vLLM's reasoning parsers do
    latency_s: float | Callable[[dict[str, Any]], float] = 0.0  # before each completion
    fail_times: int = 0  # the first N completions fail with fail_status
    fail_status: int = 503
    retry_after: str | None = None  # Retry-After header sent with those failures
    status: int | None = None  # every completion fails with this status (e.g. 400)
    error_body: str = '{"error": {"message": "the fake server refuses this request", "code": 400}}'
    hang_s: float = 0.0  # wait this long before answering (beyond a client's timeout)
    garbage: str | None = None  # a 200 body sent instead of a completion
    stream_delay_s: float = 0.0  # between stream chunks


@dataclass
class Received:
    """One request the server saw: headers with lower-case names, the JSON body (None if not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


def _texts(body: dict[str, Any]) -> list[str]:
    texts = []
    for message in body.get("messages", []):
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        texts += [part["text"] for part in parts
                  if part.get("type") == "text" and isinstance(part.get("text"), str)]
    return texts


def image_urls(body: dict[str, Any]) -> list[str]:
    """The image URLs of a chat-completion body, in order."""
    return [part["image_url"]["url"] for message in body.get("messages", [])
            if isinstance(message.get("content"), list)
            for part in message["content"] if part.get("type") == "image_url"]


def echo_image_count(body: dict[str, Any]) -> str:
    """A reply naming how many images came: ``images=N``."""
    return f"images={len(image_urls(body))}"


def echo_last_text(body: dict[str, Any]) -> str:
    """A reply repeating the last text part of the request."""
    texts = _texts(body)
    return texts[-1] if texts else ""


class _HTTPServer(ThreadingHTTPServer):
    fake: FakeOpenAIServer


class FakeOpenAIServer:
    """The server and what it saw; ``start()`` serves in a daemon thread, ``stop()`` ends it."""

    def __init__(self, behaviour: Behaviour | None = None, *, model: str = "fake-model",
                 port: int = 0) -> None:
        self.behaviour = behaviour or Behaviour()
        self.model = model
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.failures_served = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler, bind_and_activate=False)
        self._httpd.fake = self
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 512  # the listen backlog; the default 5 drops bursts of connections
        self._httpd.server_bind()
        self._httpd.server_activate()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai-server", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The base URL a client is given: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completions(self) -> list[Received]:
        return [r for r in self.received if r.path == "/v1/chat/completions"]

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release waiting handlers, stop serving and close the socket (within about a second)."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def take_failure(self) -> bool:
        """True when this completion is one of the first ``fail_times``."""
        with self._lock:
            if self.failures_served < self.behaviour.fail_times:
                self.failures_served += 1
                return True
            return False


def _completion(server: FakeOpenAIServer, body: dict[str, Any], text: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if server.behaviour.reasoning is not None:
        message["reasoning_content"] = server.behaviour.reasoning
    prompt_tokens = sum(len(t.split()) for t in _texts(body)) + 100 * len(image_urls(body))
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": server.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                      "total_tokens": prompt_tokens + len(text.split())}}


def _stream_deltas(server: FakeOpenAIServer, text: str) -> Iterator[dict[str, Any]]:
    """The delta objects of a streamed answer: role, reasoning words, reply words, finish."""
    yield {"role": "assistant", "content": ""}
    for word in (server.behaviour.reasoning or "").split(" "):
        if word:
            yield {"reasoning_content": word + " "}
    words = text.split(" ")
    for i, word in enumerate(words):
        yield {"content": word + (" " if i < len(words) - 1 else "")}


class _Handler(BaseHTTPRequestHandler):
    """Answers one connection's requests for the FakeOpenAIServer its HTTP server carries."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # headers and body go in separate writes: Nagle would add 40 ms to each
    server: _HTTPServer

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature http.server uses
        pass

    def _read_body(self) -> dict[str, Any] | None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else None
        self.fake.record(Received(self.command, self.path, self._headers(), body))
        return body

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _send(self, status: int, payload: str | bytes, *, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.fake.record(Received("GET", self.path, self._headers(), None))
        if self.path != "/v1/models":
            return self._send(404, '{"error": "not found"}')
        self._send(200, json.dumps({"object": "list", "data": [{"id": self.fake.model, "object": "model"}]}))

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self._read_body()
        if self.path != "/v1/chat/completions":
            return self._send(404, '{"error": "not found"}')
        self.fake.enter()
        try:
            self._complete(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout): nothing to answer
        finally:
            self.fake.leave()

    def _complete(self, body: dict[str, Any] | None) -> None:
        """Answer one chat completion as the behaviour says."""
        behaviour = self.fake.behaviour
        if body is None:
            return self._send(400, '{"error": {"message": "body is not JSON"}}')
        latency = behaviour.latency_s(body) if callable(behaviour.latency_s) else behaviour.latency_s
        if self.fake.stopping.wait(latency + behaviour.hang_s):
            return
        if self.fake.take_failure():
            extra = {"Retry-After": behaviour.retry_after} if behaviour.retry_after is not None else {}
            return self._send(behaviour.fail_status, '{"error": {"message": "try again later"}}',
                              headers=extra)
        if behaviour.status is not None:
            return self._send(behaviour.status, behaviour.error_body)
        if behaviour.garbage is not None:
            return self._send(200, behaviour.garbage, content_type="text/plain")
        text = behaviour.reply(body) if callable(behaviour.reply) else behaviour.reply
        if body.get("stream"):
            return self._stream(text)
        self._send(200, json.dumps(_completion(self.fake, body, text)))

    def _stream(self, text: str) -> None:
        """Send the answer as server-sent events, a word per chunk, then ``[DONE]``; then close."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for delta in _stream_deltas(self.fake, text):
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": self.fake.model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            if self.fake.stopping.wait(self.fake.behaviour.stream_delay_s):
                return
        self.wfile.write(b"data: [DONE]\n\n")


@contextmanager
def running_fake_server(behaviour: Behaviour | None = None, *,
                        model: str = "fake-model") -> Iterator[FakeOpenAIServer]:
    """A started server on a free port, stopped on exit."""
    server = FakeOpenAIServer(behaviour, model=model).start()
    try:
        yield server
    finally:
        server.stop()


def unused_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (a port just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def main() -> None:
    """Serve until interrupted: ``python -m tests.fake_openai_server --port 8000 --latency 0.2``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each completion")
    parser.add_argument("--model", default="fake-model")
    args = parser.parse_args()
    server = FakeOpenAIServer(Behaviour(latency_s=args.latency), model=args.model, port=args.port).start()
    print(f"fake OpenAI server at {server.url}", flush=True)
    try:
        server.stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
