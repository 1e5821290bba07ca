"""Convert Transformers' built-in Video-LLaVA (e.g. LanguageBind/Video-LLaVA-7B-hf) into this package's format.

The built-in layout differs from ours only in key prefixes, and its video tower has no temporal attention (the port
dropped it), so the converted model runs with `video_temporal_attention=False`. The key and config rules are the ones
`VideoLlavaForConditionalGeneration.from_pretrained` already uses for such directories
(`videollava_hf.models.videollava.builtin_port`); converting writes them out once, as safetensors with this package's config,
processor and tokenizer, so loading needs no renaming and the folder carries a model card.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..models.videollava.configuration_videollava import VideoLlavaConfig
from .common import (
    ConversionError,
    ConversionOptions,
    ConversionReport,
    IgnoreRule,
    build_processor,
    expected_state_shapes,
    find_weight_files,
    finish_conversion,
    load_tokenizer,
    open_source,
    parse_dtype,
    plan_conversion,
    prepare_output_dir,
    read_shard_shapes,
    write_shards,
)
from ..models.videollava.builtin_port import (
    TRANSFORMERS_KEY_RULES,
    config_from_transformers,
    is_transformers_config,
    rename_transformers_key,
)

# Keys already in our layout pass unchanged (Transformers 5 may save e.g. `model.language_model.*`). Anchored, and
# still checked against the target's key -> shape table like every renamed key.
IDENTITY_PREFIXES: list[str] = [
    r"^model\.language_model\.",
    r"^model\.image_tower\.",
    r"^model\.video_tower\.",
    r"^model\.multi_modal_projector\.",
    r"^lm_head\.",
]

TRANSFORMERS_IGNORED_KEYS: list[IgnoreRule] = [
    IgnoreRule(
        r"^(model\.)?(image|video)_tower\.(vision_model\.)?embeddings\.position_ids$",
        "CLIP's arange(num_positions) buffer, recomputed",
    ),
    IgnoreRule(
        r"^(language_model\.)?model\.(language_model\.)?layers\.\d+\.self_attn\.rotary_emb\.inv_freq$",
        "RoPE inverse frequencies: a buffer recomputed from rope_theta",
    ),
]


def make_transformers_mapper(tied: bool = False) -> Callable[[str], tuple[str | None, str | None]]:
    """Built-in key -> (our key, None) | (None, reason) | (None, None) when no rule applies.

    Renaming uses `transformers_compat.TRANSFORMERS_KEY_RULES` (the rules `from_pretrained` applies), not a copy."""
    ignore = list(TRANSFORMERS_IGNORED_KEYS)
    if tied:
        ignore.append(
            IgnoreRule(r"^(language_model\.)?lm_head\.weight$", "tied to embed_tokens (tie_word_embeddings=true)")
        )
    compiled_ignore = [(re.compile(r.pattern), r.reason) for r in ignore]
    rename_patterns = [re.compile(pattern) for pattern, _ in TRANSFORMERS_KEY_RULES]
    identity = [re.compile(p) for p in IDENTITY_PREFIXES]

    def mapper(key: str) -> tuple[str | None, str | None]:
        for pattern, reason in compiled_ignore:
            if pattern.match(key):
                return None, reason
        if any(p.match(key) for p in rename_patterns):
            return rename_transformers_key(key), None
        if any(p.match(key) for p in identity):
            return key, None
        return None, None

    return mapper


def _load_tokenizer(location: Path, config: VideoLlavaConfig):
    """The built-in checkpoint's tokenizer (every setting kept, see `load_tokenizer`), checked against config.json."""
    tokenizer, added = load_tokenizer(location)
    for name, want in (("<image>", config.image_token_index), ("<video>", config.video_token_index)):
        got = tokenizer.convert_tokens_to_ids(name)
        if got != want:
            raise ConversionError(
                f"The tokenizer maps {name} to {got}, but config.json says {want}; the checkpoint is inconsistent."
            )
    if tokenizer.pad_token is None:
        raise ConversionError(
            "The built-in checkpoint's tokenizer has no pad token (LanguageBind/Video-LLaVA-7B-hf uses <pad>)."
        )
    return tokenizer, added


def convert_transformers_checkpoint(source: str | Path, output_dir: str | Path, **options: Any) -> ConversionReport:
    """Convert a built-in checkpoint (directory or Hub id) to `output_dir`; `verify` compares logits with
    `transformers.VideoLlavaForConditionalGeneration` on a random prompt. Options: `ConversionOptions` (the
    original-only ones of `convert_original_checkpoint` are refused)."""
    opts, others = ConversionOptions.split(options)
    given = sorted(k for k, v in others.items() if v not in (None, False))
    if given:
        raise ConversionError(f"Option(s) {given} only apply to original checkpoints, not to the built-in layout.")
    src = open_source(source, opts)
    if not is_transformers_config(src.config):
        raise ConversionError(
            f"{src.name} has model_type={src.config.get('model_type')!r}, not 'video_llava'; for an original "
            "checkpoint use convert_original_checkpoint (--layout original)."
        )
    config = config_from_transformers(src.config)
    files = find_weight_files(src.directory)
    shard_shapes = {f: read_shard_shapes(f) for f in files}
    plan = plan_conversion(
        shard_shapes, make_transformers_mapper(config.tie_word_embeddings), expected_state_shapes(config)
    )
    tokenizer, settings_added = _load_tokenizer(src.directory, config)
    out = prepare_output_dir(output_dir, opts.overwrite)
    out_dtype = parse_dtype(opts.dtype)
    stats = write_shards(plan, out, dtype=out_dtype, max_shard_size=opts.max_shard_size, progress=opts.progress)
    saved_dtype = out_dtype or stats.source_dtype or torch.float32
    config.dtype = saved_dtype
    config.pad_token_id = tokenizer.pad_token_id
    report = ConversionReport.from_shards(
        "transformers", src.name, out, stats, plan, saved_dtype,
        source_vocab_size=config.text_config.vocab_size, vocab_size=config.text_config.vocab_size,
    )
    # The built-in port preprocesses the Transformers way; keep that so the converted model sees what it saw.
    processor = build_processor(config, tokenizer, resample_mode="transformers")
    verify_dtype = parse_dtype(opts.verify_dtype) or torch.float32
    return finish_conversion(
        report, src, config, processor, opts,
        verify=lambda: verify_transformers_conversion(src.directory, out, dtype=verify_dtype),
        tokenizer_added=settings_added,
    )


@torch.no_grad()
def verify_transformers_conversion(
    source_dir: Path, output_dir: Path, *, dtype: torch.dtype = torch.float32, seed: int = 0
) -> float:
    """Max |logits| difference between the converted model and Transformers' own `VideoLlavaForConditionalGeneration`
    loaded from the source, on a random prompt with one image and one video (two copies of the model in memory)."""
    import transformers

    from ..models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration

    reference = transformers.VideoLlavaForConditionalGeneration.from_pretrained(str(source_dir), dtype=dtype).eval()
    model = VideoLlavaForConditionalGeneration.from_pretrained(str(output_dir), dtype=dtype).eval()
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    vocab = config.text_config.vocab_size
    special = {config.image_token_index, config.video_token_index}

    def text(n: int) -> list[int]:
        ids = torch.randint(3, vocab, (n,), generator=generator).tolist()
        return [3 if i in special else i for i in ids]  # keep placeholders only where features go

    bos = config.text_config.bos_token_id
    ids = [
        *([bos] if bos is not None else []),
        *text(5),
        *[config.image_token_index] * config.image_seq_length,
        *text(4),
    ]
    ids += [config.video_token_index] * config.video_seq_length + text(3)
    side = config.vision_config.image_size
    image = torch.randn(1, 3, side, side, generator=generator, dtype=dtype)
    video = torch.randn(1, config.num_frames, 3, side, side, generator=generator, dtype=dtype)
    input_ids = torch.tensor([ids])
    ours = model(input_ids=input_ids, pixel_values=image, pixel_values_videos=video).logits
    theirs = reference(input_ids=input_ids, pixel_values_images=image, pixel_values_videos=video).logits
    return float((ours.float() - theirs.float()).abs().max())


__all__ = [
    "IDENTITY_PREFIXES",
    "TRANSFORMERS_IGNORED_KEYS",
    "convert_transformers_checkpoint",
    "make_transformers_mapper",
    "verify_transformers_conversion",
]
