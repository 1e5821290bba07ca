"""The web demo (`videollava-hf demo`): the engine with a tiny random model, then the real command serving the bundled
demo model, called with `gradio_client` and driven in Debian's Chromium by Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from videollava_hf.cli import main
from videollava_hf.demo import demo_model_dir, sample_video_path
from videollava_hf.inference.chat import ChatSession
from videollava_hf.models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration
from videollava_hf.webdemo import DemoEngine, DemoInputError, VisionSettings, read_media

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SAMPLE_QUESTION = "What colour is the shape?"
SERVER_START_TIMEOUT = 240  # seconds: importing torch + Transformers on a busy 2-core machine


def corrupt_video(directory: Path) -> Path:
    path = directory / "corrupt.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2048))  # an MP4 signature, then noise
    return path


# --- the engine, with a tiny random model ------------------------------------------------------------------------


@pytest.fixture()
def tiny_engine(make_config, make_processor):
    config = make_config(text={"max_position_embeddings": 200})  # 8 frames x 17 tokens fit, 16 do not
    model = VideoLlavaForConditionalGeneration(config).eval()
    return DemoEngine(model, make_processor(config), model_name="tiny")


def test_strip_shows_the_original_sampling_with_presentation_times():
    import av

    with av.open(str(sample_video_path())) as container:
        fps = float(container.streams.video[0].average_rate)
        total = sum(1 for _ in container.decode(video=0))
    media = read_media(sample_video_path(), 8)
    # Oracle: the original Video-LLaVA sampler, np.linspace(0, total - 1, 8, dtype=int), at the clip's frame rate.
    expected = [f"{i / fps:.2f} s" for i in np.linspace(0, total - 1, 8, dtype=int)]
    assert [caption for _, caption in media.strip] == expected
    assert media.kind == "video" and media.payload.shape[0] == 8
    assert f"{total} frames" in media.summary


def test_animated_images_are_videos_and_stills_are_images(tmp_path):
    from PIL import Image

    from videollava_hf.demo.synthetic import SceneSpec, render_video

    frames = render_video(SceneSpec(colour="blue", shape="square", motion="right"), num_frames=12, size=64)
    pictures = [Image.fromarray(f) for f in frames]
    pictures[0].save(tmp_path / "moving.gif", save_all=True, append_images=pictures[1:], duration=125, loop=0)
    pictures[0].save(tmp_path / "still.png")
    moving = read_media(tmp_path / "moving.gif", 8)
    assert moving.kind == "video" and moving.payload.shape == (8, 64, 64, 3) and "12 frames" in moving.summary
    still = read_media(tmp_path / "still.png", 8)
    assert still.kind == "image" and still.payload.size == (64, 64) and len(still.strip) == 1


@pytest.mark.parametrize("settings, generate", [
    (VisionSettings(8), {}),
    (VisionSettings(4, pooling="average", pool_stride=2), {}),
    (VisionSettings(8, slowfast_every=4), {}),
    (VisionSettings(8), {"temperature": 0.9}),
])
def test_streamed_chat_matches_a_plain_chat_session_and_encodes_once(tiny_engine, settings, generate):
    engine = tiny_engine
    calls = [0]
    engine.model.model.video_tower.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    session = engine.new_session(read_media(sample_video_path(), settings.num_frames), settings)
    torch.manual_seed(1)
    first = list(engine.stream(session, "What colour?", max_new_tokens=8, **generate))
    second = list(engine.stream(session, "And now?", max_new_tokens=8, **generate))
    assert calls[0] == 1  # two turns, one pass of the video tower
    assert len(first) >= 2 and all(b.startswith(a) for a, b in zip(first, first[1:]))  # it streamed, growing
    # Oracle: the package's ChatSession reading the file itself with the same settings, without a streamer.
    oracle = ChatSession(engine.model, engine.processor, video=str(sample_video_path()), **settings.processor_kwargs())
    sampling = {"do_sample": True, "temperature": generate["temperature"]} if generate else {}
    torch.manual_seed(1)
    assert first[-1] == oracle.ask("What colour?", max_new_tokens=8, **sampling)
    assert second[-1] == oracle.ask("And now?", max_new_tokens=8, **sampling)
    assert oracle.input_ids.shape == session.input_ids.shape
    assert f"\u2192 {engine.media_tokens('video', settings)} video tokens" in engine.budget_line("video", settings)


def test_page_messages_for_bad_files_and_budgets(tiny_engine, tmp_path):
    from videollava_hf.webdemo.app import DemoPage

    page = DemoPage(tiny_engine)
    media, session, chat, strip, status = page.load(str(corrupt_video(tmp_path)), 8, "off", 2, 0)
    assert media is None and strip == [] and "vl-error" in status
    assert "Could not read corrupt.mp4" in status and "Traceback" not in status
    _, _, _, strip, status = page.load(str(sample_video_path()), 16, "off", 2, 0)  # 16 x 17 tokens > 200
    assert strip == [] and "16 frames take 272 video tokens, more than this model&#x27;s 200-token context" in status
    media, _, _, strip, status = page.load(str(sample_video_path()), 16, "average", 2, 0)  # 16 x 5 tokens fit
    assert len(strip) == 16 and "16 frames \u2192 80 video tokens" in status
    # a question about a file that cannot be read: the message in the page, the question kept in the box
    steps = list(page.ask("What?", [], None, None, str(corrupt_video(tmp_path)), 8, "off", 2, 0, 8, 0.0))
    question, chat, session, media, status = steps[-1]
    assert question == "What?" and chat == [] and session is None and "Could not read corrupt.mp4" in status
    with pytest.raises(DemoInputError, match="Type a question"):
        list(tiny_engine.stream(tiny_engine.new_session(None, VisionSettings(8)), "  "))


def test_the_page_names_the_toy_model_and_how_to_pass_a_real_one(tmp_path):
    from videollava_hf.demo import demo_model_dir, is_demo_model
    from videollava_hf.webdemo.app import TOY_MODEL_NOTE, toy_model_note

    assert toy_model_note() == TOY_MODEL_NOTE
    assert "toy model" in TOY_MODEL_NOTE.lower() and "--model" in TOY_MODEL_NOTE
    assert is_demo_model(None) and is_demo_model(demo_model_dir()) and not is_demo_model(tmp_path)


def test_demo_command_errors_are_one_line(capsys, monkeypatch):
    assert main(["demo", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "videollava-hf demo: error: --port 70000: a TCP port is 1..65535."
    assert main(["demo", "--model", "/nonexistent/checkpoint"]) == 2
    assert "no such directory" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--port", str(port), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"videollava-hf demo: error: cannot serve on 127.0.0.1:{port}: the port is taken or the address is not this "
        "machine's; pass another --port or --host.")
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the [demo] extra were not installed
    monkeypatch.delitem(sys.modules, "videollava_hf.webdemo.app", raising=False)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "videollava-hf[demo]"' in err


# --- the real command, serving the bundled demo model -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    """`videollava-hf demo --port P` in a subprocess, as a user starts it; its URL once the page answers."""
    port = free_port()
    log = tmp_path_factory.mktemp("demo_server") / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", "import sys; from videollava_hf.cli import main; sys.exit(main())",
               "demo", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"videollava-hf demo exited with {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"videollava-hf demo did not answer on {url} in {SERVER_START_TIMEOUT} s:\n"
                            f"{log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def client(demo_url):
    from gradio_client import Client

    return Client(demo_url, verbose=False, analytics_enabled=False)


def test_answer_endpoint_answers_about_the_sample_clip(client):
    from gradio_client import handle_file

    import videollava_hf  # noqa: F401  (registers the pipeline task)
    from transformers import pipeline

    answer = client.predict(handle_file(str(sample_video_path())), SAMPLE_QUESTION, api_name="/answer")
    assert answer == "red"  # the sample clip's card: one red circle
    # The same model through the pipeline, in this process: the endpoint adds nothing and drops nothing.
    pipe = pipeline("video-text-to-text", model=str(demo_model_dir()))
    expected = pipe(videos=str(sample_video_path()), text=SAMPLE_QUESTION, max_new_tokens=64,
                    return_full_text=False, generate_kwargs={"do_sample": False})[0]["generated_text"].strip()
    assert answer == expected


def test_the_docs_client_snippet_runs(demo_url, capsys):
    text = (Path(__file__).resolve().parents[1] / "docs" / "demo.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'Client("http://127.0.0.1:7860/"' in snippet
    exec(compile(snippet.replace("http://127.0.0.1:7860/", demo_url), "docs/demo.md", "exec"), {})
    assert capsys.readouterr().out == "red\n"


def test_only_answer_is_public(client):
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/answer"]


def test_answer_endpoint_takes_images(client, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    from videollava_hf.demo.synthetic import SceneSpec, render_image

    path = tmp_path / "green_square.png"
    Image.fromarray(render_image(SceneSpec(colour="green", shape="square", seed=3), size=64)).save(path)
    # the demo model answers colour questions on held-out images at 1.00 (docs/demo_model.md)
    assert client.predict(handle_file(str(path)), SAMPLE_QUESTION, api_name="/answer") == "green"


def test_answer_endpoint_reports_a_corrupt_file(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(corrupt_video(tmp_path))), SAMPLE_QUESTION, api_name="/answer")
    message = str(info.value)
    assert "Could not read corrupt.mp4" in message and "Traceback" not in message


def test_concurrent_callers_are_queued_not_crashed(client):
    from gradio_client import handle_file

    jobs = [client.submit(handle_file(str(sample_video_path())), SAMPLE_QUESTION, api_name="/answer")
            for _ in range(4)]
    assert [job.result(timeout=120) for job in jobs] == ["red"] * 4


def test_browser_upload_ask_and_see_the_answer(demo_url, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver (.ci/run does).")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(demo_url)
            expect(page.get_by_text("This is a toy model.")).to_be_visible()
            page.locator("#vl-media input[type=file]").set_input_files(str(sample_video_path()))
            expect(page.locator("#vl-strip img")).to_have_count(8, timeout=30_000)  # the frames the model sees
            expect(page.locator("#vl-strip")).to_contain_text("1.88 s")
            page.locator("#vl-question textarea").fill(SAMPLE_QUESTION)
            page.locator("#vl-ask").click()
            bot = page.locator("#vl-chat .message.bot")
            expect(bot.first).to_have_text("red", timeout=30_000)
            # a follow-up about the same clip (the server reuses its cache): a second answer appears
            page.locator("#vl-question textarea").fill("How many shapes are there?")
            page.locator("#vl-question textarea").press("Enter")
            expect(bot).to_have_count(2, timeout=30_000)
            expect(page.locator("#vl-chat .message.user").nth(1)).to_have_text("How many shapes are there?")
            page.wait_for_timeout(300)  # let the last streamed text settle before the picture
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            # a corrupt upload: a message in the page, no traceback
            page.locator("#vl-media button[aria-label='Clear']").first.click()
            page.locator("#vl-media input[type=file]").set_input_files(str(corrupt_video(tmp_path)))
            expect(page.locator("#vl-status .vl-error")).to_contain_text("Could not read corrupt.mp4",
                                                                         timeout=30_000)
            assert "Traceback" not in page.content()
            page.screenshot(path=str(tmp_path / "demo_error.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "demo.png").stat().st_size > 10_000
