"""Build small tokenizers for tests and the demo model: a byte-level BPE one with Video-LLaVA's special tokens, and a
Llama-style SentencePiece model (`build_sentencepiece_model`, needs the `sentencepiece` package of the [test] extra).

Real checkpoints use Vicuna's Llama tokenizer with `<image>`, `<video>` and `<pad>` added (ids 32000-32002); this
builder gives the same structure at toy scale: `<unk>`=0, `<s>`=1, `</s>`=2 like Llama, then `<pad>`, `<image>`,
`<video>`, and a BOS is prepended to every encoded text, as Llama's tokenizer does.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<video>"]


def build_bpe_tokenizer(
    corpus: Iterable[str], vocab_size: int = 512, model_max_length: int = 4096, padding_side: str = "left"
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `corpus` (deterministic for the same corpus) and wrap it for Transformers.

    `padding_side="left"` suits batched generation; training collators pad on the right explicitly."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens=["<image>", "<video>"],
        model_max_length=model_max_length,
        padding_side=padding_side,
    )
    return wrapped


def build_sentencepiece_model(corpus: Iterable[str], vocab_size: int = 400) -> bytes:
    """Train a SentencePiece BPE model shaped like Llama's / Vicuna's (unk, bos, eos = 0, 1, 2; byte fallback; dummy
    prefix `▁`; no normalisation) and return its serialised proto, the content of a `tokenizer.model` file.

    Characters absent from `corpus` (e.g. "\n") fall back to byte pieces such as `<0x0A>`, as in Vicuna's."""
    import io

    import sentencepiece

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus)), model_writer=proto, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, add_dummy_prefix=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, hard_vocab_limit=False,
        minloglevel=2, num_threads=1,
    )
    return proto.getvalue()


__all__ = ["build_bpe_tokenizer", "build_sentencepiece_model", "SPECIAL_TOKENS"]
