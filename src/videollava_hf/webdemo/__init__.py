"""The web demo (`videollava-hf demo`): a Gradio page to chat about a video or an image, and an `/answer` API.

`engine` holds what does not need Gradio (model, media reading, conversations) and is what this package exports;
`app` builds the page and needs Gradio, which comes with the `demo` extra (`pip install -e ".[demo]"`).
"""

from __future__ import annotations

from .engine import DemoEngine, DemoInputError, Media, VisionSettings, read_media

__all__ = ["DemoEngine", "DemoInputError", "Media", "VisionSettings", "read_media"]
