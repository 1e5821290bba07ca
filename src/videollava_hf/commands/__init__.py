"""Sub-commands of the `videollava-hf` CLI: each module defines `register(subparsers)`, which adds its parser and
sets `func` (called with the parsed arguments, returning an exit code)."""
