"""videollava-hf: Video-LLaVA as a first-class citizen of the Hugging Face stack.

Importing the package registers its classes with Transformers' Auto classes (config `model_type="videollava_hf"`)
and the `video-text-to-text` pipeline; nothing else changes (code export is explicit: `export_code=True`).

Layout: `models/videollava/` is the model itself (the flat folder that travels to the Hub as remote code);
`inference/`, `conversion/`, `evaluation/`, `training/`, `cli/`, `demo/`, `utils/` and `testing/` are the tools
around it. See docs/architecture.md.
"""

from .models.videollava.configuration_videollava import VideoLlavaConfig, image_token_count, video_token_count
from .models.videollava.image_processing_videollava import VideoLlavaHfImageProcessor
from .models.videollava.modeling_videollava import (
    VideoLlavaCausalLMOutputWithPast,
    VideoLlavaForConditionalGeneration,
    VideoLlavaModel,
    VideoLlavaModelOutputWithPast,
    VideoLlavaPreTrainedModel,
)
from .models.videollava.processing_videollava import VideoLlavaHfProcessor
from .models.videollava.video_processing_videollava import VideoLlavaHfVideoProcessor
from .registration import register

# The processors' class names differ from the built-in port's (Transformers resolves processor classes by name and
# would find its own); the familiar names stay importable.
VideoLlavaProcessor = VideoLlavaHfProcessor
VideoLlavaImageProcessor = VideoLlavaHfImageProcessor
VideoLlavaVideoProcessor = VideoLlavaHfVideoProcessor

__version__ = "0.1.0"

register()

__all__ = [
    "VideoLlavaCausalLMOutputWithPast",
    "VideoLlavaConfig",
    "VideoLlavaForConditionalGeneration",
    "VideoLlavaHfImageProcessor",
    "VideoLlavaHfProcessor",
    "VideoLlavaHfVideoProcessor",
    "VideoLlavaImageProcessor",
    "VideoLlavaModel",
    "VideoLlavaModelOutputWithPast",
    "VideoLlavaPreTrainedModel",
    "VideoLlavaProcessor",
    "VideoLlavaVideoProcessor",
    "image_token_count",
    "register",
    "video_token_count",
]
