"""Register the package's classes with Transformers' Auto classes (idempotent; run on `import videollava_hf`).

Registration changes nothing else: `save_pretrained` writes code and an `auto_map` only when asked
(`export_code=True`, as conversion and the pipeline's Hub export do), see `models/videollava/export.py`.
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

from .models.videollava.configuration_videollava import VideoLlavaConfig
from .models.videollava.image_processing_videollava import VideoLlavaHfImageProcessor
from .models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration, VideoLlavaModel
from .models.videollava.processing_videollava import VideoLlavaHfProcessor
from .models.videollava.video_processing_videollava import VideoLlavaHfVideoProcessor

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
        VideoLlavaConfig, image_processor_classes={"pil": VideoLlavaHfImageProcessor}, exist_ok=True
    )
    if is_torchvision_available():
        # Transformers' AutoVideoProcessor itself needs torchvision; our processor does not, and
        # VideoLlavaHfProcessor.from_pretrained loads it directly either way.
        AutoVideoProcessor.register(VideoLlavaConfig, VideoLlavaHfVideoProcessor, exist_ok=True)
    AutoProcessor.register(VideoLlavaConfig, VideoLlavaHfProcessor, exist_ok=True)

    # pipeline("video-text-to-text") with no remote code
    from .models.videollava.pipeline_video_text_to_text import register_pipeline

    register_pipeline()

    _done = True


__all__ = ["register"]
