"""Prompt encoding: the processor's token ids equal the original Video-LLaVA's.

The oracle is a reference encoder written here from the original's documented behaviour
(`tokenizer_image_token`, videollava/mm_utils.py; prompts as videollava/serve/cli.py writes them):

- the prompt holds one `<image>` marker per image and one per video frame (a video is `num_frames` markers);
- it is split at the markers, every chunk is tokenized on its own and only the first chunk keeps its BOS;
- each marker is then replaced by that image's / frame's feature tokens (ours: `<image>` x 16 or `<video>` x 17).

For SentencePiece the chunks are encoded with the `sentencepiece` library itself (a tiny model trained in the test),
as the original's slow Llama tokenizer did: every text segment gets the dummy prefix `▁` with `legacy=True`; with
`legacy=False` only a segment at the start of a chunk does (not one after `</s>`). The processor instead uses
Transformers' LlamaTokenizer converted from the same model, so the reference shares no code with it.
"""

from __future__ import annotations

import numpy as np
import pytest
import sentencepiece as spm  # the [test] extra installs it
import torch

from videollava_hf.models.videollava.processing_videollava import SYSTEM_PROMPT
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer
from videollava_hf.testing.tokenizers import build_sentencepiece_model


FRAMES = 8
TOKENS_PER_FRAME = 17  # tiny towers: 16 patches + CLS (videos keep CLS)
IMAGE_TOKENS = 16  # images drop CLS
SP_CORPUS = [
    SYSTEM_PROMPT,
    "USER: What happens in the video? ASSISTANT: A red circle moves to the left.",
    "USER: What colour is the shape? ASSISTANT: blue. How many shapes are there? Three shapes.",
    "Describe the image in detail. Compare them. Why is this funny? Then what? 0 1 2 3 4 5 6 7 8 9",
]  # no newline: "\n" falls back to the byte piece <0x0A>, as in Vicuna's vocabulary

# ----------------------------------------------------------------------------------------------- tokenizers


@pytest.fixture(scope="module")
def sp_model_dir(tmp_path_factory):
    """A Llama-style SentencePiece BPE model (unk/bos/eos = 0/1/2, byte fallback, dummy prefix), trained here."""
    directory = tmp_path_factory.mktemp("sp")
    (directory / "tokenizer.model").write_bytes(build_sentencepiece_model(SP_CORPUS * 4))
    return directory


def llama_tokenizer(directory, legacy: bool, class_name: str):
    """Transformers' Llama tokenizer on the SentencePiece model, with Video-LLaVA's added tokens (BOS on, as in
    Vicuna's tokenizer_config.json; a bare tokenizer.model gives none in Transformers 5)."""
    import transformers

    tok = getattr(transformers, class_name).from_pretrained(str(directory), legacy=legacy, add_bos_token=True)
    tok.add_special_tokens({"extra_special_tokens": ["<image>", "<video>"], "pad_token": "<pad>"})
    return tok


def sp_chunk_encoder(directory, legacy: bool):
    """text -> ids without BOS, as the original's slow Llama tokenizer encoded one chunk."""
    from sentencepiece import sentencepiece_model_pb2

    proto = (directory / "tokenizer.model").read_bytes()
    with_prefix = spm.SentencePieceProcessor(model_proto=proto)
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(proto)
    model.normalizer_spec.add_dummy_prefix = False
    without_prefix = spm.SentencePieceProcessor(model_proto=model.SerializeToString())
    eos = with_prefix.eos_id()

    def encode(chunk: str) -> list[int]:
        ids: list[int] = []
        for i, segment in enumerate(chunk.split("</s>")):  # </s> is a special token inside the text
            if i > 0:
                ids.append(eos)
            if segment:
                prefixed = legacy or (i == 0)  # non-legacy: no `▁` after a special token
                ids += (with_prefix if prefixed else without_prefix).encode(segment)
        return ids

    return encode


def bpe_chunk_encoder(tok):
    """text -> ids without BOS, straight from the `tokenizers` backend (byte-level BPE)."""
    backend = tok.backend_tokenizer

    def encode(chunk: str) -> list[int]:
        return backend.encode(chunk, add_special_tokens=False).ids if chunk else []

    return encode


# ----------------------------------------------------------------------------------------------- reference


def reference_ids(original_prompt: str, encode_chunk, bos: int, blocks: list[list[int]]) -> list[int]:
    """The original's ids, each marker replaced by its block of feature-token ids."""
    chunks = original_prompt.split("<image>")
    assert len(chunks) == len(blocks) + 1, "one block per marker"
    ids = [bos]  # the first chunk's BOS, the only one kept
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids += blocks[i - 1]
        ids += encode_chunk(chunk)
    return ids


def blocks_for(media: str, image_id: int, video_id: int) -> list[list[int]]:
    """media: a string of 'i' (image) / 'v' (video) in prompt order -> one block per original marker."""
    blocks = []
    for kind in media:
        if kind == "i":
            blocks.append([image_id] * IMAGE_TOKENS)
        else:
            blocks += [[video_id] * TOKENS_PER_FRAME for _ in range(FRAMES)]
    return blocks


SYS = SYSTEM_PROMPT + " "
FRAME_MARKERS = "<image>" * FRAMES
# name -> (our chat messages, add_system_prompt, the prompt as the original writes it, media in prompt order)
CASES = {
    "image": (
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown here?"}]}],
        True, SYS + "USER: <image>\nWhat is shown here? ASSISTANT:", "i",
    ),
    "video_without_system": (
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens in the video?"}]}],
        False, "USER: " + FRAME_MARKERS + "\nWhat happens in the video? ASSISTANT:", "v",
    ),
    "image_and_video": (
        [{"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Compare them."}]}],
        True, SYS + "USER: <image>" + FRAME_MARKERS + "\nCompare them. ASSISTANT:", "iv",
    ),
    "two_images": (
        [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Then what?"}]}],
        False, "USER: <image><image>\nThen what? ASSISTANT:", "ii",
    ),
    "multi_turn": (
        [
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A red circle moves to the left."}]},
            {"role": "user", "content": [{"type": "text", "text": "Why is this funny?"}]},
        ],
        True,
        SYS + "USER: " + FRAME_MARKERS + "\nWhat happens? ASSISTANT: A red circle moves to the left.</s>"
        "USER: Why is this funny? ASSISTANT:",
        "v",
    ),
}


def media_for(kinds: str):
    images = [np.full((32, 32, 3), 40 * i, dtype=np.uint8) for i, k in enumerate(kinds) if k == "i"]
    videos = [np.zeros((FRAMES, 32, 32, 3), dtype=np.uint8) for k in kinds if k == "v"]
    return images, videos


TOKENIZERS = [("sp", True, "LlamaTokenizer"), ("sp", False, "LlamaTokenizer"), ("sp", False, "LlamaTokenizerFast"),
              ("sp", True, "LlamaTokenizerFast"), ("bpe", None, None)]


@pytest.fixture(params=TOKENIZERS, ids=lambda p: p[0] if p[0] == "bpe" else f"{p[2]}-legacy={p[1]}")
def setup(request, sp_model_dir):
    """(processor in the default encoding, chunk encoder for the reference, legacy or None for BPE)."""
    kind, legacy, class_name = request.param
    if kind == "sp":
        tok = llama_tokenizer(sp_model_dir, legacy, class_name)
        encode = sp_chunk_encoder(sp_model_dir, legacy)
    else:
        tok = tiny_tokenizer()
        encode = bpe_chunk_encoder(tok)
    config = tiny_config(tok, num_frames=FRAMES)
    return tiny_processor(config, tok), encode, legacy


def expected(processor, encode, name: str) -> list[int]:
    _, _, original_prompt, kinds = CASES[name]
    blocks = blocks_for(kinds, processor.image_token_id, processor.video_token_id)
    return reference_ids(original_prompt, encode, processor.tokenizer.bos_token_id, blocks)


def our_prompt(processor, name: str) -> str:
    messages, system, _, _ = CASES[name]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                         add_system_prompt=system)


# ----------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(CASES))
def test_ids_equal_the_original_encoding(setup, name):
    processor, encode, _ = setup
    assert processor.prompt_encoding == "original"  # the default
    images, videos = media_for(CASES[name][3])
    ids = processor(text=our_prompt(processor, name), images=images or None, videos=videos or None)["input_ids"]
    want = expected(processor, encode, name)
    assert ids[0].tolist() == want
    # counts always equal the model's features
    assert int((ids == processor.image_token_id).sum()) == CASES[name][3].count("i") * IMAGE_TOKENS
    assert int((ids == processor.video_token_id).sum()) == CASES[name][3].count("v") * FRAMES * TOKENS_PER_FRAME


def test_the_chat_template_writes_the_original_prompt(setup):
    processor, _, _ = setup
    for name, (_, _, original_prompt, _) in CASES.items():
        ours = our_prompt(processor, name)
        # ours writes <video> where the original writes its frames' markers
        assert ours.replace("<video>", FRAME_MARKERS) == original_prompt, name


def test_batched_left_padded_call(setup):
    processor, encode, _ = setup
    names = list(CASES)
    kinds = "".join(CASES[n][3] for n in names)
    images, videos = media_for(kinds)
    out = processor(text=[our_prompt(processor, n) for n in names], images=images, videos=videos, padding=True,
                    padding_side="left")
    ids, mask = out["input_ids"], out["attention_mask"]
    pad = processor.tokenizer.pad_token_id
    for row, name in enumerate(names):
        want = expected(processor, encode, name)
        n_pad = ids.shape[1] - len(want)
        assert ids[row, n_pad:].tolist() == want, name
        assert ids[row, :n_pad].tolist() == [pad] * n_pad
        assert mask[row].tolist() == [0] * n_pad + [1] * len(want)
    assert out["pixel_values"].shape[0] == kinds.count("i") and out["pixel_values_videos"].shape[0] == kinds.count("v")


def test_truncation_padding_and_offsets(setup):
    processor, encode, _ = setup
    name = "multi_turn"
    prompt = our_prompt(processor, name)
    _, videos = media_for("v")
    want = expected(processor, encode, name)
    cut = processor(text=prompt, videos=videos, truncation=True, max_length=len(want) - 3)["input_ids"]
    assert cut[0].tolist() == want[:-3]  # the tokenizer's truncation side (right)
    padded = processor(text=prompt, videos=videos, padding="max_length", max_length=len(want) + 5,
                       padding_side="right", return_tensors="pt")
    assert padded["input_ids"][0, : len(want)].tolist() == want
    assert padded["attention_mask"][0].tolist() == [1] * len(want) + [0] * 5
    multiple = processor(text=prompt, videos=videos, padding=True, pad_to_multiple_of=64)["input_ids"]
    assert multiple.shape[1] % 64 == 0 and multiple.shape[1] >= len(want)
    with pytest.raises(ValueError, match="truncation cut through a <video> placeholder run"):
        processor(text=prompt, videos=videos, truncation=True, max_length=40)
    # offsets point into the expanded prompt: every media token spans its placeholder's characters
    out = processor(text=prompt, videos=videos, return_offsets_mapping=True)
    expanded = processor.expand_placeholders(prompt)
    spans = out["offset_mapping"][0].tolist()
    for token_id, (a, b) in zip(out["input_ids"][0].tolist(), spans):
        if token_id == processor.video_token_id:
            assert expanded[a:b] == "<video>"
    starts = [a for a, b in spans if b > a]
    assert starts == sorted(starts) and spans[-1][1] == len(expanded)


def test_transformers_mode_is_one_pass_and_what_it_changes(setup):
    processor, encode, legacy = setup
    for name in CASES:
        prompt = our_prompt(processor, name)
        images, videos = media_for(CASES[name][3])
        media = {"images": images or None, "videos": videos or None}
        ids = processor(text=prompt, prompt_encoding="transformers", **media)["input_ids"][0].tolist()
        one_pass = processor.tokenizer(processor.expand_placeholders(prompt))["input_ids"]
        assert ids == one_pass, name
        want = expected(processor, encode, name)
        # Every case has one group of placeholders followed by text: with legacy=False one pass writes no "▁"
        # after it, so one id fewer.
        if legacy is False:
            assert len(want) - len(ids) == 1 and ids != want, name
        else:  # BPE and legacy=True: the two encodings agree
            assert ids == want, name


def test_prompt_encoding_is_saved_and_checked(tmp_path, setup):
    from videollava_hf import VideoLlavaProcessor

    processor, _, _ = setup
    processor.prompt_encoding = "transformers"
    processor.save_pretrained(tmp_path)
    assert VideoLlavaProcessor.from_pretrained(tmp_path).prompt_encoding == "transformers"
    with pytest.raises(ValueError, match="prompt_encoding must be one of"):
        processor(text="hi", prompt_encoding="vicuna")
    with pytest.raises(ValueError, match="prompt_encoding='original' does not take"):
        processor(text="hi", prompt_encoding="original", return_overflowing_tokens=True)


def test_text_only_encode_prompts_matches_the_call(setup):
    processor, encode, _ = setup
    prompt = our_prompt(processor, "video_without_system")
    direct = processor.encode_prompts([prompt], return_tensors="pt")["input_ids"]
    assert direct[0].tolist() == expected(processor, encode, "video_without_system")
    assert torch.equal(direct, processor(text=prompt, videos=media_for("v")[1])["input_ids"])


def test_training_collator_uses_the_original_encoding(sp_model_dir):
    """The training collator measures and encodes in the processor's encoding (legacy=False, where the two differ)."""
    from videollava_hf.training import VideoLlavaDataCollator

    tok = llama_tokenizer(sp_model_dir, False, "LlamaTokenizer")
    processor = tiny_processor(tiny_config(tok, num_frames=FRAMES), tok)
    row = {"id": "mt", "video": "v.mp4", "media": np.zeros((FRAMES, 32, 32, 3), dtype=np.uint8),
           "conversations": [{"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": "It moves."},
                             {"from": "human", "value": "Why?"}, {"from": "gpt", "value": "Three shapes."}]}
    batch = VideoLlavaDataCollator(processor)([row])
    original_prompt = (SYS + "USER: " + FRAME_MARKERS + "\nWhat happens? ASSISTANT: It moves.</s>USER: Why? "
                       "ASSISTANT: Three shapes.</s>")
    blocks = blocks_for("v", processor.image_token_id, processor.video_token_id)
    want = reference_ids(original_prompt, sp_chunk_encoder(sp_model_dir, False), tok.bos_token_id, blocks)
    assert batch["input_ids"][0].tolist() == want
    labels = batch["labels"][0]
    assert tok.decode(labels[labels != -100]).replace(" ", "") == "Itmoves.</s>Threeshapes.</s>"


def test_apply_chat_template_tokenized_gives_the_original_ids(setup):
    """Transformers' apply_chat_template(tokenize=True) goes through the same encoding."""
    from PIL import Image

    processor, encode, _ = setup
    messages, system, _, _ = CASES["image"]
    image = Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8))
    content = [{"type": "image", "image": image}, *messages[0]["content"][1:]]
    out = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=True, return_dict=True,
                                        add_generation_prompt=True, return_tensors="pt")
    assert out["input_ids"][0].tolist() == expected(processor, encode, "image")
    assert out["pixel_values"].shape[0] == 1
