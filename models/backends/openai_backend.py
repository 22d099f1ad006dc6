"""The ``openai`` backend: any OpenAI-compatible chat-completions server (``vllm serve``, hosted baselines).

Choices a caller may notice:

- Images are sent as lossless PNG data URLs, converted to RGB first, so the server sees the same pixels
  the local ``transformers`` backend sees (JPEG would be smaller but shifts outputs a little).
- A server's separate reasoning (vLLM's ``reasoning_content``, or ``reasoning``) is put back in front of
  the answer as ``<think>...</think>``, the shape our parsers read from local models; streams do the same.
- 429, 5xx and connection failures are retried with exponential backoff and jitter (``Retry-After``
  honoured, capped). Read timeouts are not retried: the server may still be working on the first attempt,
  and a retry would queue the same work twice. ``timeout_s`` bounds each network phase (connect, write,
  every read), not the whole call.
- ``latency_ms`` is the time of the attempt that answered; retries and backoff are not counted.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from models.backends.base import (
    BackendError,
    GenerationRequest,
    GenerationResult,
    ModelSpec,
    register_backend,
)

EXCERPT_CHARS = 300


class _CallFailed(Exception):
    """One request failed for good; the message is what the result's ``error`` says."""


def _excerpt(raw: bytes | str) -> str:
    """A body -> one line of at most EXCERPT_CHARS characters, for error messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return (text[:EXCERPT_CHARS] + "...") if len(text) > EXCERPT_CHARS else (text or "(empty body)")


# Formats every OpenAI-compatible vision server decodes; a frame read straight from such a file is sent as is.
_PASS_THROUGH = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def encode_image(image: Image.Image) -> str:
    """A PIL image -> a ``data:`` URL. An image opened from a JPEG, PNG or WebP file (as the frame store's
    are) is sent as that file's bytes: the same pixels, and no re-encoding, which for a PNG of an 854x480
    frame costs ~60 ms of CPU per request and capped throughput to a fast server. Anything else (an image
    made or changed in memory) is sent as PNG of its RGB pixels."""
    path, mime = getattr(image, "filename", None), _PASS_THROUGH.get(image.format or "")
    if path and mime and image.mode in ("RGB", "L"):
        try:
            return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
        except OSError:
            pass  # the file went away since it was opened: fall back to the pixels in memory
    out = io.BytesIO()
    (image if image.mode == "RGB" else image.convert("RGB")).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _content_part(part: Any, images: Iterator[Image.Image]) -> dict[str, Any]:
    """One TRL-style content part -> its OpenAI form; an image part takes the next image."""
    if not isinstance(part, dict):
        raise _CallFailed(f"a content part must be an object, got {type(part).__name__}")
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "image":
        image = next(images, None)
        if image is None:
            raise _CallFailed("the messages have more image parts than the request has images")
        return {"type": "image_url", "image_url": {"url": encode_image(image)}}
    if kind == "image_url":
        return part
    raise _CallFailed(f"unsupported content part type {kind!r}")


def to_openai_messages(messages: Sequence[dict[str, Any]],
                       images: Sequence[Image.Image]) -> list[dict[str, Any]]:
    """TRL-style messages and their images -> OpenAI chat messages with data-URL images.

    Raises _CallFailed when image parts and images do not pair up one to one."""
    remaining = iter(images)
    converted = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [_content_part(part, remaining) for part in content]
        converted.append({**message, "content": content})
    left = sum(1 for _ in remaining)
    if left:
        raise _CallFailed(f"the request has {len(images)} images but only {len(images) - left} image parts")
    return converted


def _with_reasoning(reasoning: Any, content: Any) -> str:
    """A message's reasoning and content -> ``<think>reasoning</think>content`` (no tags if no reasoning)."""
    if isinstance(content, list):  # some servers return content as a list of text parts
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    text = content if isinstance(content, str) else ""
    return f"<think>{reasoning}</think>{text}" if isinstance(reasoning, str) and reasoning else text


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _server_error(body: dict[str, Any]) -> str | None:
    """The message of an ``{"error": ...}`` body, if it is one."""
    error = body.get("error")
    if error is None:
        return None
    return str(error.get("message", error) if isinstance(error, dict) else error)[:EXCERPT_CHARS]


def parse_completion(raw: bytes) -> tuple[str, int | None, int | None]:
    """A chat-completion body -> (text, prompt tokens, completion tokens); _CallFailed if malformed."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _CallFailed(f"the server's reply is not JSON: {_excerpt(raw)}") from None
    if not isinstance(body, dict):
        raise _CallFailed(f"the server's reply is not a JSON object: {_excerpt(raw)}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        reason = _server_error(body) or _excerpt(raw)
        raise _CallFailed(f"the server's reply has no choices: {reason}")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _CallFailed(f"the server's first choice has no message: {_excerpt(raw)}")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    text = _with_reasoning(reasoning, message.get("content"))
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return text, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header as seconds (a number; HTTP dates are ignored), or None."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _stream_pieces(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Parsed SSE chunks -> text deltas, reasoning deltas wrapped in one ``<think>...</think>``."""
    thinking = False
    for chunk in chunks:
        choices = chunk.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        delta = first.get("delta") if isinstance(first, dict) else None
        if not isinstance(delta, dict):
            continue
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        content = delta.get("content")
        if isinstance(reasoning, str) and reasoning:
            if not thinking:
                thinking = True
                yield "<think>"
            yield reasoning
        if isinstance(content, str) and content:
            if thinking:
                thinking = False
                yield "</think>"
            yield content
    if thinking:
        yield "</think>"


def _sse_chunks(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent-event stream until ``[DONE]``; BackendError on errors or garbage."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, comments, event names
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise BackendError(f"the stream sent a line that is not JSON: {_excerpt(data)}") from None
        if not isinstance(chunk, dict):
            raise BackendError(f"the stream sent a line that is not a JSON object: {_excerpt(data)}")
        if (error := _server_error(chunk)) is not None:
            raise BackendError(f"the server reported an error mid-stream: {error}")
        yield chunk


@register_backend("openai")
class OpenAIBackend:
    """Chat completions over HTTP: ``generate`` runs up to ``spec.concurrency`` requests at once."""

    def __init__(self, spec: ModelSpec, *, backoff_base_s: float = 0.5, backoff_cap_s: float = 20.0,
                 retry_after_cap_s: float = 60.0) -> None:
        """Check the spec and read the API key; BackendError names what is missing. Nothing is sent yet."""
        self.spec = spec
        if not spec.url or not spec.url.startswith(("http://", "https://")):
            raise BackendError(f"model {spec.name!r}: the openai backend needs "
                               f"url = 'http(s)://host:port/v1', got {spec.url!r}")
        self._api_key = self._read_api_key(spec)
        self._backoff = (backoff_base_s, backoff_cap_s, retry_after_cap_s)
        self._endpoint = spec.url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._ssl = httpx.create_ssl_context()  # shared: building one per client costs ~20 ms
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def preferred_batch_size(self) -> int:
        """Two requests per connection: the pool stays full while a batch's slowest answers come in."""
        return 2 * self.spec.concurrency

    @staticmethod
    def _read_api_key(spec: ModelSpec) -> str | None:
        if not spec.api_key_env:
            return None
        key = os.environ.get(spec.api_key_env, "").strip()
        if not key:
            raise BackendError(f"model {spec.name!r}: environment variable {spec.api_key_env} "
                               f"(api_key_env) is not set or empty; export the API key there")
        return key

    def _new_client(self) -> httpx.Client:
        return httpx.Client(headers=self._headers, timeout=httpx.Timeout(self.spec.timeout_s),
                            verify=self._ssl,
                            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1))

    def _worker_client(self) -> httpx.Client:
        """The HTTP client of this worker thread, kept until close(). One per worker because one shared
        httpx pool serialises requests on its lock: at 128 threads they waited seconds for it."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._new_client()
            with self._lock:
                self._clients.append(client)
            self._local.client = client
        return client

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _payload(self, request: GenerationRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body for one request; _CallFailed when its images do not match its image parts."""
        settings = self.spec.generation
        return {**self.spec.extra_body, "model": self.spec.remote_model or self.spec.name,
                "messages": to_openai_messages(request.messages, request.images),
                "max_tokens": settings.max_new_tokens, "temperature": settings.temperature,
                "top_p": settings.top_p, "stream": stream}

    def _pause(self, attempt: int, retry_after: float | None) -> None:
        """Sleep before retry ``attempt`` + 1: Retry-After when given (capped), else backoff with jitter."""
        base, cap, retry_after_cap = self._backoff
        if retry_after is not None:
            time.sleep(min(retry_after, retry_after_cap))
            return
        delay = min(cap, base * 2 ** attempt)
        time.sleep(delay / 2 + random.uniform(0, delay / 2))

    def _send(self, client: httpx.Client, payload: dict[str, Any], *, stream: bool) -> httpx.Response:
        """POST ``payload``, retrying 429, 5xx and connection errors -> a 2xx response; _CallFailed otherwise.

        With ``stream`` the response body is not read yet: the caller must close it."""
        attempts = self.spec.max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                request = client.build_request("POST", self._endpoint, json=payload)
                response = client.send(request, stream=stream)
            except (httpx.ConnectTimeout, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if last:
                    raise _CallFailed(f"connection to {self._endpoint} failed after {attempts} attempt(s) "
                                      f"({type(exc).__name__}: {exc})") from None
                self._pause(attempt, None)
                continue
            except httpx.TimeoutException as exc:
                raise _CallFailed(f"timeout: no answer from {self._endpoint} within "
                                  f"{self.spec.timeout_s:g} s ({type(exc).__name__})") from None
            except httpx.HTTPError as exc:
                raise _CallFailed(f"request to {self._endpoint} failed "
                                  f"({type(exc).__name__}: {exc})") from None
            if response.is_success:
                return response
            retryable = response.status_code == 429 or response.status_code >= 500
            try:
                body = response.read()
            except httpx.HTTPError:
                body = b"(the error body could not be read)"
            response.close()
            if retryable and not last:
                self._pause(attempt, retry_after_seconds(response))
                continue
            tries = f" after {attempt + 1} attempt(s)" if retryable else ""
            raise _CallFailed(f"HTTP {response.status_code} from {self._endpoint}{tries}: {_excerpt(body)}")
        raise AssertionError("unreachable")

    def _generate_one(self, request: GenerationRequest) -> GenerationResult:
        """One request -> its result; every failure becomes ``error``."""
        started = time.perf_counter()
        try:
            response = self._send(self._worker_client(), self._payload(request, stream=False), stream=False)
            text, prompt_tokens, completion_tokens = parse_completion(response.content)
        except _CallFailed as exc:
            return GenerationResult(error=self._redact(str(exc)), key=request.key,
                                    latency_ms=(time.perf_counter() - started) * 1000)
        except Exception as exc:  # noqa: BLE001 - generate never raises; the message says what happened
            error = self._redact(f"unexpected {type(exc).__name__}: {exc}")
            return GenerationResult(error=error, key=request.key)
        return GenerationResult(text=text, key=request.key, prompt_tokens=prompt_tokens,
                                completion_tokens=completion_tokens,
                                latency_ms=response.elapsed.total_seconds() * 1000)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise BackendError(f"model {self.spec.name!r}: the backend is closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.spec.concurrency,
                                                    thread_name_prefix=f"openai-{self.spec.name}")
            return self._executor

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Requests -> one result each, in input order, with ``spec.concurrency`` at most in flight.

        Never raises: failures are results with ``error`` set."""
        if not requests:
            return []
        try:
            futures = [self._pool().submit(self._generate_one, request) for request in requests]
        except Exception as exc:  # noqa: BLE001 - a closed backend answers with errors, not an exception
            return [GenerationResult(error=str(exc), key=request.key) for request in requests]
        return [future.result() for future in futures]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Text deltas of one request as the server sends them; BackendError on any failure.

        Each stream has its own connection, closed at the end: callers' threads come and go."""
        if self._closed:
            raise BackendError(f"model {self.spec.name!r}: the backend is closed")
        client = self._new_client()
        try:
            response = self._send(client, self._payload(request, stream=True), stream=True)
        except _CallFailed as exc:
            client.close()
            raise BackendError(f"model {self.spec.name!r}: {self._redact(str(exc))}") from None
        try:
            yield from _stream_pieces(_sse_chunks(response))
        except httpx.TimeoutException:
            raise BackendError(f"model {self.spec.name!r}: timeout: the stream stalled for more than "
                               f"{self.spec.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise BackendError(f"model {self.spec.name!r}: the stream broke ({type(exc).__name__}: "
                               f"{self._redact(str(exc))})") from None
        finally:
            response.close()
            client.close()

    def served_models(self) -> list[str]:
        """The model names the server lists at ``GET /models``; BackendError when it cannot be asked."""
        url = self.spec.url.rstrip("/") + "/models"
        try:
            with self._new_client() as client:
                response = client.get(url)
            response.raise_for_status()
            return [str(item["id"]) for item in response.json()["data"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"model {self.spec.name!r}: cannot list models at {url} "
                               f"({type(exc).__name__}: {self._redact(str(exc))[:EXCERPT_CHARS]})") from None

    def close(self) -> None:
        """Stop the worker threads and close the HTTP connections; safe to call twice."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
