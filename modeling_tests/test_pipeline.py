"""Tests for the `video-text-to-text` pipeline (videollava_hf.models.videollava.pipeline_video_text_to_text) on a tiny random model.

Oracles are independent of the pipeline: the processor + `model.generate` called by hand, the chat template rendered
by hand, the same media given in another form, and spies that record what reached the reader and `generate()`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import transformers
from transformers import pipeline

import videollava_hf
from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.models.videollava import video_io
from videollava_hf.models.videollava.pipeline_video_text_to_text import (
    TASK,
    VideoTextToTextPipeline,
    add_custom_pipeline_to_config,
    custom_pipeline_entry,
    load_processor,
    register_pipeline,
)
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

SYSTEM = videollava_hf.models.videollava.processing_videollava.SYSTEM_PROMPT
NEW = 6  # new tokens per answer: enough to tell answers apart, cheap on CPU


# --- helpers -----------------------------------------------------------------------------------------------------


def build_checkpoint(path: Path, **overrides) -> Path:
    """Save a tiny random Video-LLaVA (model + processor) to `path`."""
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, **overrides)
    torch.manual_seed(0)
    model = VideoLlavaForConditionalGeneration(config).eval()
    # With the default init the tiny model says nearly the same thing whatever it sees; wider random weights make
    # answers depend on the media and the prompt, so equality checks between code paths can actually fail.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    model.save_pretrained(path)
    tiny_processor(config, tokenizer).save_pretrained(path)
    return path


def random_video(seed: int, frames: int = 10, height: int = 32, width: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def by_hand(pipe, prompt: str, videos=None, images=None, **policy) -> str:
    """The answer computed without the pipeline: processor -> greedy generate -> decode the new tokens."""
    inputs = pipe.processor(text=prompt, videos=videos, images=images, return_tensors="pt", **policy)
    with torch.no_grad():
        out = pipe.model.generate(**inputs, max_new_tokens=NEW, do_sample=False)
    return pipe.processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def chat_prompt(question: str, media: str = "video", system: bool = True) -> str:
    head = f"{SYSTEM} " if system else ""
    return f"{head}USER: <{media}>\n{question} ASSISTANT:"


class GenerateSpy:
    """Wraps `model.generate`, recording the inputs of each call."""

    def __init__(self, model):
        self.original = model.generate
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append({k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)})
        return self.original(**kwargs)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("tiny_videollava"))


@pytest.fixture(scope="module")
def pipe(checkpoint):
    register_pipeline()
    return pipeline(TASK, model=str(checkpoint))


@pytest.fixture()
def spy(pipe, monkeypatch):
    recorder = GenerateSpy(pipe.model)
    monkeypatch.setattr(pipe.model, "generate", recorder)
    return recorder


# --- registration and loading ------------------------------------------------------------------------------------


def test_task_is_registered_and_loads_without_remote_code(pipe, checkpoint):
    assert TASK in transformers.pipelines.get_supported_tasks()
    assert type(pipe) is VideoTextToTextPipeline  # the package's class, not a transformers_modules copy
    assert type(pipe.model) is VideoLlavaForConditionalGeneration
    assert pipe.processor.video_processor.num_frames == 8
    register_pipeline()  # idempotent: still the same class
    assert transformers.pipelines.PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is VideoTextToTextPipeline
    # Loaded objects work too, and the processor is then used as given.
    again = pipeline(TASK, model=pipe.model, processor=pipe.processor)
    assert type(again) is VideoTextToTextPipeline and again.processor is pipe.processor


def test_load_processor_matches_saved_processor(checkpoint):
    processor = load_processor(checkpoint)
    expected = tiny_processor(tiny_config(tiny_tokenizer()), tiny_tokenizer())
    assert processor.image_seq_length == expected.image_seq_length == 16
    assert processor.video_seq_length() == expected.video_seq_length() == 136
    assert processor.chat_template == expected.chat_template
    assert processor.tokenizer("USER: <video>")["input_ids"] == expected.tokenizer("USER: <video>")["input_ids"]


# --- outputs -----------------------------------------------------------------------------------------------------


def test_output_format_and_return_full_text(pipe):
    video = random_video(0)
    prompt = chat_prompt("What colour is it?")
    full = pipe(videos=video, text="What colour is it?", max_new_tokens=NEW)
    new = pipe(videos=video, text="What colour is it?", max_new_tokens=NEW, return_full_text=False)
    assert isinstance(full, list) and len(full) == 1 and set(full[0]) == {"input_text", "generated_text"}
    assert full[0]["input_text"] == prompt  # the question, wrapped in the chat template with the video first
    assert new[0]["generated_text"] == by_hand(pipe, prompt, videos=video)
    assert full[0]["generated_text"] == prompt + new[0]["generated_text"]


def test_prompt_with_placeholder_is_used_verbatim(pipe):
    video = random_video(1)
    prompt = "USER: <video>\nWhat moves? ASSISTANT:"
    out = pipe(videos=video, text=prompt, max_new_tokens=NEW, return_full_text=False)
    assert out[0]["input_text"] == prompt
    assert out[0]["generated_text"] == by_hand(pipe, prompt, videos=video)


def test_batched_equals_unbatched_in_one_generate_call(pipe, spy, fixtures_dir):
    image = str(fixtures_dir / "waterview.jpg")
    videos = [random_video(1), random_video(2, frames=7, height=36, width=36), None]
    images = [None, None, image]
    texts = ["What colour?", "Which way does the shape move, and how fast?", "Describe."]
    batched = pipe(videos=videos, images=images, text=texts, batch_size=3, max_new_tokens=NEW, return_full_text=False)
    assert len(spy.calls) == 1  # one generate() for the whole batch
    call = spy.calls[0]
    mask = call["attention_mask"]
    assert mask.shape[0] == 3 and (mask[:, -1] == 1).all()  # every row ends with a real token: left padding
    assert (mask.diff(dim=1) >= 0).all()  # zeros only before the ones
    assert mask.sum(1).unique().numel() == 3  # the prompts really had different lengths
    assert (call["input_ids"][mask == 0] == pipe.tokenizer.pad_token_id).all()
    assert call["pixel_values_videos"].shape[0] == 2 and call["pixel_values"].shape[0] == 1

    singles = [
        pipe(videos=v, images=i, text=t, max_new_tokens=NEW, return_full_text=False)
        for v, i, t in zip(videos, images, texts)
    ]
    assert len(spy.calls) == 4
    assert [b[0]["generated_text"] for b in batched] == [s[0]["generated_text"] for s in singles]
    # The answers depend on the input, so the equality above means something.
    assert len({s[0]["generated_text"] for s in singles}) > 1


def test_chat_messages_equal_plain_prompt(pipe):
    video = random_video(3)
    chat = [{"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": "Is it moving?"}]}]
    from_chat = pipe(text=chat, max_new_tokens=NEW, return_full_text=False)
    from_text = pipe(videos=video, text="Is it moving?", max_new_tokens=NEW, return_full_text=False)
    assert from_chat[0]["input_text"] == chat
    assert from_chat[0]["generated_text"] == from_text[0]["generated_text"]
    # The chat may also be the first positional argument, and the media may come separately.
    positional = pipe(chat, max_new_tokens=NEW, return_full_text=False)
    separate = pipe(
        videos=video,
        text=[{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Is it moving?"}]}],
        max_new_tokens=NEW,
        return_full_text=False,
    )
    assert positional[0]["generated_text"] == separate[0]["generated_text"] == from_text[0]["generated_text"]


def test_no_system_prompt_option(pipe):
    video = random_video(4)
    out = pipe(videos=video, text="What shape?", add_system_prompt=False, max_new_tokens=NEW, return_full_text=False)
    prompt = chat_prompt("What shape?", system=False)
    assert out[0]["input_text"] == prompt
    assert out[0]["generated_text"] == by_hand(pipe, prompt, videos=video)


def test_chat_full_text_appends_or_continues_the_assistant(pipe):
    video = random_video(5)
    user = {"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": "Colour?"}]}
    answer = pipe(text=[user], max_new_tokens=NEW, return_full_text=False)[0]["generated_text"]
    full = pipe(text=[user], max_new_tokens=NEW)[0]["generated_text"]
    assert full == [user, {"role": "assistant", "content": answer.strip()}]

    prefill = {"role": "assistant", "content": [{"type": "text", "text": "It is"}]}
    continued = pipe(text=[user, prefill], max_new_tokens=NEW)[0]["generated_text"]
    added = pipe(text=[user, prefill], max_new_tokens=NEW, return_full_text=False)[0]["generated_text"]
    prompt = f"{SYSTEM} USER: <video>\nColour? ASSISTANT: It is"  # no end-of-turn: the model continues the reply
    assert added == by_hand(pipe, prompt, videos=video)
    assert continued[-1]["content"][0]["text"] == "It is" + added and len(continued) == 2


def test_return_tensors_gives_prompt_and_new_ids(pipe):
    video = random_video(6)
    out = pipe(videos=video, text="Colour?", max_new_tokens=NEW, return_tensors=True)
    ids = out[0]["generated_token_ids"]
    prompt_ids = pipe.processor(text=chat_prompt("Colour?"), videos=video, return_tensors="pt")["input_ids"][0]
    assert torch.equal(ids[: len(prompt_ids)], prompt_ids) and len(ids) == len(prompt_ids) + NEW


def test_num_return_sequences_per_input(pipe):
    videos = [random_video(7), random_video(8)]
    out = pipe(
        videos=videos, text=["a?", "b?"], batch_size=2, max_new_tokens=3, num_beams=2, num_return_sequences=2,
        return_full_text=False,
    )
    assert [len(per_input) for per_input in out] == [2, 2]


# --- media forms and frame policy ----------------------------------------------------------------------------------


def test_video_path_bytes_and_frames_agree(pipe, tmp_path):
    path = write_mp4(tmp_path / "clip.mp4", random_video(9, frames=12, height=32, width=32))
    frames, _ = video_io.load_video(str(path), num_frames=8)
    answers = [
        pipe(videos=source, text="What happens?", max_new_tokens=NEW, return_full_text=False)[0]["generated_text"]
        for source in (str(path), path, path.read_bytes(), frames, list(frames))
    ]
    assert len(set(answers)) == 1, answers
    assert answers[0] == by_hand(pipe, chat_prompt("What happens?"), videos=frames)


def test_frame_policy_kwargs_reach_the_reader(pipe, spy, monkeypatch, fixtures_dir):
    seen: list[dict] = []
    original = video_io.load_video

    def recording_reader(source, **kwargs):
        seen.append(kwargs)
        return original(source, **kwargs)

    monkeypatch.setattr(video_io, "load_video", recording_reader)
    video = str(fixtures_dir / "sample_demo_1.mp4")
    pipe(videos=video, text="What?", max_new_tokens=2)
    assert seen[-1] == {"num_frames": 8} and spy.calls[-1]["pixel_values_videos"].shape[1] == 8
    pipe(videos=video, text="What?", max_new_tokens=2, num_frames=4, clip_start=0.5, clip_end=2.0)
    assert seen[-1] == {"num_frames": 4, "clip_start": 0.5, "clip_end": 2.0}
    assert spy.calls[-1]["pixel_values_videos"].shape[1] == 4  # the model takes T != config.num_frames
    pipe(videos=video, text="What?", max_new_tokens=2, fps=1.0, max_frames=3, num_frames=None)
    assert seen[-1] == {"fps": 1.0, "max_frames": 3, "num_frames": None}
    assert spy.calls[-1]["pixel_values_videos"].shape[1] <= 3


def test_default_frame_policy_follows_the_model(tmp_path, monkeypatch):
    four = pipeline(TASK, model=str(build_checkpoint(tmp_path / "four", num_frames=4)))
    recorder = GenerateSpy(four.model)
    monkeypatch.setattr(four.model, "generate", recorder)
    four(videos=random_video(10), text="Direction?", max_new_tokens=2)
    assert recorder.calls[0]["pixel_values_videos"].shape[1] == 4 == four.model.config.num_frames


def test_real_fixtures_video_and_image(pipe, fixtures_dir):
    out = pipe(
        text=[
            [{"role": "user", "content": [{"type": "video", "path": str(fixtures_dir / "sample_demo_3.mp4")},
                                          {"type": "text", "text": "What is happening?"}]}],
            [{"role": "user", "content": [{"type": "image", "path": str(fixtures_dir / "extreme_ironing.jpg")},
                                          {"type": "text", "text": "What is unusual?"}]}],
        ],
        batch_size=2,
        max_new_tokens=NEW,
        return_full_text=False,
    )
    assert len(out) == 2 and all(isinstance(o[0]["generated_text"], str) for o in out)
    from PIL import Image

    image = Image.open(fixtures_dir / "extreme_ironing.jpg").convert("RGB")
    assert out[1][0]["generated_text"] == by_hand(pipe, chat_prompt("What is unusual?", "image"), images=[image])


def test_dtype_and_device_map(checkpoint, monkeypatch):
    bf16 = pipeline(TASK, model=str(checkpoint), dtype=torch.bfloat16, device_map="cpu")
    assert bf16.model.dtype == torch.bfloat16 and bf16.model.device.type == bf16.device.type == "cpu"
    recorder = GenerateSpy(bf16.model)
    monkeypatch.setattr(bf16.model, "generate", recorder)
    out = bf16(videos=random_video(11), images=None, text="Colour?", max_new_tokens=3, return_full_text=False)
    assert recorder.calls[0]["pixel_values_videos"].dtype == torch.bfloat16
    assert recorder.calls[0]["input_ids"].dtype == torch.long
    assert set(out[0]) == {"input_text", "generated_text"}


def test_generator_and_dataset_inputs_with_progress_bar(pipe, spy, capsys):
    samples = [{"video": random_video(12 + i), "text": f"Question {i}?"} for i in range(3)]
    lazy = pipe((s for s in samples), batch_size=2, max_new_tokens=2, return_full_text=False)
    assert not isinstance(lazy, list)  # generators stream
    streamed = list(lazy)
    assert len(streamed) == 3 and len(spy.calls) == 2  # batches of 2 + 1
    listed = pipe(samples, batch_size=3, max_new_tokens=2, return_full_text=False, progress_bar=True)
    assert [o[0]["generated_text"] for o in listed] == [o[0]["generated_text"] for o in streamed]
    assert "3/3" in capsys.readouterr().err


# --- errors ------------------------------------------------------------------------------------------------------


def test_clear_errors(pipe, tmp_path, fixtures_dir):
    with pytest.raises(video_io.VideoDecodeError, match="does not exist"):
        pipe(videos=str(tmp_path / "missing.mp4"), text="What?")
    with pytest.raises(ValueError, match="missing.jpg.*does not exist"):
        pipe(images=str(tmp_path / "missing.jpg"), text="What?")
    with pytest.raises(ValueError, match="not an image"):
        pipe(images=str(fixtures_dir / "sample_demo_1.mp4"), text="What?")
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("hello")
    with pytest.raises(video_io.VideoDecodeError, match="notes.mp4"):
        pipe(videos=str(not_a_video), text="What?")
    with pytest.raises(TypeError, match="cannot read a source of type"):
        pipe(videos=123, text="What?")
    with pytest.raises(ValueError, match="text="):
        pipe(videos=random_video(0))
    with pytest.raises(ValueError, match="one entry per prompt"):
        pipe(videos=[random_video(0)], text=["a", "b"])
    with pytest.raises(ValueError, match="placeholders"):
        pipe(videos=random_video(0), text="<video> <video> twice?")
    with pytest.raises(ValueError, match="'path'"):
        pipe(text=[{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "q"}]}])
    with pytest.raises(TypeError, match="unexpected argument"):
        pipe(videos=random_video(0), text="q", num_frame=4)
    with pytest.raises(TypeError, match="Video-LLaVA model"):
        VideoTextToTextPipeline(model=torch.nn.Linear(2, 2))


# --- checkpoints for the Hub (custom_pipelines) ------------------------------------------------------------------


def test_add_custom_pipeline_to_config_keeps_other_entries():
    config = tiny_config(tiny_tokenizer())
    config.custom_pipelines = {"other-task": {"impl": "x.Y", "pt": []}}
    add_custom_pipeline_to_config(config)
    assert config.custom_pipelines == {
        "other-task": {"impl": "x.Y", "pt": []},
        TASK: {
            "impl": "pipeline_video_text_to_text.VideoTextToTextPipeline",
            "pt": ["AutoModelForImageTextToText"],
            "type": "multimodal",
        },
    }
    assert config.to_dict()["custom_pipelines"][TASK] == custom_pipeline_entry()


def test_saved_pipeline_runs_as_remote_code_without_the_package(pipe, tmp_path):
    saved = tmp_path / "hub_ready"
    pipe.save_pretrained(saved)
    config = json.loads((saved / "config.json").read_text())
    assert config["custom_pipelines"] == {TASK: custom_pipeline_entry()}
    assert "custom_pipelines" not in pipe.model.config.to_dict()  # only the saved copy names the pipeline
    for name in ("pipeline_video_text_to_text.py", "processing_videollava.py", "modeling_videollava.py",
                 "video_processing_videollava.py", "video_io.py", "processor_config.json"):
        assert (saved / name).is_file(), name

    video = random_video(20, frames=8, height=32, width=32)
    np.save(tmp_path / "video.npy", video)
    expected = pipe(videos=video, text="Colour?", max_new_tokens=NEW, return_full_text=False)

    # Transformers asks for trust_remote_code whenever the config names a custom pipeline, even with the package
    # imported; the local class can still be chosen explicitly.
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline(TASK, model=str(saved))
    local = pipeline(TASK, model=str(saved), pipeline_class=VideoTextToTextPipeline)
    assert local(videos=video, text="Colour?", max_new_tokens=NEW, return_full_text=False) == expected

    script = (
        "import json, sys, numpy as np\n"
        "from transformers import pipeline\n"
        f"pipe = pipeline({TASK!r}, model=sys.argv[1], trust_remote_code=True)\n"
        "assert 'videollava_hf' not in sys.modules, 'the installed package leaked in'\n"
        "out = pipe(videos=np.load(sys.argv[2]), text='Colour?', max_new_tokens=int(sys.argv[3]),"
        " return_full_text=False)\n"
        "print(json.dumps({'module': type(pipe).__module__, 'out': out}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    result = subprocess.run(
        [sys.executable, "-c", script, str(saved), str(tmp_path / "video.npy"), str(NEW)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["module"].startswith("transformers_modules.") and report["module"].endswith(
        "pipeline_video_text_to_text"
    )
    assert report["out"] == expected
