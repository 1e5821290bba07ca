"""`VideoLlavaDataCollator`: conversation records -> a right-padded training batch with masked labels.

What it guarantees, per batch:

- Prompts are rendered with the processor's chat template (the original llava_v1 format,
  "{system} USER: <video>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>") and encoded by the processor
  itself, which expands every placeholder to the exact number of media tokens and preprocesses the media.
- Labels are -100 everywhere except the assistant answers; each answer's closing `</s>` is a label. The mask is
  built from the template, not guessed from token ids: each assistant turn's character span is found by rendering
  the conversation turn by turn (the text up to "ASSISTANT:" versus the text through the answer's `</s>`), and a
  token is a label when its character offsets (one tokenisation of the whole prompt, `return_offsets_mapping`)
  lie inside such a span. Placeholder tokens and padding are always -100 (padding is found from the attention
  mask, never by comparing with the pad id, which may equal a real token id).
- Padding is on the right (`padding_side="right"`), whatever the tokenizer's default for generation is.
- A sample longer than `model_max_length` is never cut inside a placeholder run: `truncation="drop"` drops it
  (counted in `stats["overlong_dropped"]` and logged with its id), `"error"` raises, `"truncate_text"` cuts text
  after the media (and drops the sample if the media themselves do not fit or no answer token would remain).
- Image-only, video-only and text-only samples mix freely: `pixel_values` holds the batch's images in order,
  `pixel_values_videos` its videos in order; a key is absent when the batch has no such media.
- Broken media raise a `BadSampleError` naming the record, or with `skip_bad_samples=True` are skipped and counted
  (`stats["bad_media_skipped"]`, `skipped` keeps ids and reasons). Counters live in the process that runs the
  collator: with `dataloader_num_workers > 0` each worker keeps its own.

`prompt_format="plain"` is the original stage-1 (pretraining) format: "<video>{caption}\\n" with only the caption
and its newline as labels.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .data import (
    BadSampleError,
    MediaRoots,
    PLACEHOLDERS,
    SkippedSample,
    is_normalized,
    load_media,
    normalize_record,
)

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
TRUNCATION_POLICIES = ("drop", "error", "truncate_text")
PROMPT_FORMATS = ("llava_v1", "plain")
_ROLE_OF = {"human": "user", "gpt": "assistant", "system": "system"}


@dataclass
class PreparedSample:
    """A rendered sample before media decoding.

    text: the prompt with one placeholder per media item (not expanded).
    spans: character spans [start, end) of the assistant answers in `text` (each ends after its `</s>`).
    num_tokens: token count once placeholders are expanded (what the model sees).
    keep_tokens: how many tokens survive `truncate_text` (== num_tokens when nothing is cut).
    """

    row: Mapping[str, Any]
    text: str
    spans: list[tuple[int, int]]
    num_tokens: int
    keep_tokens: int


class VideoLlavaDataCollator:
    r"""Collate normalised conversation rows (see `videollava_hf.training.data`) into model inputs with labels.

    Args:
        processor ([`VideoLlavaHfProcessor`]): tokenizer, chat template, image and video preprocessing.
        model_max_length (`int`): longest sequence in tokens, media tokens included (2048 in the paper).
        truncation (`"drop"` | `"error"` | `"truncate_text"`): what to do with longer samples (module docstring).
        skip_bad_samples (`bool`): skip and count samples whose media cannot be decoded instead of raising.
        num_frames (`int`, *optional*): frames sampled per video; defaults to the processor's video processor.
        prompt_format (`"llava_v1"` | `"plain"`): conversation template (stage 2) or caption-only (stage 1).
        add_system_prompt (`bool`): start llava_v1 prompts with Vicuna's system prompt, as the original training.
        pad_images_to_square (`bool`): pad images to a square with the mean colour first (LLaVA's "pad" aspect
            mode, used by Video-LLaVA's stage 2).
        media_roots ([`MediaRoots`], *optional*): resolves relative paths of raw (not normalised) records.
    """

    def __init__(
        self,
        processor,
        *,
        model_max_length: int = 2048,
        truncation: str = "drop",
        skip_bad_samples: bool = False,
        num_frames: int | None = None,
        prompt_format: str = "llava_v1",
        add_system_prompt: bool = True,
        pad_images_to_square: bool = False,
        media_roots: MediaRoots | None = None,
    ) -> None:
        if truncation not in TRUNCATION_POLICIES:
            raise ValueError(f"truncation must be one of {TRUNCATION_POLICIES}, got {truncation!r}.")
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}.")
        if not isinstance(model_max_length, int) or model_max_length < 1:
            raise ValueError(f"model_max_length must be a positive int, got {model_max_length!r}.")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.model_max_length = model_max_length
        self.truncation = truncation
        self.skip_bad_samples = skip_bad_samples
        self.num_frames = int(num_frames or processor.video_processor.num_frames)
        self.prompt_format = prompt_format
        self.add_system_prompt = add_system_prompt
        self.pad_images_to_square = pad_images_to_square
        self.media_roots = media_roots or MediaRoots()
        self.placeholder_ids = {processor.image_token_id, processor.video_token_id}
        # Tokens one placeholder becomes after expansion.
        self.run_length = {
            processor.image_token_id: processor.image_seq_length,
            processor.video_token_id: processor.video_seq_length(self.num_frames),
        }
        self.stats: Counter = Counter()
        self.skipped: list[SkippedSample] = []
        # With skip_bad_samples: rows (e.g. the training set) that replace skipped samples, so batches keep their
        # size (train() sets it to the training set; see `_refill`).
        self.refill_from: Sequence[Mapping[str, Any]] | None = None
        self._bad_ids: set[str] = set()

    # --- rendering -----------------------------------------------------------------------------------------------
    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=generation_prompt,
            add_system_prompt=self.add_system_prompt,
        )

    def render(self, row: Mapping[str, Any]) -> tuple[str, list[tuple[int, int]]]:
        """-> (prompt text with placeholders, character spans of the assistant answers)."""
        turns = row["conversations"]
        if self.prompt_format == "plain":
            return self._render_plain(row)
        messages = [{"role": _ROLE_OF[t["from"]], "content": t["value"]} for t in turns]
        full = self._render(messages, generation_prompt=False)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            # The text before the answer is the conversation so far plus the generation prompt "ASSISTANT:";
            # the text through the answer ends with its "</s>". Both must be prefixes of the full prompt.
            before = self._render(messages[:i], generation_prompt=True)
            through = self._render(messages[: i + 1], generation_prompt=False)
            if not (full.startswith(before) and full.startswith(through) and len(before) < len(through)):
                raise ValueError(
                    f"Record {row['id']!r}: the chat template does not render turn by turn as prefixes of the whole "
                    "conversation, so answer spans cannot be located. Use the processor's default (llava_v1) template."
                )
            spans.append((len(before), len(through)))
        return full, spans

    def _render_plain(self, row: Mapping[str, Any]) -> tuple[str, list[tuple[int, int]]]:
        turns = [t for t in row["conversations"] if t["from"] != "system"]
        if len(turns) != 2:
            raise BadSampleError(str(row["id"]), "prompt_format='plain' takes exactly one question/answer pair")
        placeholder = PLACEHOLDERS[row["media_type"]] if row["media_type"] else ""
        text = f"{placeholder}{turns[1]['value']}\n"
        return text, [(len(placeholder), len(text))]

    # --- lengths and truncation ----------------------------------------------------------------------------------
    def _expanded_positions(self, ids: Sequence[int]) -> tuple[torch.Tensor, int]:
        """Position of each token after placeholder expansion, and the expanded length."""
        extra = torch.tensor([self.run_length.get(t, 1) - 1 if t in self.placeholder_ids else 0 for t in ids])
        positions = torch.arange(len(ids)) + torch.cumsum(extra, 0) - extra  # exclusive cumulative sum
        return positions, int(len(ids) + extra.sum())

    def prepare(self, row: Mapping[str, Any]) -> PreparedSample:
        """Render and measure one normalised row (no media decoding)."""
        text, spans = self.render(row)
        # Measured in the processor's prompt encoding, so the lengths agree with what `_encode` gets.
        enc = self.processor.encode_prompts(text, expand=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"][0], enc["offset_mapping"][0]
        positions, total = self._expanded_positions(ids)
        keep = total
        if total > self.model_max_length and self.truncation == "truncate_text":
            keep = self._truncated_length(ids, offsets, spans, positions)
        return PreparedSample(row, text, spans, total, keep)

    def _truncated_length(self, ids, offsets, spans, positions: torch.Tensor) -> int:
        """Tokens kept by truncate_text, or 0 when the media do not fit or no answer token would remain."""
        limit = self.model_max_length
        media_end = max(
            (int(positions[j]) + self.run_length[t] for j, t in enumerate(ids) if t in self.placeholder_ids),
            default=0,
        )
        answer_starts = [int(positions[j]) for j, o in enumerate(offsets) if _in_spans(o, spans)]
        if media_end > limit or not answer_starts or min(answer_starts) >= limit:
            return 0
        return limit

    def sample_length(self, row: Mapping[str, Any]) -> int:
        """Tokens the model would see for `row` (placeholders expanded), before any truncation."""
        return self.prepare(self._normalized(row, 0)).num_tokens

    def _check_length(self, sample: PreparedSample) -> PreparedSample | None:
        """Apply the truncation policy; None means the sample is dropped."""
        if sample.num_tokens <= self.model_max_length:
            return sample
        record_id = str(sample.row["id"])
        if self.truncation == "error":
            raise ValueError(
                f"Record {record_id!r} has {sample.num_tokens} tokens (media tokens included), more than "
                f"model_max_length={self.model_max_length}. Media placeholders are never truncated: raise "
                "model_max_length, shorten the conversation, or use truncation='drop' / 'truncate_text'."
            )
        if self.truncation == "truncate_text" and sample.keep_tokens:
            self.stats["truncated"] += 1
            return sample
        reason = "overlong_dropped" if self.truncation == "drop" else "no_room_dropped"
        self._skip(record_id, reason, f"{sample.num_tokens} tokens > model_max_length={self.model_max_length}")
        return None

    def _skip(self, record_id: str, counter: str, reason: str) -> None:
        self._bad_ids.add(record_id)
        self.stats[counter] += 1
        self.skipped.append(SkippedSample(record_id, reason))
        logger.warning("Skipping record %r: %s", record_id, reason)

    # --- media ---------------------------------------------------------------------------------------------------
    def _decode(self, sample: PreparedSample):
        """-> decoded media, or None (text-only); False when the sample was skipped as bad."""
        try:
            return load_media(sample.row, self.num_frames)
        except BadSampleError as err:
            if not self.skip_bad_samples:
                raise
            self._skip(err.record_id, "bad_media_skipped", str(err.problem))
            return False

    # --- batch ---------------------------------------------------------------------------------------------------
    def _normalized(self, row: Mapping[str, Any], index: int) -> Mapping[str, Any]:
        if is_normalized(row):
            return row
        out = normalize_record(row, self.media_roots, default_id=f"batch-item-{index}")
        if row.get("media") is not None:
            out["media"] = row["media"]
        return out

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        self.stats["samples_seen"] += len(rows)
        kept = [item for i, row in enumerate(rows) if (item := self._keep(row, i)) is not None]
        if self.skip_bad_samples and self.refill_from is not None and len(kept) < len(rows):
            kept += self._refill(rows, len(rows) - len(kept))
        if not kept:
            ids = [str(r.get("id")) for r in rows]
            raise ValueError(
                f"Every sample of this batch was dropped ({ids}); see the warnings above. Filter the dataset first "
                "(videollava_hf.training.filter_by_length) or fix the media, so no batch ends up empty."
            )
        return self._encode(kept)

    def _keep(self, row: Mapping[str, Any], index: int) -> tuple[PreparedSample, Any] | None:
        """(sample, decoded media) of one row, or None when it was dropped (too long) or skipped (bad media)."""
        sample = self._check_length(self.prepare(self._normalized(row, index)))
        if sample is None:
            return None
        media = self._decode(sample)
        return None if media is False else (sample, media)

    def _refill(self, rows: Sequence[Mapping[str, Any]], missing: int) -> list[tuple[PreparedSample, Any]]:
        """Up to `missing` replacement samples from `refill_from`, drawn with a seed made of the batch's ids (the
        same batch gets the same replacements on every run), skipping rows already found bad or in the batch."""
        import random

        source = self.refill_from
        taken = {str(r.get("id")) for r in rows}
        rng = random.Random("|".join(sorted(taken)))
        found: list[tuple[PreparedSample, Any]] = []
        for index in rng.sample(range(len(source)), min(len(source), max(8, 4 * missing))):
            if len(found) == missing:
                break
            row = source[index]
            record_id = str(row.get("id"))
            if record_id in taken or record_id in self._bad_ids:
                continue
            taken.add(record_id)
            item = self._keep(row, index)
            if item is not None:
                found.append(item)
                self.stats["refilled"] += 1
        return found

    def without_refill(self) -> VideoLlavaDataCollator:
        """A copy that only skips (for evaluation batches, which must not borrow training rows)."""
        import copy

        clone = copy.copy(self)
        clone.refill_from = None
        return clone

    def _encode(self, kept: list[tuple[PreparedSample, Any]]) -> dict[str, torch.Tensor]:
        samples = [s for s, _ in kept]
        images = [m for s, m in kept if s.row["media_type"] == "image"]
        videos = [m for s, m in kept if s.row["media_type"] == "video"]
        truncating = any(s.keep_tokens < s.num_tokens for s in samples)
        kwargs: dict[str, Any] = {}
        if videos:
            kwargs["num_frames"] = self.num_frames
        if images and self.pad_images_to_square:
            kwargs["do_pad_to_square"] = True
        batch = self.processor(
            text=[s.text for s in samples],
            images=images or None,
            videos=videos or None,
            padding="longest",
            padding_side="right",
            truncation=True if truncating else None,
            max_length=self.model_max_length if truncating else None,
            return_offsets_mapping=True,
            return_tensors="pt",
            **kwargs,
        )
        offsets = batch.pop("offset_mapping")  # (B, S, 2) character offsets in the expanded prompts
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        self._check_lengths(samples, attention_mask)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for b, sample in enumerate(samples):
            answer = self._answer_mask(sample, offsets[b]) & attention_mask[b].bool()
            labels[b] = torch.where(answer, input_ids[b], labels[b])
        for token_id in self.placeholder_ids:  # defensive: media tokens are never targets
            labels[input_ids == token_id] = IGNORE_INDEX
        out = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        for key in ("pixel_values", "pixel_values_videos"):
            if key in batch:
                out[key] = batch[key]
        return out

    def _answer_mask(self, sample: PreparedSample, offsets: torch.Tensor) -> torch.Tensor:
        """(S,) bool: tokens whose characters lie inside an answer span (spans moved to expanded-text positions)."""
        expand = self.processor.expand_placeholders
        start, end = offsets[:, 0], offsets[:, 1]
        mask = torch.zeros(offsets.shape[0], dtype=torch.bool)
        for a, b in sample.spans:
            a_exp = len(expand(sample.text[:a], self.num_frames))
            b_exp = len(expand(sample.text[:b], self.num_frames))
            mask |= (start >= a_exp) & (end <= b_exp) & (end > start)
        return mask

    def _check_lengths(self, samples: list[PreparedSample], attention_mask: torch.Tensor) -> None:
        """The processor's tokenisation must agree with the measured lengths used for the truncation policy."""
        got = attention_mask.sum(-1).tolist()
        for sample, n in zip(samples, got):
            want = min(sample.num_tokens, sample.keep_tokens)
            if n != want:
                raise RuntimeError(
                    f"Record {sample.row['id']!r}: the processor produced {n} tokens but {want} were measured. "
                    "The tokenizer must split placeholders as single special tokens and truncate on the right."
                )


def _in_spans(offset: Sequence[int], spans: Sequence[tuple[int, int]]) -> bool:
    start, end = offset
    return end > start and any(a <= start and end <= b for a, b in spans)


def _measure(row: Mapping[str, Any], collator: VideoLlavaDataCollator) -> dict[str, int]:
    sample = collator.prepare(collator._normalized(row, 0))
    return {"length": sample.num_tokens, "keep": sample.keep_tokens}


def filter_by_length(dataset, collator: VideoLlavaDataCollator, num_proc: int | None = None):
    """Measure every row (text only, no media decoding) into a `length` column and apply the collator's
    truncation policy up front, so no batch loses samples during training.

    Returns `(dataset, skipped)`; with `truncation="error"` an overlong row raises here, before training starts."""
    measured = dataset.map(_measure, fn_kwargs={"collator": collator}, num_proc=num_proc, desc="measuring samples")
    limit = collator.model_max_length
    lengths, keeps = measured["length"], measured["keep"]
    # truncate_text keeps an overlong row when its media and part of an answer fit (keep > 0).
    cuttable = collator.truncation == "truncate_text"
    over = [i for i, (n, k) in enumerate(zip(lengths, keeps)) if n > limit and not (cuttable and k)]
    if over and collator.truncation == "error":
        i = over[0]
        raise ValueError(
            f"Record {measured[i]['id']!r} has {lengths[i]} tokens (media tokens included), more than model_max_length="
            f"{limit} ({len(over)} such record(s)). Raise model_max_length, or use truncation='drop' or "
            "'truncate_text'."
        )
    skipped = [SkippedSample(measured[i]["id"], f"{lengths[i]} tokens > model_max_length={limit}") for i in over]
    if skipped:
        dropped = set(over)
        measured = measured.filter(lambda _, i: i not in dropped, with_indices=True)
    return measured.remove_columns("keep"), skipped


__all__ = [
    "IGNORE_INDEX",
    "PROMPT_FORMATS",
    "PreparedSample",
    "TRUNCATION_POLICIES",
    "VideoLlavaDataCollator",
    "filter_by_length",
]
