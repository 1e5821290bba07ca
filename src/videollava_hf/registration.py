"""Register the package's classes with Transformers' Auto classes (idempotent; run on `import videollava_hf`).

`register_for_auto_class` also makes `save_pretrained` write an `auto_map` and copy the code files next to the
weights, so a saved checkpoint loads with `trust_remote_code=True` where this package is not installed.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoModelForPreTraining,
    AutoProcessor,
    AutoVideoProcessor,
)

from transformers.utils import is_torchvision_available

from .configuration_videollava import VideoLlavaConfig
from .image_processing_videollava import VideoLlavaImageProcessor
from .modeling_videollava import VideoLlavaForConditionalGeneration, VideoLlavaModel
from .processing_videollava import VideoLlavaProcessor
from .video_processing_videollava import VideoLlavaVideoProcessor

_done = False


def register() -> None:
    global _done
    if _done:
        return
    model_type = VideoLlavaConfig.model_type
    AutoConfig.register(model_type, VideoLlavaConfig, exist_ok=True)
    AutoModel.register(VideoLlavaConfig, VideoLlavaModel, exist_ok=True)
    # The same Auto classes Transformers maps its own `video_llava` to.
    for auto_class in (AutoModelForImageTextToText, AutoModelForMultimodalLM, AutoModelForPreTraining):
        auto_class.register(VideoLlavaConfig, VideoLlavaForConditionalGeneration, exist_ok=True)
    AutoImageProcessor.register(
        VideoLlavaConfig, image_processor_classes={"pil": VideoLlavaImageProcessor}, exist_ok=True
    )
    if is_torchvision_available():
        # Transformers' AutoVideoProcessor itself needs torchvision; our processor does not, and
        # VideoLlavaProcessor.from_pretrained loads it directly either way.
        AutoVideoProcessor.register(VideoLlavaConfig, VideoLlavaVideoProcessor, exist_ok=True)
    AutoProcessor.register(VideoLlavaConfig, VideoLlavaProcessor, exist_ok=True)

    # pipeline("video-text-to-text") with no remote code
    from .pipeline_video_text_to_text import register_pipeline

    register_pipeline()

    VideoLlavaConfig.register_for_auto_class()
    VideoLlavaModel.register_for_auto_class("AutoModel")
    VideoLlavaForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
    VideoLlavaImageProcessor.register_for_auto_class("AutoImageProcessor")
    VideoLlavaVideoProcessor.register_for_auto_class("AutoVideoProcessor")
    VideoLlavaProcessor.register_for_auto_class("AutoProcessor")
    _done = True


__all__ = ["register"]
