"""Training data and collator: label masks on hand-written conversations (exact tensors, oracle = tokenising the
prompt's segments by hand), right padding, mixed image / video / text batches, truncation policies, bad media,
dataset normalisation (original and LLaVA-Video-178K records), and recipe parsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.models.videollava.processing_videollava import SYSTEM_PROMPT
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer
from videollava_hf.training import (
    BadSampleError,
    VideoLlavaDataCollator,
    filter_by_length,
    load_conversation_dataset,
    normalize_record,
)
from videollava_hf.training.arguments import load_recipe, parse_args

NUM_FRAMES = 4
VIDEO_TOKENS = NUM_FRAMES * 17  # 4 frames x (16 patches + CLS) for the tiny 32-px towers
IMAGE_TOKENS = 16


@pytest.fixture(scope="module")
def parts():
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, num_frames=NUM_FRAMES)
    return tokenizer, config, tiny_processor(config, tokenizer)


def video(seed: int, frames: int = NUM_FRAMES) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 40, 48, 3), dtype=np.uint8)


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (36, 44, 3), dtype=np.uint8)


def turns(*values: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def ids(tokenizer, text: str, bos: bool = False) -> list[int]:
    return tokenizer(text, add_special_tokens=bos)["input_ids"]


# ------------------------------------------------------------------------------------------------ label masks


def test_multi_turn_video_labels_exact(parts):
    tokenizer, _, processor = parts
    row = {"id": "mt", "video": "v.mp4", "media": video(0),
           "conversations": turns("<video>\nWhat colour is the shape?", "red", "How many shapes are there?", "three")}
    batch = VideoLlavaDataCollator(processor)([row])

    # Oracle: the llava_v1 prompt written out by hand, tokenised segment by segment.
    segments = [
        (f"{SYSTEM_PROMPT} USER: " + "<video>" * VIDEO_TOKENS + "\nWhat colour is the shape? ASSISTANT:", False),
        (" red</s>", True),
        ("USER: How many shapes are there? ASSISTANT:", False),
        (" three</s>", True),
    ]
    want_ids, want_labels = [], []
    for i, (text, is_answer) in enumerate(segments):
        seg = ids(tokenizer, text, bos=i == 0)
        want_ids += seg
        want_labels += seg if is_answer else [-100] * len(seg)
    # Segment-wise and whole-prompt tokenisation agree (no BPE merge across a boundary) ...
    assert ids(tokenizer, "".join(t for t, _ in segments), bos=True) == want_ids
    # ... and the collator reproduces both exactly.
    assert batch["input_ids"][0].tolist() == want_ids
    assert batch["labels"][0].tolist() == want_labels
    assert batch["attention_mask"][0].tolist() == [1] * len(want_ids)
    # Each answer's </s> is a target; nothing of the system prompt, questions or video is.
    labels = batch["labels"][0]
    assert tokenizer.decode(labels[labels != -100]) == " red</s> three</s>"
    assert int((labels == tokenizer.eos_token_id).sum()) == 2
    assert bool((labels[batch["input_ids"][0] == processor.video_token_id] == -100).all())


def test_labels_ignore_pad_id_equal_to_eos(parts):
    """Padding is found from the attention mask: with pad id == eos id, answer EOS stay targets, padding does not."""
    _, config, _ = parts
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    processor = tiny_processor(config, tokenizer)
    rows = [
        {"id": "short", "conversations": turns("Hi", "yes")},
        {"id": "long", "conversations": turns("Describe the image in detail please, with every shape.", "no")},
    ]
    batch = VideoLlavaDataCollator(processor)(rows)
    mask, labels, input_ids = batch["attention_mask"], batch["labels"], batch["input_ids"]
    lengths = mask.sum(-1)
    assert lengths[0] < lengths[1]
    # Right padding: ones then zeros.
    assert mask[0].tolist() == [1] * int(lengths[0]) + [0] * int(lengths[1] - lengths[0])
    assert bool((input_ids[0, int(lengths[0]):] == tokenizer.eos_token_id).all())  # pad tokens are "</s>"
    assert bool((labels[0, int(lengths[0]):] == -100).all())
    for b, answer in enumerate(("yes", "no")):
        kept = labels[b][labels[b] != -100]
        assert kept.tolist() == ids(tokenizer, f" {answer}</s>")


def test_no_system_prompt_and_image_placeholder_moved(parts):
    tokenizer, _, processor = parts
    row = {"id": "img", "image": "x.png", "media": image(1),
           "conversations": turns("Which shape is shown? <image>", "circle")}
    batch = VideoLlavaDataCollator(processor, add_system_prompt=False)([row])
    prompt = "USER: " + "<image>" * IMAGE_TOKENS + "\nWhich shape is shown? ASSISTANT:"
    want = ids(tokenizer, prompt, bos=True) + ids(tokenizer, " circle</s>")
    assert batch["input_ids"][0].tolist() == want
    n_prompt = len(ids(tokenizer, prompt, bos=True))
    assert batch["labels"][0].tolist() == [-100] * n_prompt + want[n_prompt:]


def test_plain_format_labels_caption_and_newline(parts):
    tokenizer, _, processor = parts
    row = {"id": "cap", "video": "v.mp4", "media": video(2),
           "conversations": turns("<video>\nDescribe.", "A red circle moves left.")}
    batch = VideoLlavaDataCollator(processor, prompt_format="plain")([row])
    head = ids(tokenizer, "<video>" * VIDEO_TOKENS, bos=True)
    caption = ids(tokenizer, "A red circle moves left.\n")
    assert batch["input_ids"][0].tolist() == head + caption
    assert batch["labels"][0].tolist() == [-100] * len(head) + caption


# ------------------------------------------------------------------------------------------------ mixed batches


def test_mixed_batch_media_in_order_and_model_accepts_it(parts):
    tokenizer, config, processor = parts
    rows = [
        {"id": "v1", "video": "a.mp4", "media": video(10), "conversations": turns("<video>\nWhat happens?", "left")},
        {"id": "t1", "conversations": turns("Count to three.", "one two three")},
        {"id": "i1", "image": "b.png", "media": image(11), "conversations": turns("<image>\nColour?", "blue")},
        {"id": "v2", "video": "c.mp4", "media": video(12), "conversations": turns("<video>\nDoes it move?", "yes")},
    ]
    batch = VideoLlavaDataCollator(processor)(rows)
    assert tuple(batch["pixel_values"].shape) == (1, 3, 32, 32)
    assert tuple(batch["pixel_values_videos"].shape) == (2, NUM_FRAMES, 3, 32, 32)
    # Oracle for order and preprocessing: the processor's own image / video processors on each item alone.
    torch.testing.assert_close(batch["pixel_values"][0], processor.image_processor([image(11)])["pixel_values"][0])
    for slot, seed in ((0, 10), (1, 12)):
        alone = processor.video_processor([video(seed)], num_frames=NUM_FRAMES)["pixel_values_videos"][0]
        torch.testing.assert_close(batch["pixel_values_videos"][slot], alone)
    per_row = (batch["input_ids"] == processor.video_token_id).sum(-1).tolist()
    assert per_row == [VIDEO_TOKENS, 0, 0, VIDEO_TOKENS]
    assert (batch["input_ids"] == processor.image_token_id).sum(-1).tolist() == [0, 0, IMAGE_TOKENS, 0]
    torch.manual_seed(0)
    loss = VideoLlavaForConditionalGeneration(config)(**batch).loss
    assert torch.isfinite(loss)


def test_batches_without_a_modality_omit_its_key(parts):
    _, _, processor = parts
    collate = VideoLlavaDataCollator(processor)
    text_only = collate([{"id": "t", "conversations": turns("Hi", "yes")}])
    assert "pixel_values" not in text_only and "pixel_values_videos" not in text_only
    images_only = collate([{"id": "i", "image": "x.png", "media": image(3), "conversations": turns("<image>\nQ", "A")}])
    assert "pixel_values" in images_only and "pixel_values_videos" not in images_only


# ------------------------------------------------------------------------------------------------ truncation


def long_video_row(words: int) -> dict:
    """A first short exchange right after the video, then a second question of `words` words."""
    question = " ".join(["shape"] * words)
    return {"id": "long", "video": "v.mp4", "media": video(4),
            "conversations": turns("<video>\nColour?", "red", question, "blue")}


def test_truncation_error_and_drop(parts):
    _, _, processor = parts
    short = {"id": "short", "conversations": turns("Hi", "yes")}
    n_long = int(VideoLlavaDataCollator(processor)([long_video_row(5)])["attention_mask"].sum())
    n_short = int(VideoLlavaDataCollator(processor)([short])["attention_mask"].sum())
    limit = n_long - 1
    assert n_short <= limit
    with pytest.raises(ValueError, match=f"'long'.*model_max_length={limit}"):
        VideoLlavaDataCollator(processor, model_max_length=limit, truncation="error")([long_video_row(5), short])
    collate = VideoLlavaDataCollator(processor, model_max_length=limit, truncation="drop")
    batch = collate([long_video_row(5), short])
    assert batch["input_ids"].shape[0] == 1 and "pixel_values_videos" not in batch
    assert collate.stats["overlong_dropped"] == 1 and [s.id for s in collate.skipped] == ["long"]
    with pytest.raises(ValueError, match="Every sample of this batch was dropped"):
        collate([long_video_row(5)])
    # At exactly the limit nothing is dropped.
    exact = VideoLlavaDataCollator(processor, model_max_length=n_long)([long_video_row(5)])
    assert exact["input_ids"].shape == (1, n_long)


def test_truncate_text_never_cuts_media(parts):
    tokenizer, _, processor = parts
    full = VideoLlavaDataCollator(processor, model_max_length=4096)([long_video_row(60)])
    n_full = int(full["attention_mask"].sum())
    media_end = int((full["input_ids"][0] == processor.video_token_id).nonzero().max()) + 1
    limit = media_end + 20  # room for the media and some text, not for the whole question and answer
    assert limit < n_full
    collate = VideoLlavaDataCollator(processor, model_max_length=limit, truncation="truncate_text")
    cut = collate([long_video_row(60)])
    assert cut["input_ids"].shape[1] == limit
    assert cut["input_ids"][0].tolist() == full["input_ids"][0, :limit].tolist()
    assert int((cut["input_ids"] == processor.video_token_id).sum()) == VIDEO_TOKENS
    assert collate.stats["truncated"] == 1
    labels = cut["labels"][0]
    assert labels.tolist() == full["labels"][0, :limit].tolist()
    assert parts[0].decode(labels[labels != -100]) == " red</s>"  # the first answer survives whole
    # When the media themselves do not fit, the sample is dropped, never cut inside the placeholder run.
    tight = VideoLlavaDataCollator(processor, model_max_length=media_end - 1, truncation="truncate_text")
    kept = tight([long_video_row(60), {"id": "s", "conversations": turns("Hi", "yes")}])
    assert int((kept["input_ids"] == processor.video_token_id).sum()) == 0 and kept["input_ids"].shape[0] == 1
    assert tight.stats["no_room_dropped"] == 1


def test_truncate_text_drops_sample_without_answer_tokens(parts):
    _, _, processor = parts
    full = VideoLlavaDataCollator(processor, model_max_length=4096)([long_video_row(60)])
    first_label = int((full["labels"][0] != -100).nonzero().min())
    collate = VideoLlavaDataCollator(processor, model_max_length=first_label, truncation="truncate_text")
    batch = collate([long_video_row(60), {"id": "s", "conversations": turns("Hi", "yes")}])
    assert batch["input_ids"].shape[0] == 1 and collate.stats["no_room_dropped"] == 1


# ------------------------------------------------------------------------------------------------ datasets


def write_json(path, records, jsonl=False):
    text = "\n".join(json.dumps(r) for r in records) if jsonl else json.dumps(records)
    path.write_text(text)
    return str(path)


def test_load_normalises_original_and_llava_video_178k_records(tmp_path, parts):
    (tmp_path / "media").mkdir()
    for name in ("a.mp4", "b.png", "c.mp4"):
        (tmp_path / "media" / name).write_bytes(b"x")
    original = [
        {"id": "a", "video": "a.mp4", "conversations": turns("<video>\nWhat happens?", "It moves.", "Colour?", "red")},
        {"id": "b", "image": "b.png", "conversations": turns("Shape? <image>", "circle"), "extra": 1},
        {"id": "t", "conversations": [{"from": "system", "value": "Be brief."}, *turns("Hi", "yes")]},
    ]
    # LLaVA-Video-178K: videos marked with <image>; caption, open-ended and multiple-choice files.
    llava_video = [
        {"id": "cap1", "video": "c.mp4", "data_source": "x",
         "conversations": turns("<image>\nDescribe the video.", "A clip.")},
        {"id": "mc1", "video": "c.mp4", "data_source": "y",
         "conversations": turns("<image>\nWhich way?\nA. left\nB. right\nAnswer with the option's letter.", "A.")},
        {"id": "oe1", "video": "c.mp4", "data_source": "z", "conversations": turns("What happens next?", "It stops.")},
    ]
    files = [write_json(tmp_path / "orig.json", original), write_json(tmp_path / "lv.jsonl", llava_video, jsonl=True)]
    dataset, skipped = load_conversation_dataset(files, media_root=str(tmp_path / "media"),
                                                 cache_dir=str(tmp_path / "cache"))
    assert skipped == [] and len(dataset) == 6
    rows = {r["id"]: r for r in dataset}
    assert rows["a"]["media_type"] == "video" and rows["a"]["media_path"] == str(tmp_path / "media" / "a.mp4")
    assert rows["b"]["conversations"][0]["value"] == "<image>\nShape?"
    assert rows["t"]["media_type"] == "" and rows["t"]["conversations"][0] == {"from": "system", "value": "Be brief."}
    assert rows["cap1"]["conversations"][0]["value"] == "<video>\nDescribe the video."
    assert rows["mc1"]["conversations"][0]["value"].startswith("<video>\nWhich way?\nA. left")
    assert rows["oe1"]["conversations"][0]["value"] == "<video>\nWhat happens next?"  # placeholder added
    assert set(dataset.column_names) == {"id", "media_type", "media_path", "media_bytes", "conversations"}
    assert all(r["media_bytes"] is None for r in dataset)  # JSON records name files; datasets cells may hold bytes
    # The collator renders a system turn from the record as the system prompt.
    text, _ = VideoLlavaDataCollator(parts[2]).render(rows["t"])
    assert text == "Be brief. USER: Hi ASSISTANT: yes</s>"


def test_bad_records_and_missing_media_named_or_skipped(tmp_path):
    records = [
        {"id": "ok", "conversations": turns("Hi", "yes")},
        {"id": "gone", "video": "missing.mp4", "conversations": turns("<video>\nQ", "A")},
        {"id": "order", "conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]},
    ]
    path = write_json(tmp_path / "d.json", records)
    with pytest.raises(BadSampleError, match="'gone'.*not found"):
        load_conversation_dataset(path, media_root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    dataset, skipped = load_conversation_dataset(
        path, media_root=str(tmp_path), skip_bad_samples=True, cache_dir=str(tmp_path / "c")
    )
    assert dataset["id"] == ["ok"]
    assert sorted(s.id for s in skipped) == ["gone", "order"]
    with pytest.raises(BadSampleError, match="'order'.*alternate"):
        normalize_record(records[2])


def test_broken_media_in_collator_named_or_skipped(tmp_path, parts):
    _, _, processor = parts
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    bad_video = normalize_record({"id": "bv", "video": str(tmp_path / "broken.mp4"), "conversations": turns("Q", "A")})
    bad_image = normalize_record({"id": "bi", "image": str(tmp_path / "broken.png"), "conversations": turns("Q", "A")})
    good = {"id": "g", "conversations": turns("Hi", "yes")}
    with pytest.raises(BadSampleError, match="'bv'.*broken.mp4"):
        VideoLlavaDataCollator(processor)([bad_video, good])
    with pytest.raises(BadSampleError, match="'bi'.*broken.png"):
        VideoLlavaDataCollator(processor)([bad_image, good])
    collate = VideoLlavaDataCollator(processor, skip_bad_samples=True)
    batch = collate([bad_video, good, bad_image])
    assert batch["input_ids"].shape[0] == 1
    assert collate.stats["bad_media_skipped"] == 2 and sorted(s.id for s in collate.skipped) == ["bi", "bv"]


def test_skip_bad_samples_refills_the_batch(tmp_path, parts):
    """Batch size 1 with a bad sample used to fail ("Every sample of this batch was dropped"); now the collator
    draws a replacement from the training rows, the same one on every run."""
    _, _, processor = parts
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    bad = normalize_record({"id": "bv", "video": str(tmp_path / "broken.mp4"), "conversations": turns("Q", "A")})
    goods = [{"id": f"g{i}", "conversations": turns("Hi", word)} for i, word in enumerate(("yes", "no", "left"))]
    collate = VideoLlavaDataCollator(processor, skip_bad_samples=True)
    collate.refill_from = [bad, *goods]
    batch = collate([bad])
    assert batch["input_ids"].shape[0] == 1 and collate.stats["refilled"] == 1
    assert collate.stats["bad_media_skipped"] == 1 and [s.id for s in collate.skipped] == ["bv"]
    again = VideoLlavaDataCollator(processor, skip_bad_samples=True)
    again.refill_from = [bad, *goods]
    assert torch.equal(again([bad])["input_ids"], batch["input_ids"])  # deterministic replacement
    two = collate([bad, goods[0]])
    assert two["input_ids"].shape[0] == 2  # the batch keeps its size
    assert collate.without_refill()([bad, goods[0]])["input_ids"].shape[0] == 1  # evaluation batches only skip
    collate.refill_from = [bad]
    with pytest.raises(ValueError, match="Every sample of this batch was dropped"):
        collate([bad])  # nothing good to refill from: still a clear error


def test_filter_by_length_drops_or_raises_up_front(tmp_path, parts):
    _, _, processor = parts
    (tmp_path / "v.mp4").write_bytes(b"x")
    records = [
        {"id": "short", "conversations": turns("Hi", "yes")},
        {"id": "video", "video": "v.mp4", "conversations": turns("<video>\nWhat happens?", "left")},
    ]
    dataset, _ = load_conversation_dataset(write_json(tmp_path / "d.json", records), media_root=str(tmp_path),
                                           cache_dir=str(tmp_path / "c"))
    n_short = int(VideoLlavaDataCollator(processor)([records[0]])["attention_mask"].sum())
    collate = VideoLlavaDataCollator(processor, model_max_length=n_short)  # the video row is longer
    kept, dropped = filter_by_length(dataset, collate)
    assert kept["id"] == ["short"] and [s.id for s in dropped] == ["video"]
    assert kept["length"] == [n_short]  # measured without decoding media == what the collator produces
    with pytest.raises(ValueError, match="'video'"):
        filter_by_length(dataset, VideoLlavaDataCollator(processor, model_max_length=n_short, truncation="error"))
    # truncate_text keeps an overlong row whose media and first answer fit, drops one whose media do not.
    cuttable = {"id": "cuttable", "conversations": turns("Hi", "yes", " ".join(["shape"] * 80), "no")}
    dataset, _ = load_conversation_dataset(write_json(tmp_path / "e.json", [*records, cuttable]),
                                           media_root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    kept, dropped = filter_by_length(dataset, VideoLlavaDataCollator(processor, model_max_length=n_short + 10,
                                                                     truncation="truncate_text"))
    assert kept["id"] == ["short", "cuttable"] and [s.id for s in dropped] == ["video"]
    assert kept["length"][1] > n_short + 10


# ------------------------------------------------------------------------------------------------ recipes


def test_recipe_then_command_line_precedence(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: tiny-random\nlearning_rate: 1e-3\nstage: pretrain\ndata_path: [a.json]\n"
                      "warmup_ratio: 0.03\nper_device_train_batch_size: 8\n")
    model_args, data_args, args = parse_args(["--config", str(recipe), "--per_device_train_batch_size", "2",
                                              "--output_dir", str(tmp_path / "o")])
    assert model_args.model_name_or_path == "tiny-random" and data_args.data_path == ["a.json"]
    assert args.learning_rate == pytest.approx(1e-3)  # YAML's "1e-3" string became a float
    assert args.stage == "pretrain" and args.per_device_train_batch_size == 2
    assert args.warmup_steps == pytest.approx(0.03)
    assert args.num_train_epochs == 1 and args.lr_scheduler_type == "cosine" and args.weight_decay == 0
    assert args.model_max_length == 2048 and args.remove_unused_columns is False
    # An explicit flag equal to the dataclass default still overrides the recipe.
    _, _, args = parse_args(["--config", str(recipe), "--learning_rate", "2e-5", "--output_dir", str(tmp_path / "o")])
    assert args.learning_rate == pytest.approx(2e-5)
    recipe.write_text("learnin_rate: 1e-3\n")
    with pytest.raises(ValueError, match="unknown keys.*learnin_rate"):
        load_recipe(recipe)
    with pytest.raises(ValueError, match="stage-2"):
        parse_args(["--stage", "pretrain", "--lora", "true", "--output_dir", str(tmp_path / "o")])


@pytest.mark.parametrize("name, stage, lr", [("pretrain", "pretrain", 1e-3), ("finetune", "finetune", 2e-5),
                                             ("finetune_lora", "finetune", 2e-4)])
def test_shipped_recipes_carry_the_paper_defaults(name, stage, lr, tmp_path):
    root = Path(__file__).resolve().parents[1] / "recipes"
    # --use_cpu: bf16 recipes are for GPUs; on a CPU-only machine TrainingArguments refuses bf16 without it.
    _, data_args, args = parse_args(["--config", str(root / f"{name}.yaml"), "--output_dir", str(tmp_path),
                                     "--use_cpu", "true"])
    assert (args.stage, args.learning_rate) == (stage, pytest.approx(lr))
    assert args.num_train_epochs == 1 and args.lr_scheduler_type == "cosine"
    assert args.warmup_steps == pytest.approx(0.03)
    assert args.weight_decay == 0 and args.model_max_length == 2048 and args.bf16
    assert data_args.prompt_format == ("plain" if stage == "pretrain" else "llava_v1")


@pytest.mark.parametrize("name, kind", [("ddp_cpu", "MULTI_GPU"), ("ddp", "MULTI_GPU"),
                                        ("deepspeed_zero2", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_shipped_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    root = Path(__file__).resolve().parents[1] / "recipes" / "accelerate"
    config = load_config_from_file(str(root / f"{name}.yaml"))
    assert config.distributed_type.value == kind
    if kind == "DEEPSPEED":
        zero = json.loads((root.parents[1] / config.deepspeed_config["deepspeed_config_file"]).read_text())
        assert zero["zero_optimization"]["stage"] == 2
