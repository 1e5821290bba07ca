"""`python -m videollava_hf.training --config recipe.yaml [--flag value ...]`: fine-tune Video-LLaVA with Trainer.

A thin entry point (also what `accelerate launch -m videollava_hf.training` runs); the code is in
`videollava_hf.training.script`."""

from __future__ import annotations

import sys

from .script import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
