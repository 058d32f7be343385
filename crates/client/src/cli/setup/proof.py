# Run by `vembed setup victor` with the interpreter of Victor's environment,
# as any Victor process runs there (the settings `setup` made apply): Victor's
# own bootstrap, its own tool registry and SemanticToolSelector built from its
# own settings the way its agent factory builds it, and its own `code` tool
# searching a small sample repository. Prints one JSON line.
import asyncio
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time

SAMPLE = {
    "auth/passwords.py": (
        "import hashlib\n\n\n"
        "def hash_password(password, salt):\n"
        '    """Derive a storage hash from a user\'s password with PBKDF2."""\n'
        "    return hashlib.pbkdf2_hmac('sha256', password.encode(), salt, 100_000)\n"
    ),
    "net/retry.rs": (
        "/// Calls `f` until it succeeds, sleeping twice as long after each failure.\n"
        "pub fn retry_with_backoff<T, E>(mut f: impl FnMut() -> Result<T, E>, tries: u32) -> Result<T, E> {\n"
        "    let mut last = f();\n"
        "    for _ in 1..tries { if last.is_ok() { break; } last = f(); }\n"
        "    last\n"
        "}\n"
    ),
    "web/cart.js": (
        "export function cartTotal(items) {\n"
        "  // Sum price times quantity over the shopping cart, then apply tax.\n"
        "  return items.reduce((s, i) => s + i.price * i.qty, 0) * 1.2;\n"
        "}\n"
    ),
}
TOOL_QUERY = "run the test suite and tell me which tests fail"
CODE_QUERY = "derive a storage hash from a user's password"


class Fallbacks(logging.Handler):
    """Victor logs a warning, then goes on with random vectors, when an
    embedding call fails: every such warning is a failed proof."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.counts = {}

    def emit(self, record):
        text = record.getMessage()
        if "embedding" in text.lower() and ("fail" in text.lower() or "random" in text.lower()):
            text = text[:300]
            self.counts[text] = self.counts.get(text, 0) + 1

    def seen(self):
        return ["%s (%d times)" % (t, n) if n > 1 else t for t, n in self.counts.items()]


def main():
    out = {"errors": []}
    fallbacks = Fallbacks()
    logging.getLogger("victor").addHandler(fallbacks)
    from importlib import metadata

    out["victor"] = metadata.version("victor-ai")
    from victor.core.bootstrap import bootstrap_container

    bootstrap_container()
    from victor.config.settings import load_settings

    settings = load_settings()
    out["tools"] = {
        "provider": settings.tools.embedding_provider,
        "model": settings.tools.embedding_model,
        "ollama_base_url": settings.provider.ollama_base_url,
    }
    out["codebase_vector_store"] = settings.search.codebase_vector_store
    cache = tempfile.mkdtemp(prefix="vembed-proof-")
    try:
        out["picks"], out["select_ms"], out["query_cosine"] = select_tools(settings, cache)
        out["code"] = code_search(cache)
    except Exception as e:
        out["errors"].append("%s: %s" % (type(e).__name__, e))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out["errors"].extend(fallbacks.seen())
    st = sys.modules.get("sentence_transformers")
    out["sentence_transformers"] = type(st).__name__ if st is not None else None
    out["torch"] = sys.modules.get("torch") is not None
    print(json.dumps(out))


def select_tools(settings, cache):
    from victor.agent.shared_tool_registry import SharedToolRegistry
    from victor.tools.registry import ToolRegistry
    from victor.tools.semantic_selector import SemanticToolSelector

    registry = ToolRegistry()
    for t in SharedToolRegistry.get_instance().get_all_tools_for_registration():
        try:
            registry.register(t)
        except Exception:
            pass
    selector = SemanticToolSelector(
        embedding_model=settings.tools.embedding_model,
        embedding_provider=settings.tools.embedding_provider,
        ollama_base_url=settings.provider.ollama_base_url,
        cache_embeddings=True,
        cache_dir=os.path.join(cache, "tools"),
    )

    async def run():
        await selector.initialize_tool_embeddings(registry)
        t = time.perf_counter()
        chosen = await selector.select_relevant_tools(TOOL_QUERY, registry, max_tools=5)
        ms = (time.perf_counter() - t) * 1e3
        # The vector Victor's selector used for the query, against the host's
        # own: a random fallback would be far from it.
        theirs = [float(x) for x in await selector._get_embedding(TOOL_QUERY)]
        return [c.name for c in chosen], ms, theirs

    picks, ms, theirs = asyncio.run(run())
    from vembed import Client

    ours = Client().embed([TOOL_QUERY], model=settings.tools.embedding_model)[0]
    ours = [float(x) for x in ours]
    if len(ours) != len(theirs):
        return picks, ms, 0.0
    dot = sum(a * b for a, b in zip(ours, theirs))
    norm = math.sqrt(sum(a * a for a in ours) * sum(b * b for b in theirs)) or 1.0
    return picks, ms, dot / norm


def code_search(cache):
    from victor.tools.unified._vertical_resolver import resolve_vertical_callable
    from victor.tools.unified.code_tool import code_tool

    repo = os.path.join(cache, "sample")
    for rel, text in SAMPLE.items():
        path = os.path.join(repo, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    _, source = resolve_vertical_callable(
        "code_search", fallback_module="victor_coding.tools.code_search_tool", fallback_attr="code_search"
    )
    t = time.perf_counter()
    text = asyncio.run(code_tool(cmd='search "%s" %s --mode semantic --k 3' % (CODE_QUERY, repo)))
    return {"source": source, "ms": (time.perf_counter() - t) * 1e3, "text": str(text)[:2000], "query": CODE_QUERY}


if __name__ == "__main__":
    main()
