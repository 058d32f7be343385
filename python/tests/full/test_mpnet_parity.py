"""all-mpnet-base-v2 through vembed.SentenceTransformer against
sentence-transformers itself (from PyPI, torch and all) on the same
folder: the same facts (768 dimensions, 384 tokens), types and shapes, and
the same vectors to cosine >= 0.9999 on every golden text, including texts
cut at 384 tokens, CJK, emoji and literal special tokens. It also checks
that the committed golden file is what this sentence-transformers gives."""

import json
import os

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer as Reference

import vembed
from conftest import ROOT

NAME = "sentence-transformers/all-mpnet-base-v2"
MPNET_DIR = os.path.join(
    os.environ.get("VEMBED_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vembed"),
    "models",
    "sentence-transformers--all-mpnet-base-v2",
)


@pytest.fixture(scope="module")
def pair(host_env):
    assert os.path.isfile(os.path.join(MPNET_DIR, "model.safetensors")), (
        "run `vembed model fetch %s` first (scripts/test does)" % NAME
    )
    return vembed.SentenceTransformer(NAME), Reference(MPNET_DIR, device="cpu")


@pytest.fixture(scope="module")
def golden():
    with open(os.path.join(ROOT, "tests", "golden", "all-mpnet-base-v2.json")) as f:
        return json.load(f)["items"]


def cosines(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_the_model_facts_match(pair):
    ours, theirs = pair
    assert ours.get_sentence_embedding_dimension() == theirs.get_sentence_embedding_dimension() == 768
    assert ours.max_seq_length == theirs.max_seq_length == 384


def test_every_golden_text_matches_sentence_transformers_live(pair, golden):
    ours, theirs = pair
    texts = [i["text"] for i in golden]
    a = ours.encode(texts)
    b = theirs.encode(texts)
    assert a.shape == b.shape == (len(texts), 768) and a.dtype == b.dtype
    worst = cosines(a, b).min()
    assert worst >= 0.9999, worst
    # One at a time, as a query comes.
    alone = np.stack([ours.encode(t) for t in texts])
    assert cosines(alone, b).min() >= 0.9999
    # The committed golden file is this sentence-transformers' output.
    assert cosines(b, [i["embedding"] for i in golden]).min() >= 0.99999
    for item in golden:
        ids = theirs.tokenizer(item["text"], truncation=True, max_length=384)["input_ids"]
        assert ids == item["input_ids"], item["text"][:40]


@pytest.mark.parametrize(
    "inputs, kwargs",
    [
        ("one string", {}),
        (["a", "", "日本語のテキストも", "word " * 500], {}),
        (["a", "b"], {"convert_to_tensor": True}),
        (["a", "b"], {"convert_to_numpy": False}),
        (["a", "b"], {"truncate_dim": 256, "normalize_embeddings": True}),
    ],
)
def test_encode_has_sentence_transformers_shapes(pair, inputs, kwargs):
    ours, theirs = pair
    a = ours.encode(inputs, **kwargs)
    b = theirs.encode(inputs, **kwargs)
    if isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b)
        assert [tuple(x.shape) for x in a] == [tuple(x.shape) for x in b]
        a, b = torch.stack(a), torch.stack(b)
    elif isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
    else:
        assert type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype
    a, b = np.atleast_2d(np.asarray(a)), np.atleast_2d(np.asarray(b))
    assert cosines(a, b).min() >= 0.9999
