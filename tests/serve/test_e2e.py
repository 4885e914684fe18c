"""The server on real pipelines: MiniLM embeddings and a tiny classifier saved to disk, answers
equal to the pipeline's own, under a short concurrent load; and the command's input checks."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
import torch
from helpers import TINY_VOCAB, tiny_config
from serve.serving import running

from bertkit import heads
from bertkit.cli.main import main
from bertkit.heads import BertForSequenceClassification
from bertkit.inference import pipeline
from bertkit.serve.app import ServeSettings, create_app
from bertkit.tokenization import FullTokenizer

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
             "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums."]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(id2label={0: "negative", 1: "positive"}))
    directory = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(directory, tokenizer=FullTokenizer(TINY_VOCAB))
    return directory


@pytest.mark.slow
def test_real_embeddings_and_classifier_under_concurrent_load(minilm_path, classifier_dir):
    # fp32: int8 (auto's pick for embeddings on AVX2 and VNNI CPUs) scales activations per batch, so its
    # vectors move slightly with the batch's company; this test is about batching changing nothing.
    embedder, classifier = pipeline(minilm_path, dtype="fp32"), pipeline(classifier_dir, dtype="fp32")
    expected = {text: np.array(vector) for text, vector in zip(SENTENCES, embedder(SENTENCES))}
    app = create_app({"minilm": lambda: embedder, "clf": lambda: classifier}, ServeSettings())
    with running(app) as url:
        async def load():
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                semaphore = asyncio.Semaphore(16)

                async def one(i):
                    batch = [SENTENCES[(i * 3 + j) % len(SENTENCES)] for j in range(1 + i % 4)]
                    async with semaphore:
                        response = await client.post("/v1/embeddings", json={"input": batch, "model": "minilm"})
                    return batch, response
                return await asyncio.gather(*(one(i) for i in range(120)))

        for batch, response in asyncio.run(load()):
            assert response.status_code == 200, response.text
            vectors = np.array([d["embedding"] for d in response.json()["data"]])
            # other requests' sentences shared the batches: the padding differs, the vectors do not
            np.testing.assert_allclose(vectors, np.stack([expected[t] for t in batch]), atol=2e-5)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # MiniLM's Normalize module

        body = httpx.post(f"{url}/predict", json={"model": "clf", "inputs": ["the cat", "a red car"]}).json()
        assert body["task"] == "text-classification"
        want = classifier(["the cat", "a red car"])
        assert [o["label"] for o in body["outputs"]] == [w["label"] for w in want]
        np.testing.assert_allclose([o["score"] for o in body["outputs"]], [w["score"] for w in want], atol=1e-5)
        pair = httpx.post(f"{url}/predict", json={"model": "clf", "inputs": "the cat",
                                                  "parameters": {"text_pair": "a dog", "top_k": None}}).json()
        # pytest.approx takes no list of dicts (pytest >= 9.2): labels exactly, scores within 1e-5
        want = classifier("the cat", "a dog", top_k=None)
        assert [o["label"] for o in pair["outputs"]] == [w["label"] for w in want]
        np.testing.assert_allclose([o["score"] for o in pair["outputs"]], [w["score"] for w in want], atol=1e-5)

        response = httpx.post(f"{url}/predict", json={"model": "clf", "inputs": "a", "parameters": {"top_k": "two"}})
        assert response.status_code == 422
        assert response.json()["error"]["message"].startswith("parameters.top_k: input should be a valid integer")

        long_text = "the cat sat on the mat " * 60
        response = httpx.post(f"{url}/v1/embeddings", json={"input": [long_text], "model": "minilm", "truncate": False})
        assert response.status_code == 413 and "limit of 256 tokens" in response.json()["error"]["message"]
        response = httpx.post(f"{url}/v1/embeddings", json={"input": [long_text], "model": "minilm"})
        assert response.json()["truncated"] == [0] and response.json()["usage"]["prompt_tokens"] == 256
        info = httpx.get(f"{url}/info").json()
        assert {m["name"]: m["labels"] for m in info["models"]} == {"minilm": None, "clf": ["negative", "positive"]}


def test_serve_command_checks_its_models_before_loading(tmp_path, capsys, classifier_dir):
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert f"checkpoint not found: {tmp_path / 'missing'}" in capsys.readouterr().err  # no file, nor a hub name
    (tmp_path / "empty").mkdir()
    assert main(["serve", "--model", str(tmp_path / "empty")]) == 2
    assert "is not a checkpoint directory (no config.json)" in capsys.readouterr().err
    assert main(["serve", "--model", f"a={classifier_dir}", "--model", f"a={classifier_dir}"]) == 2
    assert "the name 'a' is given twice" in capsys.readouterr().err
    assert main(["serve", "--max_batch_tokens", "0"]) == 2
    assert "--max_batch_tokens must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_real_token_ids_tei_embed_and_rerank(minilm_path, tmp_path):
    torch.manual_seed(0)
    cross_encoder = BertForSequenceClassification(tiny_config(num_labels=1))  # one score per pair
    cross_encoder.save_pretrained(tmp_path, tokenizer=FullTokenizer(TINY_VOCAB))
    embedder, reranker = pipeline(minilm_path, dtype="fp32"), pipeline(tmp_path, dtype="fp32")
    app = create_app({"minilm": lambda: embedder, "rr": lambda: reranker}, ServeSettings())
    with running(app) as url:
        ids = embedder.tokenizer.text_to_ids(SENTENCES[0])
        body = httpx.post(f"{url}/v1/embeddings", json={"input": [ids], "model": "minilm"}).json()
        np.testing.assert_allclose(body["data"][0]["embedding"], embedder(SENTENCES[0]), atol=2e-5)
        vectors = httpx.post(f"{url}/embed", json={"inputs": SENTENCES[:3]}).json()
        np.testing.assert_allclose(vectors, embedder(SENTENCES[:3]), atol=2e-5)  # MiniLM normalises anyway
        texts = ["the cat sat", "a red car", "the dog and the cat"]
        ranked = httpx.post(f"{url}/rerank", json={"query": "the cat", "texts": texts, "raw_scores": True}).json()
        logits = [answer["score"] for answer in reranker([("the cat", text) for text in texts])]
        assert [r["index"] for r in ranked] == sorted(range(3), key=lambda i: -logits[i])
        np.testing.assert_allclose([r["score"] for r in ranked], sorted(logits, reverse=True), atol=1e-5)


def test_a_question_without_context_is_400_not_500(tmp_path):
    heads.BertForQuestionAnswering(tiny_config()).save_pretrained(tmp_path, tokenizer=FullTokenizer(TINY_VOCAB))
    qa = pipeline(tmp_path, task="question-answering", max_seq_length=32)
    with running(create_app({"qa": lambda: qa}, ServeSettings())) as url:
        for context in ("", "   "):
            response = httpx.post(f"{url}/predict", json={"inputs": {"question": "where?", "context": context}})
            assert response.status_code == 400, response.text
            assert "inputs 0 gives the model nothing to read" in response.json()["error"]["message"]
        body = httpx.post(f"{url}/predict", json={"inputs": "where?", "parameters": {"context": "in the house"}}).json()
        assert body["outputs"]["answer"] in "in the house"


def test_chinese_ner_through_predict_and_serve(tmp_path, capsys):
    """A character-level Chinese NER model (config.json: word_unit char, BIOES labels) answers the same
    through the pipeline, `bertkit predict` and the server's /predict, and every entity's offsets
    slice its word out of the caller's text (digits, Latin letters and spaces included)."""
    chars = list("新华社记者在北京上海说年我们") + list("0123456789")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n", encoding="utf-8")
    labels = ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-ORG", "I-ORG", "E-ORG", "S-ORG"]
    torch.manual_seed(0)
    model = heads.BertForTokenClassification(tiny_config(vocab_size=len(chars) + 5, num_labels=len(labels),
                                                   id2label=dict(enumerate(labels))))
    model.config.extra.update({"label_scheme": "BIOES", "word_unit": "char", "max_seq_length": 16})
    directory = tmp_path / "zh_ner"
    model.save_pretrained(directory, tokenizer=FullTokenizer(vocab))
    text = "2006年 新华社记者在北京说：我们在上海NBA"
    expected = pipeline(directory)(text)
    assert len(expected) >= 2 and all(text[e["start"]:e["end"]] == e["word"] for e in expected)

    assert main(["-q", "predict", "--model", str(directory), text]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(expected))
    app = create_app({"zh": lambda: pipeline(directory)}, ServeSettings())
    with running(app) as url:
        reply = httpx.post(f"{url}/predict", json={"inputs": text}, timeout=60)
    assert reply.status_code == 200 and expected[0]["word"] in reply.text  # UTF-8 text, not \u escapes
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in reply.json()["outputs"]] == [
        (e["entity_group"], e["word"], e["start"], e["end"]) for e in expected]
