"""VideoLlavaHfProcessor: tokenizer + image processor + video processor, placeholder expansion, chat template.

Each `<image>` in the text becomes `image_seq_length` image tokens (256) and each `<video>` becomes
`num_frames x tokens_per_frame` video tokens (8 x 257 = 2056), computed with the same functions the model's config
uses (`image_token_count`, `video_token_count`), so prompt and features always agree.

Prompt encoding (`prompt_encoding`, a processor setting saved in processor_config.json, or per call):

- `"original"` (default; the released weights were trained with it): as the original's `tokenizer_image_token`,
  the prompt is split at the placeholders and every text chunk is tokenized on its own, keeping the BOS of the first
  chunk only. A video takes the place of its frames (the original writes one `<image>` marker per frame, with empty
  text between them). With a SentencePiece tokenizer each chunk after a placeholder therefore starts with the
  dummy-prefix piece `▁`, whatever `legacy` says.
- `"transformers"`: the prompt with placeholders expanded is tokenized in one pass, as Transformers' built-in
  VideoLlavaProcessor does (no `▁` after a placeholder when `legacy=False`).

See docs/architecture.md ("Prompt encoding") for what the difference does to answers.
"""

from __future__ import annotations

import itertools
import os
import re

from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.video_processing_utils import VideoProcessorMixin

from .configuration_videollava import (
    hub_kwargs,
    check_pooling,
    image_token_count,
    max_frames_for_budget,
    pooling_options,
    video_token_count,
)
from .export import auto_classes
from .image_processing_videollava import STEP_KEYS
from .video_processing_videollava import FRAME_POLICY_KEYS, READER_KEYS

PROMPT_ENCODINGS = ("original", "transformers")
# Tokenizer keywords the "original" encoding implements itself (it pads and truncates the assembled ids).
_ORIGINAL_TOKENIZER_KWARGS = ("return_attention_mask", "return_offsets_mapping", "pad_to_multiple_of", "verbose")


def _check_prompt_encoding(mode: str) -> str:
    if mode not in PROMPT_ENCODINGS:
        raise ValueError(
            f"prompt_encoding must be one of {PROMPT_ENCODINGS}, got {mode!r}: 'original' reproduces the original "
            "Video-LLaVA's token ids (the weights were trained with them), 'transformers' the built-in port's."
        )
    return mode


def _known_init_kwargs(cls, saved: dict) -> dict:
    """The entries of a saved config that `cls.__init__` takes by name (drops auto_map, *_type, legacy keys)."""
    import inspect

    names = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    return {k: v for k, v in saved.items() if k in names}


SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

# The original llava_v1 conversation format (Video-LLaVA's inference template):
#   "{system} USER: <video>\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT:"
# `add_system_prompt=False` gives the built-in docs' prompt "USER: <video>\n{q} ASSISTANT:".
# A user turn's media placeholders come first, joined with nothing and followed by one "\n", then its text: the
# original writes `''.join(placeholders) + '\n' + question` (serve/cli.py), e.g. "<image><video>\nCompare them.".
# `{% generation %}` marks each assistant reply: " {answer}</s>", all that follows "ASSISTANT:", the original's
# training target (the stop included), so `apply_chat_template(..., return_assistant_tokens_mask=True)` and TRL's
# `assistant_only_loss=True` work.
CHAT_TEMPLATE = """\
{%- set ns = namespace(system='SYSTEM') -%}
{%- if add_system_prompt is defined and not add_system_prompt -%}{%- set ns.system = '' -%}{%- endif -%}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}{%- set ns.system = messages[0]['content'] -%}
    {%- else -%}{%- set ns.system = messages[0]['content'] | selectattr('type', 'equalto', 'text')
        | map(attribute='text') | join(' ') -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}{%- set loop_messages = messages -%}{%- endif -%}
{%- if ns.system -%}{{ ns.system + ' ' }}{%- endif -%}
{%- for message in loop_messages -%}
    {%- if message['role'] == 'user' -%}{{ 'USER: ' }}
    {%- elif message['role'] == 'assistant' -%}{{ 'ASSISTANT:' }}
    {%- else -%}{{ raise_exception('Video-LLaVA chats have user and assistant turns (and one leading system '
        + 'message); got role ' + message['role']) }}
    {%- endif -%}
    {%- set rendered -%}
    {%- if message['content'] is string -%}{{ message['content'] }}
    {%- else -%}
        {%- set media = message['content'] | selectattr('type', 'in', ['image', 'video'])
            | map(attribute='type') | list -%}
        {%- if media -%}{{ '<' + media | join('><') + '>\\n' }}{%- endif -%}
        {{- message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -}}
    {%- endif -%}
    {%- endset -%}
    {%- if message['role'] == 'user' -%}{{ rendered + ' ' }}
    {%- else -%}{%- generation -%}{{ ' ' + rendered + '</s>' }}{%- endgeneration -%}{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}
""".replace("SYSTEM", SYSTEM_PROMPT.replace("'", "\\'"))


# Options of `__call__` that `apply_chat_template` also takes by name (they are not chat-template variables).
CALL_OPTIONS = frozenset(FRAME_POLICY_KEYS) | {
    "video_pooling", "video_pool_stride", "video_slowfast_every", "add_timestamps", "timeout", "limits",
    "do_pad_to_square", "padding", "padding_side", "truncation", "max_length", "prompt_encoding",
}


def group_per_sample(videos, text, video_token: str):
    """Videos as Transformers' `apply_chat_template` passes them, one list per conversation
    (`[[v1], [v2, v3]]`), -> the flat list in prompt order (`[v1, v2, v3]`) that the video processor takes.

    Only when the nesting is unambiguous: `text` is a batch of N prompts, `videos` a list of N lists and list i holds
    exactly as many entries as prompt i has `<video>` placeholders. Anything else is returned unchanged (a list of
    frames is one video, a list of videos is one per placeholder)."""
    if text is None or not isinstance(videos, (list, tuple)):
        return videos
    texts = [text] if isinstance(text, str) else list(text)
    if len(videos) != len(texts) or not all(isinstance(group, (list, tuple)) for group in videos):
        return videos
    if not all(isinstance(t, str) and len(group) == t.count(video_token) for t, group in zip(texts, videos)):
        return videos
    flat = [video for group in videos for video in group]
    return flat or None


def _none_if_empty(value):
    return None if isinstance(value, (list, tuple)) and len(value) == 0 else value


def timestamp_sentence(metadata) -> str:
    """The LLaVA-Video style time instruction built from the reader's metadata."""
    import math

    if not metadata.timestamps or any(t is None or math.isnan(t) for t in metadata.timestamps):
        raise ValueError(
            f"add_timestamps=True needs frame times, but {metadata.source} has none (frames passed as arrays or "
            "images carry no clock). Pass the video as a file, URL or bytes, or leave add_timestamps off."
        )
    times = ", ".join(f"{t:.2f}s" for t in metadata.timestamps)
    duration = metadata.duration if metadata.duration is not None else (metadata.timestamps or [0.0])[-1]
    return (
        f"The video lasts for {duration:.2f} seconds, and {len(metadata.timestamps)} frames are uniformly sampled "
        f"from it. These frames are located at {times}. Please answer the following questions related to this video."
    )


class VideoLlavaHfProcessor(ProcessorMixin):
    r"""Prepares text, images and videos for [`VideoLlavaForConditionalGeneration`].

    Args:
        image_processor ([`VideoLlavaHfImageProcessor`]), video_processor ([`VideoLlavaHfVideoProcessor`]),
        tokenizer: any tokenizer that knows `image_token` and `video_token` as single tokens.
        patch_size (`int`): the towers' patch size (14); with the processors' crop size it gives the patch count.
        vision_feature_select_strategy / video_feature_select_strategy: as in the model config (CLS dropped for
            images, kept for video frames by default).
        image_token / video_token (`str`): the placeholders (`"<image>"`, `"<video>"`).
        video_pooling / video_pool_stride / video_slowfast_every: the video token budget, as in the model config
            (off by default); they can also be passed per call, and the model must get the same values.
        prompt_encoding (`str`): `"original"` (default) tokenizes the text between placeholders chunk by chunk, as
            the original Video-LLaVA does; `"transformers"` tokenizes the expanded prompt in one pass, as the
            built-in port does (see the module docstring). Also accepted per call.
        chat_template (`str`): defaults to the original llava_v1 conversation format.
    """

    def __init__(
        self,
        image_processor=None,
        video_processor=None,
        tokenizer=None,
        chat_template: str | None = None,
        patch_size: int = 14,
        vision_feature_select_strategy: str = "default",
        video_feature_select_strategy: str = "full",
        image_token: str = "<image>",
        video_token: str = "<video>",
        video_pooling: str | None = None,
        video_pool_stride: int = 2,
        video_slowfast_every: int | None = None,
        prompt_encoding: str = "original",
        **kwargs,
    ):
        check_pooling(video_pooling, video_pool_stride, video_slowfast_every)
        self.prompt_encoding = _check_prompt_encoding(prompt_encoding)
        self.video_pooling = video_pooling
        self.video_pool_stride = video_pool_stride
        self.video_slowfast_every = video_slowfast_every
        self.patch_size = patch_size
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self.video_feature_select_strategy = video_feature_select_strategy
        self.image_token = image_token
        self.video_token = video_token
        unk = getattr(tokenizer, "unk_token_id", None)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(video_token)
        for token, token_id in ((image_token, self.image_token_id), (video_token, self.video_token_id)):
            if token_id is None or (unk is not None and token_id == unk):
                raise ValueError(
                    f"The tokenizer has no {token!r} token. Add it with "
                    f"tokenizer.add_special_tokens({{'additional_special_tokens': [{token!r}]}}) and resize the "
                    "model's embeddings, or convert the checkpoint with `videollava-hf convert`."
                )
        super().__init__(
            image_processor, video_processor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE, **kwargs
        )

    def check_argument_for_proper_class(self, argument_name, argument):
        # Checked here rather than by Transformers' name lookup, which cannot resolve every custom class (and
        # Transformers' AutoVideoProcessor needs torchvision, which this package does not).
        expected = {
            "image_processor": BaseImageProcessor,
            "video_processor": VideoProcessorMixin,
            "tokenizer": PreTrainedTokenizerBase,
        }[argument_name]
        if not isinstance(argument, expected):
            raise TypeError(
                f"VideoLlavaHfProcessor needs a {expected.__name__} as `{argument_name}`, got {type(argument).__name__}."
            )
        return type(argument)

    # --- token counts -----------------------------------------------------------------------------------
    @property
    def num_patches(self) -> int:
        side = self.image_processor.crop_size // self.patch_size
        return side * side

    @property
    def image_seq_length(self) -> int:
        return image_token_count(self.num_patches, self.vision_feature_select_strategy)

    def pooling_options(self, **overrides) -> dict:
        """This processor's video token budget settings with per-call overrides (as the model config's)."""
        return pooling_options(self, **overrides)

    def video_seq_length(self, num_frames: int | None = None, **pooling) -> int:
        """Tokens of one video of `num_frames` frames (default: the video processor's), with optional per-call
        pooling overrides (`pooling=`, `stride=`, `slowfast_every=`)."""
        frames = self.video_processor.num_frames if num_frames is None else num_frames
        return video_token_count(
            self.num_patches, frames, self.video_feature_select_strategy, **self.pooling_options(**pooling)
        )

    def max_frames_for_budget(self, token_budget: int, **pooling) -> int:
        """The most frames per video whose tokens fit in `token_budget` with these pooling settings."""
        return max_frames_for_budget(
            token_budget, self.num_patches, self.video_feature_select_strategy, **self.pooling_options(**pooling)
        )

    # --- main entry point ---------------------------------------------------------------------------------
    def __call__(
        self,
        images=None,
        text=None,
        videos=None,
        audio=None,
        return_tensors: str | None = "pt",
        padding: bool | str = False,
        truncation: bool | None = None,
        max_length: int | None = None,
        padding_side: str | None = None,
        add_special_tokens: bool = True,
        return_metadata: bool = False,
        video_pooling: str | None = None,
        video_pool_stride: int | None = None,
        video_slowfast_every: int | None = None,
        add_timestamps: bool = False,
        prompt_encoding: str | None = None,
        return_text_replacement_offsets: bool = False,
        **kwargs,
    ) -> BatchFeature:
        """`text`: a prompt or a list of prompts with `<image>` / `<video>` placeholders; `images` / `videos`: one
        per placeholder, in order across the batch. Frame-policy keywords (`num_frames`, `fps`, `max_frames`,
        `indices`, `clip_start`, `clip_end`) go to the video reader. `video_pooling`, `video_pool_stride`,
        `video_slowfast_every` set the video token budget for this call (pass the same to the model; they are
        returned in the BatchFeature so `model(**inputs)` / `generate(**inputs)` get them). `add_timestamps` writes
        after each `<video>` when its frames were taken ("The video lasts for X seconds, and N frames are
        uniformly sampled from it. These frames are located at ...")). `prompt_encoding` overrides the processor's
        setting for this call. Padding, truncation (never through a media run) and attention masks behave as the
        tokenizer's in both encodings.

        `return_text_replacement_offsets=True` (with `return_offsets_mapping=True`, as `apply_chat_template(...,
        return_assistant_tokens_mask=True)` asks) also returns where each placeholder's expansion sits, so assistant
        masks computed on the unexpanded prompt land on the right tokens. Empty media lists mean none."""
        # Harnesses such as lmms-eval always pass images=[], videos=[], audios=[].
        images, videos = _none_if_empty(images), _none_if_empty(videos)
        if _none_if_empty(audio) is not None or _none_if_empty(kwargs.pop("audios", None)) is not None:
            raise ValueError("Video-LLaVA does not take audio; drop the `audio` argument.")
        # Preprocessing switches (Transformers' names) go to both processors, the frame policy to the video one.
        # Transformers' apply_chat_template adds do_sample_frames=True next to num_frames / fps: sampling by the frame
        # policy, which is what the video processor does with it.
        steps = {k: kwargs.pop(k) for k in STEP_KEYS if k in kwargs}
        video_kwargs = {**steps, **{k: kwargs.pop(k) for k in list(kwargs) if k in (*FRAME_POLICY_KEYS, "do_sample_frames")}}
        # Reader options shared by images and videos: network timeout, media limits.
        reader = {k: kwargs.pop(k) for k in READER_KEYS if k in kwargs}
        video_kwargs.update(reader)
        image_kwargs = {**steps, **reader, **{k: kwargs.pop(k) for k in ("do_pad_to_square",) if k in kwargs}}
        videos = group_per_sample(videos, text, self.video_token)
        data: dict = {}
        num_images = num_video_frames = 0
        if images is not None:
            data.update(self.image_processor(images, return_tensors=None, **image_kwargs))
            num_images = len(data["pixel_values"])
        metadata = None
        if videos is not None:
            out = self.video_processor(videos, return_tensors=None, return_metadata=True, **video_kwargs)
            metadata = out.pop("video_metadata")
            data.update(out)
            num_video_frames = data["pixel_values_videos"].shape[1]
        num_videos = 0 if videos is None else len(data["pixel_values_videos"])

        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            if not all(isinstance(t, str) for t in texts):
                raise TypeError(f"`text` must be a string or a list of strings, got {type(text).__name__}.")
            self._check_counts(texts, num_images, num_videos)
            if add_timestamps:
                if metadata is None:
                    raise ValueError("add_timestamps=True needs videos: timestamps come from the frames' metadata.")
                texts = self.insert_timestamps(texts, metadata)
            pooling = {"pooling": video_pooling, "stride": video_pool_stride, "slowfast_every": video_slowfast_every}
            encoding = self.encode_prompts(
                texts,
                num_video_frames or None,
                prompt_encoding=prompt_encoding,
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                padding_side=padding_side,
                add_special_tokens=add_special_tokens,
                **pooling,
                **kwargs,
            )
            data.update(encoding)
            if return_text_replacement_offsets:
                if add_timestamps:
                    raise ValueError("return_text_replacement_offsets (assistant masks) and add_timestamps=True "
                                     "cannot be combined; write the time sentence into the prompt instead.")
                data["text_replacement_offsets"] = [
                    self.replacement_offsets(t, num_video_frames or None, **pooling) for t in texts
                ]
        result = BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=["text_replacement_offsets"])
        if videos is not None:  # per-call budget overrides travel with the inputs to the model
            for key, value in (("video_pooling", video_pooling), ("video_pool_stride", video_pool_stride),
                               ("video_slowfast_every", video_slowfast_every)):
                if value is not None:
                    result[key] = value
        if return_metadata and metadata is not None:
            result["video_metadata"] = metadata
        return result

    def expand_placeholders(self, text: str, num_frames: int | None = None, **pooling) -> str:
        """Replace each `<image>` / `<video>` with the run of tokens its features occupy."""
        runs = self._runs(num_frames, **pooling)
        return self._placeholder_pattern().sub(lambda m: m.group(0) * runs[m.group(0)][1], text)

    def replacement_offsets(self, text: str, num_frames: int | None = None, **pooling) -> list[dict]:
        """For each placeholder of `text`, its `span` (start, end) and the `new_span` of its run in
        `expand_placeholders(text, ...)`: the form Transformers' `apply_chat_template` reads to move assistant-mask
        character offsets past the expansions."""
        runs = self._runs(num_frames, **pooling)
        offsets, gained = [], 0
        for match in self._placeholder_pattern().finditer(text):
            start, length = match.start() + gained, len(match.group(0)) * runs[match.group(0)][1]
            offsets.append({"span": (match.start(), match.end()), "new_span": (start, start + length)})
            gained += length - (match.end() - match.start())
        return offsets

    def _get_num_multimodal_tokens(self, image_sizes=None, video_sizes=None, **kwargs):
        """Placeholder tokens per image and per video, as vLLM's Transformers backend asks before processing.

        Args:
            image_sizes (`list[(height, width)]`): every image is resized and centre-cropped to `crop_size`, so each
                takes `image_seq_length` tokens whatever its size.
            video_sizes (`list[(num_frames, height, width)]`): the video processor samples `num_frames` frames
                (its own policy; `num_frames=` in kwargs overrides it) from any length, so each video takes
                `video_seq_length(num_frames)` tokens; pooling overrides (`video_pooling`, `video_pool_stride`,
                `video_slowfast_every`) apply as in `__call__`.
        Returns:
            `MultiModalData` with `num_image_tokens`, `num_image_patches` (1 per image) and `num_video_tokens`.
        """
        from ._compat import MultiModalData

        data = {}
        if image_sizes is not None:
            data["num_image_tokens"] = [self.image_seq_length] * len(image_sizes)
            data["num_image_patches"] = [1] * len(image_sizes)
        if video_sizes is not None:
            frames = kwargs.get("num_frames") or self.video_processor.num_frames
            pooling = {"pooling": kwargs.get("video_pooling"), "stride": kwargs.get("video_pool_stride"),
                       "slowfast_every": kwargs.get("video_slowfast_every")}
            data["num_video_tokens"] = [self.video_seq_length(frames, **pooling)] * len(video_sizes)
        return MultiModalData(**data)

    # --- prompt encoding --------------------------------------------------------------------------------------
    def encode_prompts(
        self,
        texts: str | list[str],
        num_frames: int | None = None,
        *,
        prompt_encoding: str | None = None,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        padding_side: str | None = None,
        add_special_tokens: bool = True,
        return_tensors: str | None = None,
        pooling: str | None = None,
        stride: int | None = None,
        slowfast_every: int | None = None,
        expand: bool = True,
        **kwargs,
    ):
        """Token ids (and attention masks) for prompts with `<image>` / `<video>` placeholders, each placeholder
        expanded to its feature count (`num_frames` per video: default the video processor's). No media needed:
        this is the text half of `__call__`. Returns a `BatchEncoding`; `return_offsets_mapping=True` gives
        character offsets into the expanded prompts (`expand_placeholders`) in both encodings. `expand=False`
        keeps each placeholder as one token (the same text ids, for measuring lengths cheaply)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        mode = _check_prompt_encoding(prompt_encoding or self.prompt_encoding)
        runs = self._runs(num_frames, pooling=pooling, stride=stride, slowfast_every=slowfast_every)
        if not expand:
            runs = {token: (token_id, 1) for token, (token_id, _) in runs.items()}
        if mode == "transformers":  # the built-in port: expand, then one tokenizer pass
            pattern = self._placeholder_pattern()
            expanded = [pattern.sub(lambda m: m.group(0) * runs[m.group(0)][1], t) for t in texts]
            encoding = self.tokenizer(
                expanded, padding=padding, truncation=truncation, max_length=max_length, padding_side=padding_side,
                add_special_tokens=add_special_tokens, return_tensors=None, **kwargs,
            )
        else:
            encoding = self._encode_original(
                texts, runs, padding=padding, truncation=truncation,
                max_length=max_length, padding_side=padding_side, add_special_tokens=add_special_tokens, **kwargs,
            )
        self._check_not_truncated(encoding["input_ids"], texts, runs)
        encoding.convert_to_tensors(return_tensors)
        return encoding

    def _runs(self, num_frames: int | None = None, **pooling) -> dict[str, tuple[int, int]]:
        """placeholder -> (token id, tokens its features occupy)."""
        return {
            self.image_token: (self.image_token_id, self.image_seq_length),
            self.video_token: (self.video_token_id, self.video_seq_length(num_frames or None, **pooling)),
        }

    def _placeholder_pattern(self) -> re.Pattern:
        return re.compile(f"({re.escape(self.image_token)}|{re.escape(self.video_token)})")

    def _encode_original(self, texts, runs, *, padding, truncation, max_length, padding_side, add_special_tokens,
                         **kwargs):
        """The original's `tokenizer_image_token`, each marker expanded to its feature run: split at the
        placeholders, tokenize every chunk separately (one batched tokenizer call), keep the first chunk's BOS only;
        then truncate and pad as the tokenizer would."""
        unknown = sorted(set(kwargs) - set(_ORIGINAL_TOKENIZER_KWARGS))
        if unknown:
            raise ValueError(
                f"prompt_encoding='original' does not take the tokenizer option(s) {unknown} (it supports padding, "
                f"truncation, max_length, padding_side, add_special_tokens and {list(_ORIGINAL_TOKENIZER_KWARGS)}). "
                "Pass prompt_encoding='transformers' to tokenize the expanded prompt in one tokenizer call."
            )
        offsets = bool(kwargs.get("return_offsets_mapping"))
        parts = [self._placeholder_pattern().split(t) for t in texts]  # [chunk, placeholder, ..., chunk] per text
        enc = self.tokenizer([c for p in parts for c in p[0::2]], add_special_tokens=add_special_tokens,
                             return_offsets_mapping=offsets)
        pieces = iter(zip(enc["input_ids"], enc["offset_mapping"] if offsets else itertools.repeat(None)))
        encoded = [self._assemble(p, pieces, runs, add_special_tokens) for p in parts]
        if truncation not in (None, False, "do_not_truncate"):
            limit = max_length if max_length is not None else self.tokenizer.model_max_length
            keep = slice(None, limit) if self.tokenizer.truncation_side == "right" else slice(-limit, None)
            encoded = [(ids[keep], spans[keep]) for ids, spans in encoded]
        encoding = self.tokenizer.pad(
            {"input_ids": [ids for ids, _ in encoded]}, padding=padding, max_length=max_length,
            padding_side=padding_side, pad_to_multiple_of=kwargs.get("pad_to_multiple_of"),
            return_attention_mask=kwargs.get("return_attention_mask"), verbose=kwargs.get("verbose", True),
        )
        if offsets:  # padding tokens span no characters, as in the tokenizer's own output
            left = (padding_side or self.tokenizer.padding_side) == "left"
            encoding["offset_mapping"] = [
                [(0, 0)] * (len(ids) - len(spans)) + spans if left else spans + [(0, 0)] * (len(ids) - len(spans))
                for (_, spans), ids in zip(encoded, encoding["input_ids"])
            ]
        return encoding

    def _assemble(self, parts: list[str], pieces, runs, add_special_tokens: bool):
        """One text's (ids, character spans in the expanded text) from its tokenized chunks (`pieces`: an iterator
        of (ids, offsets or None) per chunk, in order) and the placeholders between them."""
        bos = self.tokenizer.bos_token_id
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        pos = 0  # characters of the expanded prompt so far
        for i, chunk in enumerate(parts[0::2]):
            if i > 0:  # the placeholder before this chunk, as the run of its feature tokens
                placeholder = parts[2 * i - 1]
                token_id, count = runs[placeholder]
                ids += [token_id] * count
                spans += [(pos + j * len(placeholder), pos + (j + 1) * len(placeholder)) for j in range(count)]
                pos += len(placeholder) * count
            piece, piece_spans = next(pieces)
            # Chunks after the first lose the BOS their own tokenization added, as in the original.
            skip = 1 if i > 0 and add_special_tokens and bos is not None and piece[:1] == [bos] else 0
            ids += piece[skip:]
            piece_spans = piece_spans if piece_spans is not None else [(0, 0)] * len(piece)
            spans += [(a + pos, b + pos) if b > a else (a, b) for a, b in piece_spans[skip:]]
            pos += len(chunk)
        return ids, spans

    def insert_timestamps(self, texts: list[str], metadata: list) -> list[str]:
        """After the i-th `<video>` (across the batch), describe when its frames were taken."""
        counter = iter(metadata)

        def describe(match: re.Match) -> str:
            meta = next(counter)
            return match.group(0) + "\n" + timestamp_sentence(meta)

        pattern = re.compile(re.escape(self.video_token))
        return [pattern.sub(describe, t) for t in texts]

    def _check_counts(self, texts: list[str], num_images: int, num_videos: int) -> None:
        found_images = sum(t.count(self.image_token) for t in texts)
        found_videos = sum(t.count(self.video_token) for t in texts)
        if found_images != num_images or found_videos != num_videos:
            raise ValueError(
                f"The text has {found_images} {self.image_token} and {found_videos} {self.video_token} placeholders, "
                f"but {num_images} image(s) and {num_videos} video(s) were passed. Put exactly one placeholder per "
                "image and per video, in the order the media are given."
            )

    def _check_not_truncated(self, input_ids: list[list[int]], texts: list[str], runs: dict) -> None:
        for i, (ids, text) in enumerate(zip(input_ids, texts)):
            for token, (token_id, count) in runs.items():
                want, got = text.count(token) * count, sum(1 for t in ids if t == token_id)
                if want != got:
                    raise ValueError(
                        f"Sample {i}: truncation cut through a {token} placeholder run ({got} of {want} tokens "
                        "kept). Raise `max_length` or shorten the text; media tokens are never truncated."
                    )

    # --- chat template ------------------------------------------------------------------------------------
    def apply_chat_template(self, conversation, chat_template=None, processor_kwargs: dict | None = None, **kwargs):
        """Transformers' `ProcessorMixin.apply_chat_template`, unchanged, with this processor's per-call options
        accepted by name: frame policy (`num_frames`, `fps`, `max_frames`, `indices`, `clip_start`, `clip_end`),
        `video_pooling` / `video_pool_stride` / `video_slowfast_every`, `add_timestamps`, `timeout`,
        `do_pad_to_square` and the tokenizer's `padding` / `padding_side` / `truncation` / `max_length` are moved
        into `processor_kwargs` (where Transformers wants processor options; given by name it warns).

        With `tokenize=True, return_dict=True` the media named in the content items (`{"type": "video" | "image",
        "path" | "url" | "video" | "image": ...}`; anything `media_io` / `video_io` read) are loaded and the result
        is model-ready: `input_ids`, `attention_mask`, `pixel_values`, `pixel_values_videos`. A list of
        conversations is one batch (pass `padding=True`; the tokenizer pads on its `padding_side`)."""
        moved = {k: kwargs.pop(k) for k in list(kwargs) if k in CALL_OPTIONS}
        if moved:
            processor_kwargs = {**moved, **(processor_kwargs or {})}
        return super().apply_chat_template(conversation, chat_template, processor_kwargs=processor_kwargs, **kwargs)

    # --- decoding -----------------------------------------------------------------------------------------
    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "pixel_values", "pixel_values_videos"]

    def save_pretrained(self, save_directory, *args, export_code: bool = False, **kwargs):
        """Transformers' `save_pretrained`; `export_code=True` also writes `auto_map` entries and copies the
        processors' code, so the folder loads with `AutoProcessor(..., trust_remote_code=True)` without the package."""
        if not export_code:
            return super().save_pretrained(save_directory, *args, **kwargs)
        parts = ((type(self), "AutoProcessor"), (type(self.image_processor), "AutoImageProcessor"),
                 (type(self.video_processor), "AutoVideoProcessor"))
        with auto_classes(*parts, restore=(self, self.image_processor, self.video_processor, self.tokenizer)):
            saved = super().save_pretrained(save_directory, *args, **kwargs)
        # Transformers also wrote the processor's `auto_map` into tokenizer_config.json; the tokenizer is a standard
        # class and needs no remote code, so save it again without one (plain `AutoTokenizer` reads it as usual).
        self.tokenizer.save_pretrained(save_directory)
        return saved

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, config=None, **kwargs):
        """Load tokenizer, image processor and video processor with this package's classes: the one processor loader
        (the pipeline, the CLI and evaluation use it too).

        The parts are built explicitly because Transformers' generic loader goes through `AutoVideoProcessor`, which
        needs torchvision. Also reads directories whose processors were saved as separate
        `preprocessor_config.json` / `video_preprocessor_config.json` files (older processors, the built-in port).
        A checkpoint with a tokenizer but no processor settings gets a processor derived from `config` (the model's
        [`VideoLlavaConfig`]) when one is given; without it that is an error."""
        from transformers import AutoTokenizer

        from .image_processing_videollava import VideoLlavaHfImageProcessor
        from .video_processing_videollava import VideoLlavaHfVideoProcessor

        source = os.fspath(pretrained_model_name_or_path)
        hub = hub_kwargs(kwargs, pop=True)
        # The tokenizer is a standard class: it never needs the repo's code (the repo's `auto_map` names the
        # processor and would otherwise make Transformers ask interactively about remote code).
        trust_remote_code = kwargs.pop("trust_remote_code", None) or False
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **hub)
        except (OSError, ValueError) as err:
            raise OSError(
                f"Could not load a tokenizer from {source!r} ({err}). Save the processor next to the weights with "
                "`processor.save_pretrained(dir)`."
            ) from err
        try:
            processor_dict, _ = cls.get_processor_dict(source, **hub)
        except OSError:
            processor_dict = {}
        parts = {}
        for name, part_cls in (("image_processor", VideoLlavaHfImageProcessor),
                               ("video_processor", VideoLlavaHfVideoProcessor)):
            saved = processor_dict.get(name)
            if saved is None:  # separate file, as older processors (and the built-in port) save them
                reader = getattr(part_cls, "get_video_processor_dict", None) or part_cls.get_image_processor_dict
                try:
                    saved = reader(source, **hub)[0]
                except OSError:
                    saved = None
            parts[name] = saved
        if parts["image_processor"] is None or parts["video_processor"] is None:
            if config is None:
                raise OSError(
                    f"{source!r} has a tokenizer but no image/video processor settings. Save the processor with "
                    "`processor.save_pretrained(dir)`, or pass the model's config (`config=`) to derive them."
                )
            return cls.from_model_config(config, tokenizer, **_known_init_kwargs(cls, kwargs))
        image_processor = VideoLlavaHfImageProcessor(**_known_init_kwargs(VideoLlavaHfImageProcessor,
                                                                          parts["image_processor"]))
        video_processor = VideoLlavaHfVideoProcessor(**_known_init_kwargs(VideoLlavaHfVideoProcessor,
                                                                          parts["video_processor"]))
        settings = _known_init_kwargs(cls, processor_dict)
        for name in ("image_processor", "video_processor", "tokenizer"):
            settings.pop(name, None)
        # Like Transformers' own processor loader, keep only the options this class takes: pipeline() passes its
        # model kwargs (dtype, device_map, code_revision, ...) to the processor loader too.
        settings.update(_known_init_kwargs(cls, kwargs))
        return cls(image_processor, video_processor, tokenizer, **settings)

    @classmethod
    def from_model_config(cls, config, tokenizer, image_processor=None, video_processor=None, **kwargs):
        """A processor whose sizes and strategies follow `config` (a [`VideoLlavaConfig`])."""
        from .image_processing_videollava import VideoLlavaHfImageProcessor
        from .video_processing_videollava import VideoLlavaHfVideoProcessor

        side = config.vision_config.image_size
        image_processor = image_processor or VideoLlavaHfImageProcessor(size=side, crop_size=side)
        video_processor = video_processor or VideoLlavaHfVideoProcessor(
            num_frames=config.num_frames, size=side, crop_size=side
        )
        return cls(
            image_processor,
            video_processor,
            tokenizer,
            patch_size=config.vision_config.patch_size,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            video_feature_select_strategy=config.video_feature_select_strategy,
            video_pooling=config.video_pooling,
            video_pool_stride=config.video_pool_stride,
            video_slowfast_every=config.video_slowfast_every,
            **kwargs,
        )


__all__ = ["VideoLlavaHfProcessor", "CALL_OPTIONS", "CHAT_TEMPLATE", "PROMPT_ENCODINGS",
           "SYSTEM_PROMPT", "group_per_sample",
           "timestamp_sentence"]
