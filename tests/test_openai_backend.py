"""The openai backend against a real HTTP server on 127.0.0.1: payloads, retries, failures, order, streams."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from models.backends import BackendError, GenerationRequest, ModelSpec, create_backend
from models.backends.openai_backend import OpenAIBackend
from tests.fake_openai_server import (
    Behaviour,
    FakeOpenAIServer,
    echo_image_count,
    echo_last_text,
    image_urls,
    running_fake_server,
    unused_url,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with running_fake_server() as running:
        yield running


def make_backend(url: str, **spec_fields) -> OpenAIBackend:
    """A backend with fast backoff, closed by the caller (tests use it as a context via ``closing``)."""
    fields = {"name": "vllm-test", "backend": "openai", "url": url, "remote_model": "served-name",
              "max_retries": 2, "timeout_s": 5, **spec_fields}
    return OpenAIBackend(ModelSpec(**fields), backoff_base_s=0.01, backoff_cap_s=0.05)


@pytest.fixture
def backend_for(server) -> Iterator[callable]:
    made = []

    def build(**spec_fields) -> OpenAIBackend:
        made.append(make_backend(server.url, **spec_fields))
        return made[-1]

    yield build
    for backend in made:
        backend.close()


def ask(text: str, images: list[Image.Image] | None = None, key=None) -> GenerationRequest:
    content = [{"type": "image"} for _ in images or []] + [{"type": "text", "text": text}]
    return GenerationRequest(messages=[{"role": "system", "content": "You are a surgeon."},
                                       {"role": "user", "content": content}], images=images or [], key=key)


def test_registered_by_name_and_answers_with_text_tokens_and_latency(server):
    server.behaviour = Behaviour(reply="The gallbladder is retracted.", latency_s=0.05)
    spec = ModelSpec(name="vllm-test", backend="openai", url=server.url, remote_model="served-name",
                     generation={"max_new_tokens": 77, "temperature": 0.3, "top_p": 0.9})
    backend = create_backend(spec)
    try:
        [result] = backend.generate([ask("What phase is this?", key="case-1")])
    finally:
        backend.close()
    assert isinstance(backend, OpenAIBackend)
    assert (result.error, result.text, result.key) == (None, "The gallbladder is retracted.", "case-1")
    assert (result.prompt_tokens, result.completion_tokens) == (8, 4)  # the fake server counts words
    assert 50 <= result.latency_ms < 2000
    body = server.completions[0].body
    sent = (body["model"], body["max_tokens"], body["temperature"], body["top_p"])
    assert sent == ("served-name", 77, 0.3, 0.9)
    assert body["messages"][0] == {"role": "system", "content": "You are a surgeon."}


def test_images_go_as_png_data_urls_in_order(server, backend_for):
    server.behaviour.reply = echo_image_count
    images = [Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGBA", (32, 20), (0, 90, 0, 255))]
    [result] = backend_for().generate([ask("Compare the frames.", images)])
    assert result.text == "images=2"
    urls = image_urls(server.completions[0].body)
    assert all(url.startswith("data:image/png;base64,") for url in urls)
    decoded = [Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) for url in urls]
    assert [(image.size, image.mode) for image in decoded] == [((64, 48), "RGB"), ((32, 20), "RGB")]
    assert decoded[0].getpixel((10, 10)) == (200, 30, 30)


def test_a_frame_opened_from_its_file_is_sent_as_the_files_bytes(server, backend_for, tmp_path):
    """No re-encoding of stored frames: the JPEG goes out byte for byte (and an edited copy as PNG)."""
    path = tmp_path / "frame.jpg"
    Image.new("RGB", (64, 48), (10, 120, 200)).save(path, "JPEG", quality=90)
    opened = Image.open(path)
    opened.load()
    backend_for().generate([ask("One frame.", [opened, opened.rotate(90)])])
    first, second = image_urls(server.completions[-1].body)
    assert first == "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    assert second.startswith("data:image/png;base64,")


def test_images_that_do_not_match_image_parts_give_an_error_without_a_request(server, backend_for):
    too_many = GenerationRequest(messages=[{"role": "user", "content": [{"type": "image"}]}],
                                 images=[Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8))])
    two_parts = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}]
    too_few = GenerationRequest(messages=two_parts, images=[Image.new("RGB", (8, 8))])
    results = backend_for().generate([too_many, too_few])
    assert "2 images but only 1 image parts" in results[0].error
    assert "more image parts than the request has images" in results[1].error
    assert server.completions == []


def test_api_key_from_the_environment_goes_as_bearer_and_never_into_errors(server, backend_for, monkeypatch):
    monkeypatch.setenv("SURG_TEST_KEY", "sk-secret-123")
    server.behaviour = Behaviour(status=401, error_body='{"error": "bad key sk-secret-123"}')
    [result] = backend_for(api_key_env="SURG_TEST_KEY").generate([ask("hi")])
    assert server.completions[0].headers["authorization"] == "Bearer sk-secret-123"
    assert "HTTP 401" in result.error and "sk-secret-123" not in result.error and "***" in result.error


def test_missing_key_variable_fails_at_construction_naming_it(monkeypatch):
    monkeypatch.delenv("SURG_ABSENT_KEY", raising=False)
    with pytest.raises(BackendError, match="SURG_ABSENT_KEY"):
        make_backend("http://127.0.0.1:9/v1", api_key_env="SURG_ABSENT_KEY")


def test_429_twice_is_retried_after_retry_after(server, backend_for):
    server.behaviour = Behaviour(reply="ok", fail_times=2, fail_status=429, retry_after="0.2")
    started = time.perf_counter()
    [result] = backend_for().generate([ask("hi")])
    assert (result.error, result.text) == (None, "ok")
    assert len(server.completions) == 3
    assert time.perf_counter() - started >= 0.4  # two waits of Retry-After, not the 10 ms backoff
    assert result.latency_ms < 300  # the answering attempt only


def test_503_beyond_max_retries_is_an_error_naming_the_status(server, backend_for):
    server.behaviour = Behaviour(fail_times=10, fail_status=503)
    [result] = backend_for(max_retries=2).generate([ask("hi")])
    assert "HTTP 503" in result.error and "3 attempt(s)" in result.error and "try again later" in result.error
    assert len(server.completions) == 3


def test_400_is_not_retried(server, backend_for):
    server.behaviour = Behaviour(status=400)
    [result] = backend_for().generate([ask("hi")])
    assert "HTTP 400" in result.error and "refuses this request" in result.error
    assert len(server.completions) == 1


def test_a_hanging_server_gives_a_timeout_error(server, backend_for):
    server.behaviour = Behaviour(hang_s=10)
    started = time.perf_counter()
    [result] = backend_for(timeout_s=0.3).generate([ask("hi")])
    assert "timeout" in result.error and "0.3 s" in result.error
    assert time.perf_counter() - started < 2
    assert len(server.completions) == 1  # a read timeout is not retried


@pytest.mark.parametrize(("garbage", "message"), [("<html>Bad Gateway</html>", "not JSON"),
                                                  ('{"id": "x", "object": "chat.completion"}', "no choices"),
                                                  ('{"choices": [{"index": 0}]}', "no message"),
                                                  ("[1, 2]", "not a JSON object")])
def test_garbage_replies_give_clear_errors(server, backend_for, garbage, message):
    server.behaviour = Behaviour(garbage=garbage)
    [result] = backend_for().generate([ask("hi")])
    assert message in result.error and result.text == ""


def test_a_closed_port_gives_a_connection_error():
    backend = make_backend(unused_url(), max_retries=1)
    try:
        [result] = backend.generate([ask("hi")])
    finally:
        backend.close()
    assert "connection" in result.error and "2 attempt(s)" in result.error


def test_concurrency_is_bounded_and_results_keep_input_order(server, backend_for):
    # Earlier requests take longer, so answers arrive out of order.
    server.behaviour = Behaviour(reply=echo_last_text,
                                 latency_s=lambda body: 0.02 * (12 - int(echo_last_text(body).split()[1])))
    requests = [ask(f"case {i}", key=i) for i in range(12)]
    started = time.perf_counter()
    results = backend_for(concurrency=3).generate(requests)
    elapsed = time.perf_counter() - started
    assert [r.text for r in results] == [f"case {i}" for i in range(12)]
    assert [r.key for r in results] == list(range(12))
    assert server.max_in_flight == 3
    assert elapsed < sum(0.02 * (12 - i) for i in range(12))  # faster than one at a time


def test_reasoning_content_comes_back_inside_think_tags(server, backend_for):
    server.behaviour = Behaviour(reply="<answer>B</answer>", reasoning="The clips are placed.")
    [result] = backend_for().generate([ask("Phase?")])
    assert result.text == "<think>The clips are placed.</think><answer>B</answer>"


def test_stream_yields_deltas_that_join_to_the_reply(server, backend_for):
    server.behaviour = Behaviour(reply="Dissect the triangle of Calot first.", stream_delay_s=0.01)
    pieces = list(backend_for().stream(ask("Next step?")))
    assert len(pieces) >= 5
    assert "".join(pieces) == "Dissect the triangle of Calot first."
    assert server.completions[0].body["stream"] is True


def test_stream_wraps_reasoning_in_think_tags(server, backend_for):
    server.behaviour = Behaviour(reply="<answer>C</answer>", reasoning="Fat is cleared.")
    text = "".join(backend_for().stream(ask("Phase?")))
    assert text == "<think>Fat is cleared. </think><answer>C</answer>"


def test_stream_failure_raises_a_clear_backend_error(server, backend_for):
    server.behaviour = Behaviour(status=400)
    with pytest.raises(BackendError, match="HTTP 400.*refuses this request"):
        list(backend_for().stream(ask("hi")))


def test_served_models_lists_the_server_models(server, backend_for):
    assert backend_for().served_models() == ["fake-model"]


def test_a_closed_backend_answers_with_errors(server):
    backend = make_backend(server.url)
    backend.close()
    backend.close()
    [result] = backend.generate([ask("hi")])
    assert "closed" in result.error


def test_extra_body_fields_reach_the_server(server):
    spec = ModelSpec(name="qwen3", backend="openai", url=server.url, concurrency=1, max_retries=0,
                     extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    backend = create_backend(spec)
    try:
        assert backend.generate([GenerationRequest([{"role": "user", "content": "hi"}])])[0].error is None
    finally:
        backend.close()
    assert server.completions[-1].body["chat_template_kwargs"] == {"enable_thinking": False}
    assert spec.params()["extra_body"] == {"chat_template_kwargs": {"enable_thinking": False}}
