"""Convert Transformers' built-in Video-LLaVA (e.g. LanguageBind/Video-LLaVA-7B-hf) to the videollava-hf format.

Thin wrapper over `videollava_hf.conversion.builtin.convert_transformers_checkpoint` (same options as
`videollava-hf convert --layout transformers`); see docs/conversion.md. Run with the package installed, or from the
repository root (the script then finds `src/` itself):

    python conversion/convert_transformers_to_hf.py LanguageBind/Video-LLaVA-7B-hf ./video-llava-7b-hf --verify
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from videollava_hf.cli.convert import build_parser, run
except ImportError:  # not installed: use the source tree next to this script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from videollava_hf.cli.convert import build_parser, run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(fixed_layout="transformers", prog="convert_transformers_to_hf.py")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
