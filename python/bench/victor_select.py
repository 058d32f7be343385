"""Real Victor's tool selection, as one Victor process runs it: the tests
(python/tests/full/test_victor_http.py) and the benchmark (bench_victor.py)
both run this file in a fresh process.

    python victor_select.py PROVIDER MODEL OLLAMA_URL CACHE_DIR QUERIES_JSON

Builds Victor's own tool registry and SemanticToolSelector (unchanged) with
``embedding_provider=PROVIDER`` and ``embedding_model=MODEL``, selects the
top 5 tools for each query, and prints one JSON line: the picks, the time
of the first selection (``time.time()``), each selection's seconds (the
queries run ``VEMBED_REPEAT`` times, default 1), the process's PSS, whether
torch was imported, and what ``sentence_transformers`` is. With
``VEMBED_VICTOR=1`` it first runs Victor's bootstrap (which runs the vembed
plug-in) and afterwards its intent classifier. With ``VEMBED_HOLD=1`` it
then waits for stdin to close (to measure memory while it lives).
"""

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def pss():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def select_tools(provider, model, url, cache, queries, repeat=1):
    """Victor's own registry and SemanticToolSelector, the top 5 tools for
    each query: (picks, seconds per selection, time.time() of the first,
    the registry)."""
    from victor.agent.shared_tool_registry import SharedToolRegistry
    from victor.tools.registry import ToolRegistry
    from victor.tools.semantic_selector import SemanticToolSelector

    registry = ToolRegistry()
    for t in SharedToolRegistry.get_instance().get_all_tools_for_registration():
        try:
            registry.register(t)
        except Exception:
            pass
    sel = SemanticToolSelector(embedding_model=model, embedding_provider=provider, ollama_base_url=url,
                               cache_embeddings=True, cache_dir=cache)

    async def run():
        await sel.initialize_tool_embeddings(registry)
        picks, times, first = [], [], None
        for _ in range(repeat):
            for q in queries:
                t = time.perf_counter()
                chosen = await sel.select_relevant_tools(q, registry, max_tools=5)
                times.append(time.perf_counter() - t)
                first = first or time.time()
                if len(picks) < len(queries):
                    picks.append([c.name for c in chosen])
        return picks, times, first

    return asyncio.run(run()) + (registry,)


def main():
    provider, model, url, cache = sys.argv[1:5]
    queries = json.loads(sys.argv[5])
    plugin = os.environ.get("VEMBED_VICTOR") == "1"
    if plugin:
        from victor.core.bootstrap import bootstrap_container

        bootstrap_container()
    repeat = int(os.environ.get("VEMBED_REPEAT", "1"))
    picks, times, first, registry = select_tools(provider, model, url, cache, queries, repeat)
    intent = None
    if plugin:
        from victor.storage.embeddings.intent_classifier import IntentClassifier
        from victor.storage.embeddings.service import EmbeddingService

        clf = IntentClassifier.get_instance(cache_dir=Path(tempfile.mkdtemp()))
        clf.initialize_sync()
        r = clf.classify_intent_sync("Let me start by examining the orchestrator.py file")
        svc = EmbeddingService.get_instance()
        v = svc.embed_text_sync("hello", use_cache=False)
        intent = {"intent": str(r.intent), "model": svc.model_name, "norm": float((v * v).sum()) ** 0.5,
                  "tools": len(registry.list_tools())}
    print(json.dumps({"picks": picks, "first": first, "times": times, "pss": pss(),
                      "torch": "torch" in sys.modules,
                      "shim": type(sys.modules.get("sentence_transformers")).__name__, "intent": intent}))
    sys.stdout.flush()
    if os.environ.get("VEMBED_HOLD") == "1":
        sys.stdin.read()


if __name__ == "__main__":
    main()
