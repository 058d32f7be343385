"""The LangChain and LlamaIndex adapters, with langchain-core and
llama-index-core from PyPI."""

import asyncio

from conftest import cosine

DOCS = [
    "The cat sat on the warm windowsill all afternoon.",
    "To reset a forgotten password, click 'Forgot password' on the login page.",
    "Quarterly revenue grew by twelve percent on strong cloud sales.",
]


def test_langchain_in_memory_vector_store(host_env):
    from langchain_core.vectorstores import InMemoryVectorStore

    from vembed.langchain import VembedEmbeddings

    emb = VembedEmbeddings()
    store = InMemoryVectorStore.from_texts(DOCS, embedding=emb)
    hit = store.similarity_search("I can't log in, how do I change my password?", k=1)
    assert hit[0].page_content == DOCS[1]
    q = emb.embed_query("kitten napping in the sun")
    d = emb.embed_documents(DOCS)
    assert isinstance(q, list) and isinstance(q[0], float) and len(q) == 384
    assert max(range(3), key=lambda i: cosine(q, d[i])) == 0

    async def both():
        return await emb.aembed_query("kitten napping in the sun"), await emb.aembed_documents(DOCS)

    aq, ad = asyncio.run(both())
    assert cosine(aq, q) >= 0.99999 and all(cosine(x, y) >= 0.99999 for x, y in zip(ad, d))

    async def search():
        return await store.asimilarity_search("company earnings", k=1)

    assert asyncio.run(search())[0].page_content == DOCS[2]


def test_llama_index_embedding(host_env):
    from llama_index.core import Document, VectorStoreIndex

    from vembed.llama_index import VembedEmbedding

    emb = VembedEmbedding()
    q = emb.get_query_embedding("kitten napping in the sun")
    t = emb.get_text_embedding(DOCS[0])
    batch = emb.get_text_embedding_batch(DOCS)
    assert len(q) == 384 and len(batch) == 3 and cosine(t, batch[0]) >= 0.99999
    assert cosine(asyncio.run(emb.aget_query_embedding("kitten napping in the sun")), q) >= 0.99999
    index = VectorStoreIndex.from_documents([Document(text=d) for d in DOCS], embed_model=emb)
    nodes = index.as_retriever(similarity_top_k=1).retrieve("how do I change my password")
    assert nodes[0].node.get_content() == DOCS[1]
