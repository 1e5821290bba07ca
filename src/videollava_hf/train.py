"""`python -m videollava_hf.train --config recipe.yaml [--flag value ...]`: fine-tune Video-LLaVA with Trainer.

A thin entry point (also what `accelerate launch -m videollava_hf.train` runs); the code is in
`videollava_hf.training.script`."""

from __future__ import annotations

import sys

from .training.script import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
