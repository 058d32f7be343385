"""A LlamaIndex ``BaseEmbedding`` backed by the vembed host.

    from vembed.llama_index import VembedEmbedding
    Settings.embed_model = VembedEmbedding()

Importing this module imports ``llama_index.core``; ``import vembed`` does not.
"""

from typing import Any, List, Optional

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from .aio import AsyncClient
from .client import Client


class VembedEmbedding(BaseEmbedding):
    """Texts and queries embedded by the host's model for ``role`` (``"code"``,
    ``"tools"``, default the unified model) or a named ``model``."""

    role: Optional[str] = None
    socket: Optional[str] = None
    _client: Any = PrivateAttr(default=None)
    _async: Any = PrivateAttr(default=None)

    def __init__(self, model_name: str = "vembed", **kwargs: Any) -> None:
        super().__init__(model_name=model_name, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "VembedEmbedding"

    def _model(self):
        return None if self.model_name == "vembed" else self.model_name

    def _sync(self):
        if self._client is None:
            self._client = Client(self.socket)
        return self._client

    def _aio(self):
        if self._async is None:
            self._async = AsyncClient(self.socket)
        return self._async

    def _get_query_embedding(self, query: str) -> List[float]:
        return self._get_text_embeddings([query])[0]

    def _get_text_embedding(self, text: str) -> List[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        return self._sync().embed(list(texts), role=self.role, model=self._model()).tolist()

    async def _aget_query_embedding(self, query: str) -> List[float]:
        return (await self._aget_text_embeddings([query]))[0]

    async def _aget_text_embedding(self, text: str) -> List[float]:
        return (await self._aget_text_embeddings([text]))[0]

    async def _aget_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        e = await self._aio().embed(list(texts), role=self.role, model=self._model())
        return e.tolist()
