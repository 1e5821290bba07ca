"""Training end to end on the tiny model and synthetic data, plus freeze sets and LoRA targets.

- Freeze sets: the exact trainable parameter names per stage, written out here from the architecture.
- LoRA: exactly the language model's linear layers are wrapped (no tower, no projector); the merged save is a plain
  checkpoint that loads strictly and reproduces the adapted model's logits.
- A training run through `train()` (the script's code path) lowers the loss by >= 30%, changes every trainable
  tensor and no frozen one; resuming from its mid-run checkpoint reproduces the rest of the loss curve.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from torch import nn
from transformers import TrainerCallback

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.demo.synthetic import write_dataset
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer
from videollava_hf.training import (
    LoraSettings,
    VideoLlavaDataCollator,
    build_model_for_training,
    lora_wrapped_module_names,
    save_merged,
    trainable_parameter_names,
)
from videollava_hf.training.arguments import parse_args
from videollava_hf.training.script import train

PROJECTOR = [f"model.multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")]
LM_LINEARS = [
    f"model.language_model.layers.{layer}.{block}.{name}"
    for layer in range(2)
    for block, names in (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
                         ("mlp", ("gate_proj", "up_proj", "down_proj")))
    for name in names
]
LANGUAGE_MODEL = (
    ["model.language_model.embed_tokens.weight"]
    + [
        f"model.language_model.layers.{layer}.{name}.weight"
        for layer in range(2)
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm")
    ]
    + ["model.language_model.norm.weight", "lm_head.weight"]
)


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, num_frames=4)
    return config, tiny_processor(config, tokenizer)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    json_path = write_dataset(out, num_videos=24, num_images=8, seed=0, num_frames=8, size=32)
    return json_path, out


@pytest.fixture()
def one_thread():
    """Bitwise-reproducible CPU math (and no oversubscription on small machines) for the training runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ freeze sets


def test_freeze_set_pretrain_is_projector_only(tiny):
    model = build_model_for_training(tiny[0], "pretrain")
    assert sorted(trainable_parameter_names(model)) == sorted(PROJECTOR)


def test_freeze_set_finetune_is_projector_and_language_model(tiny):
    model = build_model_for_training(tiny[0], "finetune")
    assert sorted(trainable_parameter_names(model)) == sorted(PROJECTOR + LANGUAGE_MODEL)


def test_towers_train_only_when_asked(tiny):
    model = build_model_for_training(tiny[0], "pretrain", train_video_tower=True)
    names = trainable_parameter_names(model)
    video = [n for n in names if n.startswith("model.video_tower.")]
    assert sorted(set(names) - set(video)) == sorted(PROJECTOR)
    assert len(video) == sum(1 for n, _ in model.model.video_tower.named_parameters())
    assert any("temporal_attn" in n for n in video)
    assert not any(n.startswith("model.image_tower.") for n in names)


# ------------------------------------------------------------------------------------------------ LoRA


def test_lora_wraps_only_language_model_linears(tiny):
    model = build_model_for_training(tiny[0], "finetune", lora=LoraSettings(r=4, alpha=8))
    assert sorted(lora_wrapped_module_names(model)) == sorted(LM_LINEARS)
    base = model.get_base_model()
    # Every tower linear (q/k/v/out_proj, fc1/fc2, temporal_attn.*) is still a plain nn.Linear.
    for tower in (base.model.image_tower, base.model.video_tower):
        linears = [m for m in tower.modules() if isinstance(m, nn.Linear)]
        assert linears and all(type(m) is nn.Linear for m in linears)
    trainable = trainable_parameter_names(model)
    lora = [n for n in trainable if ".lora_A." in n or ".lora_B." in n]
    assert len(lora) == 2 * len(LM_LINEARS)
    assert all(".language_model." in n for n in lora)
    projector = sorted(set(trainable) - set(lora))
    assert projector == sorted(
        f"base_model.model.model.multi_modal_projector.modules_to_save.default.linear_{i}.{p}"
        for i in (1, 2) for p in ("weight", "bias")
    )
    without = build_model_for_training(tiny[0], "finetune", lora=LoraSettings(r=4, alpha=8, train_projector=False))
    assert all(".lora_" in n for n in trainable_parameter_names(without))


def test_lora_merged_save_loads_strictly_and_matches(tiny, tmp_path):
    config, processor = tiny
    torch.manual_seed(0)
    model = build_model_for_training(config, "finetune", lora=LoraSettings(r=4, alpha=8))
    with torch.no_grad():  # LoRA B starts at zero; give the adapters and the projector copy an effect to merge
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)
    batch = VideoLlavaDataCollator(processor)(
        [{"id": "t", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "yes"}]}]
    )
    model.eval()
    with torch.no_grad():
        want = model(**batch).logits
    save_merged(model, tmp_path / "merged", processor)
    with safe_open(str(tmp_path / "merged" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not [k for k in keys if "lora" in k or "modules_to_save" in k or "base_layer" in k]
    loaded = VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "merged")  # raises on any key mismatch
    with torch.no_grad():
        got = loaded.eval()(**batch).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ training runs


class Snapshot(TrainerCallback):
    """The model's parameters when training starts (after Trainer has set everything up)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}


def run_args(synthetic, out_dir, *extra: str):
    json_path, root = synthetic
    return parse_args([
        "--config", "recipes/tiny.yaml", "--data_path", str(json_path), "--media_root", str(root),
        "--output_dir", str(out_dir), "--dataset_cache_dir", str(out_dir / "datasets_cache"),
        "--disable_tqdm", "true", *extra,
    ])


def losses_by_step(trainer) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}


@pytest.fixture(scope="module")
def full_run(synthetic, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        snapshot = Snapshot()
        out_dir = tmp_path_factory.mktemp("run")
        outcome = train(*run_args(synthetic, out_dir), callbacks=[snapshot])
    finally:
        torch.set_num_threads(before)
    return outcome, snapshot


def test_training_lowers_loss_and_touches_exactly_the_trainable_weights(full_run):
    outcome, snapshot = full_run
    losses = losses_by_step(outcome.trainer)
    assert sorted(losses) == list(range(1, 41))
    assert all(math.isfinite(v) for v in losses.values())
    first = sum(losses[s] for s in (1, 2, 3)) / 3
    last = sum(losses[s] for s in (38, 39, 40)) / 3
    assert last <= 0.7 * first, f"loss fell only from {first:.3f} to {last:.3f}"
    after = dict(outcome.trainer.model.named_parameters())
    assert snapshot.trainable == set(PROJECTOR + LANGUAGE_MODEL)
    unchanged = [n for n in snapshot.trainable if torch.equal(after[n], snapshot.before[n])]
    assert unchanged == []
    frozen = [n for n in snapshot.before if n not in snapshot.trainable]
    changed_frozen = [n for n in frozen if not torch.equal(after[n], snapshot.before[n])]
    assert changed_frozen == []
    assert any(n.startswith("model.video_tower.") for n in snapshot.before)  # the towers were there, and frozen


def test_training_outputs_load_and_are_documented(full_run):
    outcome, _ = full_run
    out = outcome.output_dir
    assert (out / "checkpoint-20").is_dir() and (out / "checkpoint-40").is_dir()
    loaded = VideoLlavaForConditionalGeneration.from_pretrained(out)  # strict: no missing or unexpected key
    for name, param in outcome.trainer.model.named_parameters():
        torch.testing.assert_close(loaded.state_dict()[name], param.detach(), atol=0, rtol=0)
    assert loaded.config.text_config.use_cache is True
    card = (out / "README.md").read_text()
    assert "pipeline_tag: video-text-to-text" in card and "stage `finetune`" in card
    metrics = json.loads((out / "train_results.json").read_text())
    assert metrics["train_samples"] == 32 and metrics["dropped_overlong_records"] == 0


def test_resume_continues_the_same_loss_curve(full_run, synthetic, tmp_path, one_thread):
    outcome, _ = full_run
    reference = losses_by_step(outcome.trainer)
    checkpoint = outcome.output_dir / "checkpoint-20"
    resumed = train(*run_args(synthetic, tmp_path / "resumed", "--resume_from_checkpoint", str(checkpoint),
                              "--write_model_card", "false"))
    history = losses_by_step(resumed.trainer)  # steps 1-20 come from the checkpoint's trainer_state.json
    assert sorted(history) == list(range(1, 41))
    after = {step: loss for step, loss in history.items() if step > 20}
    for step in after:
        assert after[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6), step
    for name, param in resumed.trainer.model.named_parameters():
        torch.testing.assert_close(param, dict(outcome.trainer.model.named_parameters())[name], atol=1e-6, rtol=1e-5)


def test_pretrain_stage_plain_format_with_a_text_only_sample(synthetic, tmp_path, one_thread):
    """Stage 1 on the plain caption format trains only the projector; text-only batches cannot break backward."""
    json_path, root = synthetic
    records = json.loads(json_path.read_text())
    text_only = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "yes"}]
    records.insert(0, {"id": "text-only", "conversations": text_only})
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(records))
    snapshot = Snapshot()
    outcome = train(*run_args((mixed, root), tmp_path / "stage1", "--stage", "pretrain", "--prompt_format", "plain",
                              "--max_steps", "6", "--save_strategy", "no", "--write_model_card", "false",
                              "--per_device_train_batch_size", "1", "--train_sampling_strategy", "sequential",
                              "--max_samples", "3"), callbacks=[snapshot])
    assert snapshot.trainable == set(PROJECTOR)
    assert all(math.isfinite(v) for v in losses_by_step(outcome.trainer).values())
    after = dict(outcome.trainer.model.named_parameters())
    assert all(not torch.equal(after[n], snapshot.before[n]) for n in PROJECTOR)
    assert all(torch.equal(after[n], snapshot.before[n]) for n in snapshot.before if n not in PROJECTOR)


class TrainedAtEnd(TrainerCallback):
    """Which trainable tensors changed, checked when training ends (before the LoRA merge)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        after = dict(model.named_parameters())
        self.unchanged = [n for n, p in self.before.items() if torch.equal(after[n], p)]


def test_lora_run_with_activation_checkpointing_saves_adapter_and_merged_model(synthetic, tmp_path, one_thread):
    check = TrainedAtEnd()
    outcome = train(*run_args(synthetic, tmp_path / "lora", "--lora", "true", "--lora_r", "4", "--lora_alpha", "8",
                              "--projector_lr", "1e-4", "--max_steps", "4", "--save_strategy", "no",
                              "--activation_checkpointing", "true", "--write_model_card", "false"),
                    callbacks=[check])
    # Gradients reached every adapter and the projector through the checkpointed layers (lora_B starts at 0 and
    # the first step is warm-up at lr 0, so lora_A only moves from step 3 on).
    assert len(check.before) == 2 * len(LM_LINEARS) + len(PROJECTOR) and check.unchanged == []
    out = outcome.output_dir
    assert (out / "lora_adapter" / "adapter_config.json").is_file()
    groups = outcome.trainer.optimizer.param_groups
    assert sorted({g["initial_lr"] for g in groups}) == pytest.approx([1e-4, 5e-3])
    VideoLlavaForConditionalGeneration.from_pretrained(out)  # merged, plain, strict


def test_cli_train_command_runs_the_script(synthetic, tmp_path, one_thread, capsys):
    from videollava_hf.cli import main as cli_main

    json_path, root = synthetic
    code = cli_main(["train", "--config", "recipes/tiny.yaml", "--data_path", str(json_path), "--media_root", str(root),
                     "--output_dir", str(tmp_path / "cli"), "--max_steps", "2", "--save_strategy", "no",
                     "--write_model_card", "false", "--disable_tqdm", "true",
                     "--dataset_cache_dir", str(tmp_path / "cache")])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["output_dir"] == str(tmp_path / "cli") and math.isfinite(printed["train_loss"])
    assert printed["collator_samples_seen"] >= 8  # 2 steps x batch 4 went through the collator
    VideoLlavaForConditionalGeneration.from_pretrained(tmp_path / "cli")
