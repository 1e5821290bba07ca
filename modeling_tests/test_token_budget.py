"""Video token budget (pooling, SlowFast), timestamps, multi-media prompts and KV-cache chat: every token-count
formula is checked against the model's actual feature count, and pooling against a reference computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.inference.chat import ChatSession
from videollava_hf.models.videollava.configuration_videollava import (
    frame_pool_strides,
    max_frames_for_budget,
    video_token_count,
)
from videollava_hf.models.videollava.processing_videollava import timestamp_sentence


def frames(n: int, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "pooling,stride,slowfast,strategy,num_frames",
    [
        (None, 2, None, "full", 8),
        ("average", 2, None, "full", 8),
        ("average", 3, None, "default", 5),
        ("bilinear", 2, None, "full", 4),
        ("average", 2, 2, "full", 8),
        ("bilinear", 1, 3, "default", 7),
        (None, 2, 4, "full", 8),  # SlowFast without a mode uses average pooling
        ("average", 2, None, "full", 16),  # more frames than the temporal embedding: windows of 8
    ],
)
def test_token_counts_equal_feature_counts(make_config, make_processor, pooling, stride, slowfast, strategy,
                                           num_frames):
    config = make_config(video_feature_select_strategy=strategy)
    model = VideoLlavaForConditionalGeneration(config).eval()
    processor = make_processor(config)
    inputs = processor(text="USER: <video>\nWhat? ASSISTANT:", videos=frames(num_frames + 3),
                       num_frames=num_frames, video_pooling=pooling, video_pool_stride=stride,
                       video_slowfast_every=slowfast)
    expected = video_token_count(config.num_patches, num_frames, strategy, pooling, stride, slowfast)
    assert int((inputs["input_ids"] == config.video_token_index).sum()) == expected
    assert processor.video_seq_length(num_frames, pooling=pooling, stride=stride, slowfast_every=slowfast) == expected
    with torch.no_grad():
        out = model(**inputs)  # the per-call options travel inside `inputs`
        features = model.get_video_features(inputs["pixel_values_videos"], video_pooling=pooling,
                                            video_pool_stride=stride, video_slowfast_every=slowfast).pooler_output
    assert features.shape[1] == expected
    assert out.video_hidden_states.shape[1] == expected


def test_average_pooling_matches_reference_and_slowfast_order(make_config):
    config = make_config()  # 32 px / patch 8: a 4x4 grid per frame, CLS kept
    model = VideoLlavaForConditionalGeneration(config).eval()
    videos = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        full = model.get_video_features(videos).pooler_output  # (1, 4 * 17, D)
        slowfast = model.get_video_features(videos, video_pooling="average", video_pool_stride=2,
                                            video_slowfast_every=2).pooler_output
    d = full.shape[-1]
    per_frame = full.view(1, 4, 17, d)
    pieces = []
    for t in range(4):
        stride = 2 if t % 2 == 0 else 4  # slow frames (0, 2) pooled 2x2, fast frames (1, 3) pooled 4x4
        grid = per_frame[0, t, 1:].view(4, 4, d)
        side = 4 // stride
        pooled = grid.view(side, stride, side, stride, d).mean(dim=(1, 3)).reshape(side * side, d)
        pieces += [per_frame[0, t, :1], pooled]
    reference = torch.cat(pieces)[None]
    assert slowfast.shape == reference.shape == (1, 2 * (1 + 4) + 2 * (1 + 1), d)
    torch.testing.assert_close(slowfast, reference, atol=1e-6, rtol=1e-5)
    assert frame_pool_strides(4, "average", 2, 2) == [2, 4, 2, 4]


def test_budget_helper_finds_the_most_frames_that_fit(make_config, make_processor):
    config = make_config()
    processor = make_processor(config)
    for budget in (16, 17, 100, 1000, 3000):
        for options in ({}, {"pooling": "average"}, {"pooling": "average", "slowfast_every": 3}):
            n = processor.max_frames_for_budget(budget, **options)
            assert processor.video_seq_length(max(n, 1), **options) <= budget or n == 0
            assert processor.video_seq_length(n + 1, **options) > budget
    # Video-LLaVA-7B geometry: 257 tokens per frame fill a 4K context at ~15 frames; 2x2 pooling fits ~4x more
    assert max_frames_for_budget(4096 - 96, 256) == 15
    assert max_frames_for_budget(4096 - 96, 256, pooling="average") == 61


def test_defaults_leave_the_model_unchanged(make_config, make_processor):
    config = make_config()
    model = VideoLlavaForConditionalGeneration(config).eval()
    processor = make_processor(config)
    video = frames(8)
    plain = processor(text="USER: <video>\nWhat? ASSISTANT:", videos=video)
    explicit = processor(text="USER: <video>\nWhat? ASSISTANT:", videos=video, video_pooling=None,
                         video_slowfast_every=None)
    assert torch.equal(plain["input_ids"], explicit["input_ids"])
    assert int((plain["input_ids"] == config.video_token_index).sum()) == 8 * (config.num_patches + 1)
    a = model.generate(**plain, max_new_tokens=6, do_sample=False)
    b = model.generate(**explicit, max_new_tokens=6, do_sample=False)
    assert torch.equal(a, b)


def test_timestamps_come_from_the_reader_metadata(make_config, make_processor, fixtures_dir):
    processor = make_processor(make_config())
    inputs = processor(text="USER: <video>\nWhen? ASSISTANT:", videos=str(fixtures_dir / "sample_demo_1.mp4"),
                       add_timestamps=True, return_metadata=True)
    meta = inputs["video_metadata"][0]
    sentence = timestamp_sentence(meta)
    assert f"The video lasts for {meta.duration:.2f} seconds, and 8 frames are uniformly sampled" in sentence
    assert ", ".join(f"{t:.2f}s" for t in meta.timestamps) in sentence
    decoded = processor.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True)
    assert sentence in decoded
    assert meta.timestamps == sorted(meta.timestamps) and meta.timestamps[-1] <= meta.duration


def test_several_videos_and_images_in_one_prompt_keep_their_order(make_config, make_processor):
    config = make_config()
    model = VideoLlavaForConditionalGeneration(config).eval()
    processor = make_processor(config)
    v1, v2 = frames(8, seed=1), frames(8, seed=2)
    image = frames(1, 32, 32, seed=3)[0]
    text = "USER: <video> then <image> then <video>\nCompare. ASSISTANT:"
    inputs = processor(text=text, videos=[v1, v2], images=[image])
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        out = model.model(**inputs, output_hidden_states=True)
        video_feats = model.get_video_features(inputs["pixel_values_videos"]).pooler_output
        image_feats = model.get_image_features(inputs["pixel_values"]).pooler_output
    ids = inputs["input_ids"][0]
    video_pos = (ids == config.video_token_index).nonzero().flatten()
    image_pos = (ids == config.image_token_index).nonzero().flatten()
    assert video_pos[config.video_seq_length - 1] < image_pos[0] < video_pos[config.video_seq_length]
    first_layer_input = out.hidden_states[0][0]
    torch.testing.assert_close(first_layer_input[video_pos], video_feats.reshape(-1, video_feats.shape[-1]))
    torch.testing.assert_close(first_layer_input[image_pos], image_feats.reshape(-1, image_feats.shape[-1]))
    text_pos = (ids != config.video_token_index) & (ids != config.image_token_index)
    torch.testing.assert_close(first_layer_input[text_pos], embeds[0][text_pos])


def test_chat_reuses_the_cache_and_matches_full_recompute(make_config, make_processor):
    config = make_config()
    model = VideoLlavaForConditionalGeneration(config).eval()
    processor = make_processor(config)
    video = frames(8)
    calls = [0]
    model.model.video_tower.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    chat = ChatSession(model, processor, video=video)
    answers = [chat.ask(q, max_new_tokens=5) for q in ("What colour?", "And the shape?", "Does it move?")]
    assert calls[0] == 1  # the video was encoded once for three turns
    # Oracle: the same token history, generated from scratch without any cache (towers re-run on the video).
    history = chat.input_ids[:, : chat.last_prompt_length]
    first = processor(text=processor.apply_chat_template(chat.messages[:1], add_generation_prompt=True,
                                                         tokenize=False), videos=video)
    assert torch.equal(history[:, : first["input_ids"].shape[1]], first["input_ids"])
    fresh = model.generate(input_ids=history, attention_mask=torch.ones_like(history),
                           pixel_values_videos=first["pixel_values_videos"], max_new_tokens=5, do_sample=False,
                           use_cache=False)
    expected = processor.tokenizer.decode(fresh[0, history.shape[1]:], skip_special_tokens=True).strip()
    assert answers[-1] == expected
    assert chat.input_ids.shape[1] > history.shape[1] > first["input_ids"].shape[1]
    # the later turns are exactly the template's text for them
    later = processor.tokenizer.decode(history[0, first["input_ids"].shape[1]:])
    assert later.count("USER: ") == 2 and later.endswith("USER: Does it move? ASSISTANT:")


def test_timestamps_need_a_clock(make_config, make_processor):
    processor = make_processor(make_config())
    with pytest.raises(ValueError, match="needs frame times"):
        processor(text="USER: <video>\nWhen? ASSISTANT:", videos=frames(8), add_timestamps=True)
