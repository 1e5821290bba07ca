"""The fine-tuning script behind `python -m videollava_hf.training --config recipe.yaml [--flag value ...]`.

Arguments come from three dataclasses parsed by Transformers' `HfArgumentParser` ([`ModelArguments`],
[`DataArguments`], [`VideoLlavaTrainingArguments`], the latter a `TrainingArguments` with the paper's defaults and
the stage / LoRA / truncation options). Precedence: dataclass defaults < the YAML `--config` file < command-line
flags. The same code runs unchanged under `accelerate launch` (DDP, DeepSpeed, FSDP): Trainer does the wrapping.

Programmatic use: `train(model_args, data_args, training_args)` returns a [`TrainingOutcome`] (the trainer, the
metrics, the output directory); `videollava_hf.training.arguments.parse_args(argv)` builds the three dataclasses
from a command line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint, set_seed

from .arguments import TINY_MODEL, DataArguments, ModelArguments, VideoLlavaTrainingArguments, parse_args
from .collator import VideoLlavaDataCollator, filter_by_length
from .data import MediaRoots, load_conversation_dataset, log_skipped
from .stages import LoraSettings, build_model_for_training, save_merged, trainable_parameter_names

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------------------------


class VideoLlavaTrainer(Trainer):
    """`Trainer` plus: a separate projector learning rate, a guard for batches that reach no trainable weight,
    and optional per-process step logs (to check that every rank of a multi-process run really steps)."""

    def create_optimizer(self, model=None):
        if self.args.projector_lr is None or self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                groups.setdefault(("multi_modal_projector" in name, name in decay), []).append(param)
        param_groups = [
            {
                "params": params,
                "weight_decay": self.args.weight_decay if is_decay else 0.0,
                **({"lr": self.args.projector_lr} if is_projector else {}),
            }
            for (is_projector, is_decay), params in groups.items()
        ]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def get_eval_dataloader(self, eval_dataset=None):
        # Evaluation batches skip bad samples without borrowing training rows to refill them.
        collator = self.data_collator
        if hasattr(collator, "without_refill"):
            self.data_collator = collator.without_refill()
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = result[0] if return_outputs else result
        if model.training and torch.is_grad_enabled() and not loss.requires_grad:
            # E.g. stage 1 (projector only) on a text-only batch: nothing trainable was used. A zero-valued
            # dependency on the trainable weights keeps backward (and DDP's gradient sync) well defined.
            loss = loss + sum(p.reshape(-1)[0] * 0.0 for p in model.parameters() if p.requires_grad)
            result = (loss, result[1]) if return_outputs else loss
        return result

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.per_rank_log:
            self._log_rank_step(float(loss))
        return loss

    def _log_rank_step(self, local_loss: float) -> None:
        folder = Path(self.args.output_dir) / "rank_logs"
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": self.args.process_index,
            "world_size": self.args.world_size,
            "global_step": self.state.global_step,
            "local_loss": local_loss,
            "should_save": bool(self.args.should_save),
            "distributed_type": str(self.accelerator.distributed_type),
        }
        with open(folder / f"rank{self.args.process_index}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------------------------------------------
# train()
# --------------------------------------------------------------------------------------------------------------


@dataclass
class TrainingOutcome:
    trainer: VideoLlavaTrainer
    metrics: dict[str, Any]
    output_dir: Path


def load_model_and_processor(model_args: ModelArguments, training_args: VideoLlavaTrainingArguments):
    """-> (model ready for training, processor). The tiny model is built from the seed, so every rank agrees."""
    from ..models.videollava.processing_videollava import VideoLlavaHfProcessor

    if not model_args.model_name_or_path:
        raise ValueError(f"Pass --model_name_or_path (a checkpoint directory, a Hub id, or '{TINY_MODEL}').")
    lora = False
    if training_args.lora:
        lora = LoraSettings(
            r=training_args.lora_r,
            alpha=training_args.lora_alpha,
            dropout=training_args.lora_dropout,
            train_projector=training_args.lora_train_projector,
        )
    options = dict(
        stage=training_args.stage,
        lora=lora,
        train_image_tower=model_args.train_image_tower,
        train_video_tower=model_args.train_video_tower,
        torch_dtype=model_args.torch_dtype,
        attn_implementation=model_args.attn_implementation,
    )
    if model_args.model_name_or_path == TINY_MODEL:
        from ..testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        config = tiny_config(tokenizer, num_frames=model_args.tiny_num_frames)
        return build_model_for_training(config, **options), tiny_processor(config, tokenizer)
    model = build_model_for_training(model_args.model_name_or_path, **options)
    processor = VideoLlavaHfProcessor.from_pretrained(model_args.processor_name_or_path or model_args.model_name_or_path)
    return model, processor


def _model_card_writer():
    """The card writer of videollava_hf.conversion.modelcard; fails before training when that module is missing."""
    try:
        from ..conversion.modelcard import write_model_card
    except ImportError as err:
        raise ImportError(
            "Writing the model card needs videollava_hf.conversion.modelcard (write_model_card), which could not be imported: "
            f"{err}. Pass --write_model_card false to train without a card."
        ) from err
    return write_model_card


def _resolve_resume(training_args: VideoLlavaTrainingArguments) -> str | None:
    value = training_args.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() in ("true", "last", "latest"):
        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint {value}: no checkpoint-* folder in {training_args.output_dir}."
            )
        return last
    return str(value)


def _load_split(files, data_args: DataArguments, training_args, collator: VideoLlavaDataCollator, name: str):
    with training_args.main_process_first(desc=f"loading {name} data"):
        dataset, skipped = load_conversation_dataset(
            files,
            media_root=data_args.media_root,
            image_root=data_args.image_root,
            video_root=data_args.video_root,
            check_media_files=data_args.check_media_files,
            skip_bad_samples=data_args.skip_bad_samples,
            max_samples=data_args.max_samples,
            cache_dir=data_args.dataset_cache_dir,
            num_proc=data_args.preprocessing_num_workers,
        )
        dataset, too_long = filter_by_length(dataset, collator, num_proc=data_args.preprocessing_num_workers)
    log_skipped(f"measuring {name} samples against model_max_length={collator.model_max_length}", too_long)
    if len(dataset) == 0:
        raise ValueError(f"No {name} samples left after loading {files}; see the warnings above.")
    return dataset, len(skipped), len(too_long)


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: VideoLlavaTrainingArguments,
    callbacks: list | None = None,
) -> TrainingOutcome:
    """Run one training stage end to end: model, data, Trainer, final save (merged for LoRA), metrics, card."""
    if not data_args.data_path:
        raise ValueError("Pass --data_path with one or more conversation files (JSON, JSONL, parquet) or "
                         "dataset folders.")
    if training_args.output_dir is None:
        raise ValueError("Pass --output_dir: checkpoints and the final model are written there.")
    writer = _model_card_writer() if training_args.write_model_card else None
    if training_args.stage == "pretrain" and training_args.learning_rate == 2e-5:
        logger.warning("stage=pretrain with learning_rate=2e-5: the paper's stage 1 uses 1e-3 (recipes/pretrain.yaml).")
    set_seed(training_args.seed)
    model, processor = load_model_and_processor(model_args, training_args)
    collator = VideoLlavaDataCollator(
        processor,
        model_max_length=training_args.model_max_length,
        truncation=training_args.truncation,
        skip_bad_samples=data_args.skip_bad_samples,
        num_frames=data_args.num_frames,
        prompt_format=data_args.prompt_format,
        add_system_prompt=data_args.add_system_prompt,
        pad_images_to_square=data_args.pad_images_to_square,
        media_roots=MediaRoots(data_args.media_root, data_args.image_root, data_args.video_root),
    )
    train_set, bad, long = _load_split(data_args.data_path, data_args, training_args, collator, "train")
    if data_args.skip_bad_samples:
        collator.refill_from = train_set  # a skipped sample is replaced, so no batch shrinks or ends up empty
    eval_set = None
    if data_args.eval_data_path:
        eval_set, _, _ = _load_split(data_args.eval_data_path, data_args, training_args, collator, "eval")
    logger.info("Trainable parameters (%d tensors): %s", len(trainable_parameter_names(model)),
                ", ".join(trainable_parameter_names(model)[:8]) + " ...")
    trainer = VideoLlavaTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=_resolve_resume(training_args))
    output_dir = _save_final(trainer, processor, training_args)
    metrics = dict(result.metrics)
    metrics.update(
        train_samples=len(train_set),
        skipped_bad_records=bad,
        dropped_overlong_records=long,
        **{f"collator_{k}": v for k, v in collator.stats.items()},
    )
    trainer.log_metrics("train", metrics)
    if trainer.args.should_save:
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        if writer is not None:
            _write_card(writer, output_dir, model_args, data_args, training_args, metrics)
    return TrainingOutcome(trainer=trainer, metrics=metrics, output_dir=output_dir)


def _save_final(trainer: VideoLlavaTrainer, processor, training_args: VideoLlavaTrainingArguments) -> Path:
    """Final weights in output_dir: the full model, or for LoRA the merged model (+ the adapter in lora_adapter/)."""
    output_dir = Path(training_args.output_dir)
    base = trainer.model.get_base_model() if training_args.lora else trainer.model
    base.config.text_config.use_cache = True  # inference default for the saved model
    trainer.accelerator.wait_for_everyone()
    if not training_args.lora:
        trainer.save_model(str(output_dir))
        return output_dir
    if trainer.is_fsdp_enabled:
        # Sharded parameters cannot be merged in place; Trainer gathers and saves the adapter instead.
        trainer.save_model(str(output_dir / "lora_adapter"))
        logger.warning("FSDP: saved the LoRA adapter only; merge it with videollava_hf.training.save_merged after "
                       "loading it onto the base model in a single process.")
        return output_dir
    if trainer.args.should_save:
        trainer.model.save_pretrained(output_dir / "lora_adapter")
        if training_args.lora_save_merged:
            save_merged(trainer.model, output_dir, processor)
        else:
            processor.save_pretrained(output_dir)
    trainer.accelerator.wait_for_everyone()
    return output_dir


def _write_card(writer, output_dir: Path, model_args, data_args, training_args, metrics: dict) -> None:
    base = None if model_args.model_name_or_path == TINY_MODEL else model_args.model_name_or_path
    loss = metrics.get("train_loss")
    summary = (
        f"Video-LLaVA fine-tuned with `videollava-hf train` (stage `{training_args.stage}`"
        f"{', LoRA r=%d merged' % training_args.lora_r if training_args.lora else ''}) on "
        f"{metrics['train_samples']} samples from {', '.join(Path(p).name for p in data_args.data_path)}: "
        f"{training_args.num_train_epochs:g} epoch(s), lr {training_args.learning_rate:g}, "
        f"{training_args.lr_scheduler_type} schedule, model_max_length {training_args.model_max_length}"
        + (f", final training loss {loss:.4f}" if isinstance(loss, float) and math.isfinite(loss) else "")
        + "."
    )
    writer(output_dir, source="trained", base_model=base, description=summary)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (python -m videollava_hf.training / videollava-hf train)."""
    model_args, data_args, training_args = parse_args(argv)
    return run(model_args, data_args, training_args)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: VideoLlavaTrainingArguments) -> int:
    """Set up logging like Transformers' example scripts, train, and print the final metrics (main process)."""
    import datasets
    import transformers

    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    logging.getLogger("videollava_hf").setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    outcome = train(model_args, data_args, training_args)
    if outcome.trainer.is_world_process_zero():
        sys.stdout.write(json.dumps({"output_dir": str(outcome.output_dir), **outcome.metrics}, default=str) + "\n")
    return 0


__all__ = [
    "TrainingOutcome",
    "VideoLlavaTrainer",
    "load_model_and_processor",
    "main",
    "run",
    "train",
]
