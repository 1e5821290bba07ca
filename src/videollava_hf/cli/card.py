"""`videollava-hf card MODEL_DIR`: write a Hub model card (README.md with YAML metadata) for a checkpoint folder."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..conversion.modelcard import write_model_card

    try:
        path = write_model_card(
            args.model_dir,
            source=args.source,
            model_id=args.model_id,
            base_model=args.base_model,
            base_model_relation=args.base_model_relation,
            license=args.license,
            datasets=args.dataset,
            tags=args.tag or (),
            include_paper_results=args.paper_results,
            overwrite=args.overwrite,
        )
    except FileExistsError as err:  # a usage error like the others: one line, exit 2 (run_command)
        raise ValueError(str(err)) from err
    print(f"Wrote {path}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "card",
        help="Write a Hub model card (README.md) for a checkpoint folder.",
        description="Write README.md with Hub metadata (pipeline_tag, library, base model, license, datasets, tags), "
        "a usage snippet and, for conversions of the original weights, the paper's results.",
    )
    parser.add_argument("model_dir", help="checkpoint folder (its config.json fills the architecture section)")
    parser.add_argument(
        "--source",
        choices=("original", "transformers", "trained"),
        default="trained",
        help="how the weights were made: converted from the original release or the built-in port, "
        "or trained with this package (default)",
    )
    parser.add_argument("--model-id", help="Hub repo id used as the title and in the usage snippet")
    parser.add_argument("--base-model", help="Hub id of the model these weights derive from")
    parser.add_argument(
        "--base-model-relation",
        choices=("adapter", "merge", "quantized", "finetune"),
        help="relation to the base model (default: finetune for trained models, none for conversions)",
    )
    parser.add_argument("--license", help="license id (default: llama2 for Vicuna-derived weights, else apache-2.0)")
    parser.add_argument("--dataset", action="append", help="Hub dataset id used for training (repeatable)")
    parser.add_argument("--tag", action="append", help="extra tag (repeatable)")
    results = parser.add_mutually_exclusive_group()
    results.add_argument(
        "--paper-results",
        dest="paper_results",
        action="store_true",
        default=None,
        help="include the paper's benchmark tables",
    )
    results.add_argument(
        "--no-paper-results", dest="paper_results", action="store_false", help="leave the paper's benchmark tables out"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing README.md")
    parser.set_defaults(func=run)


__all__ = ["register", "run"]
