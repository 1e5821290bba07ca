"""docs/ecosystem.md tells the truth: its snippets run as written, in order, and print what they say.

The Python blocks run in one namespace (as a reader pastes them into one session) in a scratch folder holding the
repository's sample media as `media/`; the shell block's commands run through the real CLI entry point."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "ecosystem.md"
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(DOC.read_text(encoding="utf-8")) if lang == language]


def test_snippets_run_in_order(tmp_path, fixtures_dir, monkeypatch, capsys):
    from videollava_hf.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "media").symlink_to(fixtures_dir, target_is_directory=True)
    python, shell = blocks("python"), blocks("bash")
    assert len(python) == 5 and len(shell) == 1
    namespace: dict = {"__name__": "ecosystem_doc"}
    for code in python:
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102  (our own documentation)
    printed = capsys.readouterr().out
    assert "torch.Size([1, 3, 48, 48])" in printed and "torch.Size([2, 4, 3, 48, 48])" in printed
    assert "4 True" in printed
    assert namespace["metrics"]["count"] == 2 and namespace["metrics"]["media_errors"] == 0
    assert namespace["answer"].shape[0] == 1
    for line in shell[0].strip().splitlines():
        argv = shlex.split(line)
        assert argv[0] == "videollava-hf"
        assert main(argv[1:] + ["--device", "cpu"]) == 0, capsys.readouterr().err
    answers = (tmp_path / "answers.jsonl").read_text().splitlines()
    assert len(answers) == 2 and all('"answer"' in a for a in answers)
    assert (tmp_path / "eval_clips" / "metrics.json").is_file()
