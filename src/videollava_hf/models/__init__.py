"""Model folders (one per architecture), laid out as Transformers' `models/` are."""
