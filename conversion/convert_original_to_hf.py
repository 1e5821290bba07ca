"""Convert an ORIGINAL Video-LLaVA checkpoint (e.g. LanguageBind/Video-LLaVA-7B) to the videollava-hf format.

Thin wrapper over `videollava_hf.conversion.original.convert_original_checkpoint` (same options as
`videollava-hf convert --layout original`); see docs/conversion.md. Run with the package installed, or from the
repository root (the script then finds `src/` itself):

    python conversion/convert_original_to_hf.py LanguageBind/Video-LLaVA-7B ./video-llava-7b --verify
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
    parser = build_parser(fixed_layout="original", prog="convert_original_to_hf.py")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
