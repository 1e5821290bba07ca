"""Shared fixtures: tiny tokenizer / configs / processors built offline, and paths to the real sample media."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import videollava_hf  # noqa: F401  (registers the Auto classes)
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/fixtures beside the checkout (CI's layout); VIDEOLLAVA_FIXTURES points elsewhere (e.g. a git worktree).
FIXTURES = Path(os.environ.get("VIDEOLLAVA_FIXTURES") or REPO_ROOT.parent / "shared" / "fixtures")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"Sample media not found at {FIXTURES}; the tests expect ../shared/fixtures beside the checkout.")
    return FIXTURES


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture()
def make_config(tokenizer):
    def factory(**overrides):
        return tiny_config(tokenizer, **overrides)

    return factory


@pytest.fixture()
def make_processor(tokenizer):
    def factory(config, **kwargs):
        return tiny_processor(config, tokenizer, **kwargs)

    return factory


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
