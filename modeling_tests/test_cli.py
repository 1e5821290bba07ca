"""Tests for the `videollava-hf ask / chat / describe` commands, run in-process through `videollava_hf.cli.main`
with a tiny random checkpoint passed as --model. The pipeline, called directly, is the oracle for the answers."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import videollava_hf
from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.cli import main
from videollava_hf.cli import common as ask_command
from videollava_hf.cli import describe as describe_command
from videollava_hf.models.videollava.pipeline_video_text_to_text import VideoTextToTextPipeline, load_processor
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

NEW = 6


def build_checkpoint(path: Path, **overrides) -> Path:
    """Save a tiny random Video-LLaVA (model + processor) to `path` (weights widened so answers depend on input)."""
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, **overrides)
    torch.manual_seed(0)
    model = VideoLlavaForConditionalGeneration(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    model.save_pretrained(path)
    tiny_processor(config, tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("cli_model"))


@pytest.fixture(scope="module")
def oracle(checkpoint):
    model = VideoLlavaForConditionalGeneration.from_pretrained(checkpoint).eval()
    return VideoTextToTextPipeline(model=model, processor=load_processor(checkpoint))


def expected_answer(oracle, media: str, kind: str, question: str, **options) -> str:
    chat = [{"role": "user", "content": [{"type": kind, "path": media}, {"type": "text", "text": question}]}]
    out = oracle(text=chat, max_new_tokens=NEW, return_full_text=False, do_sample=False, **options)
    return out[0]["generated_text"].strip()


@pytest.fixture()
def media_dir(tmp_path, fixtures_dir) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    for name in ("sample_demo_1.mp4", "sample_demo_3.mp4", "extreme_ironing.jpg", "waterview.jpg"):
        shutil.copy(fixtures_dir / name, folder / name)
    (folder / "notes.txt").write_text("not media")
    return folder


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- ask -----------------------------------------------------------------------------------------------------------


def test_ask_streams_the_answer_for_a_video_and_an_image(capsys, monkeypatch, checkpoint, oracle, fixtures_dir):
    pieces: list[str] = []
    original = transformers.TextStreamer.on_finalized_text

    def record(self, text, stream_end=False):
        pieces.append(text)
        return original(self, text, stream_end)

    monkeypatch.setattr(transformers.TextStreamer, "on_finalized_text", record)
    for name, kind in (("sample_demo_1.mp4", "video"), ("extreme_ironing.jpg", "image")):
        media = str(fixtures_dir / name)
        pieces.clear()
        code, out, err = run_cli(capsys, "ask", media, "What is happening?", "--model", str(checkpoint),
                                 "--max-new-tokens", str(NEW))
        assert code == 0, err
        assert out.strip() == expected_answer(oracle, media, kind, "What is happening?")
        assert len(pieces) >= 2 and "".join(pieces).strip() == out.strip()  # printed by the streamer, piece by piece
    video_answer = expected_answer(oracle, str(fixtures_dir / "sample_demo_1.mp4"), "video", "What is happening?")
    image_answer = expected_answer(oracle, str(fixtures_dir / "extreme_ironing.jpg"), "image", "What is happening?")
    assert video_answer != image_answer  # so the comparisons above tell the media apart


def test_ask_options_reach_the_pipeline(capsys, checkpoint, oracle, fixtures_dir):
    media = str(fixtures_dir / "sample_demo_3.mp4")
    code, out, err = run_cli(capsys, "ask", media, "Why?", "--model", str(checkpoint), "--max-new-tokens", str(NEW),
                             "--no-system-prompt", "--num-frames", "4", "--no-stream", "--device", "cpu",
                             "--dtype", "float32")
    assert code == 0, err
    assert out.strip() == expected_answer(oracle, media, "video", "Why?", add_system_prompt=False, num_frames=4)
    assert out.strip() != expected_answer(oracle, media, "video", "Why?")  # the options changed the answer


def test_default_model_is_the_packaged_demo_dir(capsys, monkeypatch, tmp_path, checkpoint, fixtures_dir):
    assert ask_command.demo_model_dir() == Path(videollava_hf.__file__).resolve().parent / "demo" / "model"
    monkeypatch.setattr(ask_command, "demo_model_dir", lambda: tmp_path / "no_demo_yet")
    code, out, err = run_cli(capsys, "ask", str(fixtures_dir / "waterview.jpg"), "What?")
    assert code == 2 and "demo model is not in this installation" in err and "--model" in err and out == ""
    monkeypatch.setattr(ask_command, "demo_model_dir", lambda: checkpoint)
    code, out, err = run_cli(capsys, "ask", str(fixtures_dir / "waterview.jpg"), "What?", "--max-new-tokens", "2")
    assert code == 0, err


def test_media_kind_by_extension_and_content(tmp_path, fixtures_dir):
    assert ask_command.media_kind(fixtures_dir / "waterview.jpg") == "image"
    assert ask_command.media_kind(fixtures_dir / "sample_demo_1.mp4") == "video"
    shutil.copy(fixtures_dir / "waterview.jpg", tmp_path / "photo.dat")
    shutil.copy(fixtures_dir / "sample_demo_1.mp4", tmp_path / "clip.bin")
    assert ask_command.media_kind(tmp_path / "photo.dat") == "image"
    assert ask_command.media_kind(tmp_path / "clip.bin") == "video"
    frames = [Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "still.gif")
    assert ask_command.media_kind(tmp_path / "anim.gif") == "video"
    assert ask_command.media_kind(tmp_path / "still.gif") == "image"
    (tmp_path / "notes.xyz").write_text("plain text")
    with pytest.raises(ask_command.CommandError, match="unsupported format"):
        ask_command.media_kind(tmp_path / "notes.xyz")
    with pytest.raises(ask_command.CommandError, match="no such file"):
        ask_command.media_kind(tmp_path / "missing.mp4")
    with pytest.raises(ask_command.CommandError, match="is a directory"):
        ask_command.media_kind(tmp_path)


def test_ask_clear_errors(capsys, tmp_path, checkpoint, fixtures_dir):
    video = str(fixtures_dir / "sample_demo_1.mp4")
    code, _, err = run_cli(capsys, "ask", str(tmp_path / "missing.mp4"), "q", "--model", str(checkpoint))
    assert code == 2 and "no such file" in err
    (tmp_path / "notes.xyz").write_text("plain text")
    code, _, err = run_cli(capsys, "ask", str(tmp_path / "notes.xyz"), "q", "--model", str(checkpoint))
    assert code == 2 and "unsupported format" in err
    (tmp_path / "fake.mp4").write_text("not a video")
    code, _, err = run_cli(capsys, "ask", str(tmp_path / "fake.mp4"), "q", "--model", str(checkpoint))
    assert code == 2 and "fake.mp4" in err and "Traceback" not in err

    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    code, _, err = run_cli(capsys, "ask", video, "q", "--model", str(llama))
    assert code == 2 and "'llama' model, not Video-LLaVA" in err and "videollava-hf convert" in err
    code, _, err = run_cli(capsys, "ask", video, "q", "--model", str(tmp_path / "nowhere"))
    assert code == 2 and "no such directory" in err
    code, _, err = run_cli(capsys, "ask", video, "q", "--model", str(tmp_path))
    assert code == 2 and "no config.json" in err


def test_builtin_video_llava_model_type_is_accepted(tmp_path):
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    (builtin / "config.json").write_text(json.dumps({"model_type": "video_llava"}))
    ask_command.check_videollava(str(builtin))  # no error: our class loads Transformers' built-in checkpoints
    with pytest.raises(ask_command.CommandError, match="not Video-LLaVA"):
        (builtin / "config.json").write_text(json.dumps({"model_type": "llava"}))
        ask_command.check_videollava(str(builtin))


# --- chat ----------------------------------------------------------------------------------------------------------


def test_chat_keeps_the_conversation_and_attaches_media_once(capsys, monkeypatch, checkpoint, oracle, fixtures_dir):
    prompts: list[str] = []
    original = VideoTextToTextPipeline.preprocess

    def record(self, inputs, **kwargs):
        result = original(self, inputs, **kwargs)
        prompts.append(result["prompt_text"])
        return result

    monkeypatch.setattr(VideoTextToTextPipeline, "preprocess", record)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What colour?\n\n  And the shape?  \nexit\nnever asked\n"))
    video = str(fixtures_dir / "sample_demo_1.mp4")
    code, out, err = run_cli(capsys, "chat", video, "--model", str(checkpoint), "--max-new-tokens", str(NEW))
    assert code == 0, err
    asked = list(prompts)  # the oracle below runs the (patched) preprocess too
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("ASSISTANT: ") for line in lines)
    first, second = (line[len("ASSISTANT: "):].strip() for line in lines)
    assert first == expected_answer(oracle, video, "video", "What colour?")
    assert len(asked) == 2  # the blank line was skipped, "exit" stopped before "never asked"
    history = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What colour?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": first}]},
        {"role": "user", "content": [{"type": "text", "text": "And the shape?"}]},
    ]
    assert asked[1] == oracle.processor.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    assert asked[1].count("<video>") == 1 and "</s>USER: And the shape? ASSISTANT:" in asked[1]


def test_chat_ends_at_end_of_input_without_media(capsys, monkeypatch, checkpoint):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello?\n"))
    code, out, err = run_cli(capsys, "chat", "--model", str(checkpoint), "--max-new-tokens", "3")
    assert code == 0, err
    assert out.count("ASSISTANT: ") == 1


# --- describe ------------------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def count_generate_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = VideoLlavaForConditionalGeneration.generate

    def counting(self, *args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoLlavaForConditionalGeneration, "generate", counting)
    return calls


def test_describe_batches_and_writes_one_line_per_file(capsys, monkeypatch, media_dir, tmp_path, checkpoint, oracle):
    calls = count_generate_calls(monkeypatch)
    out = tmp_path / "answers.jsonl"
    code, _, err = run_cli(capsys, "describe", str(media_dir), "--out", str(out), "--model", str(checkpoint),
                           "--batch-size", "2", "--max-new-tokens", str(NEW))
    assert code == 0, err
    assert calls == [2, 2]  # 4 files, batches of 2, one generate() each
    records = read_jsonl(out)
    assert [(r["file"], r["kind"]) for r in records] == [
        ("extreme_ironing.jpg", "image"), ("sample_demo_1.mp4", "video"),
        ("sample_demo_3.mp4", "video"), ("waterview.jpg", "image"),
    ]
    for record in records:
        question = describe_command.DEFAULT_QUESTIONS[record["kind"]]
        assert record["question"] == question
        assert record["answer"] == expected_answer(oracle, str(media_dir / record["file"]), record["kind"], question)
    assert "4/4" in err  # the progress bar


def test_describe_resumes_after_interrupt_without_duplicates(capsys, monkeypatch, media_dir, tmp_path, checkpoint):
    out = tmp_path / "answers.jsonl"
    args = ("describe", str(media_dir), "--out", str(out), "--model", str(checkpoint), "--batch-size", "2",
            "--max-new-tokens", str(NEW), "--question", "What is shown?")
    original = describe_command.answer_batch
    batches: list[list[str]] = []

    def interrupted_on_second_batch(pipe, jobs, cli_args):
        batches.append([job[0] for job in jobs])
        if len(batches) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during the second batch
        return original(pipe, jobs, cli_args)

    monkeypatch.setattr(describe_command, "answer_batch", interrupted_on_second_batch)
    code, _, err = run_cli(capsys, *args)
    assert code == 130 and "interrupted" in err
    first_run = read_jsonl(out)
    assert [r["file"] for r in first_run] == ["extreme_ironing.jpg", "sample_demo_1.mp4"]

    with out.open("a") as torn:
        torn.write('{"file": "sample_demo_3.mp4", "answ')  # a line cut short by a hard kill
    batches.clear()
    monkeypatch.setattr(describe_command, "answer_batch", lambda pipe, jobs, a: batches.append(
        [job[0] for job in jobs]) or original(pipe, jobs, a))
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert batches == [["sample_demo_3.mp4", "waterview.jpg"]]  # only what was missing
    assert "ignoring 1 unreadable line" in err
    lines = out.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # the torn line was cut (issue 15): every line is whole JSON
    assert len(parsed) == len(lines) and not any(line.startswith('{"file": "sample_demo_3.mp4", "answ') for line in lines)
    files = [r["file"] for r in parsed]
    assert sorted(files) == sorted(set(files)) == ["extreme_ironing.jpg", "sample_demo_1.mp4", "sample_demo_3.mp4",
                                                   "waterview.jpg"]

    code, _, err = run_cli(capsys, *args)  # nothing left: no model is even loaded
    assert code == 0 and "already have answers" in err and len(out.read_text().splitlines()) == len(lines)
    batches.clear()
    code, _, err = run_cli(capsys, *args[:-1], "Another question?")  # a new question answers every file again
    assert code == 0 and sum(len(b) for b in batches) == 4


def test_describe_records_unreadable_files_and_goes_on(capsys, media_dir, tmp_path, checkpoint):
    (media_dir / "broken.mp4").write_text("not a video")
    out = tmp_path / "answers.jsonl"
    code, _, err = run_cli(capsys, "describe", str(media_dir), "--out", str(out), "--model", str(checkpoint),
                           "--batch-size", "4", "--max-new-tokens", "2")
    assert code == 1 and "1 error" in err
    records = {r["file"]: r for r in read_jsonl(out)}
    assert set(records) == {"broken.mp4", "extreme_ironing.jpg", "sample_demo_1.mp4", "sample_demo_3.mp4",
                            "waterview.jpg"}
    assert "broken.mp4" in records["broken.mp4"]["error"] and "answer" not in records["broken.mp4"]
    assert all("answer" in r for name, r in records.items() if name != "broken.mp4")


def test_describe_clear_errors(capsys, tmp_path, checkpoint):
    code, _, err = run_cli(capsys, "describe", str(tmp_path / "nope"), "--out", str(tmp_path / "a.jsonl"))
    assert code == 2 and "no such directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "describe", str(tmp_path / "empty"), "--out", str(tmp_path / "a.jsonl"),
                           "--model", str(checkpoint))
    assert code == 2 and "no videos or images found" in err


def test_toy_model_notice_once_for_media_outside_the_demo_world(capsys, tmp_path, checkpoint):
    """The default demo model on a user's own file: one line on stderr naming --model; none for the bundled clip or
    for files the synthetic world wrote, and none with another model."""
    from shutil import copyfile

    from videollava_hf.demo import TOY_MODEL_NOTICE, sample_video_path, toy_model_notice

    own = tmp_path / "holiday.mp4"
    copyfile(sample_video_path(), own)
    code, _, err = run_cli(capsys, "ask", str(own), "What colour is the shape?", "--max-new-tokens", "2")
    assert code == 0, err
    assert err.count(TOY_MODEL_NOTICE) == 1 and "--model" in TOY_MODEL_NOTICE
    code, _, err = run_cli(capsys, "ask", "sample", "What colour is the shape?", "--max-new-tokens", "2")
    assert code == 0 and TOY_MODEL_NOTICE not in err
    code, _, err = run_cli(capsys, "ask", str(own), "What?", "--model", str(checkpoint), "--max-new-tokens", "2")
    assert code == 0 and TOY_MODEL_NOTICE not in err
    assert toy_model_notice(None, [sample_video_path(), own]) == TOY_MODEL_NOTICE
    assert toy_model_notice(None, tmp_path / "synth-s3-video-000001.mp4") is None
    assert toy_model_notice(None, None) is None
