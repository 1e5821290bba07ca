"""Conversion keeps the source's tokenizer: every setting round-trips (`legacy`, BOS / EOS, padding side, maximum
length, special tokens), the report says what was added, converted folders load with a plain `AutoTokenizer`
without a remote-code prompt, and the model card names the real source, base model and licence.

The sources are tiny original-layout checkpoints (the builders of test_conversion) with a Llama SentencePiece
tokenizer trained here and a hand-written tokenizer_config.json, as Vicuna's checkpoints ship them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_conversion import (
    TEXT,
    convert_tiny_original,
    original_config_json,
    our_shapes,
    random_state,
    to_original_key,
    tower_config_json,
    write_bin_shards,
)
from transformers import AutoTokenizer, LlamaTokenizer

from videollava_hf.testing.tokenizers import build_sentencepiece_model


CORPUS = [
    "A chat between a curious human and an artificial intelligence assistant.",
    "USER: What happens in the video? ASSISTANT: A red circle moves to the left.",
    "USER: How many shapes are there? ASSISTANT: Three shapes. 0 1 2 3 4 5 6 7 8 9",
] * 4
SAMPLES = ["USER: hi ASSISTANT: A red circle.</s>USER: Why? ASSISTANT:", "\nWhat happens?", "hi"]
VICUNA_CONFIG = {  # lmsys/vicuna-7b-v1.5's tokenizer_config.json, minus the AddedToken dicts: no `legacy`
    "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "clean_up_tokenization_spaces": False, "model_max_length": 2048, "pad_token": None, "padding_side": "right",
    "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
}


def build_source(directory, tokenizer_config: dict) -> None:
    """An original-layout checkpoint whose tokenizer is tokenizer.model + `tokenizer_config`."""
    directory.mkdir(parents=True)
    (directory / "tokenizer.model").write_bytes(build_sentencepiece_model(CORPUS))
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    vocab = len(AutoTokenizer.from_pretrained(str(directory)))
    state = random_state({to_original_key(k): s for k, s in our_shapes(vocab).items()}, seed=0)
    write_bin_shards(directory, state)
    (directory / "config.json").write_text(json.dumps(original_config_json(vocab)))
    for name, temporal in (("image_tower", False), ("video_tower", True)):
        (directory / name).mkdir()
        (directory / name / "config.json").write_text(json.dumps(tower_config_json(temporal)))


@pytest.fixture(scope="module")
def vicuna_conversion(tmp_path_factory):
    root = tmp_path_factory.mktemp("vicuna")
    build_source(root / "src", VICUNA_CONFIG)
    report = convert_tiny_original(root / "src", root / "out")
    return root / "src", root / "out", report


@pytest.mark.parametrize("stated,separate", [
    ({}, False),  # Vicuna's: nothing about legacy -> legacy=True is added
    ({}, True),  # the same tokenizer given as its own folder (--tokenizer), loaded as a LlamaTokenizer
    ({"legacy": False, "add_eos_token": True, "padding_side": "left", "model_max_length": 4096}, False),
    ({"legacy": True, "add_bos_token": False}, True),
])
def test_tokenizer_settings_round_trip(tmp_path, stated, separate):
    source = {**VICUNA_CONFIG, **stated}
    build_source(tmp_path / "src", source)
    tokenizer_dir = tmp_path / "src"
    if separate:
        tokenizer_dir = tmp_path / "vicuna"
        tokenizer_dir.mkdir()
        for name in ("tokenizer.model", "tokenizer_config.json"):
            (tokenizer_dir / name).write_bytes((tmp_path / "src" / name).read_bytes())
    report = convert_tiny_original(tmp_path / "src", tmp_path / "out", tokenizer=tokenizer_dir, model_card=False)
    legacy = source.get("legacy", True)  # what Transformers 4.x (the original's) read a missing value as
    # The source as the original's Transformers read it, and the converted folder as anyone loads it.
    reference = LlamaTokenizer.from_pretrained(str(tokenizer_dir), legacy=legacy)
    converted = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert converted.padding_side == source["padding_side"]
    assert converted.model_max_length == source["model_max_length"]
    for text in SAMPLES:  # same ids, so BOS / EOS / dummy-prefix behaviour is kept
        assert converted(text)["input_ids"] == reference(text)["input_ids"], text
    ids = converted("hi")["input_ids"]
    assert (ids[0] == converted.bos_token_id) is source["add_bos_token"]
    assert (ids[-1] == converted.eos_token_id) is source["add_eos_token"]
    assert (converted.bos_token, converted.eos_token, converted.unk_token) == ("<s>", "</s>", "<unk>")
    assert converted.pad_token == "<pad>" and report.added_tokens["<pad>"] == converted.pad_token_id
    # the report says what was added, and only that
    assert set(report.tokenizer_settings_added) == ({"legacy"} if "legacy" not in stated else set())
    assert report.tokenizer_settings["legacy"] is legacy
    assert ("added legacy" in report.summary()) is ("legacy" not in stated)
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["legacy"] is legacy


def test_legacy_matters_after_end_of_turn(vicuna_conversion):
    """Without the added legacy=True, "</s>USER" in multi-turn prompts would tokenize differently."""
    src, out, _ = vicuna_conversion
    text = SAMPLES[0]
    converted = AutoTokenizer.from_pretrained(str(out))
    plain = LlamaTokenizer.from_pretrained(str(src))  # Transformers 5 reads the missing legacy as False
    assert plain.legacy is False and converted(text)["input_ids"] != plain(text)["input_ids"]


def test_converted_folder_loads_with_plain_auto_tokenizer(vicuna_conversion, tmp_path):
    from unittest import mock

    _, out, _ = vicuna_conversion
    assert "auto_map" not in json.loads((out / "tokenizer_config.json").read_text())
    assert "auto_map" in json.loads((out / "processor_config.json").read_text())  # remote code stays offered
    # With the package imported (as here): a plain call, and no question asked (`input` would be the prompt).
    with mock.patch("builtins.input", side_effect=AssertionError("asked about remote code")):
        tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.convert_tokens_to_ids("<video>") == json.loads((out / "config.json").read_text())[
        "video_token_index"]
    # Without the package, config.json's AutoConfig entry (needed for trust_remote_code loading) is what would ask;
    # trust_remote_code=False loads the tokenizer without asking.
    code = (
        "from transformers import AutoTokenizer\n"
        f"tok = AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=False)\n"
        "print('loaded', len(tok))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                            stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded" in result.stdout and "Do you wish to run the custom code" not in result.stdout + result.stderr


def test_card_names_the_real_source_and_licence(vicuna_conversion, tmp_path):
    from videollava_hf.conversion.modelcard import write_model_card

    src, out, report = vicuna_conversion
    card = (out / "README.md").read_text()
    # A local folder with no --base-model: nothing is claimed about Vicuna or Llama 2
    assert "license: other" in card and "Vicuna" not in card and "Llama 2 Community License" not in card
    assert f"`{src}`" in card  # the source it was converted from
    assert f"Llama language model, {TEXT['num_hidden_layers']} layers, hidden size {TEXT['hidden_size']}" in card
    assert "tokenizer setting added: `legacy=True`" in card and "padding_side='right'" in card
    # The released weights: the card says Vicuna-7B v1.5 and the Llama 2 licence
    write_model_card(tmp_path, source="original", base_model="LanguageBind/Video-LLaVA-7B", report=report)
    card = (tmp_path / "README.md").read_text()
    assert "license: llama2" in card and "Vicuna-7B v1.5" in card and "Llama 2 Community License" in card
    write_model_card(tmp_path, source="original", license="mit", report=report)
    assert "license: mit" in (tmp_path / "README.md").read_text()


def test_builtin_conversion_keeps_padding_side_and_length(tmp_path):
    """The built-in converter shares the same tokenizer path: the source's settings survive."""
    import torch
    import transformers

    from videollava_hf.conversion.builtin import convert_transformers_checkpoint
    from videollava_hf.testing.tiny import tiny_config, tiny_tokenizer

    tok = tiny_tokenizer()
    tok.padding_side, tok.model_max_length = "right", 1234
    ours = tiny_config(tok)
    config = transformers.VideoLlavaConfig(
        vision_config={**ours.vision_config.to_dict(), "model_type": "clip_vision_model"},
        text_config=ours.text_config.to_dict(), image_token_index=ours.image_token_index,
        video_token_index=ours.video_token_index,
    )
    torch.manual_seed(0)
    src = tmp_path / "src"
    transformers.VideoLlavaForConditionalGeneration(config).save_pretrained(src)
    tok.save_pretrained(src)
    report = convert_transformers_checkpoint(src, tmp_path / "out", progress=False)
    converted = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert (converted.padding_side, converted.model_max_length) == ("right", 1234)
    assert report.tokenizer_settings_added == {}  # a byte-level BPE tokenizer has no `legacy` to add
    assert "license: other" in (tmp_path / "out" / "README.md").read_text()
