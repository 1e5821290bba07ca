"""An OpenAI-compatible server for Video-LLaVA (`videollava-hf serve`); needs the `[serve]` extra (FastAPI, uvicorn).

`load_engine(model)` loads a checkpoint (None: the bundled demo model) behind a one-thread generation queue;
`create_app(engine, model_name)` is the FastAPI app. See docs/serving.md.
"""

from __future__ import annotations

from pathlib import Path


def load_engine(model: str | None, device: str = "auto", dtype: str = "auto",
                local_media_dirs: tuple[Path, ...] = (), max_queue: int = 64):
    """Model + processor for `model` (a directory or Hub id; None = the demo model) wrapped in an Engine."""
    from ..cli.common import check_videollava, resolve_device_and_dtype, resolve_model
    from ..models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration
    from ..models.videollava.pipeline_video_text_to_text import load_processor
    from .engine import Engine

    model_id = resolve_model(model)
    check_videollava(model_id)
    torch_device, torch_dtype = resolve_device_and_dtype(device, dtype)
    net = VideoLlavaForConditionalGeneration.from_pretrained(model_id, dtype=torch_dtype).to(torch_device)
    processor = load_processor(model_id, config=net.config)
    return Engine(net, processor, local_media_dirs=local_media_dirs, max_queue=max_queue)


def create_app(*args, **kwargs):
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app", "load_engine"]
