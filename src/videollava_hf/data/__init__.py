"""Data utilities for videollava_hf (synthetic media, dataset formats).

Submodules are imported explicitly (e.g. ``videollava_hf.data.synthetic``) so
importing this package stays cheap and pulls in no heavy dependencies.
"""
