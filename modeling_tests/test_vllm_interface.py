"""The pieces vLLM's Transformers backend uses (vLLM itself cannot run on CPU machines; docs/serving.md):
`processor._get_num_multimodal_tokens(image_sizes=..., video_sizes=...)` -> MultiModalData, checked against the
token runs the processor really writes and the features the model really produces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.processing_utils import MultiModalData
from transformers.utils import ModelOutput

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer


@pytest.fixture()
def parts():
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer)
    return VideoLlavaForConditionalGeneration(config).eval(), tiny_processor(config, tokenizer)


def _features(out) -> torch.Tensor:
    # vLLM's Transformers backend reads the projected features from a ModelOutput (pooler_output).
    assert isinstance(out, ModelOutput), type(out)
    return out.pooler_output


def _image(h, w, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _video(frames, h, w, seed):
    return np.random.default_rng(seed).integers(0, 255, (frames, h, w, 3), dtype=np.uint8)


def test_counts_match_what_the_processor_writes(parts):
    _, processor = parts
    image_sizes, video_sizes = [(20, 50), (64, 64), (33, 17)], [(8, 32, 32), (30, 40, 24), (3, 32, 48)]
    counts = processor._get_num_multimodal_tokens(image_sizes=image_sizes, video_sizes=video_sizes)
    assert isinstance(counts, MultiModalData)
    assert "num_image_tokens" in counts and "num_video_tokens" in counts and "num_audio_tokens" not in counts
    assert counts.num_image_patches == [1, 1, 1]
    images = [_image(h, w, i) for i, (h, w) in enumerate(image_sizes)]
    videos = [_video(f, h, w, i) for i, (f, h, w) in enumerate(video_sizes)]
    for image, expected in zip(images, counts.num_image_tokens):
        ids = processor(text="USER: <image>\nhi ASSISTANT:", images=[image])["input_ids"]
        assert int((ids == processor.image_token_id).sum()) == expected
    for video, expected in zip(videos, counts.num_video_tokens):
        ids = processor(text="USER: <video>\nhi ASSISTANT:", videos=[video])["input_ids"]
        assert int((ids == processor.video_token_id).sum()) == expected


@pytest.mark.parametrize("overrides", [{"num_frames": 4}, {"video_pooling": "average", "video_pool_stride": 2}])
def test_video_counts_follow_per_call_options(parts, overrides):
    _, processor = parts
    counts = processor._get_num_multimodal_tokens(video_sizes=[(12, 32, 32)], **overrides)
    ids = processor(text="USER: <video>\nhi ASSISTANT:", videos=[_video(12, 32, 32, 0)], **overrides)["input_ids"]
    assert int((ids == processor.video_token_id).sum()) == counts.num_video_tokens[0]
    assert counts.num_video_tokens[0] != processor._get_num_multimodal_tokens(video_sizes=[(12, 32, 32)]).num_video_tokens[0]


def test_counts_match_the_model_features(parts):
    model, processor = parts
    counts = processor._get_num_multimodal_tokens(image_sizes=[(40, 40)], video_sizes=[(8, 32, 32)])
    inputs = processor(text="USER: <image>\n<video>\nhi ASSISTANT:", images=[_image(40, 40, 0)],
                       videos=[_video(8, 32, 32, 1)])
    with torch.no_grad():
        image_features = _features(model.get_image_features(inputs["pixel_values"]))  # (1, tokens, D)
        video_features = _features(model.get_video_features(inputs["pixel_values_videos"]))
        model(**inputs)  # the model's own check: features fill the placeholder runs exactly
    assert image_features.shape[1] == counts.num_image_tokens[0]
    assert video_features.reshape(1, -1, video_features.shape[-1]).shape[1] == counts.num_video_tokens[0]
