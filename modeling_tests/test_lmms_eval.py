"""lmms-eval's generic Hugging Face chat model (`--model huggingface`, lmms_eval.models.chat.huggingface) on the demo
model, and the pieces of our interface it relies on (those run without lmms-eval).

Gaps found (docs/serving.md): lmms-eval 0.7.3 picks the model class with `config.model_type in
AutoModelForImageTextToText._model_mapping.keys()`, which compares a string with config classes and is never true
under Transformers 5, so it falls back to `AutoModel` (the model without its LM head) for every model; the test swaps
in AutoModelForImageTextToText there, the one line it patches. Its evaluator (`simple_evaluate`) imports
`filelock._api`, gone in filelock 4, so the run drives the model class's `generate_until` directly."""

from __future__ import annotations

import pytest
import torch

from videollava_hf.demo import demo_model_dir, sample_video_path

QUESTIONS = [("What colour is the shape?", "red"), ("How many shapes are there?", None), ("What shape is it?", None)]


def _messages(question: str, key: str = "video") -> list[dict]:
    return [{"role": "user", "content": [{"type": "video", key: str(sample_video_path())},
                                         {"type": "text", "text": question}]}]


@pytest.fixture(scope="module")
def auto_parts():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(demo_model_dir()).eval()
    return model, AutoProcessor.from_pretrained(demo_model_dir())


def _greedy(model, processor, texts, videos, **extra):
    inputs = processor(text=texts, videos=videos, padding=True, return_tensors="pt", **extra)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_the_interface_lmms_eval_uses(auto_parts):
    """Auto classes, a template that renders {"type": "video", "video": path}, processor(videos=[paths]) with empty
    images/audios lists, left padding: a padded batch answers as each prompt alone."""
    model, processor = auto_parts
    assert type(model).__name__ == "VideoLlavaForConditionalGeneration"
    assert processor.tokenizer.padding_side == "left"
    texts = [processor.apply_chat_template(_messages(q), tokenize=False, add_generation_prompt=True)
             for q, _ in QUESTIONS]
    assert all(t.count("<video>") == 1 for t in texts)
    video = str(sample_video_path())
    batched = _greedy(model, processor, texts, [video] * len(texts), images=[], audios=[])
    alone = [_greedy(model, processor, [t], [video])[0] for t in texts]
    assert batched == alone
    assert batched[0].strip() == "red"
    with pytest.raises(ValueError, match="audio"):
        processor(text=texts[:1], videos=[video], audios=["speech.wav"])


def test_lmms_eval_huggingface_model_class(monkeypatch):
    pytest.importorskip("lmms_eval", reason="lmms-eval is installed by .ci/run (pip install --no-deps)")
    import lmms_eval.models.chat.huggingface as hf_chat
    from lmms_eval.api.instance import Instance
    from transformers import AutoModelForImageTextToText

    monkeypatch.setattr(hf_chat, "AutoModel", AutoModelForImageTextToText)  # lmms-eval's selection gap (docstring)
    lmm = hf_chat.Huggingface(pretrained=str(demo_model_dir()), device="cpu", device_map="cpu", batch_size=2)
    docs = [{"video": str(sample_video_path()), "question": q} for q, _ in QUESTIONS]

    def doc_to_messages(doc):  # lmms-eval's protocol format: media items carry a "url"
        return _messages(doc["question"], key="url")

    lmm.task_dict = {"shapes": {"test": docs}}
    requests = [
        Instance(request_type="generate_until", arguments=("", doc_to_messages, {"max_new_tokens": 8}, i, "shapes",
                                                           "test"),
                 idx=0, metadata={"task": "shapes", "doc_id": i, "repeats": 1})
        for i in range(len(docs))
    ]
    answers = [r.text.strip() for r in lmm.generate_until(requests)]
    assert answers[0] == "red"
    model, processor = lmm.model, lmm.processor
    texts = [processor.apply_chat_template(_messages(q), tokenize=False, add_generation_prompt=True)
             for q, _ in QUESTIONS]
    alone = [_greedy(model.float(), processor, [t], [str(sample_video_path())])[0].strip() for t in texts]
    assert answers == alone  # the harness's batched bf16 run answers as our own greedy decode
