"""vembed.SentenceTransformer against sentence-transformers itself (installed
from PyPI, torch and all): the same types, shapes and dtypes on the same
inputs, and the same vectors to cosine >= 0.9999."""

import os

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer as Reference

import vembed
from conftest import MODEL_NAME

MODEL_DIR = os.path.join(
    os.path.expanduser("~"), ".cache", "vembed", "models", "sentence-transformers--all-MiniLM-L6-v2"
)


@pytest.fixture(scope="module")
def pair(host_env):
    assert os.path.isfile(os.path.join(MODEL_DIR, "model.safetensors")), "run `vembed model fetch` first"
    return vembed.SentenceTransformer(MODEL_NAME), Reference(MODEL_DIR, device="cpu")


def describe(x):
    if isinstance(x, list):
        return ("list", len(x), describe(x[0]) if x else None)
    if isinstance(x, torch.Tensor):
        return ("tensor", tuple(x.shape), str(x.dtype))
    return (type(x).__name__, tuple(x.shape), str(x.dtype))


def rows(x):
    if isinstance(x, list):
        return [np.asarray(r, dtype=np.float64).ravel() for r in x]
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return []
    return [a] if a.ndim == 1 else list(a)


def close(a, b):
    assert len(rows(a)) == len(rows(b))
    for x, y in zip(rows(a), rows(b)):
        c = float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
        assert c >= 0.9999, c


TEXTS = [
    "find the function that validates email addresses",
    "def parse_header(line):\n    return line.split(':', 1)",
    "",
    "日本語のテキストも",
    "word " * 400,  # truncated at max_seq_length
]


@pytest.mark.parametrize(
    "inputs, kwargs",
    [
        ("one string", {}),
        (TEXTS, {}),
        ([], {}),
        (TEXTS, {"batch_size": 1}),
        (TEXTS, {"normalize_embeddings": True}),
        (TEXTS, {"convert_to_numpy": False}),
        ("one string", {"convert_to_numpy": False}),
        (TEXTS, {"convert_to_tensor": True}),
        ("one string", {"convert_to_tensor": True}),
        ([], {"convert_to_tensor": True}),
        ([], {"convert_to_numpy": False}),
        (tuple(TEXTS[:2]), {}),
        (TEXTS, {"prompt": "query: "}),
        (TEXTS, {"truncate_dim": 64, "normalize_embeddings": True}),
    ],
)
def test_encode_matches_sentence_transformers(pair, inputs, kwargs):
    ours, theirs = pair
    a = ours.encode(inputs, **kwargs)
    b = theirs.encode(inputs, **kwargs)
    assert describe(a) == describe(b)
    close(a, b)


def test_the_model_facts_match(pair):
    ours, theirs = pair
    assert ours.get_sentence_embedding_dimension() == theirs.get_sentence_embedding_dimension() == 384
    assert ours.max_seq_length == theirs.max_seq_length == 256
    assert ours.similarity_fn_name == theirs.similarity_fn_name
    a, b = ours.encode(TEXTS[:2]), ours.encode(TEXTS[2:])
    np.testing.assert_allclose(ours.similarity(a, b), theirs.similarity(a, b).numpy(), atol=1e-6)
    t = ours.similarity(torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(t, torch.Tensor) and tuple(t.shape) == (2, 3)


def test_unknown_arguments_are_errors_not_silence(pair):
    ours, _ = pair
    with pytest.raises(ValueError, match="bogus"):
        ours.encode("x", bogus=True)
    with pytest.raises(NotImplementedError, match="token_embeddings"):
        ours.encode("x", output_value="token_embeddings")
    with pytest.raises(NotImplementedError, match="int8"):
        ours.encode("x", precision="int8")
    with pytest.raises(TypeError, match="unexpected keyword"):
        vembed.SentenceTransformer(MODEL_NAME, not_an_option=1)


def test_a_model_folder_and_short_names_resolve_as_in_sentence_transformers(pair):
    ours, _ = pair
    ref = ours.encode(TEXTS[0])
    for name in (MODEL_DIR, "all-MiniLM-L6-v2"):
        other = vembed.SentenceTransformer(name).encode(TEXTS[0])
        close(ref, other)


def test_a_progress_bar_when_asked_for(pair, capsys):
    ours, _ = pair
    ours.encode(["a", "b", "c"], show_progress_bar=True)
    assert "Batches" in capsys.readouterr().err
    ours.encode(["a", "b", "c"])
    assert "Batches" not in capsys.readouterr().err
