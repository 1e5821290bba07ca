"""TRL's SFTTrainer with `processing_class=processor` (recipes/trl_sft.py) on a tiny model: video and image samples,
assistant-only loss from the chat template's {% generation %} markers, full fine-tuning and LoRA.

The oracle for the labels is the project's own collator (`VideoLlavaDataCollator`, which finds the answers by
rendering turn prefixes, not through generation markers): on the same records both must train on exactly the same
tokens, and no media or prompt token may carry a label."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl", reason="needs the [test] extra (trl)")

from videollava_hf import VideoLlavaForConditionalGeneration  # noqa: E402
from videollava_hf.demo.synthetic import write_dataset  # noqa: E402
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer  # noqa: E402
from videollava_hf.training import VideoLlavaDataCollator, load_conversation_dataset  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "trl_sft.py"


def _recipe():
    spec = importlib.util.spec_from_file_location("trl_sft_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl_data")
    json_path = write_dataset(root, num_videos=4, num_images=4, seed=0, num_frames=8, size=32)
    dataset, _ = load_conversation_dataset(str(json_path), media_root=str(root))
    return dataset


@pytest.fixture()
def parts():
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer)
    return VideoLlavaForConditionalGeneration(config), tiny_processor(config, tokenizer)


def test_labels_mask_prompt_and_media_like_the_project_collator(data, parts, tmp_path):
    model, processor = parts
    recipe = _recipe()
    rows = recipe.to_trl_rows(data)
    assert {bool(r["images"]) for r in rows} == {True, False}  # image and video samples
    trainer = recipe.build_trainer(model, processor, rows, str(tmp_path), max_steps=1)
    assert type(trainer.data_collator).__name__ == "DataCollatorForVisionLanguageModeling"  # TRL's own
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    ours = VideoLlavaDataCollator(processor)([data[i] for i in range(len(rows))])
    media_ids = [processor.image_token_id, processor.video_token_id]
    labels, input_ids = batch["labels"], batch["input_ids"]
    assert int(torch.isin(input_ids, torch.tensor(media_ids)).sum()) > 0
    assert not torch.isin(labels, torch.tensor(media_ids)).any()  # no media token is a target
    for row in range(len(rows)):
        trained = labels[row][labels[row] != -100].tolist()
        expected = ours["labels"][row][ours["labels"][row] != -100].tolist()
        assert trained == expected and trained  # the answers (and their </s>), nothing of the prompt
        assert trained[-1] == processor.tokenizer.eos_token_id  # the model learns to stop
    assert batch["pixel_values_videos"].shape[0] == sum(1 for r in rows if not r["images"])
    assert batch["pixel_values"].shape[0] == sum(1 for r in rows if r["images"])


def _losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_sft_loss_falls(data, parts, tmp_path):
    model, processor = parts
    recipe = _recipe()
    rows = recipe.to_trl_rows(data)
    trainer = recipe.build_trainer(model, processor, rows, str(tmp_path), max_steps=12, learning_rate=3e-3,
                                   per_device_train_batch_size=4, num_train_epochs=6)
    trainer.train()
    losses = _losses(trainer)
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses  # about 0.73 here


def test_lora_trains_only_adapters_and_loss_falls(data, parts, tmp_path):
    model, processor = parts
    recipe = _recipe()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = recipe.build_trainer(model, processor, recipe.to_trl_rows(data), str(tmp_path), lora=True,
                                   max_steps=12, learning_rate=1e-2, per_device_train_batch_size=4,
                                   num_train_epochs=6)
    trainer.train()
    losses = _losses(trainer)
    assert sum(losses[-3:]) / 3 < 0.93 * sum(losses[:3]) / 3, losses  # about 0.90 here; untrained: about 1.0
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    base = trainer.model.get_base_model()
    for name, param in base.named_parameters():
        if "lora_" not in name:  # every original weight is untouched
            original = name.replace(".base_layer", "")
            assert torch.equal(param, before[original]), name
