"""Checkpoint conversion: tiny checkpoints in the ORIGINAL layout (LLaVA-style keys, config.json and `.bin` shards,
temporal-attention keys) and in Transformers' built-in layout are converted; every weight must arrive unchanged and
the converted model's logits must match a reference forward of the source (the original computation written from
the published code for the original layout, `transformers.VideoLlavaForConditionalGeneration` for the built-in one).

The fixtures rename keys to the source layouts with mappings written here, independently of the converter's rules.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from videollava_hf import VideoLlavaForConditionalGeneration, VideoLlavaProcessor
from videollava_hf.conversion import convert_checkpoint
from videollava_hf.conversion.common import CheckpointMismatchError, ConversionError, resolve_source
from videollava_hf.conversion.original import IMAGE_TOKEN_INDEX, convert_original_checkpoint, original_reference_logits
from videollava_hf.conversion.builtin import convert_transformers_checkpoint
from videollava_hf.testing.tiny import tiny_config, tiny_tokenizer

VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
}
FRAMES = 4
CORPUS = [
    "USER: What happens in the video? ASSISTANT: A red circle moves to the left.",
    "A chat between a curious human and an artificial intelligence assistant. 0 1 2 3 4 5 6 7 8 9",
]


# ----------------------------------------------------------------------------------------------------------
# Fixture builders (independent of the converter)
# ----------------------------------------------------------------------------------------------------------


def vicuna_like_tokenizer() -> PreTrainedTokenizerFast:
    """A Llama-like tokenizer WITHOUT <image>/<video>/<pad>, like the original 32000-token Vicuna one."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def to_original_key(key: str) -> str:
    """Our key -> the original release's key (written from the original code's module names)."""
    for ours, original in (
        ("model.image_tower.", "model.image_tower.image_tower."),
        ("model.video_tower.", "model.video_tower.video_tower."),
        ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
        ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
        ("model.language_model.", "model."),
        ("lm_head.", "lm_head."),
    ):
        if key.startswith(ours):
            return original + key[len(ours) :]
    raise AssertionError(f"fixture has no original name for {key}")


def random_state(keys_shapes: dict[str, tuple[int, ...]], seed: int, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """Random values everywhere (norm weights around 1), so any misplaced tensor changes the logits."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in sorted(keys_shapes.items()):
        t = torch.randn(shape, generator=g) * 0.2
        if "norm" in key and key.endswith("weight"):
            t = 1.0 + t
        state[key] = t.to(dtype)
    return state


def original_config_json(vocab: int) -> dict:
    return {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava",
        **TEXT,
        "hidden_act": "silu",
        "vocab_size": vocab,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "use_cache": True,
        "mm_image_tower": "LanguageBind/LanguageBind_Image",
        "mm_video_tower": "LanguageBind/LanguageBind_Video_merge",
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_hidden_size": VISION["hidden_size"],
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "pad",
        "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right",
        "use_mm_proj": True,
        "freeze_mm_mlp_adapter": False,
        "tune_mm_mlp_adapter": False,
    }


def tower_config_json(temporal: bool) -> dict:
    """A LanguageBind tower config.json (CLIP-style with `vision_config`)."""
    vision = {
        **VISION,
        "model_type": "clip_vision_model",
        "projection_dim": 16,
        "add_time_attn": temporal,
        "num_frames": FRAMES if temporal else 1,
    }
    return {
        "model_type": "LanguageBindVideo" if temporal else "LanguageBindImage",
        "projection_dim": 16,
        "vision_config": vision,
        "text_config": {"hidden_size": 16},
    }


def our_shapes(vocab: int) -> dict[str, tuple[int, ...]]:
    tok = tiny_tokenizer()
    config = tiny_config(tok, vision=VISION, text={**TEXT, "vocab_size": vocab}, num_frames=FRAMES)
    with torch.device("meta"):
        model = VideoLlavaForConditionalGeneration(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def write_bin_shards(directory: Path, state: dict[str, torch.Tensor], n: int = 2) -> None:
    keys = sorted(state)
    weight_map = {}
    for i in range(n):
        name = f"pytorch_model-{i + 1:05d}-of-{n:05d}.bin"
        part = {k: state[k] for k in keys[i::n]}
        torch.save(part, directory / name)
        weight_map.update({k: name for k in part})
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def build_original_checkpoint(directory: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Writes an original-layout checkpoint to `directory` (+ tower configs in subfolders); returns its state."""
    directory.mkdir(parents=True)
    tokenizer = vicuna_like_tokenizer()
    tokenizer.save_pretrained(directory)
    vocab = len(tokenizer)
    state = random_state({to_original_key(k): s for k, s in our_shapes(vocab).items()}, seed)
    for i in range(TEXT["num_hidden_layers"]):  # buffers the original saves and the converter must drop
        state[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.rand(
            TEXT["hidden_size"] // TEXT["num_attention_heads"] // 2
        )
    n_pos = (VISION["image_size"] // VISION["patch_size"]) ** 2 + 1
    state["model.image_tower.image_tower.embeddings.position_ids"] = torch.arange(n_pos)[None]
    state["model.video_tower.video_tower.embeddings.position_ids"] = torch.arange(n_pos)[None]
    write_bin_shards(directory, state)
    (directory / "config.json").write_text(json.dumps(original_config_json(vocab)))
    for name, temporal in (("image_tower", False), ("video_tower", True)):
        (directory / name).mkdir()
        (directory / name / "config.json").write_text(json.dumps(tower_config_json(temporal)))
    return state


def load_output(out: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a converted folder, read through its index."""
    index = json.loads((out / "model.safetensors.index.json").read_text())
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(load_file(str(out / shard)))
    assert set(tensors) == set(index["weight_map"])
    return tensors


@pytest.fixture(scope="module")
def original_ckpt(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    root = tmp_path_factory.mktemp("original") / "Video-LLaVA-7B"
    return root, build_original_checkpoint(root)


def convert_tiny_original(src: Path, out: Path, **kwargs):
    return convert_original_checkpoint(
        src, out, image_tower=src / "image_tower", video_tower=src / "video_tower", progress=False, **kwargs
    )


@pytest.fixture(scope="module")
def converted_original(original_ckpt, tmp_path_factory):
    src, _ = original_ckpt
    out = tmp_path_factory.mktemp("converted") / "out"
    report = convert_tiny_original(src, out, verify=True, max_shard_size="40KB")
    return out, report


# ----------------------------------------------------------------------------------------------------------
# Original layout
# ----------------------------------------------------------------------------------------------------------


def test_original_all_weights_present_and_equal(original_ckpt, converted_original):
    src, state = original_ckpt
    out, report = converted_original
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all(
        s.startswith("model-") and s.endswith(f"-of-{len(shards):05d}.safetensors") for s in shards
    )
    converted = load_output(out)

    vocab = len(vicuna_like_tokenizer())
    expected = our_shapes(vocab + 3)
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected  # every target weight, right shapes
    by_original = {to_original_key(k): k for k in expected}
    dropped = {k for k in state if k.endswith(("inv_freq", "position_ids"))}
    assert set(report.ignored) == dropped and len(dropped) == 4
    for key, tensor in state.items():
        if key in dropped:
            continue
        ours = converted[by_original[key]]
        assert ours.dtype == tensor.dtype == torch.float16
        if key in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(ours[:vocab], tensor)
            mean = tensor.float().mean(0).to(torch.float16)
            for row in range(vocab, vocab + 3):  # <image>, <video>, <pad>: the mean of the original rows
                assert torch.equal(ours[row], mean), (key, row)
        else:
            assert torch.equal(ours, tensor), key
    assert any("temporal_attn" in k for k in converted) and any(k.endswith("temporal_embedding") for k in converted)


def test_original_config_tokenizer_and_processor(converted_original):
    out, report = converted_original
    config = json.loads((out / "config.json").read_text())
    vocab = len(vicuna_like_tokenizer())
    assert config["model_type"] == "videollava_hf"
    assert config["video_temporal_attention"] is True and config["num_frames"] == FRAMES
    assert config["vision_config"]["hidden_act"] == "gelu" and config["vision_config"]["hidden_size"] == 32
    assert (config["image_token_index"], config["video_token_index"]) == (vocab, vocab + 1)
    assert config["text_config"]["vocab_size"] == vocab + 3 and config["text_config"]["pad_token_id"] == vocab + 2
    assert config["vision_feature_select_strategy"] == "default" and config["video_feature_select_strategy"] == "full"
    assert report.added_tokens == {"<image>": vocab, "<video>": vocab + 1, "<pad>": vocab + 2}
    processor = VideoLlavaProcessor.from_pretrained(out)
    tok = processor.tokenizer
    assert tok.convert_tokens_to_ids(["<image>", "<video>", "<pad>"]) == [vocab, vocab + 1, vocab + 2]
    assert tok.pad_token == "<pad>" and len(tok) == vocab + 3
    assert processor.image_processor.do_pad_to_square is True  # image_aspect_ratio "pad"
    assert processor.video_processor.num_frames == FRAMES
    ids = processor(text="USER: <video>\nhi", videos=np.zeros((FRAMES, 32, 32, 3), dtype=np.uint8))["input_ids"]
    assert int((ids == vocab + 1).sum()) == FRAMES * 17
    assert (out / "README.md").is_file() and (out / "generation_config.json").is_file()


def test_original_logits_match_reference_forward(original_ckpt, converted_original):
    src, state = original_ckpt
    out, report = converted_original
    assert report.verify_max_abs_diff is not None and report.verify_max_abs_diff < 1e-4

    # An independent prompt: two images and a video, in another order than verify uses.
    model = VideoLlavaForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    cfg = model.config
    source = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    original_cfg = json.loads((src / "config.json").read_text())
    g = torch.Generator().manual_seed(7)
    video = torch.randn(1, FRAMES, 3, 32, 32, generator=g)
    images = torch.randn(2, 3, 32, 32, generator=g)
    text = [1, 40, 41, 42]
    ours = text + [cfg.video_token_index] * cfg.video_seq_length + [50] + [cfg.image_token_index] * 16 * 2 + [60, 61]
    theirs = text + [IMAGE_TOKEN_INDEX] * FRAMES + [50] + [IMAGE_TOKEN_INDEX] * 2 + [60, 61]
    vision = {**VISION}
    with torch.no_grad():
        # our processor order: images fill <image> slots, videos fill <video> slots
        logits = model(input_ids=torch.tensor([ours]), pixel_values=images, pixel_values_videos=video).logits[0]
    reference = original_reference_logits(
        source,
        original_cfg,
        vision,
        torch.tensor(theirs),
        [video[0].permute(1, 0, 2, 3), images[0], images[1]],
        num_frames=FRAMES,
    )
    vocab = reference.shape[-1]
    assert logits.shape[0] == reference.shape[0] == len(text) + FRAMES * 17 + 1 + 32 + 2
    assert torch.allclose(logits[:, :vocab], reference, atol=1e-4, rtol=1e-4)

    # The temporal weights matter: perturbing them changes the reference, so the comparison above covers them.
    perturbed = dict(source)
    perturbed["model.video_tower.video_tower.encoder.layers.0.temporal_attn.v_proj.weight"] = torch.randn(32, 32)
    other = original_reference_logits(
        perturbed,
        original_cfg,
        vision,
        torch.tensor(theirs),
        [video[0].permute(1, 0, 2, 3), images[0], images[1]],
        num_frames=FRAMES,
    )
    assert (other - reference).abs().max() > 1e-3


def test_converted_folder_loads_as_remote_code_without_the_package(converted_original, tmp_path):
    """The model card promises trust_remote_code loading where videollava_hf is not installed: check it in a
    fresh interpreter that cannot import the package."""
    import subprocess
    import sys

    out, _ = converted_original
    code = (
        "import importlib.abc, sys\n"
        # the package may be installed (CI installs it): make it unimportable in this interpreter
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'videollava_hf' or name.startswith('videollava_hf.'):\n"
        "            raise ImportError('blocked for this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
        f"model = AutoModelForImageTextToText.from_pretrained({str(out)!r}, trust_remote_code=True)\n"
        f"processor = AutoProcessor.from_pretrained({str(out)!r}, trust_remote_code=True)\n"
        "assert 'videollava_hf' not in sys.modules\n"
        "print(type(model).__module__, type(model).__name__, type(processor).__name__)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    module, model_class, processor_class = result.stdout.split()
    assert module.startswith("transformers_modules.") and model_class == "VideoLlavaForConditionalGeneration"
    assert processor_class == "VideoLlavaHfProcessor"  # distinct from the built-in port's name


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_shard(directory: Path, edit, holding: str | None = None) -> None:
    """Apply `edit` to the shard whose index entry lists `holding` (default: the first shard), and re-index it."""
    index_path = directory / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    path = directory / (index["weight_map"][holding] if holding else "pytorch_model-00001-of-00002.bin")
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != path.name} | {
        k: path.name for k in state
    }
    index_path.write_text(json.dumps(index))


def first_key(state: dict, contains: str) -> str:
    return next(k for k in sorted(state) if contains in k)


@pytest.mark.parametrize("problem", ["extra", "missing", "shape"])
def test_original_mismatch_aborts_before_writing(original_ckpt, tmp_path, problem):
    src = copy_checkpoint(original_ckpt[0], tmp_path / "src")
    names = {}

    def edit(state):
        if problem == "extra":
            names["key"] = "model.video_tower.video_tower.encoder.layers.0.temporal_mlp.fc1.weight"
            state[names["key"]] = torch.zeros(64, 32)
        elif problem == "missing":
            names["key"] = first_key(state, "temporal_attn.q_proj.weight")
            del state[names["key"]]
        else:
            names["key"] = first_key(state, "mm_projector.0.weight")
            state[names["key"]] = torch.zeros(64, 31)

    edit_shard(src, edit, holding="model.mm_projector.0.weight" if problem == "shape" else None)
    out = tmp_path / "out"
    with pytest.raises(CheckpointMismatchError) as info:
        convert_tiny_original(src, out)
    message = str(info.value)
    # extra / mis-shaped keys are named as in the checkpoint, a missing weight by its name in the converted model
    wanted = names["key"].replace("video_tower.video_tower.", "video_tower.") if problem == "missing" else names["key"]
    assert wanted in message
    if problem == "shape":
        assert "(64, 31)" in message and "(64, 32)" in message
    assert not out.exists()  # validation happens before anything is written


def test_unknown_key_is_reported_by_name(original_ckpt, tmp_path):
    src = copy_checkpoint(original_ckpt[0], tmp_path / "src")
    edit_shard(src, lambda s: s.__setitem__("model.some_new_module.weight", torch.zeros(2)))
    with pytest.raises(CheckpointMismatchError) as info:
        convert_tiny_original(src, tmp_path / "out")
    assert info.value.unmatched == ["model.some_new_module.weight"]


class _Payload:
    """Pickles as a call that would create a file when unpickled without weights_only."""

    marker: str = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_bin_is_loaded_with_weights_only(original_ckpt, tmp_path):
    src = copy_checkpoint(original_ckpt[0], tmp_path / "src")
    marker = tmp_path / "code_ran"
    payload = _Payload()
    payload.marker = str(marker)
    edit_shard(src, lambda s: s.__setitem__("evil", payload))
    with pytest.raises(ConversionError, match="weights_only=True"):
        convert_tiny_original(src, tmp_path / "out")
    assert not marker.exists()
    torch.load(src / "pytorch_model-00001-of-00002.bin", weights_only=False)  # the payload is real: it does run
    assert marker.exists()


def test_safetensors_preferred_over_bin(original_ckpt, tmp_path):
    src = copy_checkpoint(original_ckpt[0], tmp_path / "src")
    state = {}
    for f in sorted(src.glob("*.bin")):
        state.update(torch.load(f, weights_only=True))
        f.write_bytes(b"not a pickle")  # would fail if read
    save_file({k: v.contiguous() for k, v in state.items()}, str(src / "model.safetensors"))
    report = convert_tiny_original(src, tmp_path / "out", model_card=False)
    assert report.num_tensors == len(state) - 4


def test_no_temporal_keys_needs_explicit_flag(original_ckpt, tmp_path):
    src = copy_checkpoint(original_ckpt[0], tmp_path / "src")
    for f in sorted(src.glob("*.bin")):
        part = {k: v for k, v in torch.load(f, weights_only=True).items() if "temporal" not in k}
        torch.save(part, f)
    (src / "pytorch_model.bin.index.json").unlink()
    with pytest.raises(CheckpointMismatchError, match="temporal_attention=False"):
        convert_tiny_original(src, tmp_path / "out")
    report = convert_tiny_original(src, tmp_path / "out2", temporal_attention=False, model_card=False)
    assert json.loads((tmp_path / "out2" / "config.json").read_text())["video_temporal_attention"] is False
    assert not any(
        "temporal" in k
        for k in json.loads((tmp_path / "out2" / "model.safetensors.index.json").read_text())["weight_map"]
    )
    assert report.num_tensors > 0


def test_vocabulary_rows_for_a_padded_table():
    """Added tokens whose ids fall inside an already padded table also get the mean of the real tokens' rows."""
    from videollava_hf.conversion.common import extend_rows
    from videollava_hf.conversion.original import extend_tokenizer

    tok = vicuna_like_tokenizer()
    n = len(tok)
    with pytest.raises(ConversionError, match="beyond the checkpoint's"):
        extend_tokenizer(vicuna_like_tokenizer(), n - 1)
    ids = extend_tokenizer(tok, n + 2)  # table padded by 2 rows beyond the tokenizer
    assert list(ids.values()) == [n, n + 1, n + 2]
    weight = torch.randn(n + 2, 8, dtype=torch.float64)
    out = extend_rows(weight, n + 3, fill_ids=ids.values(), mean_rows=n)
    assert out.shape == (n + 3, 8) and torch.equal(out[:n], weight[:n])
    for row in (n, n + 1, n + 2):
        assert torch.allclose(out[row], weight[:n].mean(0))


def test_tokenizer_that_already_has_the_placeholders(original_ckpt, tmp_path):
    """E.g. the built-in port's tokenizer (fast, with <image>/<video>/<pad> at 32000-32002) for the original weights."""
    from transformers import AddedToken

    src = copy_checkpoint(original_ckpt[0], tmp_path / "src")
    tok = vicuna_like_tokenizer()
    n = len(tok)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in ("<image>", "<video>", "<pad>")])
    tok.save_pretrained(src)
    report = convert_tiny_original(src, tmp_path / "out", model_card=False)
    assert report.added_tokens == {"<image>": n, "<video>": n + 1, "<pad>": n + 2} and report.vocab_size == n + 3
    embed = load_output(tmp_path / "out")["model.language_model.embed_tokens.weight"]
    original = original_ckpt[1]["model.embed_tokens.weight"]
    assert torch.equal(embed[:n], original) and torch.equal(embed[n + 1], original.float().mean(0).half())


# ----------------------------------------------------------------------------------------------------------
# Transformers' built-in layout
# ----------------------------------------------------------------------------------------------------------


def to_builtin_key(key: str, hub_4x: bool) -> str:
    """Our key -> the built-in's saved key (Transformers 5 layout, or the 4.x Hub layout with `vision_model`)."""
    tower = "vision_model." if hub_4x else ""
    for ours, theirs in (
        ("model.language_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
        ("model.image_tower.", f"image_tower.{tower}"),
        ("model.video_tower.", f"video_tower.{tower}"),
        ("model.multi_modal_projector.", "multi_modal_projector."),
    ):
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    raise AssertionError(key)


@pytest.fixture(scope="module")
def builtin_ckpt(tmp_path_factory):
    import transformers

    tok = tiny_tokenizer()
    ours = tiny_config(tok, vision=VISION, text=TEXT)
    config = transformers.VideoLlavaConfig(
        vision_config={**VISION, "model_type": "clip_vision_model"},
        text_config=ours.text_config.to_dict(),
        image_token_index=ours.image_token_index,
        video_token_index=ours.video_token_index,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    model = transformers.VideoLlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # no zero biases / unit norms: every tensor matters
    root = tmp_path_factory.mktemp("builtin") / "Video-LLaVA-7B-hf"
    model.save_pretrained(root)
    tok.save_pretrained(root)
    return root


@pytest.mark.parametrize("hub_4x", [False, True])
def test_builtin_conversion(builtin_ckpt, tmp_path, hub_4x):
    src = copy_checkpoint(builtin_ckpt, tmp_path / "src")
    saved = load_file(str(src / "model.safetensors"))
    if hub_4x:  # the Hub checkpoint (saved by Transformers 4.x) has `*_tower.vision_model.*` keys
        saved = {
            k.replace("_tower.", "_tower.vision_model.", 1) if k.startswith(("image_tower.", "video_tower.")) else k: v
            for k, v in saved.items()
        }
        save_file(saved, str(src / "model.safetensors"))
    out = tmp_path / "out"
    report = convert_checkpoint(src, out, verify=True, progress=False)
    assert report.layout == "transformers"
    assert report.verify_max_abs_diff is not None and report.verify_max_abs_diff < 1e-5

    converted = load_output(out)
    assert len(converted) == len(saved)
    for key, tensor in converted.items():
        assert torch.equal(tensor, saved[to_builtin_key(key, hub_4x)]), key
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "videollava_hf" and config["video_temporal_attention"] is False
    processor = VideoLlavaProcessor.from_pretrained(out)
    assert processor.image_processor.resample_mode == "transformers"
    assert processor.tokenizer.convert_tokens_to_ids("<video>") == config["video_token_index"]


def test_builtin_logits_equal_transformers_class(builtin_ckpt, tmp_path):
    """Independent of `verify`: our converted model vs transformers' class on a prompt built here."""
    import transformers

    out = tmp_path / "out"
    convert_transformers_checkpoint(builtin_ckpt, out, progress=False, model_card=False)
    theirs = transformers.VideoLlavaForConditionalGeneration.from_pretrained(builtin_ckpt).eval()
    ours = VideoLlavaForConditionalGeneration.from_pretrained(out).eval()
    cfg = ours.config
    ids = torch.tensor([[1, 30, 31] + [cfg.image_token_index] * 16 + [32] + [cfg.video_token_index] * 8 * 17 + [33]])
    g = torch.Generator().manual_seed(3)
    image, video = torch.randn(1, 3, 32, 32, generator=g), torch.randn(1, 8, 3, 32, 32, generator=g)
    with torch.no_grad():
        a = ours(input_ids=ids, pixel_values=image, pixel_values_videos=video).logits
        b = theirs(input_ids=ids, pixel_values_images=image, pixel_values_videos=video).logits
    assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# Hub: download (offline), push (mocked)
# ----------------------------------------------------------------------------------------------------------


def _client_connect_error() -> Exception:
    """Shaped like huggingface_hub's HTTP client's ConnectError (httpx, or its fork): a TransportError subclass."""
    transport = type("TransportError", (Exception,), {"__module__": "httpx._exceptions"})
    connect = type("ConnectError", (transport,), {"__module__": "httpx._exceptions"})
    return connect("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize("failure", ["offline_mode", "socket", "client"])
def test_offline_hub_id_gives_clear_error(failure, tmp_path):
    from huggingface_hub.errors import LocalEntryNotFoundError

    error = {
        "offline_mode": LocalEntryNotFoundError("offline mode is enabled and the files are not cached"),
        "socket": ConnectionError("[Errno 101] Network is unreachable"),
        "client": _client_connect_error(),
    }[failure]
    with mock.patch("videollava_hf.conversion.common.snapshot_download", side_effect=error):
        with pytest.raises(ConversionError) as info:
            convert_checkpoint("LanguageBind/Video-LLaVA-7B", tmp_path / "out")
    message = str(info.value)
    assert "offline" in message and "hf download LanguageBind/Video-LLaVA-7B" in message and "DIR" in message
    assert not (tmp_path / "out").exists()


def test_hub_download_prefers_safetensors(tmp_path):
    calls = []

    def fake_download(repo_id, allow_patterns, **kwargs):
        calls.append(allow_patterns)
        local = tmp_path / f"snap{len(calls)}"
        local.mkdir()
        if "*.bin" in allow_patterns:
            (local / "pytorch_model.bin").write_bytes(b"")
        return str(local)

    with mock.patch("videollava_hf.conversion.common.snapshot_download", side_effect=fake_download):
        path = resolve_source("LanguageBind/Video-LLaVA-7B")
    assert "*.safetensors" in calls[0] and "*.bin" not in calls[0]  # safetensors asked for first
    assert "*.bin" in calls[1] and path == tmp_path / "snap2"  # .bin only because there were none


def test_push_to_hub_is_called_with_the_output_folder(builtin_ckpt, tmp_path):
    out = tmp_path / "out"
    with mock.patch("videollava_hf.conversion.common.HfApi") as api_class:
        api = api_class.return_value
        api.upload_folder.return_value = mock.Mock(commit_url="https://huggingface.co/me/tiny/commit/1")
        report = convert_checkpoint(
            builtin_ckpt, out, push_to_hub_repo="me/tiny", private=True, token="t", progress=False
        )
    api_class.assert_called_once_with(token="t")
    api.create_repo.assert_called_once_with("me/tiny", repo_type="model", private=True, exist_ok=True)
    kwargs = api.upload_folder.call_args.kwargs
    assert Path(kwargs["folder_path"]) == out and kwargs["repo_id"] == "me/tiny"
    assert report.pushed_to == "https://huggingface.co/me/tiny/commit/1"
    assert 'model="me/tiny"' in (out / "README.md").read_text()  # the card's snippet names the pushed repo


# ----------------------------------------------------------------------------------------------------------
# CLI and scripts
# ----------------------------------------------------------------------------------------------------------


def test_cli_convert_and_error_exit(original_ckpt, tmp_path, capsys):
    from videollava_hf.cli import main

    src = original_ckpt[0]
    args = [
        "convert",
        str(src),
        str(tmp_path / "out"),
        "--image-tower",
        str(src / "image_tower"),
        "--video-tower",
        str(src / "video_tower"),
        "--quiet",
        "--dtype",
        "float32",
        "--pad-vocab-to-multiple-of",
        "64",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "original layout" in printed and "vocabulary" in printed
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["text_config"]["vocab_size"] % 64 == 0 and config["dtype"] == "float32"
    assert main(args) == 2  # output not empty -> clear one-line error (usage error: exit 2), no traceback
    assert "not empty" in capsys.readouterr().err


def test_conversion_script_wrapper(original_ckpt, tmp_path):
    import runpy

    src = original_ckpt[0]
    script = Path(__file__).resolve().parents[1] / "conversion" / "convert_original_to_hf.py"
    namespace = runpy.run_path(str(script))
    code = namespace["main"](
        [
            str(src),
            str(tmp_path / "out"),
            "--vision-config",
            json.dumps(VISION),
            "--num-frames",
            str(FRAMES),
            "--quiet",
            "--no-model-card",
        ]
    )
    assert code == 0 and (tmp_path / "out" / "model.safetensors.index.json").is_file()
    assert not (tmp_path / "out" / "README.md").exists()
