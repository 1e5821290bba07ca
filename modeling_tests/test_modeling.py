"""Model tests. The oracle for parity is Transformers' built-in VideoLlavaForConditionalGeneration on the same
weights (moved across through save_pretrained / from_pretrained); the temporal tower is checked against a
reference forward written here from the published computation."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForImageTextToText
from transformers import VideoLlavaConfig as BuiltinConfig
from transformers import VideoLlavaForConditionalGeneration as BuiltinModel

from videollava_hf import VideoLlavaConfig, VideoLlavaForConditionalGeneration

# ------------------------------------------------------------------------------------------------ helpers


def builtin_from(config: VideoLlavaConfig) -> BuiltinModel:
    """A built-in model with the same shapes as our tiny config, random weights."""
    cfg = BuiltinConfig(
        vision_config=config.vision_config.to_dict(),
        text_config=config.text_config.to_dict(),
        image_token_index=config.image_token_index,
        video_token_index=config.video_token_index,
        image_seq_length=config.image_seq_length,
        video_seq_length=config.video_seq_length,
    )
    torch.manual_seed(1)
    return BuiltinModel(cfg).eval()


def prompt_ids(tokenizer, processor, texts: list[str]):
    """Prompts tokenised in the processor's prompt encoding, placeholders expanded, left-padded. The parity tests with
    the built-in use `prompt_encoding="transformers"`: one tokenizer pass, as the built-in port's processor does."""
    return processor.encode_prompts(texts, padding=True, padding_side="left", return_tensors="pt")


@pytest.fixture()
def builtin_pair(tmp_path, make_config):
    """(builtin model, our model loaded from the built-in's save_pretrained directory)."""
    config = make_config(video_temporal_attention=False)
    builtin = builtin_from(config)
    builtin.save_pretrained(tmp_path / "builtin")
    ours = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "builtin").eval()
    return builtin, ours, config


def random_media(config, num_images=0, num_videos=0, frames=None):
    size = config.vision_config.image_size
    frames = frames or config.num_frames
    images = torch.randn(num_images, 3, size, size) if num_images else None
    videos = torch.randn(num_videos, frames, 3, size, size) if num_videos else None
    return images, videos


# ------------------------------------------------------------------------------------------------ parity


def test_builtin_checkpoint_loads_with_temporal_off_and_every_weight(builtin_pair):
    builtin, ours, _ = builtin_pair
    assert ours.config.model_type == "videollava_hf"
    assert ours.config.video_temporal_attention is False
    theirs = {k: v for k, v in builtin.state_dict().items()}
    mine = ours.state_dict()
    assert len(mine) == len(theirs)
    # every built-in tensor has an equal counterpart in ours
    from videollava_hf.models.videollava.builtin_port import rename_transformers_key

    for key, value in theirs.items():
        assert torch.equal(mine[rename_transformers_key(key)], value), key


@pytest.mark.parametrize("kind", ["image", "video", "mixed_batch", "two_images_and_a_video"])
def test_logits_match_builtin(builtin_pair, tokenizer, make_processor, kind):
    builtin, ours, config = builtin_pair
    processor = make_processor(config, prompt_encoding="transformers")
    if kind == "image":
        texts, n_img, n_vid = ["USER: <image>\nWhat is this? ASSISTANT:"], 1, 0
    elif kind == "video":
        texts, n_img, n_vid = ["USER: <video>\nWhat happens? ASSISTANT:"], 0, 1
    elif kind == "mixed_batch":
        texts = ["USER: <image>\nHow many? ASSISTANT:", "USER: <video>\nWhy is this video funny at all? ASSISTANT:"]
        n_img, n_vid = 1, 1
    else:
        texts, n_img, n_vid = ["USER: <image> and <image> then <video>\nCompare. ASSISTANT:"], 2, 1
    batch = prompt_ids(tokenizer, processor, texts)
    images, videos = random_media(config, n_img, n_vid)
    with torch.no_grad():
        ref = builtin(**batch, pixel_values=images, pixel_values_videos=videos).logits
        got = ours(**batch, pixel_values=images, pixel_values_videos=videos).logits
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the comparison is sensitive: different media give different logits
    with torch.no_grad():
        other = ours(**batch, pixel_values=None if images is None else images + 1,
                     pixel_values_videos=None if videos is None else videos + 1).logits
    assert (other - ref).abs().max() > 1e-3


def test_greedy_generation_matches_builtin_and_cache(builtin_pair, tokenizer, make_processor):
    builtin, ours, config = builtin_pair
    processor = make_processor(config, prompt_encoding="transformers")
    batch = prompt_ids(
        tokenizer, processor, ["USER: <image>\nWhat? ASSISTANT:", "USER: <video>\nWhat happens here? ASSISTANT:"]
    )
    images, videos = random_media(config, 1, 1)
    kwargs = dict(**batch, pixel_values=images, pixel_values_videos=videos, max_new_tokens=8, do_sample=False)
    ref = builtin.generate(**kwargs)
    got = ours.generate(**kwargs)
    no_cache = ours.generate(**kwargs, use_cache=False)
    assert torch.equal(got, ref)
    assert torch.equal(got, no_cache)
    assert got.shape[1] == batch["input_ids"].shape[1] + 8


def test_hub_layout_with_vision_model_prefix_loads(tmp_path, builtin_pair):
    builtin, _, _ = builtin_pair
    builtin.save_pretrained(tmp_path / "src")
    state = load_file(tmp_path / "src" / "model.safetensors")
    hub = {}
    for key, value in state.items():  # the 4.x Hub layout nests the CLIP towers under `vision_model`
        for tower in ("image_tower.", "video_tower."):
            if key.startswith(tower):
                key = tower + "vision_model." + key[len(tower):]
        hub[key] = value
    save_file(hub, tmp_path / "src" / "model.safetensors", metadata={"format": "pt"})
    ours = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "src")
    torch.testing.assert_close(
        ours.model.video_tower.encoder.layers[0].self_attn.q_proj.weight,
        builtin.model.video_tower.encoder.layers[0].self_attn.q_proj.weight,
    )


# ------------------------------------------------------------------------------------------------ strict loading


def test_unexpected_and_missing_keys_are_refused(tmp_path, make_config):
    model = VideoLlavaForConditionalGeneration(make_config())
    model.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    state = load_file(path)
    state["model.video_tower.encoder.layers.0.temporal_mlp.weight"] = torch.zeros(2)
    del state["model.multi_modal_projector.linear_2.bias"]
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(ValueError) as err:
        VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "m")
    assert "temporal_mlp.weight" in str(err.value)
    assert "multi_modal_projector.linear_2.bias" in str(err.value)
    relaxed = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "m", strict=False)
    assert isinstance(relaxed, VideoLlavaForConditionalGeneration)


def test_temporal_checkpoint_into_plain_config_is_refused(tmp_path, make_config):
    VideoLlavaForConditionalGeneration(make_config()).save_pretrained(tmp_path / "m")
    plain = make_config(video_temporal_attention=False)
    with pytest.raises(ValueError, match="temporal_attn"):
        VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "m", config=plain)


# ------------------------------------------------------------------------------------------------ temporal tower


def _ln(x, p, prefix, eps):
    return F.layer_norm(x, (x.shape[-1],), p[prefix + ".weight"], p[prefix + ".bias"], eps)


def _mha(x, p, prefix, heads):
    """Reference multi-head attention over axis 1 of (B, L, D), written out with an explicit softmax."""
    b, length, d = x.shape
    dh = d // heads

    def proj(name):
        return x @ p[f"{prefix}.{name}.weight"].T + p[f"{prefix}.{name}.bias"]

    q, k, v = (proj(n).view(b, length, heads, dh).permute(0, 2, 1, 3) for n in ("q_proj", "k_proj", "v_proj"))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
    out = (weights @ v).permute(0, 2, 1, 3).reshape(b, length, d)
    return out @ p[f"{prefix}.out_proj.weight"].T + p[f"{prefix}.out_proj.bias"]


def reference_video_tower(p, pixel_values, vc, num_frames, feature_layer=-2, temporal=True):
    """LanguageBind's video encoder as published: patchify, +CLS, +positions, pre-LN; per layer: temporal embedding
    (every layer), pre-LN temporal attention over frames for each patch position, then the CLIP block.
    pixel_values: (B*T, 3, H, W) -> hidden state `feature_layer` (B*T, N, D)."""
    patches = F.conv2d(pixel_values, p["embeddings.patch_embedding.weight"], stride=vc.patch_size)
    x = patches.flatten(2).transpose(1, 2)
    cls = p["embeddings.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + p["embeddings.position_embedding.weight"]
    x = _ln(x, p, "pre_layrnorm", vc.layer_norm_eps)
    hidden = [x]
    for i in range(vc.num_hidden_layers):
        pre = f"encoder.layers.{i}"
        if temporal:
            bt, n, d = x.shape
            b = bt // num_frames
            frames = torch.stack([x[j * num_frames:(j + 1) * num_frames] for j in range(b)])  # (B, T, N, D)
            seq = frames.permute(0, 2, 1, 3).reshape(b * n, num_frames, d)  # one sequence per patch position
            if num_frames != 1:
                seq = seq + p[pre + ".temporal_embedding"][:, :num_frames]
            seq = seq + _mha(_ln(seq, p, pre + ".temporal_layer_norm1", vc.layer_norm_eps), p,
                             pre + ".temporal_attn", vc.num_attention_heads)
            x = seq.view(b, n, num_frames, d).permute(0, 2, 1, 3).reshape(bt, n, d)
        x = x + _mha(_ln(x, p, pre + ".layer_norm1", vc.layer_norm_eps), p, pre + ".self_attn",
                     vc.num_attention_heads)
        h = _ln(x, p, pre + ".layer_norm2", vc.layer_norm_eps) @ p[pre + ".mlp.fc1.weight"].T + p[pre + ".mlp.fc1.bias"]
        h = F.gelu(h) @ p[pre + ".mlp.fc2.weight"].T + p[pre + ".mlp.fc2.bias"]
        x = x + h
        hidden.append(x)
    return hidden[feature_layer]


def test_video_tower_matches_published_temporal_computation(make_config):
    config = make_config()
    model = VideoLlavaForConditionalGeneration(config).eval()
    tower = model.model.video_tower
    params = {k: v.detach() for k, v in tower.state_dict().items()}
    _, videos = random_media(config, 0, 2)
    flat = videos.flatten(0, 1)
    with torch.no_grad():
        got = tower(flat, config.vision_feature_layers, num_frames=config.num_frames)[-1]
        ref = reference_video_tower(params, flat, config.vision_config, config.num_frames)
        plain = reference_video_tower(params, flat, config.vision_config, config.num_frames, temporal=False)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert (ref - plain).abs().max() > 1e-2  # temporal attention is not a no-op


def test_temporal_attention_changes_model_output(make_config, tmp_path):
    config = make_config()
    model = VideoLlavaForConditionalGeneration(config).eval()
    _, videos = random_media(config, 0, 1)
    with torch.no_grad():
        with_t = model.get_video_features(videos).pooler_output
        for layer in model.model.video_tower.encoder.layers:  # same weights, temporal path removed
            layer.temporal = False
        without_t = model.get_video_features(videos).pooler_output
    assert with_t.shape == without_t.shape == (1, config.video_seq_length, config.text_config.hidden_size)
    assert (with_t - without_t).abs().max() > 1e-3
    # frames are independent without temporal attention: changing frame 0 leaves the other frames untouched;
    # with it, they change (compared on the tower's hidden states, before the small-init projector)
    tower = model.model.video_tower
    flat, flat2 = videos.flatten(0, 1), videos.flatten(0, 1).clone()
    flat2[0] += 1
    for layer in tower.encoder.layers:
        layer.temporal = True
    with torch.no_grad():
        base_t = tower(flat, [-2], num_frames=config.num_frames)[-1]
        moved_t = tower(flat2, [-2], num_frames=config.num_frames)[-1]
        for layer in tower.encoder.layers:
            layer.temporal = False
        base = tower(flat, [-2], num_frames=config.num_frames)[-1]
        moved = tower(flat2, [-2], num_frames=config.num_frames)[-1]
    torch.testing.assert_close(moved[1:], base[1:])
    assert (moved_t[1:] - base_t[1:]).abs().max() > 1e-3  # exactly 0 without temporal attention


def test_long_videos_run_in_windows_of_num_frames(make_config):
    config = make_config(num_frames=4)
    model = VideoLlavaForConditionalGeneration(config).eval()
    _, videos = random_media(config, 0, 1, frames=10)
    with torch.no_grad():
        whole = model.get_video_features(videos).pooler_output
        parts = [model.get_video_features(videos[:, s:s + 4]).pooler_output for s in (0, 4, 8)]
    torch.testing.assert_close(whole, torch.cat(parts, dim=1))
    assert whole.shape[1] == 10 * (config.video_seq_length // 4)


# ------------------------------------------------------------------------------------------------ errors, cache, efficiency


def test_placeholder_count_mismatch_says_expected_and_found(make_config, tokenizer, make_processor):
    config = make_config()
    model = VideoLlavaForConditionalGeneration(config).eval()
    processor = make_processor(config)
    batch = prompt_ids(tokenizer, processor, ["USER: <image>\n<image>\nTwo? ASSISTANT:"])
    images, _ = random_media(config, 1)
    with pytest.raises(ValueError) as err:
        model(**batch, pixel_values=images)
    message = str(err.value)
    assert f"{2 * config.image_seq_length} <image> placeholder tokens" in message
    assert f"give {config.image_seq_length} feature tokens" in message


def test_towers_run_once_per_generate(make_config, tokenizer, make_processor):
    config = make_config()
    model = VideoLlavaForConditionalGeneration(config).eval()
    processor = make_processor(config)
    calls = {"video": 0, "image": 0}
    model.model.video_tower.register_forward_hook(lambda *a: calls.__setitem__("video", calls["video"] + 1))
    model.model.image_tower.register_forward_hook(lambda *a: calls.__setitem__("image", calls["image"] + 1))
    batch = prompt_ids(tokenizer, processor, ["USER: <image> <video>\nHi? ASSISTANT:"])
    images, videos = random_media(config, 1, 1)
    model.generate(**batch, pixel_values=images, pixel_values_videos=videos, max_new_tokens=6, do_sample=False,
                   min_new_tokens=6)
    assert calls == {"video": 1, "image": 1}


def test_gradient_checkpointing_gives_same_gradients(make_config, tokenizer, make_processor):
    config = make_config()
    model = VideoLlavaForConditionalGeneration(config)
    processor = make_processor(config)
    batch = prompt_ids(tokenizer, processor, ["USER: <video>\nWhat? ASSISTANT: a circle</s>"])
    _, videos = random_media(config, 0, 1)
    labels = batch["input_ids"].clone()

    def grads():
        model.zero_grad()
        model(**batch, pixel_values_videos=videos, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    plain = grads()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.model.video_tower.encoder.layers[0].gradient_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    assert any("video_tower" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_and_attention_backends(tmp_path, make_config, tokenizer, make_processor, dtype):
    config = make_config()
    VideoLlavaForConditionalGeneration(config).save_pretrained(tmp_path / "m")
    processor = make_processor(config)
    batch = prompt_ids(tokenizer, processor, ["USER: <video>\nWhat? ASSISTANT:"])
    _, videos = random_media(config, 0, 1)
    eager = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "m", attn_implementation="eager").eval()
    sdpa = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "m", attn_implementation="sdpa").eval()
    half = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "m", dtype=dtype).eval()
    assert half.model.video_tower.embeddings.patch_embedding.weight.dtype == dtype
    with torch.no_grad():
        ref = eager(**batch, pixel_values_videos=videos).logits
        torch.testing.assert_close(sdpa(**batch, pixel_values_videos=videos).logits, ref, atol=1e-5, rtol=1e-5)
        low = half(**batch, pixel_values_videos=videos.to(dtype)).logits
    assert low.dtype == dtype and torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.1


def test_device_map_auto_and_no_split_modules(tmp_path, make_config, tokenizer, make_processor):
    from accelerate import infer_auto_device_map

    config = make_config()
    model = VideoLlavaForConditionalGeneration(config).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "m", device_map="auto").eval()
    batch = prompt_ids(tokenizer, make_processor(config), ["USER: <video>\nWhat? ASSISTANT:"])
    _, videos = random_media(config, 0, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch, pixel_values_videos=videos).logits,
                                   model(**batch, pixel_values_videos=videos).logits)
    no_split = set(model._no_split_modules)
    assert {"VideoLlavaVisionEncoderLayer", "LlamaDecoderLayer"} <= no_split
    # Force a split over several small devices: no vision or decoder layer may be cut in two.
    size = sum(p.numel() * 4 for p in model.parameters())
    device_map = infer_auto_device_map(
        model, max_memory={0: size // 5, 1: size // 5, 2: size // 5, "cpu": size * 4},
        no_split_module_classes=list(no_split),
    )
    assert len(set(device_map.values())) > 1
    for name in device_map:
        parts = name.split(".")
        if "layers" in parts:
            assert parts.index("layers") == len(parts) - 2, f"a layer was split across devices: {name}"


# ------------------------------------------------------------------------------------------------ Auto classes, remote code


def test_importing_the_package_does_not_change_save_pretrained(tmp_path, make_config, make_processor):
    """Code export is explicit: a plain save writes no auto_map and no code, for ours and for other models."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = make_config()
    VideoLlavaForConditionalGeneration(config).save_pretrained(tmp_path / "plain")
    make_processor(config).save_pretrained(tmp_path / "plain")
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    llama.save_pretrained(tmp_path / "llama")
    for folder in ("plain", "llama"):
        assert not list((tmp_path / folder).glob("*.py"))
        for name in ("config.json", "processor_config.json"):
            path = tmp_path / folder / name
            if path.is_file():
                assert "auto_map" not in path.read_text()
    # and the explicit export still works after a plain save (the class state was restored)
    VideoLlavaForConditionalGeneration(config).save_pretrained(tmp_path / "exported", export_code=True)
    assert (tmp_path / "exported" / "modeling_videollava.py").is_file()
    VideoLlavaForConditionalGeneration(config).save_pretrained(tmp_path / "plain2")
    assert "auto_map" not in (tmp_path / "plain2" / "config.json").read_text()


def test_auto_classes_resolve_to_ours(tmp_path, make_config):
    config = make_config()
    VideoLlavaForConditionalGeneration(config).save_pretrained(tmp_path / "m", export_code=True)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model_type"] == "videollava_hf"
    assert saved["auto_map"]["AutoModelForImageTextToText"].endswith("VideoLlavaForConditionalGeneration")
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "m"), VideoLlavaConfig)
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path / "m"), VideoLlavaForConditionalGeneration)
    from transformers import AutoModel, AutoModelForMultimodalLM

    assert isinstance(AutoModelForMultimodalLM.from_pretrained(tmp_path / "m"), VideoLlavaForConditionalGeneration)
    assert type(AutoModel.from_config(config)).__name__ == "VideoLlavaModel"


def test_saved_checkpoint_loads_with_trust_remote_code_without_the_package(tmp_path, make_config, make_processor):
    config = make_config()
    model = VideoLlavaForConditionalGeneration(config).eval()
    model.save_pretrained(tmp_path / "m", export_code=True)
    make_processor(config).save_pretrained(tmp_path / "m", export_code=True)
    ids = torch.tensor([[1, 7, 9, 11]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits[0, -1, :5].tolist()
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys
        class Block(importlib.abc.MetaPathFinder):  # make sure the package cannot be imported
            def find_spec(self, name, path=None, target=None):
                if name == "videollava_hf" or name.startswith("videollava_hf."):
                    raise ImportError("blocked for this test")
        sys.meta_path.insert(0, Block())
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        m = AutoModelForImageTextToText.from_pretrained({str(tmp_path / "m")!r}, trust_remote_code=True)
        p = AutoProcessor.from_pretrained({str(tmp_path / "m")!r}, trust_remote_code=True)
        assert "videollava_hf" not in sys.modules
        with torch.no_grad():
            logits = m(input_ids=torch.tensor([[1, 7, 9, 11]])).logits[0, -1, :5].tolist()
        print(json.dumps({{"cls": type(m).__name__, "proc": type(p).__name__, "logits": logits,
                          "n": p.image_seq_length}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["cls"] == "VideoLlavaForConditionalGeneration"
    assert out["proc"] == "VideoLlavaHfProcessor"  # distinct from the built-in port's name
    assert out["n"] == config.image_seq_length
    torch.testing.assert_close(torch.tensor(out["logits"]), torch.tensor(expected), atol=1e-5, rtol=1e-5)
