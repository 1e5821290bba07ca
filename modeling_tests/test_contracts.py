"""Model and processor contracts that Transformers users and tools rely on, in the style of Transformers' ModelTester.

`VideoLlavaModelTester` builds a tiny config and inputs (two prompts of different lengths, left-padded, with an image
and a video); the tests check one contract each. Oracles are independent of the code under test where one exists:
Transformers' built-in Video-LLaVA on the same weights, a full recompute without cache, each prompt run alone,
greedy decoding for lossless decoding variants, and the pre-processing steps written out by hand.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AttentionInterface, AutoModel, StaticCache
from transformers import VideoLlavaConfig as BuiltinConfig
from transformers import VideoLlavaForConditionalGeneration as BuiltinModel
from transformers.utils import is_flash_attn_2_available

from videollava_hf import VideoLlavaConfig, VideoLlavaForConditionalGeneration
from videollava_hf.models.videollava import _compat
from videollava_hf.models.videollava.image_processing_videollava import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    VideoLlavaHfImageProcessor,
    center_crop,
)
from videollava_hf.models.videollava.modeling_videollava import VideoLlavaModel
from videollava_hf.models.videollava.video_processing_videollava import VideoLlavaHfVideoProcessor
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

MEAN = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
STD = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)


class VideoLlavaModelTester:
    """Tiny config (3-layer 32-px towers, 2-layer Llama, 2 frames per video) and a left-padded batch of two prompts:
    one with an image, one (longer) with a video."""

    def __init__(self, **config_overrides):
        self.tokenizer = tiny_tokenizer()
        overrides = {"num_frames": 2, **config_overrides}
        self.config = tiny_config(self.tokenizer, **overrides)
        self.processor = tiny_processor(self.config, self.tokenizer)
        self.texts = ["USER: <image>\nWhat is this? ASSISTANT:",
                      "USER: <video>\nWhat happens in the video, and why? ASSISTANT:"]

    def model(self, cls=VideoLlavaForConditionalGeneration, seed: int = 0):
        torch.manual_seed(seed)
        model = cls(self.config).eval()
        # Wider random weights than the default init, so that media and prompts change the outputs visibly.
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for param in model.parameters():
                if param.ndim >= 2:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        return model

    def media(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        size = self.config.vision_config.image_size
        images = torch.randn(1, 3, size, size, generator=generator)
        videos = torch.randn(1, self.config.num_frames, 3, size, size, generator=generator)
        return images, videos

    def encode(self, texts, padding_side="left"):
        expanded = [self.processor.expand_placeholders(t) for t in texts]
        return self.tokenizer(expanded, padding=True, padding_side=padding_side, return_tensors="pt")

    def prepare_config_and_inputs(self):
        images, videos = self.media()
        batch = self.encode(self.texts)
        return self.config, {**batch, "pixel_values": images, "pixel_values_videos": videos}

    def single(self, index: int):
        """Inputs of prompt `index` alone (no padding) and its media."""
        images, videos = self.media()
        batch = self.encode([self.texts[index]])
        media = {"pixel_values": images} if index == 0 else {"pixel_values_videos": videos}
        return {**batch, **media}


@pytest.fixture()
def tester():
    return VideoLlavaModelTester()


def builtin_from(config: VideoLlavaConfig, seed: int = 1) -> BuiltinModel:
    """Transformers' built-in model with the shapes of our (temporal-off) tiny config, random weights."""
    cfg = BuiltinConfig(
        vision_config=config.vision_config.to_dict(),
        text_config=config.text_config.to_dict(),
        image_token_index=config.image_token_index,
        video_token_index=config.video_token_index,
        image_seq_length=config.image_seq_length,
        video_seq_length=config.video_seq_length,
        vision_feature_layer=config.vision_feature_layer,
    )
    torch.manual_seed(seed)
    return BuiltinModel(cfg).eval()


def assert_same_structure(a, b, atol=1e-5):
    """Nested tuples / tensors / caches equal (caches compared by their key and value tensors)."""
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, atol=atol, rtol=atol)
    elif isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_structure(x, y, atol)
    elif hasattr(a, "layers"):  # a Cache
        for la, lb in zip(a.layers, b.layers):
            assert_same_structure((la.keys, la.values), (lb.keys, lb.values), atol)
    else:
        assert a == b


# ------------------------------------------------------------------------------------------ forward contracts


@pytest.mark.parametrize("cls", [VideoLlavaModel, VideoLlavaForConditionalGeneration])
def test_return_dict_false_gives_the_dict_outputs_as_a_tuple(tester, cls):
    config, inputs = tester.prepare_config_and_inputs()
    model = tester.model(cls)
    with torch.no_grad():
        for extra in ({}, {"output_hidden_states": True, "output_attentions": True}):
            as_dict = model(**inputs, **extra, return_dict=True)
            as_tuple = model(**inputs, **extra, return_dict=False)
            assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict.to_tuple())
            assert_same_structure(as_tuple, as_dict.to_tuple())
    # config.return_dict=False is the default a call without the keyword follows
    model.config.return_dict = False
    with torch.no_grad():
        assert isinstance(model(**inputs), tuple)


def test_feature_getters_return_model_outputs_with_the_projected_features(tester):
    config, inputs = tester.prepare_config_and_inputs()
    model = tester.model()
    with torch.no_grad():
        out = model(**inputs)
        image = model.get_image_features(pixel_values=inputs["pixel_values"])
        video = model.get_video_features(pixel_values_videos=inputs["pixel_values_videos"])
        image_tuple = model.get_image_features(inputs["pixel_values"], return_dict=False)
        image_hidden = model.get_image_features(inputs["pixel_values"], output_hidden_states=True)
    text_hidden = config.text_config.hidden_size
    assert type(image).__name__ == type(video).__name__ == "BaseModelOutputWithPooling"
    assert image.pooler_output.shape == (1, config.image_seq_length, text_hidden)
    assert video.pooler_output.shape == (1, config.video_seq_length, text_hidden)
    # the features forward scatters into the prompt are exactly the getters' pooler_output
    torch.testing.assert_close(out.image_hidden_states, image.pooler_output, atol=0, rtol=0)
    torch.testing.assert_close(out.video_hidden_states, video.pooler_output, atol=0, rtol=0)
    assert isinstance(image_tuple, tuple)
    torch.testing.assert_close(image_tuple[1], image.pooler_output, atol=0, rtol=0)
    # hidden states 0..deepest feature layer (-2 of 3 layers -> states 0, 1, 2); the last one is last_hidden_state
    assert len(image_hidden.hidden_states) == config.vision_config.num_hidden_layers
    assert torch.equal(image_hidden.hidden_states[-1], image.last_hidden_state)


def test_base_model_takes_pixel_values_images_and_refuses_unknown_media(tester):
    _, inputs = tester.prepare_config_and_inputs()
    model = tester.model(VideoLlavaModel)
    images = inputs.pop("pixel_values")
    with torch.no_grad():
        new_name = model(**inputs, pixel_values=images).last_hidden_state
        old_name = model(**inputs, pixel_values_images=images).last_hidden_state
        other = model(**inputs, pixel_values_images=images + 1).last_hidden_state
    torch.testing.assert_close(old_name, new_name, atol=0, rtol=0)
    assert (other - new_name).abs().max() > 1e-3  # the images are used, not dropped
    for bad in ({"pixel_values_video": inputs["pixel_values_videos"]}, {"images": images}, {"videos": images}):
        with pytest.raises(TypeError, match="does not take"):
            model(**inputs, **bad)
    with pytest.raises(ValueError, match="not both"):
        model(**inputs, pixel_values=images, pixel_values_images=images)


def test_inputs_embeds_equal_input_ids(tester):
    _, inputs = tester.prepare_config_and_inputs()
    model = tester.model()
    with torch.no_grad():
        ref = model(**inputs).logits
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        got = model(inputs_embeds=embeds, **{k: v for k, v in inputs.items() if k != "input_ids"}).logits
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


def test_attention_and_hidden_state_outputs(tester):
    config, inputs = tester.prepare_config_and_inputs()
    model = tester.model()
    model.set_attn_implementation("eager")  # attention weights need the eager kernel
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, output_attentions=True)
    batch, seq = inputs["input_ids"].shape
    layers, heads = config.text_config.num_hidden_layers, config.text_config.num_attention_heads
    assert len(out.hidden_states) == layers + 1 and len(out.attentions) == layers
    assert all(h.shape == (batch, seq, config.text_config.hidden_size) for h in out.hidden_states)
    assert all(a.shape == (batch, heads, seq, seq) for a in out.attentions)
    # rows are distributions; the causal mask leaves the upper triangle at zero (sample 1 is the longer, unpadded
    # prompt); sample 0's real tokens give no weight to its left padding
    weights = out.attentions[0]
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch, heads, seq), atol=1e-5, rtol=0)
    assert weights[1].triu(1).abs().max() == 0
    real = inputs["attention_mask"][0].bool()
    assert (~real).any() and weights[0][:, real][:, :, ~real].abs().max() == 0


def test_batched_equals_unbatched_with_left_padding(tester):
    _, inputs = tester.prepare_config_and_inputs()
    model = tester.model()
    with torch.no_grad():
        batched = model(**inputs).logits[:, -1]
        alone = [model(**tester.single(i)).logits[0, -1] for i in range(2)]
        gen_batched = model.generate(**inputs, max_new_tokens=5, do_sample=False)[:, inputs["input_ids"].shape[1]:]
        gen_alone = [model.generate(**tester.single(i), max_new_tokens=5, do_sample=False)[0, -5:] for i in range(2)]
    torch.testing.assert_close(batched, torch.stack(alone), atol=1e-5, rtol=1e-5)
    assert torch.equal(gen_batched, torch.stack(gen_alone))


def test_save_load_round_trip_and_builtin_parity(tmp_path):
    tester = VideoLlavaModelTester(video_temporal_attention=False)
    _, inputs = tester.prepare_config_and_inputs()
    builtin = builtin_from(tester.config)
    builtin.save_pretrained(tmp_path / "builtin")
    ours = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "builtin").eval()
    ours.save_pretrained(tmp_path / "ours")
    again = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        ref = builtin(**inputs).logits
        got = again(**inputs).logits
        first = ours(**inputs).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(got, first)  # the round trip itself changes nothing


# --------------------------------------------------------------------------------------- loading contracts


def test_automodel_loads_the_base_model_from_a_full_checkpoint(tester, tmp_path):
    full = tester.model()
    full.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is VideoLlavaModel
    for key, value in full.model.state_dict().items():
        assert torch.equal(base.state_dict()[key], value), key
    base, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["unexpected_keys"]) == ["lm_head.weight"]  # reported as unused
    assert not info["missing_keys"] and not info["mismatched_keys"]


def test_loading_stays_strict_and_output_loading_info_returns_instead_of_raising(tester, tmp_path):
    from safetensors.torch import load_file, save_file

    tester.model().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = "model.multi_modal_projector.linear_1.weight"
    del weights[dropped]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    for cls in (VideoLlavaForConditionalGeneration, AutoModel):
        with pytest.raises(ValueError, match="multi_modal_projector.linear_1.weight"):
            cls.from_pretrained(tmp_path)
    model, info = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert dropped in info["missing_keys"]


# ------------------------------------------------------------------------------------------ configuration


def test_tp_plan_of_the_lm_head_is_the_builtins():
    assert VideoLlavaForConditionalGeneration._tp_plan == BuiltinModel._tp_plan == {"lm_head": "colwise_gather_output"}


def test_vision_feature_layer_list_matches_builtin(tmp_path):
    tester = VideoLlavaModelTester(video_temporal_attention=False, vision_feature_layer=[-3, -1])
    config, inputs = tester.prepare_config_and_inputs()
    builtin = builtin_from(config)
    builtin.save_pretrained(tmp_path)
    ours = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert ours.config.vision_feature_layer == [-3, -1]
    assert ours.model.multi_modal_projector.linear_1.in_features == 2 * config.vision_config.hidden_size
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).logits, builtin(**inputs).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="vision_feature_layer"):
        VideoLlavaConfig(vision_feature_layer="-2")


# --------------------------------------------------------------------------------------------- attention


def test_towers_follow_attn_implementation(tester, tmp_path):
    _, inputs = tester.prepare_config_and_inputs()
    tester.model().save_pretrained(tmp_path)
    seen = []

    def probe(module, *args, **kwargs):  # records who called, then runs sdpa
        seen.append(type(module).__name__)
        return _compat.ALL_ATTENTION_FUNCTIONS["sdpa"](module, *args, **kwargs)

    AttentionInterface.register("videollava_probe", probe)
    probed = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="videollava_probe")
    with torch.no_grad():
        probed(**inputs)
    assert "VideoLlavaVisionAttention" in seen  # the towers dispatch through the registry
    logits = {}
    for implementation in ("eager", "sdpa"):
        model = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path, attn_implementation=implementation)
        assert model.config.vision_config._attn_implementation == implementation
        with torch.no_grad():
            logits[implementation] = model(**inputs).logits
    real = inputs["attention_mask"].bool()  # padded positions carry no prediction (kernels differ on them)
    torch.testing.assert_close(logits["eager"][real], logits["sdpa"][real], atol=1e-5, rtol=1e-5)
    for flag in ("_supports_sdpa", "_supports_flash_attn", "_supports_attention_backend", "_supports_flex_attn"):
        assert getattr(VideoLlavaForConditionalGeneration, flag) is True


@pytest.mark.skipif(os.environ.get("VIDEOLLAVA_SLOW") != "1", reason="flex attention compiles ~4 min on CPU; "
                    "run with VIDEOLLAVA_SLOW=1")
def test_flex_attention_matches_sdpa(tester):
    _, inputs = tester.prepare_config_and_inputs()
    model = tester.model()
    with torch.no_grad():
        ref = model(**inputs).logits
        model.set_attn_implementation("flex_attention")
        got = model(**inputs).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not is_flash_attn_2_available(), reason="flash-attn is not installed (it needs a CUDA GPU)")
def test_flash_attention_matches_sdpa(tester):
    _, inputs = tester.prepare_config_and_inputs()
    model = tester.model().to("cuda", torch.bfloat16)
    inputs = {k: v.to("cuda") for k, v in inputs.items()}
    with torch.no_grad():
        ref = model(**inputs).logits.float()
        model.set_attn_implementation("flash_attention_2")
        got = model(**inputs).logits.float()
    torch.testing.assert_close(got, ref, atol=2e-2, rtol=2e-2)


# -------------------------------------------------------------------------------------------- embeddings


def test_resize_token_embeddings(tester):
    _, inputs = tester.prepare_config_and_inputs()
    model = tester.model()
    vocab = tester.config.text_config.vocab_size
    with torch.no_grad():
        before = model(**inputs).logits
    model.resize_token_embeddings(vocab + 10)
    assert model.get_input_embeddings().weight.shape[0] == vocab + 10
    assert model.get_output_embeddings().weight.shape[0] == vocab + 10
    assert model.config.text_config.vocab_size == vocab + 10
    with torch.no_grad():
        after = model(**inputs).logits
    assert after.shape[-1] == vocab + 10
    torch.testing.assert_close(after[..., :vocab], before, atol=1e-5, rtol=1e-5)  # old rows untouched


# -------------------------------------------------------------------------------------------- generation


def full_recompute_greedy(model, inputs, steps: int) -> torch.Tensor:
    """Greedy decoding the slow way: the whole sequence through the model at every step, no cache."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    media = {k: v for k, v in inputs.items() if k.startswith("pixel_values")}
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, **media, use_cache=False).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return ids


def test_greedy_sample_beam_and_assisted_generation(tester):
    _, inputs = tester.prepare_config_and_inputs()
    model = tester.model()
    steps = 6
    settings = dict(max_new_tokens=steps, min_new_tokens=steps)
    with torch.no_grad():
        greedy = model.generate(**inputs, do_sample=False, **settings)
        top1 = model.generate(**inputs, do_sample=True, top_k=1, **settings)
        torch.manual_seed(3)
        sampled = model.generate(**inputs, do_sample=True, top_k=0, temperature=1.0, **settings)
        torch.manual_seed(3)
        sampled_again = model.generate(**inputs, do_sample=True, top_k=0, temperature=1.0, **settings)
        assisted = model.generate(**tester.single(1), assistant_model=tester.model(seed=0), do_sample=False,
                                  **settings)
    assert torch.equal(greedy, full_recompute_greedy(model, inputs, steps))
    assert torch.equal(top1, greedy)  # sampling from the top token only is greedy
    assert torch.equal(sampled, sampled_again) and sampled.shape == greedy.shape
    greedy_single = model.generate(**tester.single(1), do_sample=False, **settings)
    assert torch.equal(assisted, greedy_single)  # assisted decoding is lossless for greedy


def test_beam_search_matches_builtin(tmp_path):
    tester = VideoLlavaModelTester(video_temporal_attention=False)
    _, inputs = tester.prepare_config_and_inputs()
    builtin = builtin_from(tester.config)
    with torch.no_grad():  # wider weights, so that beams differ from greedy
        for param in builtin.parameters():
            if param.ndim >= 2:
                param.normal_(0, 0.05)
    builtin.save_pretrained(tmp_path)
    ours = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    settings = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, num_beams=3, num_return_sequences=2)
    with torch.no_grad():
        ref = builtin.generate(**inputs, **settings)
        got = ours.generate(**inputs, **settings)
    assert got.shape == (4, inputs["input_ids"].shape[1] + 6)
    assert torch.equal(got, ref)


def test_static_cache_and_compiled_decode(tester):
    _, inputs = tester.prepare_config_and_inputs()
    model = tester.model()
    assert VideoLlavaForConditionalGeneration._can_compile_fullgraph is True
    with torch.no_grad():
        dynamic = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        static = model.generate(**inputs, max_new_tokens=5, do_sample=False, cache_implementation="static")
    assert torch.equal(static, dynamic)

    # The whole forward, prefill with media and one decode step on a StaticCache, traced without a graph break
    # (backend="eager": dynamo's tracing is what `fullgraph` checks; inductor's code generation would add minutes).
    batch, seq = inputs["input_ids"].shape
    compiled = torch.compile(model.forward, fullgraph=True, backend="eager")
    ref_cache = StaticCache(config=model.config, max_cache_len=seq + 4)
    cache = StaticCache(config=model.config, max_cache_len=seq + 4)
    cache_arg = {_compat.CACHE_NAME: cache}
    position_ids = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = model(**inputs, position_ids=position_ids, **{_compat.CACHE_NAME: ref_cache}, use_cache=True).logits
        got = compiled(**inputs, position_ids=position_ids, **cache_arg, use_cache=True).logits
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        next_ids = ref[:, -1:].argmax(-1)
        mask = torch.cat([inputs["attention_mask"], torch.ones(batch, 1, dtype=torch.long)], dim=1)
        step = dict(input_ids=next_ids, attention_mask=mask, position_ids=position_ids[:, -1:] + 1, use_cache=True)
        ref_step = model(**step, **{_compat.CACHE_NAME: ref_cache}).logits
        got_step = compiled(**step, **cache_arg).logits
    torch.testing.assert_close(got_step, ref_step, atol=1e-5, rtol=1e-5)
    # Under compilation the placeholder check is a traced tensor check: a mismatch still fails at run time.
    bad = dict(inputs, input_ids=inputs["input_ids"].masked_fill(inputs["input_ids"] == tester.config.image_token_index,
                                                                  tester.tokenizer.pad_token_id))
    with pytest.raises(Exception):
        torch.compile(model.forward, fullgraph=True, backend="eager")(**bad, use_cache=False)


# ------------------------------------------------------------------------------------------ pre-processing


def raw_image(height=40, width=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["original", "transformers"])
def test_image_processor_steps_can_be_switched_off(mode):
    processor = VideoLlavaHfImageProcessor(size=32, crop_size=32, resample_mode=mode)
    image = raw_image()
    full = processor(image)["pixel_values"][0]
    no_norm = processor(image, do_normalize=False)["pixel_values"][0]
    torch.testing.assert_close(no_norm, full * STD + MEAN, atol=1e-5, rtol=0)  # normalisation was the only change
    raw = processor(image, do_normalize=False, do_rescale=False)["pixel_values"][0]
    torch.testing.assert_close(raw, no_norm * 255, atol=1e-3, rtol=0)
    # no resize: the centre crop of the original pixels, rescaled and normalised by hand
    pixels = torch.from_numpy(image).permute(2, 0, 1).float()
    crop = center_crop(pixels, 32, rounded=(mode == "original"))
    got = processor(image, do_resize=False)["pixel_values"][0]
    torch.testing.assert_close(got, (crop / 255 - MEAN) / STD, atol=1e-5, rtol=0)
    # no crop: the resized image keeps its aspect (short side 32: 40x48 -> 32x38)
    assert processor(image, do_center_crop=False)["pixel_values"].shape == (1, 3, 32, 38)
    assert VideoLlavaHfImageProcessor(size=32, crop_size=32, resample_mode=mode, do_normalize=False)(image)[
        "pixel_values"].allclose(no_norm, atol=1e-6)


def test_image_processor_rgb_conversion_scalar_constants_and_size_dicts():
    processor = VideoLlavaHfImageProcessor(size=32, crop_size=32)
    grey = Image.fromarray(raw_image()[..., 0])
    rgb = grey.convert("RGB")
    assert torch.equal(processor(grey)["pixel_values"], processor(rgb)["pixel_values"])
    with pytest.raises(ValueError, match="do_convert_rgb=False"):
        processor(grey, do_convert_rgb=False)
    rgba = np.dstack([raw_image(), np.full((40, 48), 255, np.uint8)])  # opaque alpha: the RGB channels
    assert torch.equal(processor(rgba)["pixel_values"], processor(raw_image())["pixel_values"])
    scalar = VideoLlavaHfImageProcessor(size=32, crop_size=32, image_mean=0.5, image_std=0.5)
    triple = VideoLlavaHfImageProcessor(size=32, crop_size=32, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    assert torch.equal(scalar(raw_image())["pixel_values"], triple(raw_image())["pixel_values"])
    dicts = VideoLlavaHfImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    assert torch.equal(dicts(raw_image())["pixel_values"], processor(raw_image())["pixel_values"])
    assert torch.equal(processor(raw_image(), size={"shortest_edge": 32})["pixel_values"],
                       processor(raw_image())["pixel_values"])
    with pytest.raises(ValueError, match="shortest_edge"):
        VideoLlavaHfImageProcessor(size={"longest_edge": 32})


@pytest.mark.parametrize("mode", ["original", "transformers"])
def test_video_processor_steps_frames_and_constants(mode):
    processor = VideoLlavaHfVideoProcessor(num_frames=4, size=32, crop_size=32, resample_mode=mode)
    video = np.random.default_rng(0).integers(0, 256, (11, 40, 48, 3), dtype=np.uint8)
    full = processor(video)["pixel_values_videos"]
    assert full.shape == (1, 4, 3, 32, 32)
    no_norm = processor(video, do_normalize=False)["pixel_values_videos"]
    torch.testing.assert_close(no_norm, full * STD + MEAN, atol=1e-5, rtol=0)
    raw = processor(video, do_normalize=False, do_rescale=False)["pixel_values_videos"]
    torch.testing.assert_close(raw, no_norm * 255, atol=1e-3, rtol=0)
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    by_hand = (center_crop(frames, 32, rounded=(mode == "original")) / 255 - MEAN) / STD  # every frame
    every = processor(video, do_resize=False, do_sample_frames=False)["pixel_values_videos"][0]
    assert every.shape[0] == 11  # do_sample_frames=False keeps all 11 frames
    torch.testing.assert_close(every, by_hand, atol=1e-5, rtol=0)
    assert processor(video, do_center_crop=False)["pixel_values_videos"].shape == (1, 4, 3, 32, 38)
    with pytest.raises(ValueError, match="do_sample_frames=False"):
        processor(video, do_sample_frames=False, num_frames=4)
    grey = video[..., :1]
    assert torch.equal(processor(grey)["pixel_values_videos"],
                       processor(np.repeat(grey, 3, axis=-1))["pixel_values_videos"])
    with pytest.raises(ValueError, match="do_convert_rgb=False"):
        processor(grey, do_convert_rgb=False)
    scalar = VideoLlavaHfVideoProcessor(num_frames=4, size={"shortest_edge": 32}, crop_size=32, resample_mode=mode,
                                        image_mean=0.5, image_std=0.5)
    triple = VideoLlavaHfVideoProcessor(num_frames=4, size=32, crop_size=32, resample_mode=mode,
                                        image_mean=[0.5] * 3, image_std=[0.5] * 3)
    assert torch.equal(scalar(video)["pixel_values_videos"], triple(video)["pixel_values_videos"])


def test_multimodal_processor_routes_the_switches(tester):
    processor = tester.processor
    video = np.random.default_rng(0).integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)
    text = "USER: <image> <video>\nSame? ASSISTANT:"
    plain = processor(text=text, images=raw_image(), videos=video)
    off = processor(text=text, images=raw_image(), videos=video, do_normalize=False, do_sample_frames=False)
    torch.testing.assert_close(off["pixel_values"], plain["pixel_values"] * STD + MEAN, atol=1e-5, rtol=0)
    assert off["pixel_values_videos"].shape[1] == 5 and plain["pixel_values_videos"].shape[1] == 2
    # the placeholder run follows the frames actually kept
    video_tokens = int((off["input_ids"] == tester.config.video_token_index).sum())
    assert video_tokens == 5 * (tester.config.num_patches + 1)
