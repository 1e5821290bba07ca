"""Build a small byte-level BPE tokenizer with Video-LLaVA's special tokens (for tests and the demo model).

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


__all__ = ["build_bpe_tokenizer", "SPECIAL_TOKENS"]
