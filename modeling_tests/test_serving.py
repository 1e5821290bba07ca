"""`videollava-hf serve` driven by the official `openai` client against a live server on 127.0.0.1.

One server (the bundled demo model) is started for the module; answers are checked against the clip's known
content ("red") and against a greedy decode of the same prompt run in the test process (the oracle)."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

openai = pytest.importorskip("openai", reason="needs the [test] extra (openai)")
pytest.importorskip("fastapi", reason="needs the [serve] extra")
pytest.importorskip("uvicorn", reason="needs the [serve] extra")

from videollava_hf.demo import demo_model_dir, sample_video_path  # noqa: E402

MODEL = "videollava-hf-demo"
QUESTION = "What colour is the shape?"
SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "import sys; from videollava_hf.cli import main; sys.exit(main())", "serve",
           "--port", str(port), "--allowed-local-media-path", str(sample_video_path().parent), "--log-level", "warning",
           "--max-queue", "16"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
    deadline = time.time() + 120
    while True:
        try:
            client.models.list()
            break
        except openai.APIConnectionError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the server did not start:\n{proc.stdout.read()}")
            time.sleep(0.3)
    yield client
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def oracle():
    """The demo model and processor in this process: greedy answers for the same messages."""
    from videollava_hf import VideoLlavaForConditionalGeneration, VideoLlavaProcessor

    model = VideoLlavaForConditionalGeneration.from_pretrained(demo_model_dir()).eval()
    processor = VideoLlavaProcessor.from_pretrained(demo_model_dir())

    def answer(messages, videos=None, images=None, max_new_tokens=16):
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=prompt, videos=videos, images=images, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        return processor.decode(new, skip_special_tokens=True).strip(), inputs["input_ids"].shape[1]

    return answer


def _video_message(url: str, question: str = QUESTION) -> dict:
    return {"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                        {"type": "text", "text": question}]}


def _data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def test_models_lists_the_served_model(server):
    assert [m.id for m in server.models.list()] == [MODEL]


def test_file_url_video_answers_red(server, oracle):
    reply = server.chat.completions.create(
        model=MODEL, messages=[_video_message(sample_video_path().as_uri())], max_tokens=8, temperature=0
    )
    expected, prompt_tokens = oracle([{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}],
                                     videos=[str(sample_video_path())], max_new_tokens=8)
    assert reply.choices[0].message.content == "red" == expected
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == prompt_tokens  # the media tokens are counted
    assert reply.usage.completion_tokens >= 1


def test_streaming_data_url_matches_non_streaming(server):
    messages = [_video_message(_data_url(sample_video_path(), "video/mp4"))]
    chunks = list(server.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(pieces) == "red"
    assert finish == ["stop"] and len(usage) == 1 and usage[0].completion_tokens >= 1
    plain = server.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
    assert plain.choices[0].message.content == "".join(pieces)


def test_concurrent_requests_are_all_answered(server):
    url = sample_video_path().as_uri()

    def one(i):
        if i % 2:
            stream = server.chat.completions.create(model=MODEL, messages=[_video_message(url)], max_tokens=8,
                                                    stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        return server.chat.completions.create(model=MODEL, messages=[_video_message(url)],
                                              max_tokens=8).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert answers == ["red"] * 8


def test_multi_turn_uses_the_chat_template(server, oracle):
    url = sample_video_path().as_uri()
    follow_up = "What shape is it?"
    messages = [_video_message(url), {"role": "assistant", "content": "red"},
                {"role": "user", "content": follow_up}]
    reply = server.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
    local = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]},
             {"role": "assistant", "content": "red"}, {"role": "user", "content": follow_up}]
    expected, prompt_tokens = oracle(local, videos=[str(sample_video_path())], max_new_tokens=8)
    assert reply.choices[0].message.content == expected
    assert reply.usage.prompt_tokens == prompt_tokens  # the earlier turns were rendered into the prompt


@pytest.fixture(scope="module")
def http_media(tmp_path_factory):
    """A loopback HTTP server with the sample clip and a generated PNG (no outside network)."""
    from PIL import Image

    from videollava_hf.demo.synthetic import SceneSpec, render_image

    root = tmp_path_factory.mktemp("http_media")
    (root / "clip.mp4").write_bytes(sample_video_path().read_bytes())
    Image.fromarray(render_image(SceneSpec(colour="blue", shape="square"))).save(root / "square.png")
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_http_urls_for_video_and_image(server, oracle, http_media):
    base, root = http_media
    video = server.chat.completions.create(model=MODEL, messages=[_video_message(f"{base}/clip.mp4")], max_tokens=8)
    assert video.choices[0].message.content == "red"
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"{base}/square.png"}},
                                             {"type": "text", "text": QUESTION}]}]
    image = server.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
    from PIL import Image

    expected, prompt_tokens = oracle(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}],
        images=[Image.open(root / "square.png").convert("RGB")], max_new_tokens=8,
    )
    assert image.choices[0].message.content == expected
    assert image.usage.prompt_tokens == prompt_tokens


def test_seed_makes_sampling_reproducible(server):
    messages = [_video_message(sample_video_path().as_uri(), "Describe the video.")]

    def sample(seed):
        return server.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=2.0,
                                              seed=seed).choices[0].message.content

    first = [sample(s) for s in range(4)]
    assert [sample(s) for s in range(4)] == first  # same seed, same text
    assert len(set(first)) > 1  # temperature 2 really samples (different seeds, different texts)


def test_max_tokens_cuts_with_finish_reason_length(server):
    reply = server.chat.completions.create(
        model=MODEL, messages=[_video_message(sample_video_path().as_uri(), "Describe the video.")], max_tokens=1,
        temperature=2.0, seed=3,
    )
    assert reply.usage.completion_tokens == 1
    assert reply.choices[0].finish_reason in ("length", "stop")  # "stop" only if that one token ended the turn
    if reply.choices[0].message.content:
        assert reply.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    "messages, max_tokens, needle",
    [
        ([_video_message("data:video/mp4;base64,AAAAAAAA")], 8, "Cannot read video"),
        ([_video_message("data:video/mp4;base64,!!not base64!!")], 8, "base64 payload is invalid"),
        ([_video_message("file:///etc/passwd")], 8, "outside the directories"),
        ([_video_message("ftp://example.com/clip.mp4")], 8, "unsupported URL scheme"),
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}], 8,
         "not supported"),
        ([_video_message(sample_video_path().as_uri())], 5000, "context"),
        ([{"role": "user", "content": "colour " * 3000}], 8, "context"),
    ],
)
def test_bad_requests_get_400_with_a_reason(server, messages, max_tokens, needle):
    with pytest.raises(openai.BadRequestError) as info:
        server.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens)
    assert needle in info.value.message
    # the server keeps serving
    assert server.chat.completions.create(model=MODEL, messages=[_video_message(sample_video_path().as_uri())],
                                          max_tokens=4).choices[0].message.content == "red"


def test_image_url_that_is_a_video_and_unknown_model(server):
    with pytest.raises(openai.BadRequestError) as info:
        server.chat.completions.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": _data_url(sample_video_path(), "image/png")}},
            {"type": "text", "text": QUESTION}]}])
    assert "not an image" in info.value.message
    with pytest.raises(openai.NotFoundError) as info:
        server.chat.completions.create(model="gpt-4o", messages=[_video_message(sample_video_path().as_uri())])
    assert MODEL in info.value.message


def test_docs_snippet_runs(server, capsys):
    """docs/serving.md's Python snippet, run as written against this server (only the port differs)."""
    import re

    docs = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", docs, re.S).group(1)
    assert "http://127.0.0.1:8000/v1" in snippet
    exec(compile(snippet.replace("http://127.0.0.1:8000/v1", str(server.base_url).rstrip("/")), "serving.md", "exec"),
         {})
    assert capsys.readouterr().out == "red\nred"
