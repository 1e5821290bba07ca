"""Processor tests: the chat template renders the original prompt exactly, token counts always match the model's
features, and both resampling modes match references (the built-in port's PIL path; LanguageBind's recipe written
out here step by step)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoProcessor
from transformers import VideoLlavaImageProcessor as BuiltinImageProcessor

from videollava_hf import (
    VideoLlavaForConditionalGeneration,
    VideoLlavaImageProcessor,
    VideoLlavaProcessor,
    VideoLlavaVideoProcessor,
)
from videollava_hf.models.videollava.processing_videollava import SYSTEM_PROMPT

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
ONE_LEVEL = 1 / 255 / float(STD.min())  # one uint8 step after CLIP normalisation


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: random blocks, smoothed (pure noise exaggerates resampling differences)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR)).copy()


# ------------------------------------------------------------------------------------------------ chat template


def test_chat_template_renders_the_original_llava_v1_prompt(make_config, make_processor):
    processor = make_processor(make_config())
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    with_system = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert with_system == SYSTEM_PROMPT + " USER: <video>\nWhat happens? ASSISTANT:"
    assert SYSTEM_PROMPT == (
        "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions."
    )
    plain = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, add_system_prompt=False)
    assert plain == "USER: <video>\nWhat happens? ASSISTANT:"


def test_chat_template_multi_turn_and_custom_system(make_config, make_processor):
    processor = make_processor(make_config())
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
        {"role": "user", "content": "Shape?"},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "Be brief. USER: <image>\nColour? ASSISTANT: red</s>USER: Shape? ASSISTANT:"


# ------------------------------------------------------------------------------------------------ token counts


@pytest.mark.parametrize("num_frames,video_strategy", [(8, "full"), (4, "default")])
def test_token_counts_match_model_features(make_config, make_processor, num_frames, video_strategy):
    config = make_config(num_frames=num_frames, video_feature_select_strategy=video_strategy)
    processor = make_processor(config)
    model = VideoLlavaForConditionalGeneration(config).eval()
    video = np.random.default_rng(0).integers(0, 256, (12, 40, 52, 3), dtype=np.uint8)
    images = [smooth_image(30, 45), smooth_image(64, 64, 1)]
    inputs = processor(
        text=["USER: <image> <video>\nA? ASSISTANT:", "USER: <image>\nB? ASSISTANT:"],
        images=images, videos=[video], padding=True,
    )
    ids = inputs["input_ids"]
    assert int((ids == config.image_token_index).sum()) == 2 * config.image_seq_length
    assert int((ids == config.video_token_index).sum()) == config.video_seq_length
    assert inputs["pixel_values_videos"].shape == (1, num_frames, 3, 32, 32)
    with torch.no_grad():
        out = model(**inputs)
    assert out.video_hidden_states.shape[1] == config.video_seq_length
    assert out.image_hidden_states.shape[:2] == (2, config.image_seq_length)


def test_placeholder_and_media_counts_must_agree(make_config, make_processor):
    processor = make_processor(make_config())
    with pytest.raises(ValueError, match=r"1 <image> and 0 <video> placeholders, but 2 image\(s\)"):
        processor(text="USER: <image>\nHi ASSISTANT:", images=[smooth_image(32, 32), smooth_image(32, 32)])


def test_truncation_never_cuts_a_placeholder_run(make_config, make_processor):
    config = make_config()
    processor = make_processor(config)
    with pytest.raises(ValueError, match="truncation cut through a <image> placeholder run"):
        processor(text="USER: <image>\nHi ASSISTANT:", images=[smooth_image(32, 32)], truncation=True,
                  max_length=config.image_seq_length // 2)


def test_processor_round_trip_through_auto_processor(tmp_path, make_config, make_processor):
    config = make_config(num_frames=4)
    processor = make_processor(config)
    processor.save_pretrained(tmp_path)
    config.save_pretrained(tmp_path)  # AutoProcessor picks the class through config.json's model_type
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(VideoLlavaProcessor.from_pretrained(tmp_path), VideoLlavaProcessor)
    assert isinstance(loaded, VideoLlavaProcessor)
    assert loaded.video_processor.num_frames == 4
    assert loaded.image_seq_length == processor.image_seq_length
    assert loaded.video_seq_length() == processor.video_seq_length() == config.video_seq_length
    assert loaded.chat_template == processor.chat_template


# ------------------------------------------------------------------------------------------------ images


def test_transformers_mode_matches_builtin_image_processor():
    ours = VideoLlavaImageProcessor(resample_mode="transformers")
    builtin = BuiltinImageProcessor()
    for h, w in [(480, 640), (359, 641), (300, 224), (720, 1280)]:
        image = smooth_image(h, w)
        ref = builtin(images=image, return_tensors="pt", return_legacy_image_output=False)["pixel_values"]
        got = ours(image)["pixel_values"]
        assert got.shape == ref.shape == (1, 3, 224, 224)
        diff = (got - ref).abs()
        # torch's uint8 antialiased bicubic follows Pillow's, but rounds a few pixels the other way
        assert diff.max() <= ONE_LEVEL + 1e-5, (h, w, diff.max())
        assert (diff > 1e-4).float().mean() < 0.02, (h, w)


def reference_original_image(image: np.ndarray) -> torch.Tensor:
    """LanguageBind's image transform: ToTensor -> Resize(224, bicubic) on the float tensor, no antialias, size
    int(224 * long / short) -> CenterCrop(224) with round((h - 224) / 2) -> Normalize."""
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    h, w = x.shape[1:]
    if h <= w:
        size = (224, int(224 * w / h))
    else:
        size = (int(224 * h / w), 224)
    x = F.interpolate(x[None], size=size, mode="bicubic", align_corners=False, antialias=False)[0]
    top, left = int(round((x.shape[1] - 224) / 2.0)), int(round((x.shape[2] - 224) / 2.0))
    x = x[:, top:top + 224, left:left + 224]
    return (x - MEAN) / STD


@pytest.mark.parametrize("shape", [(480, 640), (359, 641), (301, 227), (225, 900)])
def test_original_mode_image_matches_languagebind_recipe(shape):
    image = smooth_image(*shape)
    got = VideoLlavaImageProcessor()(image)["pixel_values"][0]
    torch.testing.assert_close(got, reference_original_image(image), atol=1e-5, rtol=1e-5)


def test_pad_to_square_uses_the_mean_colour():
    image = np.full((100, 200, 3), 255, dtype=np.uint8)
    got = VideoLlavaImageProcessor(do_pad_to_square=True)(image)["pixel_values"][0]
    corner = got[:, 0, 0]
    expected_fill = torch.tensor([int(m * 255) / 255 for m in MEAN.flatten().tolist()])
    torch.testing.assert_close(corner, (expected_fill - MEAN.flatten()) / STD.flatten(), atol=0.05, rtol=0)
    centre = got[:, 112, 112]
    torch.testing.assert_close(centre, (1 - MEAN.flatten()) / STD.flatten(), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------------ videos


def reference_original_video(frames: np.ndarray) -> torch.Tensor:
    """LanguageBind's video transform: x / 255 -> Normalize -> ShortSideScale(224) (bilinear, no antialias,
    long = floor(long / short * 224)) -> CenterCropVideo(224) (rounded offset). frames: (T, H, W, 3)."""
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255.0  # (C, T, H, W) as in the original
    x = (x - MEAN.view(3, 1, 1, 1)) / STD.view(3, 1, 1, 1)
    _, _, h, w = x.shape
    if w < h:
        size = (int(math.floor((float(h) / w) * 224)), 224)
    else:
        size = (224, int(math.floor((float(w) / h) * 224)))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    top, left = int(round((x.shape[2] - 224) / 2.0)), int(round((x.shape[3] - 224) / 2.0))
    x = x[:, :, top:top + 224, left:left + 224]
    return x.permute(1, 0, 2, 3)  # (T, C, H, W)


@pytest.mark.parametrize("shape", [(360, 640), (359, 641), (500, 300)])
def test_original_mode_video_matches_languagebind_recipe(shape):
    frames = np.stack([smooth_image(*shape, seed=s) for s in range(8)])
    got = VideoLlavaVideoProcessor()(frames)["pixel_values_videos"][0]
    torch.testing.assert_close(got, reference_original_video(frames), atol=1e-5, rtol=1e-5)


def test_transformers_mode_video_matches_builtin_per_frame():
    frames = np.stack([smooth_image(360, 640, seed=s) for s in range(8)])
    got = VideoLlavaVideoProcessor(resample_mode="transformers")(frames)["pixel_values_videos"][0]
    ref = BuiltinImageProcessor()(images=list(frames), return_tensors="pt",
                                  return_legacy_image_output=False)["pixel_values"]
    assert (got - ref).abs().max() <= ONE_LEVEL + 1e-5


def test_random_flip_is_off_by_default_and_flips_when_asked():
    frames = np.stack([smooth_image(240, 320, seed=s) for s in range(4)])
    plain = VideoLlavaVideoProcessor(num_frames=4)(frames)["pixel_values_videos"]
    again = VideoLlavaVideoProcessor(num_frames=4)(frames)["pixel_values_videos"]
    assert torch.equal(plain, again)
    flipped = VideoLlavaVideoProcessor(num_frames=4, random_flip_p=1.0)(frames)["pixel_values_videos"]
    torch.testing.assert_close(flipped, plain.flip(-1))


def test_video_sources_agree(fixtures_dir):
    """A path, the same frames as an array, as a list of PIL images and as a tensor give the same pixels."""
    from videollava_hf.models.videollava.video_io import load_video

    path = fixtures_dir / "sample_demo_1.mp4"
    processor = VideoLlavaVideoProcessor()
    from_path = processor(str(path))["pixel_values_videos"]
    frames, meta = load_video(str(path))
    assert list(meta.indices) == np.linspace(0, meta.total_frames - 1, 8, dtype=int).tolist()
    from_array = processor(frames)["pixel_values_videos"]
    from_pil = processor([Image.fromarray(f) for f in frames])["pixel_values_videos"]
    from_tensor = processor(torch.from_numpy(frames))["pixel_values_videos"]
    assert from_path.shape == (1, 8, 3, 224, 224)
    for other in (from_array, from_pil, from_tensor):
        torch.testing.assert_close(other, from_path)
    two = processor([str(path), str(fixtures_dir / "sample_demo_3.mp4")])["pixel_values_videos"]
    assert two.shape[0] == 2 and torch.equal(two[0], from_path[0])
