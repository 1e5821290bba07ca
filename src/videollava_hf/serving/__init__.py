"""An OpenAI-compatible server for Video-LLaVA (`videollava-hf serve`); needs the `[serve]` extra (FastAPI, uvicorn).

`load_engine(model, processor)` puts a model (loaded, a checkpoint path, or None: the bundled demo model) behind a
one-thread generation queue;
`create_app(engine, model_name)` is the FastAPI app. See docs/serving.md.
"""

from __future__ import annotations

from pathlib import Path


def load_engine(model=None, processor=None, local_media_dirs: tuple[Path, ...] = (), max_queue: int = 64):
    """An Engine (one-thread generation queue) around `model` and `processor`. `model` may be a loaded model (then
    `processor` is needed too), a checkpoint directory or Hub id, or None for the bundled demo model."""
    from .engine import Engine

    if model is None or isinstance(model, (str, Path)):
        from ..demo import demo_model_dir
        from ..models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration
        from ..models.videollava.pipeline_video_text_to_text import load_processor

        model_id = str(demo_model_dir() if model is None else model)
        model = VideoLlavaForConditionalGeneration.from_pretrained(model_id)
        processor = processor or load_processor(model_id, config=model.config)
    if processor is None:
        raise ValueError("load_engine(model, processor): a loaded model needs its processor.")
    return Engine(model, processor, local_media_dirs=local_media_dirs, max_queue=max_queue)


def create_app(*args, **kwargs):
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app", "load_engine"]
