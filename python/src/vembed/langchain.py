"""A LangChain ``Embeddings`` backed by the vembed host.

    from vembed.langchain import VembedEmbeddings
    store = InMemoryVectorStore.from_texts(texts, embedding=VembedEmbeddings())

Importing this module imports ``langchain_core``; ``import vembed`` does not.
"""

from langchain_core.embeddings import Embeddings

from .aio import AsyncClient
from .client import Client


class VembedEmbeddings(Embeddings):
    """Documents and queries embedded by the host's model for ``role``
    (``"code"`` for code search, ``"tools"``, default the unified model) or a
    named ``model``. Vectors are lists of floats, as LangChain expects."""

    def __init__(self, model=None, role=None, socket=None, client=None, async_client=None):
        self.model = model
        self.role = role
        self._socket = socket
        self._client = client
        self._async = async_client

    def _sync(self):
        if self._client is None:
            self._client = Client(self._socket)
        return self._client

    def _aio(self):
        if self._async is None:
            self._async = AsyncClient(self._socket)
        return self._async

    def embed_documents(self, texts):
        return self._sync().embed(list(texts), role=self.role, model=self.model).tolist()

    def embed_query(self, text):
        return self._sync().embed([text], role=self.role, model=self.model).tolist()[0]

    async def aembed_documents(self, texts):
        e = await self._aio().embed(list(texts), role=self.role, model=self.model)
        return e.tolist()

    async def aembed_query(self, text):
        e = await self._aio().embed([text], role=self.role, model=self.model)
        return e.tolist()[0]
