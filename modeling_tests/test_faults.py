"""Bad input and faults (issue 15): media limits checked before decoding, faithful handling of extreme shapes and
short videos, prompt length against the context, one-line CLI errors, fast offline failures, honoured timeouts.

Every case builds its input here (tiny images written with Pillow, the video fixtures of video_fixtures.py, local
HTTP servers on 127.0.0.1, a closed port as an unreachable Hub); the packaged demo model (context 1024) answers."""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from video_fixtures import SPECS, write_video

from videollava_hf.cli import main
from videollava_hf.demo import demo_model_dir, sample_video_path
from videollava_hf.models.videollava.image_processing_videollava import VideoLlavaHfImageProcessor
from videollava_hf.models.videollava.media_limits import MediaLimitError
from videollava_hf.models.videollava.media_io import load_image
from videollava_hf.models.videollava.pipeline_video_text_to_text import (
    PromptTruncatedWarning,
    VideoTextToTextPipeline,
    load_processor,
)
from videollava_hf.models.videollava.video_io import ShortVideoWarning, VideoDecodeError, load_video
from videollava_hf.models.videollava.video_processing_videollava import VideoLlavaHfVideoProcessor

SRC = Path(__file__).resolve().parents[1] / "src"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str, command: str) -> str:
    """The stderr of a failed command: exactly one line `videollava-hf CMD: error: ...` (warnings aside)."""
    lines = [line for line in err.strip().splitlines()
             if ": warning:" not in line and not line.startswith("Note: the default model")]  # the demo model's note
    assert len(lines) == 1 and lines[0].startswith(f"videollava-hf {command}: error: "), err[-3000:]
    assert "Traceback" not in err
    return lines[0]


def run_python(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=environment)


@pytest.fixture(scope="module")
def demo_pipe():
    from videollava_hf import VideoLlavaForConditionalGeneration

    torch.set_num_threads(1)
    model = VideoLlavaForConditionalGeneration.from_pretrained(demo_model_dir()).eval()
    return VideoTextToTextPipeline(model=model, processor=load_processor(demo_model_dir()))


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """Small files that claim huge pictures."""
    folder = tmp_path_factory.mktemp("bombs")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png", optimize=True)  # 400 MP in ~50 KB
    Image.new("1", (9000, 9000)).save(folder / "big.png", optimize=True)  # 81 MP: under Pillow's limit, over ours
    frames = [Image.new("P", (16, 16), i) for i in range(3)]
    frames[0].save(folder / "screen.gif", save_all=True, append_images=frames[1:], duration=100)
    data = bytearray((folder / "screen.gif").read_bytes())
    data[6:10] = struct.pack("<HH", 16000, 16000)  # the GIF's logical screen: 16000 x 16000
    (folder / "screen.gif").write_bytes(bytes(data))
    return {path.name: path for path in folder.iterdir()}


# --- limits: pixels ------------------------------------------------------------------------------------------------


def test_png_bomb_is_refused_with_size_limit_and_option(bombs):
    for name, pixels in (("bomb.png", "400,000,000"), ("big.png", "81,000,000")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not leak either
            with pytest.raises(MediaLimitError) as info:
                load_image(str(bombs[name]))
        message = str(info.value)
        assert pixels in message and "67,108,864" in message and "max_pixels" in message and "--max-pixels" in message
    # Raised limit: the 81 MP image is genuine for this caller and decodes.
    image = load_image(str(bombs["big.png"]), limits={"max_pixels": 100_000_000})
    assert image.size == (9000, 9000)


def test_gif_screen_is_refused_from_its_header(bombs):
    start = time.monotonic()
    with pytest.raises(VideoDecodeError, match=r"16000x16000 = 256,000,000 pixels, limit 67,108,864") as info:
        load_video(bombs["screen.gif"])
    assert time.monotonic() - start < 5 and "--max-pixels" in str(info.value)


def test_video_frame_pixels_checked_before_decoding(tmp_path):
    path = write_video(tmp_path / "clip.mp4", SPECS["three_frames.mp4"])  # 160 x 96 = 15,360 pixels
    with pytest.raises(VideoDecodeError, match=r"160x96 = 15,360 pixels, limit 10,000 \(max_pixels\) \(from the head"):
        load_video(path, limits={"max_pixels": 10_000})
    frames, _ = load_video(path, num_frames=3, limits={"max_pixels": None})
    assert frames.shape == (3, 96, 160, 3)


def test_ask_on_a_decompression_bomb_is_one_line(capsys, bombs):
    code, out, err = run_cli(capsys, "ask", str(bombs["bomb.png"]), "What is it?", "--max-new-tokens", "2")
    line = one_line_error(err, "ask")
    assert code == 2 and out == "" and "400,000,000 pixels" in line and "--max-pixels" in line


# --- limits: frames and duration -----------------------------------------------------------------------------------


def test_frame_and_duration_limits(tmp_path):
    path = write_video(tmp_path / "clip.mp4", SPECS["h264_bframes.mp4"])  # 75 frames, 3 s
    with pytest.raises(VideoDecodeError, match=r"75 frames would be read, limit 10 \(max_decoded_frames\)"):
        load_video(path, num_frames=None, limits={"max_decoded_frames": 10})
    with pytest.raises(VideoDecodeError, match=r"the header gives a duration of 3.0 s, limit 1 s \(max_duration\)"):
        load_video(path, limits={"max_duration": 1})
    frames, meta = load_video(path, num_frames=None, max_frames=10, limits={"max_decoded_frames": 10})
    assert len(frames) == 10 and meta.total_frames == 75  # thinning within the limit is fine
    with pytest.raises(ValueError, match="Unknown media limit"):
        load_video(path, limits={"max_pixel": 5})


# --- extreme aspect ratios -----------------------------------------------------------------------------------------


PEAK_RSS = """
import resource, sys, torch, numpy as np
torch.set_num_threads(1)
from videollava_hf.models.videollava.image_processing_videollava import VideoLlavaHfImageProcessor
from videollava_hf.models.videollava.video_processing_videollava import VideoLlavaHfVideoProcessor
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (1, 4000, 3), dtype=np.uint8), rng.integers(0, 256, (20000, 1, 3), dtype=np.uint8)]
for mode in ("original", "transformers"):
    out = VideoLlavaHfImageProcessor(resample_mode=mode)(images)["pixel_values"]
    assert tuple(out.shape) == (2, 3, 224, 224), out.shape
    frames = torch.from_numpy(rng.integers(0, 256, (8, 4000, 1, 3), dtype=np.uint8))
    clip = VideoLlavaHfVideoProcessor(resample_mode=mode)(frames)["pixel_values_videos"]
    assert tuple(clip.shape) == (1, 8, 3, 224, 224), clip.shape
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_extreme_aspect_ratios_do_not_allocate_gigabytes():
    # 1 x 4000 and 20000 x 1: short side to 224 first would mean 224 x 896,000 (2.4 GB) and 224 x 4,480,000 (12 GB)
    result = run_python(PEAK_RSS, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    grown_mb = int(result.stdout.split()[-1])
    assert grown_mb < 400, f"peak memory grew by {grown_mb} MB"


@pytest.mark.parametrize("mode", ["original", "transformers"])
def test_aspect_crop_keeps_the_centre_square(mode):
    # 40 x 4000 (100:1) is small enough to process uncropped: the oracle for the cropped result.
    image = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (40, 4000, 3), dtype=np.uint8))
    cropped = VideoLlavaHfImageProcessor(resample_mode=mode)(image)["pixel_values"]
    full = VideoLlavaHfImageProcessor(resample_mode=mode, max_aspect_ratio=None)(image)["pixel_values"]
    torch.testing.assert_close(cropped, full, atol=2e-2, rtol=0)
    video = image.permute(2, 0, 1)[None].expand(4, 3, 40, 4000).permute(0, 2, 3, 1)  # 4 frames, (T, H, W, 3)
    cropped_v = VideoLlavaHfVideoProcessor(resample_mode=mode, num_frames=4)(video)["pixel_values_videos"]
    full_v = VideoLlavaHfVideoProcessor(resample_mode=mode, num_frames=4, max_aspect_ratio=None)(video)[
        "pixel_values_videos"]
    torch.testing.assert_close(cropped_v, full_v, atol=2e-2, rtol=0)


def test_padding_an_extreme_strip_is_refused():
    strip = np.zeros((1, 20000, 3), np.uint8)  # padded: 20000 x 20000 x 3 = 1.2 GB, mostly padding
    with pytest.raises(MediaLimitError, match=r"aspect ratio of 20000:1, limit 20:1 \(max_aspect_ratio\)"):
        VideoLlavaHfImageProcessor(do_pad_to_square=True)(strip)


# --- faithful pixels -----------------------------------------------------------------------------------------------


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64 * 256, dtype=np.uint32).reshape(64, 256) * 4).astype(np.uint16)  # 0 .. 65532
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    expected = np.round(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)  # the oracle: full range to 8 bits
    loaded = np.asarray(load_image(str(tmp_path / "deep.png")))
    assert loaded.shape == (64, 256, 3) and np.array_equal(loaded[..., 0], expected)
    assert (loaded == 255).mean() < 0.01  # clipping put 99.6% of the pixels at 255
    with Image.open(tmp_path / "deep.png") as opened:
        direct = VideoLlavaHfImageProcessor()(opened)["pixel_values"]
    via_rgb = VideoLlavaHfImageProcessor()(Image.fromarray(expected).convert("RGB"))["pixel_values"]
    torch.testing.assert_close(direct, via_rgb)


def test_exif_orientation_is_applied_on_every_image_path(tmp_path):
    from PIL import ImageOps

    picture = np.zeros((48, 96, 3), np.uint8)
    picture[:, :32] = (250, 20, 20)  # red on the left: rotation moves it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(picture).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "phone.jpg") as opened:
        upright = np.array(ImageOps.exif_transpose(opened).convert("RGB"))
        raw = np.array(opened.convert("RGB"))
        through_processor = VideoLlavaHfImageProcessor()(opened)["pixel_values"]
    assert upright.shape == (96, 48, 3) and raw.shape == (48, 96, 3)
    loaded = np.asarray(load_image(str(tmp_path / "phone.jpg")))  # pipeline / ask / describe
    assert np.array_equal(loaded, upright)
    torch.testing.assert_close(through_processor, VideoLlavaHfImageProcessor()(upright)["pixel_values"])
    frames, _ = load_video([str(tmp_path / "phone.jpg")], num_frames=1)  # frame paths (video path)
    assert np.array_equal(frames[0], upright)
    assert not torch.allclose(through_processor, VideoLlavaHfImageProcessor()(raw)["pixel_values"])


# --- short videos --------------------------------------------------------------------------------------------------


def test_short_video_policy_is_said_in_metadata_and_warnings(tmp_path):
    path = write_video(tmp_path / "one.mp4", SPECS["one_frame.mp4"])
    with pytest.warns(ShortVideoWarning, match=r"has 1 frame\(s\) but 8 were requested"):
        frames, meta = load_video(path, num_frames=8)
    assert len(frames) == 8 and meta.indices == [0] * 8 and meta.repeated_frames and meta.requested_frames == 8
    assert len(meta.warnings) == 1 and "1 distinct frame" in meta.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough frames: no warning
        _, meta = load_video(write_video(tmp_path / "long.mp4", SPECS["h264_bframes.mp4"]), num_frames=8)
    assert meta.warnings == [] and not meta.repeated_frames


def test_header_that_says_one_frame_is_not_silent(tmp_path):
    from video_fixtures import VideoSpec, read_frame_number

    path = write_video(tmp_path / "clip.mp4", VideoSpec("libx264", "mp4", ".mp4", frames=20,
                                                        options={"g": "5", "bf": "0", "crf": "18"}))
    data = bytearray(path.read_bytes())
    stts, stsz = data.find(b"stts"), data.find(b"stsz")
    data[stts + 12 : stts + 16] = struct.pack(">I", 1)  # time-to-sample: 1 sample (of 20 in the file)
    data[stsz + 12 : stsz + 16] = struct.pack(">I", 1)  # sample sizes: 1 sample
    (tmp_path / "one_in_header.mp4").write_bytes(bytes(data))
    with pytest.warns(ShortVideoWarning, match=r"has 1 frame\(s\) but 8 were requested.*header or index is damaged"):
        frames, meta = load_video(tmp_path / "one_in_header.mp4")
    assert [read_frame_number(f) for f in frames] == [0] * 8 and meta.warnings and meta.repeated_frames


def test_ask_prints_the_short_video_warning(capsys, tmp_path):
    path = write_video(tmp_path / "three.mp4", SPECS["three_frames.mp4"])
    code, out, err = run_cli(capsys, "ask", str(path), "What?", "--max-new-tokens", "2", "--no-stream")
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("videollava-hf ask: warning: ")]
    assert len(warned) == 1 and "has 3 frame(s) but 8 were requested" in warned[0] and out.strip()


# --- prompt length -------------------------------------------------------------------------------------------------


def test_overlong_prompt_is_refused_with_token_counts(demo_pipe):
    question = "Why is the square red? " * 2000  # ~ 14k tokens; the demo model's context is 1024
    with pytest.raises(ValueError, match=r"The prompt is \d+ tokens, limit 1016 \(the model's context of 1024 "
                                         r"tokens minus max_new_tokens=8\)"):
        demo_pipe(videos=str(sample_video_path()), text=question, max_new_tokens=8)


def test_truncation_only_when_asked_and_said(demo_pipe):
    question = "Why is the square red? " * 2000
    with pytest.warns(PromptTruncatedWarning, match=r"prompt truncated from \d+ to 1016 tokens"):
        out = demo_pipe(videos=str(sample_video_path()), text=question, max_new_tokens=8, truncation=True,
                        return_tensors=True)
    ids = out[0]["generated_token_ids"]
    assert ids.shape[-1] <= 1024  # prompt (1016) + at most 8 new tokens
    processor = demo_pipe.processor
    video_tokens = int((ids == processor.video_token_id).sum())
    assert video_tokens == processor.video_seq_length()  # the media are kept whole
    tail = processor.tokenizer.decode(ids[:1016][-6:])
    assert "ASSISTANT:" in tail  # the end of the prompt is kept


def test_ask_refuses_an_overlong_question_and_truncates_on_request(capsys):
    question = "Why is the square red? " * 2000
    code, out, err = run_cli(capsys, "ask", "sample", question, "--max-new-tokens", "4", "--no-stream")
    line = one_line_error(err, "ask")
    assert code == 2 and out == "" and "tokens, limit 1020" in line and "--truncate" not in out
    code, out, err = run_cli(capsys, "ask", "sample", question, "--max-new-tokens", "4", "--no-stream", "--truncate")
    assert code == 0 and out.strip(), err
    assert "videollava-hf ask: warning: prompt truncated from" in err


# --- one-line errors -----------------------------------------------------------------------------------------------


def test_train_user_errors_are_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--config", "recipes/tiny.yaml", "--data_path", str(tmp_path / "no.json"),
                           "--output_dir", str(tmp_path / "out"))
    assert code == 2 and "no.json" in one_line_error(err, "train")
    (tmp_path / "bad.yaml").write_text("learning_rat: 1e-3\n")
    code, _, err = run_cli(capsys, "train", "--config", str(tmp_path / "bad.yaml"))
    assert code == 2 and "learning_rat" in one_line_error(err, "train")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    code, _, err = run_cli(capsys, "train", "--config", str(tmp_path / "broken.yaml"))
    assert code == 2 and "broken.yaml" in one_line_error(err, "train")


def test_train_wrong_model_dir_and_corrupt_video_are_one_line(capsys, tmp_path):
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "data").mkdir()
    for model, expected in ((tmp_path / "llama", "is a 'llama' model, not Video-LLaVA"),
                            (tmp_path / "data", "has no config.json")):
        code, _, err = run_cli(capsys, "train", "--config", "recipes/tiny.yaml", "--model_name_or_path", str(model),
                               "--output_dir", str(tmp_path / "out"))
        assert code == 2 and expected in one_line_error(err, "train")
    # A corrupt clip in the data (skip_bad_samples off, the default): one line naming the record and the file.
    (tmp_path / "data" / "clip.mp4").write_bytes(write_video(tmp_path / "ok.mp4", SPECS["three_frames.mp4"])
                                                 .read_bytes()[:300])
    record = {"id": "r1", "video": "clip.mp4",
              "conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "a"}]}
    (tmp_path / "data" / "train.json").write_text(json.dumps([record]))
    code, _, err = run_cli(capsys, "train", "--config", "recipes/tiny.yaml", "--data_path",
                           str(tmp_path / "data" / "train.json"), "--media_root", str(tmp_path / "data"),
                           "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--report_to", "none",
                           "--disable_tqdm", "true", "--dataset_cache_dir", str(tmp_path / "cache"))
    line = one_line_error("\n".join(l for l in err.splitlines() if "error:" in l or "Traceback" in l), "train")
    assert code == 2 and "r1" in line and "clip.mp4" in line and "skip_bad_samples" in line


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    from videollava_hf.cli import common

    def broken(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(common, "build_pipeline", broken)
    monkeypatch.setattr("videollava_hf.cli.ask.build_pipeline", broken)
    code, _, err = run_cli(capsys, "ask", "sample", "What?")
    assert code == 1 and "KeyError" in one_line_error(err, "ask") and "--debug" in err
    with pytest.raises(KeyError):
        main(["ask", "sample", "What?", "--debug"])
    with pytest.raises(KeyError):
        main(["--debug", "ask", "sample", "What?"])


@pytest.fixture(scope="module")
def original_checkpoint(tmp_path_factory):
    from test_conversion import build_original_checkpoint

    root = tmp_path_factory.mktemp("faults_original") / "ckpt"
    build_original_checkpoint(root)
    return root


def _convert(capsys, src: Path, out: Path) -> tuple[int, str]:
    code, _, err = run_cli(capsys, "convert", str(src), str(out), "--image-tower", str(src / "image_tower"),
                           "--video-tower", str(src / "video_tower"), "--quiet", "--no-model-card")
    return code, err


def _damaged_copy(original: Path, target: Path, damage) -> Path:
    import shutil

    shutil.copytree(original, target)
    damage(target)
    return target


def _safetensors_checkpoint(directory: Path) -> None:
    from safetensors.torch import save_file

    for shard in sorted(directory.glob("pytorch_model-*.bin")):
        save_file(torch.load(shard, weights_only=True), directory / shard.name.replace(".bin", ".safetensors")
                  .replace("pytorch_model", "model"))
        shard.unlink()
    (directory / "pytorch_model.bin.index.json").unlink()


CONVERT_DAMAGE = {
    "truncated .bin": (
        lambda d: (d / "pytorch_model-00001-of-00002.bin").write_bytes(
            (d / "pytorch_model-00001-of-00002.bin").read_bytes()[:3000]),
        "truncated or corrupted",
    ),
    "corrupt safetensors header": (
        lambda d: (_safetensors_checkpoint(d), (d / "model-00001-of-00002.safetensors").write_bytes(
            b"\xff" * 8 + (d / "model-00001-of-00002.safetensors").read_bytes()[8:])),
        "truncated or corrupted",
    ),
    "index not JSON": (lambda d: (d / "pytorch_model.bin.index.json").write_text("{weight_map: oops"), "not valid JSON"),
    "index without weight_map": (
        lambda d: (d / "pytorch_model.bin.index.json").write_text('{"metadata": {}}'), "no 'weight_map'"
    ),
    "config.json not JSON": (lambda d: (d / "config.json").write_text("model_type = llava"), "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(CONVERT_DAMAGE))
def test_convert_damaged_checkpoints_are_one_line(capsys, tmp_path, original_checkpoint, case):
    damage, expected = CONVERT_DAMAGE[case]
    src = _damaged_copy(original_checkpoint, tmp_path / "src", damage)
    code, err = _convert(capsys, src, tmp_path / "out")
    line = one_line_error(err, "convert")
    assert code == 2 and expected in line, line


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_convert_refuses_pickled_code_without_torchs_advice(capsys, tmp_path, original_checkpoint):
    def damage(directory: Path) -> None:
        shard = directory / "pytorch_model-00001-of-00002.bin"
        state = torch.load(shard, weights_only=True)
        state["evil"] = _Payload()
        torch.save(state, shard)

    src = _damaged_copy(original_checkpoint, tmp_path / "src", damage)
    code, err = _convert(capsys, src, tmp_path / "out")
    line = one_line_error(err, "convert")
    assert code == 2 and "Refusing to load" in line and "weights_only=True" in line
    assert "weights_only=False" not in line and "`weights_only` set to `False`" not in line


# --- fast, honest failures -----------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the socket is closed


def test_hub_id_without_network_fails_in_seconds(tmp_path):
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "0"}
    code = """
    import sys
    from videollava_hf.cli import main
    sys.exit(main(["ask", "sample", "What?", "--model", "LanguageBind/Video-LLaVA-7B-hf"]))
    """
    start = time.monotonic()
    result = run_python(code, env=env, timeout=100)
    elapsed = time.monotonic() - start
    line = one_line_error(result.stderr, "ask")
    assert result.returncode == 2 and "HF_HUB_OFFLINE=1" in line and "local" in line
    # Python start and imports included; huggingface_hub's retries took 120-181 s.
    assert elapsed < 60, elapsed
    convert = """
    import sys
    from videollava_hf.cli import main
    sys.exit(main(["convert", "LanguageBind/Video-LLaVA-7B", "out"]))
    """
    result = run_python(convert, env=env, timeout=100)
    assert result.returncode == 2 and "HF_HUB_OFFLINE=1" in one_line_error(result.stderr, "convert")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def http_folder(tmp_path):
    """A static HTTP server on 127.0.0.1 serving tmp_path/www (Range requests are not needed: the reader buffers)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def silent_server():
    """Accepts connections and never answers: every read must time out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_ask_accepts_urls(capsys, http_folder):
    root, base = http_folder
    (root / "clip.mp4").write_bytes(sample_video_path().read_bytes())
    Image.new("RGB", (64, 48), (200, 30, 30)).save(root / "photo.png")
    for name in ("clip.mp4", "photo.png"):
        code, out, err = run_cli(capsys, "ask", f"{base}/{name}", "What?", "--max-new-tokens", "2", "--no-stream")
        assert code == 0 and out.strip(), err


def test_timeout_is_honoured_for_video_and_image_urls(demo_pipe, silent_server):
    for kwargs in ({"videos": f"{silent_server}/clip.mp4"}, {"images": f"{silent_server}/photo.png"}):
        start = time.monotonic()
        with pytest.raises(ValueError, match="timed out"):
            demo_pipe(text="What?", max_new_tokens=2, timeout=1.5, **kwargs)
        assert time.monotonic() - start < 15, kwargs  # not the 60 s default


def test_messages_name_the_real_cause(tmp_path):
    whole = write_video(tmp_path / "clip.mkv", SPECS["h264.mkv"]).read_bytes()
    (tmp_path / "head.mkv").write_bytes(whole[:40])  # the EBML header cut short
    with pytest.raises(VideoDecodeError) as info:
        load_video(tmp_path / "head.mkv")
    assert "Errno" not in str(info.value) and ("truncated" in str(info.value) or "corrupted" in str(info.value))
    (tmp_path / "cut.mkv").write_bytes(whole[:200])  # FFmpeg: "[Errno 5] Input/output error"
    with pytest.raises(VideoDecodeError, match="truncated or corrupted"):
        load_video(tmp_path / "cut.mkv")
    mp4 = write_video(tmp_path / "clip.mp4", SPECS["three_frames.mp4"]).read_bytes()
    (tmp_path / "notrack.mp4").write_bytes(mp4.replace(b"trak", b"free"))  # the track box hidden: no streams at all
    with pytest.raises(VideoDecodeError, match="no streams at all") as info:
        load_video(tmp_path / "notrack.mp4")
    assert "audio" not in str(info.value)
    from video_fixtures import write_audio_only

    with pytest.raises(VideoDecodeError, match="audio-only"):
        load_video(write_audio_only(tmp_path / "sound.m4a"))
