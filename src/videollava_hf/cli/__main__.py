"""`python -m videollava_hf.cli ...`, which is also how `accelerate launch -m videollava_hf.cli describe ...` starts
one process per device (each answers its shard of the batches; see `videollava_hf.inference.engines`)."""

import sys

from . import main

sys.exit(main())
