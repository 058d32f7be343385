"""``vembed.SentenceTransformer``: a drop-in for the part of
sentence-transformers' ``SentenceTransformer`` that agents use, embedding on
the shared host instead of loading the model in this process.

``encode`` returns what sentence-transformers returns: a float32 numpy array,
1-D for one string and 2-D for a list (an empty list gives
``numpy.asarray([])``, as there); ``convert_to_tensor=True`` and
``convert_to_numpy=False`` give torch tensors (torch is imported only then,
and only if it is installed; without it, numpy arrays). Without numpy,
rows are ``array('f')``.
"""

import math
import os
import sys

from ._results import have_numpy
from .client import Client

# Constructor arguments of sentence-transformers that only matter to a model
# loaded in process; accepted and ignored.
_IGNORED_INIT = {
    "cache_folder",
    "trust_remote_code",
    "revision",
    "token",
    "use_auth_token",
    "local_files_only",
    "model_kwargs",
    "tokenizer_kwargs",
    "config_kwargs",
    "model_card_data",
    "backend",
}


def _torch(required):
    if "torch" in sys.modules:
        return sys.modules["torch"]
    try:
        import torch
    except ImportError:
        if required:
            raise ImportError(
                "convert_to_tensor=True needs torch; install it, or use convert_to_numpy=True"
            ) from None
        return None
    return torch


class SentenceTransformer:
    """Embeds with the model ``model_name_or_path`` (a hub name such as
    ``sentence-transformers/all-MiniLM-L6-v2`` or ``all-MiniLM-L6-v2``, or a
    model folder), resolved by the host as sentence-transformers resolves it;
    ``None`` is the host's unified model. ``device`` is accepted and ignored:
    the host runs the model. Pass ``client=`` to share a ``vembed.Client``."""

    similarity_fn_name = "cosine"

    def __init__(
        self,
        model_name_or_path=None,
        device=None,
        prompts=None,
        default_prompt_name=None,
        truncate_dim=None,
        *,
        client=None,
        **kwargs,
    ):
        unknown = set(kwargs) - _IGNORED_INIT
        if unknown:
            raise TypeError(
                "SentenceTransformer() got unexpected keyword arguments: %s"
                % ", ".join(sorted(unknown))
            )
        self._client = client or Client()
        self._np = have_numpy(None)
        name = model_name_or_path
        if name is not None and os.path.isdir(os.path.expanduser(name)):
            name = os.path.abspath(os.path.expanduser(name))
        self._model = name
        self.device = "cpu" if device is None else str(device)
        self.prompts = dict(prompts or {})
        self.default_prompt_name = default_prompt_name
        self.truncate_dim = truncate_dim
        # Load it in the host now, as sentence-transformers loads at construction.
        probe = self._embed([])
        self.model_name = probe.model
        self._dim = probe.dim
        self._max_seq_length = None
        for m in self._client.status()["models"]:
            if m["info"]["name"] == probe.model:
                self._max_seq_length = m["info"]["max_seq_length"]
                break

    def _embed(self, texts, batch_size=256):
        if self._model is None:
            return self._client._embed(texts, None, None, "Embed", batch_size)
        return self._client._embed(texts, None, self._model, "Embed", batch_size)

    @property
    def max_seq_length(self):
        """Word pieces per text after truncation, counting [CLS] and [SEP]."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value):
        if value != self._max_seq_length:
            raise NotImplementedError(
                "the vembed host truncates at the model's own max_seq_length (%s); "
                "it cannot be changed per client" % self._max_seq_length
            )

    def get_sentence_embedding_dimension(self):
        """The embedding dimension (after ``truncate_dim``)."""
        return self.truncate_dim if self.truncate_dim else self._dim

    def get_embedding_dimension(self):
        """The embedding dimension (sentence-transformers 6's name)."""
        return self.get_sentence_embedding_dimension()

    def get_max_seq_length(self):
        return self._max_seq_length

    def encode_query(self, sentences, **kwargs):
        """``encode`` with the ``query`` prompt, if the model has one."""
        if "query" in self.prompts and "prompt" not in kwargs and "prompt_name" not in kwargs:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences, **kwargs):
        """``encode`` with the ``document`` prompt, if the model has one."""
        if "document" in self.prompts and "prompt" not in kwargs and "prompt_name" not in kwargs:
            kwargs["prompt_name"] = "document"
        return self.encode(sentences, **kwargs)

    def encode(
        self,
        sentences,
        prompt_name=None,
        prompt=None,
        batch_size=32,
        show_progress_bar=None,
        output_value="sentence_embedding",
        precision="float32",
        convert_to_numpy=True,
        convert_to_tensor=False,
        device=None,
        normalize_embeddings=False,
        truncate_dim=None,
        pool=None,
        chunk_size=None,
        **kwargs,
    ):
        """Embeds one string (a 1-D result) or a list of strings (2-D)."""
        if kwargs:
            raise ValueError(
                "SentenceTransformer.encode() has been called with additional keyword arguments "
                "that vembed does not use: %s" % sorted(kwargs)
            )
        if output_value != "sentence_embedding":
            raise NotImplementedError(
                "output_value=%r: vembed returns sentence embeddings only" % (output_value,)
            )
        if precision != "float32":
            raise NotImplementedError("precision=%r: vembed returns float32 only" % (precision,))
        if pool is not None:
            raise NotImplementedError("pool=: the vembed host batches across processes itself")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a positive int")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if prompt is None:
            name = prompt_name or self.default_prompt_name
            if name is not None:
                if name not in self.prompts:
                    raise ValueError(
                        "prompt_name %r is not among the prompts: %s" % (name, sorted(self.prompts))
                    )
                prompt = self.prompts[name]
        if prompt:
            texts = [prompt + t for t in texts]
        np = self._np
        if not texts:
            if convert_to_tensor:
                return _torch(True).tensor([])
            if not convert_to_numpy or np is None:
                return []
            return np.asarray([])
        rows = self._encode_batches(texts, batch_size, show_progress_bar)
        dim = truncate_dim or self.truncate_dim
        if dim:
            rows = rows[:, :dim] if np is not None else [r[:dim] for r in rows]
        if normalize_embeddings:
            rows = _normalize(rows, np)
        if convert_to_tensor:
            torch = _torch(True)
            t = torch.from_numpy(np.ascontiguousarray(rows)) if np is not None else torch.tensor(
                [list(r) for r in rows], dtype=torch.float32
            )
            return t[0] if single else t
        if not convert_to_numpy:
            torch = _torch(False)
            if torch is not None and np is not None:
                out = [torch.from_numpy(np.array(r)) for r in rows]
            else:
                out = list(rows)
            return out[0] if single else out
        if np is not None:
            return rows[0] if single else rows
        return rows[0] if single else rows

    def _encode_batches(self, texts, batch_size, show_progress_bar):
        bar = None
        if show_progress_bar:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(texts), desc="Batches", unit="text")
            except ImportError:
                bar = None
        np = self._np
        if bar is None:
            # A writable float32 array over the reply's own buffer: no copy.
            return self._embed(texts, batch_size).vectors
        parts = []
        step = batch_size * 8
        try:
            for i in range(0, len(texts), step):
                e = self._embed(texts[i : i + step], batch_size)
                parts.append(e.vectors)
                bar.update(len(e))
        finally:
            bar.close()
        if np is not None:
            return np.concatenate(parts, axis=0)
        return [r for p in parts for r in p]

    def similarity(self, embeddings1, embeddings2):
        """Cosine similarities, ``len(embeddings1) × len(embeddings2)``: a torch
        tensor when given tensors, else a numpy array (lists without numpy)."""
        torch = sys.modules.get("torch")
        if torch is not None and (
            isinstance(embeddings1, torch.Tensor) or isinstance(embeddings2, torch.Tensor)
        ):
            a = torch.as_tensor(embeddings1, dtype=torch.float32)
            b = torch.as_tensor(embeddings2, dtype=torch.float32)
            a = a.unsqueeze(0) if a.dim() == 1 else a
            b = b.unsqueeze(0) if b.dim() == 1 else b
            a = torch.nn.functional.normalize(a, p=2, dim=1)
            b = torch.nn.functional.normalize(b, p=2, dim=1)
            return a @ b.T
        np = self._np
        if np is not None:
            a = np.atleast_2d(np.asarray(embeddings1, dtype=np.float32))
            b = np.atleast_2d(np.asarray(embeddings2, dtype=np.float32))
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
            b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
            return a @ b.T
        a = _normalize(_rows(embeddings1), None)
        b = _normalize(_rows(embeddings2), None)
        return [[sum(x * y for x, y in zip(r, s)) for s in b] for r in a]


def _rows(x):
    x = list(x)
    if x and not hasattr(x[0], "__len__"):
        return [x]
    return x


def _normalize(rows, np):
    if np is not None:
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    from array import array

    out = []
    for r in rows:
        n = math.sqrt(sum(v * v for v in r)) or 1.0
        out.append(array("f", (v / max(n, 1e-12) for v in r)))
    return out
