"""Media everywhere (issue 12): one loader (models/videollava/media_io.py + video_io) behind every entry point.

Oracles: the same media given as a plain path or an opened PIL image (the form every entry point accepted before),
pixels computed by hand (EXIF rotation with numpy, 16-bit scaling by 1/257), the processor called by hand with
`model.generate`, and Transformers' own machinery (`ProcessorMixin.apply_chat_template`, the built-in
`image-text-to-text` / `any-to-any` pipelines, `datasets` builders) rather than our mirrors of them.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import videollava_hf
from videollava_hf.demo import demo_model_dir
from videollava_hf.models.videollava import media_io
from videollava_hf.models.videollava.processing_videollava import VideoLlavaHfProcessor
from videollava_hf.models.videollava.video_io import load_video

datasets = pytest.importorskip("datasets")

NEW = 4  # new tokens per answer


@pytest.fixture(scope="module")
def demo():
    model = videollava_hf.VideoLlavaForConditionalGeneration.from_pretrained(str(demo_model_dir())).eval()
    processor = VideoLlavaHfProcessor.from_pretrained(str(demo_model_dir()))
    return model, processor


@pytest.fixture(scope="module")
def http_root(tmp_path_factory, fixtures_dir):
    """A local HTTP server (127.0.0.1) serving the fixtures; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(fixtures_dir))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def pixels(processor, image):
    return processor.image_processor(image)["pixel_values"]


def greedy(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW, do_sample=False)
    return out[:, inputs["input_ids"].shape[1]:]


# --- one loader, every form ----------------------------------------------------------------------------------------


def test_every_image_form_gives_the_same_pixels(demo, fixtures_dir, http_root):
    _, processor = demo
    path = fixtures_dir / "waterview.jpg"
    data = path.read_bytes()
    reference = pixels(processor, Image.open(path).convert("RGB"))
    forms = {
        "str path": str(path),
        "Path": path,
        "file:// URL": path.as_uri(),
        "http URL": f"{http_root}/waterview.jpg",
        "data: URL": "data:image/jpeg;base64," + base64.b64encode(data).decode(),
        "bytes": data,
        "file object": io.BytesIO(data),
        "datasets cell (bytes)": {"bytes": data, "path": "waterview.jpg"},
        "datasets cell (path)": {"bytes": None, "path": str(path)},
        "numpy": np.asarray(Image.open(path).convert("RGB")),
    }
    for name, form in forms.items():
        torch.testing.assert_close(pixels(processor, form), reference, msg=name)


def test_every_video_form_gives_the_same_frames(fixtures_dir):
    path = fixtures_dir / "sample_demo_1.mp4"
    data = path.read_bytes()
    reference, _ = load_video(str(path), num_frames=4)
    for form in (path.as_uri(), "data:video/mp4;base64," + base64.b64encode(data).decode(),
                 {"bytes": data, "path": "clip.mp4"}, {"bytes": None, "path": str(path)}):
        frames, meta = load_video(form, num_frames=4)
        np.testing.assert_array_equal(frames, reference)
        assert len(meta.source) < 100  # the description never holds the payload


def test_exif_orientation_is_applied(tmp_path):
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)  # (H, W, 3) as the camera wrote it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: display rotated 90 degrees clockwise
    target = tmp_path / "rotated.png"
    Image.fromarray(stored).save(target, exif=exif)
    upright = np.asarray(media_io.load_image(str(target)))
    np.testing.assert_array_equal(upright, np.rot90(stored, k=-1))  # (10, 6, 3)


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_16_bit_images_are_scaled_not_clipped(tmp_path, mode):
    values = np.array([[0, 257, 257 * 100], [257 * 200 + 100, 65000, 65535]], dtype=np.uint16)
    image = Image.fromarray(values.astype(np.int32), mode="I") if mode == "I" else Image.fromarray(values)
    assert image.mode == mode
    target = tmp_path / ("deep.tif" if mode == "I" else "deep.png")
    image.save(target)
    expected = np.round(values / 257.0).astype(np.uint8)  # [[0, 1, 100], [200, 253, 255]]
    for source in (str(target), image):
        rgb = np.asarray(media_io.load_image(source))
        assert rgb.shape == (2, 3, 3)
        np.testing.assert_array_equal(rgb[..., 0], expected)


def test_open_image_does_not_decode_and_errors_are_short(tmp_path):
    encoded = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(encoded, "PNG")
    truncated = encoded.getvalue()[: len(encoded.getvalue()) // 2]
    opened = media_io.open_image(truncated)  # only the header is read: size known, the missing pixels not noticed
    assert opened.size == (300, 200)
    with pytest.raises(ValueError, match="decoding failed"):
        media_io.to_rgb(opened)
    huge = {"bytes": b"not an image" * 20000, "path": "x.jpg"}
    with pytest.raises(ValueError, match="not an image") as err:
        media_io.load_image(huge)
    assert len(str(err.value)) < 200
    with pytest.raises(ValueError, match="does not exist"):
        media_io.load_image(str(tmp_path / "missing.png"))


# --- processor, ChatSession ----------------------------------------------------------------------------------------


def test_processor_and_chat_session_take_image_paths(demo, fixtures_dir):
    from videollava_hf.inference.chat import ChatSession

    model, processor = demo
    path = fixtures_dir / "extreme_ironing.jpg"
    pil = Image.open(path).convert("RGB")
    by_path = processor(text="USER: <image>\nWhat? ASSISTANT:", images=str(path))
    by_pil = processor(text="USER: <image>\nWhat? ASSISTANT:", images=pil)
    torch.testing.assert_close(by_path["pixel_values"], by_pil["pixel_values"])
    answers = [ChatSession(model, processor, image=image).ask("What colour is the shape?", max_new_tokens=NEW)
               for image in (str(path), pil)]
    assert answers[0] == answers[1] and answers[0]


# --- chat templates with media (Transformers' ProcessorMixin.apply_chat_template) -------------------------------


def chat(kind: str, key: str, source, question: str = "What colour is the shape?") -> list[dict]:
    return [{"role": "user", "content": [{"type": kind, key: source}, {"type": "text", "text": question}]}]


def test_apply_chat_template_loads_media_and_matches_the_processor(demo, fixtures_dir, caplog):
    from transformers.processing_utils import ProcessorMixin

    model, processor = demo
    # Our class adds no loader of its own: the method that walks the conversation is Transformers'.
    assert "_multimodal_inputs_from_conversations" not in vars(type(processor))
    assert type(processor).__mro__[1] is ProcessorMixin
    video, image = fixtures_dir / "sample_demo_1.mp4", fixtures_dir / "waterview.jpg"
    for kind, key, source, by_hand in (
        ("video", "path", str(video), {"videos": [str(video)]}),
        ("video", "url", video.as_uri(), {"videos": [str(video)]}),
        ("video", "video", load_video(str(video))[0], {"videos": [str(video)]}),
        ("image", "path", str(image), {"images": [Image.open(image).convert("RGB")]}),
        ("image", "url", image.as_uri(), {"images": [Image.open(image).convert("RGB")]}),
        ("image", "image", Image.open(image), {"images": [Image.open(image).convert("RGB")]}),
    ):
        messages = chat(kind, key, source)
        with caplog.at_level("WARNING"):
            inputs = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt",
                                                   add_generation_prompt=True)
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        expected = processor(text=prompt, return_tensors="pt", **by_hand)
        assert set(inputs) == set(expected), (kind, key)
        for name in expected:
            torch.testing.assert_close(inputs[name], expected[name], msg=f"{kind}/{key}/{name}")
    assert not caplog.records  # no "kwargs belong in processor_kwargs" or other warnings
    assert processor.decode(greedy(model, inputs)[0], skip_special_tokens=True).strip()  # model-ready: it answers


def test_apply_chat_template_batches_and_passes_frame_options(demo, fixtures_dir):
    model, processor = demo
    one = chat("video", "path", str(fixtures_dir / "sample_demo_1.mp4"), "What colour is the shape?")
    two = chat("video", "path", str(fixtures_dir / "sample_demo_3.mp4"), "Does it move?")
    batch = processor.apply_chat_template([one, two], tokenize=True, return_dict=True, return_tensors="pt",
                                          add_generation_prompt=True, padding=True, num_frames=4)
    assert batch["pixel_values_videos"].shape[:2] == (2, 4)
    assert batch["input_ids"].shape[0] == 2
    for row, messages in enumerate((one, two)):
        single = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt",
                                               add_generation_prompt=True, processor_kwargs={"num_frames": 4})
        torch.testing.assert_close(batch["pixel_values_videos"][row], single["pixel_values_videos"][0])
        length = single["input_ids"].shape[1]  # the tokenizer pads on the left
        assert torch.equal(batch["input_ids"][row, -length:], single["input_ids"][0])
        assert torch.equal(greedy(model, batch)[row], greedy(model, single)[0])
    fps = processor.apply_chat_template(one, tokenize=True, return_dict=True, add_generation_prompt=True, fps=2.0)
    frames, _ = load_video(str(fixtures_dir / "sample_demo_1.mp4"), fps=2.0)
    assert fps["pixel_values_videos"].shape[1] == len(frames) != 8


# --- Transformers' built-in pipelines ------------------------------------------------------------------------------


def _without_torchvision_check(monkeypatch):
    """Transformers' any-to-any refuses vision models unless torchvision is installed (a check in its __init__;
    nothing in our processor or model uses torchvision, which this project does not install). Keep every other
    backend check."""
    from transformers.pipelines import any_to_any

    real = any_to_any.requires_backends

    def requires(obj, backends):
        backends = [backends] if isinstance(backends, str) else list(backends)
        return real(obj, [b for b in backends if b != "torchvision"])

    monkeypatch.setattr(any_to_any, "requires_backends", requires)


def test_any_to_any_names_torchvision_without_it():
    from transformers import pipeline
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():  # then nothing stands in the way (the test below runs it)
        assert pipeline("any-to-any", model=str(demo_model_dir())).processor is not None
        return
    with pytest.raises(ImportError, match="(?i)torchvision"):
        pipeline("any-to-any", model=str(demo_model_dir()))


@pytest.mark.parametrize("task", ["image-text-to-text", "any-to-any"])
def test_builtin_pipelines_run_our_checkpoints(task, demo, fixtures_dir, monkeypatch):
    from transformers import pipeline

    if task == "any-to-any":
        _without_torchvision_check(monkeypatch)
    model, processor = demo
    pipe = pipeline(task, model=str(demo_model_dir()))
    assert type(pipe.processor) is VideoLlavaHfProcessor
    image_chat = chat("image", "path", str(fixtures_dir / "waterview.jpg"))
    video_chats = [chat("video", "path", str(fixtures_dir / name)) for name in ("sample_demo_1.mp4",
                                                                              "sample_demo_3.mp4")]

    def kwargs():  # fresh dicts per call: Transformers 5.23 writes max_new_tokens into the caller's generate_kwargs
        return {"max_new_tokens": NEW, "generate_kwargs": {"do_sample": False}}

    for messages in (image_chat, *video_chats):  # oracle: the processor and generate() by hand
        inputs = processor.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=True)
        expected = processor.decode(greedy(model, inputs)[0], skip_special_tokens=True)
        full = pipe(text=messages, **kwargs())[0]
        assert full["generated_text"] == messages + [{"role": "assistant", "content": expected}]
        assert pipe(text=messages, return_full_text=False, **kwargs())[0]["generated_text"] == expected
    batched = pipe(text=video_chats, batch_size=2, return_full_text=False, **kwargs())
    one_by_one = [pipe(text=c, return_full_text=False, **kwargs())[0]["generated_text"] for c in video_chats]
    assert [out[0]["generated_text"] for out in batched] == one_by_one


def test_video_text_to_text_reads_datasets_cells(demo, fixtures_dir):
    from transformers import pipeline

    pipe = pipeline("video-text-to-text", model=str(demo_model_dir()))
    path = fixtures_dir / "sample_demo_3.mp4"
    kwargs = {"max_new_tokens": NEW, "return_full_text": False}
    by_path = pipe(videos=str(path), text="Does it move?", **kwargs)[0]["generated_text"]
    cell = {"bytes": path.read_bytes(), "path": "sample_demo_3.mp4"}
    assert pipe(videos=cell, text="Does it move?", **kwargs)[0]["generated_text"] == by_path
    rows = datasets.Dataset.from_dict({"text": ["Does it move?"], "video": [str(path)]})
    rows = rows.cast_column("video", datasets.Video())  # decoding needs torchcodec: the pipeline reads it undecoded
    assert [out[0]["generated_text"] for out in pipe(rows, **kwargs)] == [by_path]


# --- datasets on disk: training, evaluation, describe --------------------------------------------------------------


def write_videofolder(root: Path, fixtures_dir: Path) -> Path:
    root.mkdir()
    records = []
    for i, name in enumerate(("sample_demo_1.mp4", "sample_demo_3.mp4")):
        (root / name).write_bytes((fixtures_dir / name).read_bytes())
        records.append({"file_name": name, "id": f"v{i}", "question": "What colour is the shape?", "answer": "red",
                        "conversations": [{"from": "human", "value": "What colour is the shape?"},
                                          {"from": "gpt", "value": "red"}]})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def write_parquet(target: Path, fixtures_dir: Path, kind: str, names: list[str]) -> Path:
    """A parquet file whose `kind` column is a Video() / Image() feature holding the files' bytes."""
    feature = datasets.Video() if kind == "video" else datasets.Image()
    rows = datasets.Dataset.from_dict(
        {
            "id": [f"{kind}{i}" for i in range(len(names))],
            kind: [{"bytes": (fixtures_dir / n).read_bytes(), "path": n} for n in names],
            "question": ["What colour is the shape?"] * len(names),
            "answer": ["red"] * len(names),
            "conversations": [[{"from": "human", "value": "What colour?"},
                               {"from": "gpt", "value": "red"}]] * len(names),
        },
        features=datasets.Features({
            "id": datasets.Value("string"), kind: feature, "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "conversations": datasets.List({"from": datasets.Value("string"), "value": datasets.Value("string")}),
        }),
    )
    rows.to_parquet(str(target))
    assert type(datasets.load_dataset("parquet", data_files=str(target), split="train").features[kind]) is type(feature)
    return target


def test_training_reads_videofolder_imagefolder_and_parquet(tmp_path, fixtures_dir, demo):
    from videollava_hf.training.data import load_conversation_dataset, load_media

    folder = write_videofolder(tmp_path / "videos", fixtures_dir)
    parquet = write_parquet(tmp_path / "images.parquet", fixtures_dir, "image", ["waterview.jpg"])
    images = tmp_path / "images"
    images.mkdir()
    (images / "waterview.jpg").write_bytes((fixtures_dir / "waterview.jpg").read_bytes())
    (images / "metadata.jsonl").write_text(json.dumps({"file_name": "waterview.jpg", "conversations": [
        {"from": "human", "value": "What?"}, {"from": "gpt", "value": "red"}]}) + "\n")
    assert datasets.load_dataset("videofolder", data_dir=str(folder), split="train").features["video"].decode
    dataset, skipped = load_conversation_dataset([folder, parquet, images])
    assert not skipped and len(dataset) == 4
    assert [r["media_type"] for r in dataset] == ["video", "video", "image", "image"]
    assert dataset[2]["media_bytes"] and not dataset[0]["media_bytes"]  # parquet holds bytes, folders paths
    frames = load_media(dataset[0], num_frames=4)
    np.testing.assert_array_equal(frames, load_video(str(fixtures_dir / "sample_demo_1.mp4"), num_frames=4)[0])
    reference = np.asarray(Image.open(fixtures_dir / "waterview.jpg").convert("RGB"))
    for row in (dataset[2], dataset[3]):
        np.testing.assert_array_equal(np.asarray(load_media(row, num_frames=4)), reference)
    from videollava_hf.training import VideoLlavaDataCollator

    _, processor = demo
    batch = VideoLlavaDataCollator(processor, num_frames=4)([dataset[0], dataset[1]])
    assert batch["pixel_values_videos"].shape[:2] == (2, 4)


def test_evaluation_reads_dataset_columns_with_short_errors(tmp_path, fixtures_dir, demo):
    from videollava_hf.evaluation.data import load_eval_dataset, sample_from_record
    from videollava_hf.evaluation.generate import GenerationSettings, predict_batch

    model, processor = demo
    folder = write_videofolder(tmp_path / "videos", fixtures_dir)
    parquet = write_parquet(tmp_path / "videos.parquet", fixtures_dir, "video",
                            ["sample_demo_1.mp4", "sample_demo_3.mp4"])
    from_folder, from_parquet = load_eval_dataset(folder), load_eval_dataset(parquet)
    assert from_folder[0].video == str(folder / "sample_demo_1.mp4") and from_folder[0].video_bytes is None
    assert from_parquet[0].video == "sample_demo_1.mp4" and from_parquet[0].video_bytes
    settings = GenerationSettings(num_frames=4, max_new_tokens=NEW)
    answers = [[r["prediction"] for r in predict_batch(model, processor, samples, settings)]
               for samples in (from_folder, from_parquet)]
    assert answers[0] == answers[1] and all(answers[0])
    bad = {"id": "b", "question": "q", "answer": "a", "video": {"frames": b"\0" * 200_000}}
    with pytest.raises(ValueError, match="datasets") as err:
        sample_from_record(bad, 0, tmp_path)
    assert len(str(err.value)) < 300
    broken = {"id": "c", "question": "q", "answer": "a", "video": {"bytes": b"\0" * 200_000, "path": "c.mp4"}}
    result = predict_batch(model, processor, [sample_from_record(broken, 0, tmp_path)], settings)[0]
    assert result["prediction"] is None and len(result["error"]) < 400  # a media error is never a prediction


def test_describe_reads_a_dataset(tmp_path, fixtures_dir, capsys):
    from videollava_hf.cli import main

    parquet = write_parquet(tmp_path / "clips.parquet", fixtures_dir, "video", ["sample_demo_1.mp4"])
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "sample_demo_1.mp4").write_bytes((fixtures_dir / "sample_demo_1.mp4").read_bytes())
    outs = []
    for source in (parquet, folder):
        out = tmp_path / f"{source.stem}.jsonl"
        code = main(["describe", str(source), "--out", str(out), "--question", "Does it move?",
                     "--max-new-tokens", str(NEW), "--device", "cpu"])
        assert code == 0, capsys.readouterr().err
        outs.append([json.loads(line) for line in out.read_text().splitlines()])
    assert [r["answer"] for r in outs[0]] == [r["answer"] for r in outs[1]]
    assert outs[0][0]["file"] == "video0"


def test_cli_ask_takes_urls(fixtures_dir, http_root, capsys):
    from videollava_hf.cli import main

    path = fixtures_dir / "waterview.jpg"
    answers = []
    for media in (str(path), path.as_uri(), f"{http_root}/waterview.jpg",
                  "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()):
        assert main(["ask", media, "What colour is the shape?", "--no-stream", "--max-new-tokens", str(NEW),
                     "--device", "cpu"]) == 0, capsys.readouterr().err
        answers.append(capsys.readouterr().out.strip())
    assert len(set(answers)) == 1 and answers[0]
