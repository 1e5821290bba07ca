"""videollava-hf: Video-LLaVA as a first-class citizen of the Hugging Face stack.

Importing the package registers its classes with Transformers' Auto classes (config `model_type="videollava_hf"`).
"""

from .configuration_videollava import VideoLlavaConfig, image_token_count, video_token_count
from .image_processing_videollava import VideoLlavaImageProcessor
from .modeling_videollava import (
    VideoLlavaCausalLMOutputWithPast,
    VideoLlavaForConditionalGeneration,
    VideoLlavaModel,
    VideoLlavaModelOutputWithPast,
    VideoLlavaPreTrainedModel,
)
from .processing_videollava import VideoLlavaProcessor
from .registration import register
from .video_processing_videollava import VideoLlavaVideoProcessor

__version__ = "0.1.0"

register()

__all__ = [
    "VideoLlavaCausalLMOutputWithPast",
    "VideoLlavaConfig",
    "VideoLlavaForConditionalGeneration",
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
