"""Real HTTP clients from PyPI, unchanged, against the host's HTTP endpoints:
the openai SDK, langchain-openai (default settings: cl100k token ids),
langchain-ollama, ollama-python, and LlamaIndex's TEI and Ollama classes.
Each returns the vectors `vembed embed` gives, in input order."""

import json
import os
import subprocess
import sys

import httpx
import pytest

from conftest import cosine

TEXTS = [
    "find the function that validates email addresses",
    "def parse_header(line):\n    return line.split(':', 1)",
    "Quarterly revenue grew by twelve percent on strong cloud sales.",
    "日本語のテキストも埋め込めます",
    "x",
]


@pytest.fixture(scope="module")
def reference(http_host):
    return http_host.vembed_embed(TEXTS)


def same(rows, ref):
    assert len(rows) == len(ref)
    for i, (a, b) in enumerate(zip(rows, ref)):
        assert len(a) == len(b) == 384, i
        c = cosine(a, b)
        assert c >= 0.99999, (i, c)


class Recorder:
    """An httpx event hook keeping each request's JSON body."""

    def __init__(self):
        self.bodies = []

    def __call__(self, request):
        self.bodies.append(json.loads(request.content or b"null"))


def test_openai_sdk_base64_default_and_float(http_host, reference):
    import openai

    vectors, tokens = reference
    rec = Recorder()
    c = openai.OpenAI(base_url=http_host.url + "/v1", api_key="unused", http_client=httpx.Client(event_hooks={"request": [rec]}))
    r = c.embeddings.create(model="all-minilm", input=TEXTS)
    assert rec.bodies[-1]["encoding_format"] == "base64", rec.bodies[-1]
    same([d.embedding for d in r.data], vectors)
    assert [d.index for d in r.data] == list(range(len(TEXTS)))
    assert r.usage.prompt_tokens == sum(tokens) and r.usage.total_tokens == sum(tokens)
    r = c.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=TEXTS, encoding_format="float")
    same([d.embedding for d in r.data], vectors)
    assert r.model == "sentence-transformers/all-MiniLM-L6-v2"
    one = c.embeddings.create(model="all-minilm", input=TEXTS[0], dimensions=128)
    assert len(one.data[0].embedding) == 128
    assert [m.id for m in c.models.list()] == ["sentence-transformers/all-MiniLM-L6-v2"]
    with pytest.raises(openai.NotFoundError) as e:
        c.embeddings.create(model="text-embedding-3-small", input="x")
    assert "all-MiniLM-L6-v2" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        c.embeddings.create(model="all-minilm", input=[])


def test_openai_sdk_reads_openai_base_url(http_host, reference):
    prog = (
        "import json, openai\n"
        "r = openai.OpenAI().embeddings.create(model='all-minilm', input=%r)\n"
        "print(json.dumps([d.embedding for d in r.data]))\n" % TEXTS
    )
    env = dict(os.environ, OPENAI_BASE_URL=http_host.url + "/v1", OPENAI_API_KEY="unused")
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    same(json.loads(out.stdout), reference[0])


def test_langchain_openai_with_default_settings(http_host, reference, tiktoken_cache):
    from langchain_openai import OpenAIEmbeddings

    rec = Recorder()
    e = OpenAIEmbeddings(
        model="all-minilm",
        base_url=http_host.url + "/v1",
        api_key="unused",
        http_client=httpx.Client(event_hooks={"request": [rec]}),
    )
    assert e.check_embedding_ctx_length is True
    same(e.embed_documents(TEXTS), reference[0])
    same([e.embed_query(TEXTS[0])], reference[0][:1])
    # The default really sent cl100k token ids, not text.
    sent = rec.bodies[0]["input"]
    assert isinstance(sent, list) and all(isinstance(x, list) and all(isinstance(i, int) for i in x) for x in sent), sent


def test_langchain_ollama(http_host, reference):
    from langchain_ollama import OllamaEmbeddings

    e = OllamaEmbeddings(model="all-minilm", base_url=http_host.url)
    same(e.embed_documents(TEXTS), reference[0])
    same([e.embed_query(TEXTS[1])], reference[0][1:2])


def test_ollama_python_client_and_module_functions(http_host, reference):
    import ollama

    c = ollama.Client(host=http_host.url)
    r = c.embed(model="all-minilm", input=TEXTS)
    same(r.embeddings, reference[0])
    assert r.prompt_eval_count == sum(reference[1])
    for i, t in enumerate(TEXTS):
        same([c.embeddings(model="all-minilm:l6-v2", prompt=t).embedding], reference[0][i : i + 1])
    with pytest.raises(ollama.ResponseError) as e:
        c.embed(model="nomic-embed-text", input="x")
    assert e.value.status_code == 404
    names = [m.model for m in c.list().models]
    assert "all-minilm:latest" in names, names
    # ollama.embed / ollama.embeddings, the module-level functions, read OLLAMA_HOST.
    prog = (
        "import json, ollama\n"
        "a = ollama.embed(model='all-minilm', input=%r).embeddings\n"
        "b = [ollama.embeddings(model='all-minilm', prompt=t).embedding for t in %r]\n"
        "print(json.dumps([a, b]))\n" % (TEXTS, TEXTS)
    )
    env = dict(os.environ, OLLAMA_HOST=http_host.url)
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    a, b = json.loads(out.stdout)
    same(a, reference[0])
    same(b, reference[0])


def test_llama_index_tei_and_ollama_classes(http_host, reference):
    from llama_index.embeddings.ollama import OllamaEmbedding
    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    tei = TextEmbeddingsInference(model_name="all-minilm", base_url=http_host.url, timeout=120, embed_batch_size=2)
    same(tei.get_text_embedding_batch(TEXTS), reference[0])
    same([tei.get_query_embedding(TEXTS[2])], reference[0][2:3])
    oll = OllamaEmbedding(model_name="all-minilm", base_url=http_host.url)
    same(oll.get_text_embedding_batch(TEXTS), reference[0])


def test_metrics_parse_as_prometheus_text_and_count_exactly(http_host):
    import openai
    from prometheus_client.parser import text_string_to_metric_families

    def counts():
        fams = {f.name: f for f in text_string_to_metric_families(http_host.metrics())}
        out = {}
        for s in fams["vembed_http_requests"].samples:
            if s.name == "vembed_http_requests_total":
                out[(s.labels["endpoint"], s.labels["status"])] = s.value
        hist = {s.labels.get("le"): s.value for s in fams["vembed_batch_texts"].samples if s.name.endswith("_bucket")}
        assert hist["+Inf"] >= max(v for v in hist.values())
        assert fams["vembed_host_memory_bytes"].type == "gauge"
        return out

    before = counts()
    c = openai.OpenAI(base_url=http_host.url + "/v1", api_key="unused", max_retries=0)
    for i in range(5):
        c.embeddings.create(model="all-minilm", input=["metrics %d" % i])
    for _ in range(2):
        with pytest.raises(openai.NotFoundError):
            c.embeddings.create(model="no-such-model", input=["x"])
    after = counts()
    delta = lambda k: after.get(k, 0) - before.get(k, 0)  # noqa: E731
    assert delta(("/v1/embeddings", "200")) == 5
    assert delta(("/v1/embeddings", "404")) == 2
