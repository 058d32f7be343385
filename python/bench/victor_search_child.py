"""One Victor process of bench_victor_search.py: Victor's code search (and,
for the memory run, its tool selection), as an agent process runs them.

    python victor_search_child.py SIDE REPO SPEC_JSON

SIDE is ``vembed`` (Victor's ``code search`` reaches the callable its
``victor.tool_callables`` entry point names: vembed's, with
``VEMBED_VICTOR=1``) or ``stock`` (victor-coding's ``code_search`` with the
agent's settings in its tool context, over the index ``victor index``
built: sentence-transformers and LanceDB). SPEC_JSON holds ``queries``,
``mode``, ``k`` and optionally ``select`` (``[provider, model, url,
cache]``: select tools for ``select_queries`` first, with Victor's
SemanticToolSelector). Prints one JSON line: each query's result paths
(relative to REPO) and milliseconds, the PSS, and whether torch or lancedb
were imported. With ``VEMBED_HOLD=1`` it then waits for stdin to close.
"""

import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from victor_select import pss, select_tools  # noqa: E402


def search_fn(side):
    if side == "vembed":
        from victor.tools.unified._vertical_resolver import resolve_vertical_callable

        fn, source = resolve_vertical_callable(
            "code_search", fallback_module="victor_coding.tools.code_search_tool", fallback_attr="code_search"
        )
        assert source == "entry-point:code_search", source
        return fn
    from victor.config.settings import load_settings
    from victor_coding.tools.code_search_tool import code_search

    settings = load_settings()

    async def stock(**kw):
        return await code_search(_exec_ctx={"settings": settings}, **kw)

    return stock


def paths_of(result, repo):
    if not isinstance(result, dict) or result.get("success") is False:
        raise SystemExit("search failed: %s" % (result.get("error") if isinstance(result, dict) else result))
    out = []
    for item in result.get("results") or result.get("matches") or []:
        p = item.get("path") or item.get("file_path") or item.get("file") or ""
        if os.path.isabs(p):
            p = os.path.relpath(p, repo)
        if p not in out:
            out.append(p)
    return out


def main():
    side, repo, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if os.environ.get("VEMBED_VICTOR") == "1":
        from victor.core.bootstrap import bootstrap_container

        bootstrap_container()
    selected = None
    if spec.get("select"):
        picks, times, _, _ = select_tools(*spec["select"], spec["select_queries"])
        selected = {"picks": picks, "ms": [t * 1e3 for t in times]}
    fn = search_fn(side)

    async def run():
        rows = []
        for q in spec["queries"]:
            t = time.perf_counter()
            result = await fn(query=q, path=repo, mode=spec["mode"], k=spec["k"])
            rows.append({"ms": (time.perf_counter() - t) * 1e3, "paths": paths_of(result, repo)})
        return rows

    rows = asyncio.run(run())
    print(json.dumps({"rows": rows, "selected": selected, "pss": pss(),
                      "modules": [m for m in ("torch", "lancedb") if sys.modules.get(m) is not None]}))
    sys.stdout.flush()
    if os.environ.get("VEMBED_HOLD") == "1":
        sys.stdin.read()


if __name__ == "__main__":
    main()
