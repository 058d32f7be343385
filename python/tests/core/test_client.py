"""vembed.Client against the real host and model, in a venv without numpy."""

import json
import os
import struct
import subprocess
import sys
from array import array

import pytest

import vembed
from conftest import CLI_BIN, MODEL_NAME, TOOLS_JSON, cosine


def test_this_venv_has_no_numpy():
    with pytest.raises(ImportError):
        __import__("numpy")


def test_golden_texts_match_sentence_transformers(client, golden):
    texts = [g["text"] for g in golden]
    e = client.embed(texts)
    assert e.model == MODEL_NAME and e.dim == 384 and len(e) == len(texts)
    assert isinstance(e.vectors, list) and all(isinstance(r, array) and r.typecode == "f" for r in e.vectors)
    for g, row, tokens in zip(golden, e.vectors, e.tokens):
        assert tokens == g["n_tokens"], g["text"][:40]
        c = cosine(row, g["embedding"])
        assert c >= 0.9999, "%r: cosine %f" % (g["text"][:40], c)
    # One at a time gives the same as in a batch.
    alone = client.embed([texts[0]])
    assert cosine(alone[0], e[0]) >= 0.99999


def test_roles_names_and_the_cache_agree(client):
    texts = ["open a file", "", "日本語のテキスト"]
    base = client.embed(texts)
    for other in (
        client.embed(texts, role="tools"),
        client.embed(texts, role="code"),
        client.embed(texts, model=MODEL_NAME),
        client.embed_cached(texts, role="tools"),
        client.embed_cached(texts, role="tools"),
    ):
        assert other.tokens == base.tokens
        for a, b in zip(base, other):
            assert cosine(a, b) >= 0.99999
    assert base.tokens[1] == 2  # [CLS] [SEP]


def test_large_inputs_are_split_and_kept_in_order(client):
    texts = ["sentence number %d about topic %d" % (i, i % 7) for i in range(1300)]
    e = client.embed(texts)
    assert len(e) == 1300
    for i in (0, 255, 256, 777, 1299):
        assert cosine(e[i], client.embed([texts[i]])[0]) >= 0.99999, i


def test_empty_input_and_bad_types(client):
    e = client.embed([])
    assert len(e) == 0 and e.dim == 384 and e.vectors == []
    with pytest.raises(TypeError):
        client.embed(["ok", 3])
    with pytest.raises(ValueError):
        client.embed(["x"], role="nonsense")
    one = client.embed("a single string")
    assert len(one) == 1


def cli(*args, stdin=None):
    out = subprocess.run(
        [CLI_BIN, *args], input=stdin, capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


@pytest.mark.parametrize("method", ["plain", "split", "max-sim", "hybrid"])
def test_tool_selection_ranks_exactly_as_the_cli(client, method):
    queries = [
        "run pytest and tell me what fails",
        "how many rows are in the orders table",
        "commit the fix with a message",
        "zzzz qqqq",
    ]
    # The first selection with a tool set embeds it, maybe in one batch with
    # the queries; a vector's last bit can depend on its batch. Once the host
    # holds the set, the CLI and Python send the same request and must get
    # the same bits.
    client.select_tools(TOOLS_JSON, [], method=method)
    for k, threshold, fallback in ((5, 0.15, "all"), (3, 0.99, "top-k"), (2, 0.99, "all")):
        stdin = "".join(json.dumps(q) + "\n" for q in queries)
        lines = cli(
            "tools", "select", "--tools", TOOLS_JSON, "--method", method, "-k", str(k),
            "--threshold", str(threshold), "--fallback", fallback, "--jsonl", stdin=stdin,
        ).splitlines()
        ours = client.select_tools(TOOLS_JSON, queries, k=k, threshold=threshold, method=method, fallback=fallback)
        assert len(lines) == len(ours) == len(queries)
        for line, picks in zip(lines, ours):
            theirs = json.loads(line)
            assert [p["name"] for p in theirs] == [p.name for p in picks]
            assert [f32(p["score"]) for p in theirs] == [p.score for p in picks]
    one = client.select_tools(TOOLS_JSON, "spin up the postgres container", method=method)
    assert one[0].name == "docker_control"


def test_tool_sets_from_python_objects(client):
    with open(TOOLS_JSON) as f:
        tools = json.load(f)
    from_path = client.select_tools(TOOLS_JSON, "read the config file")
    from_list = client.select_tools(tools, "read the config file")
    assert from_path == from_list
    schema = [{"name": "read_file", "description": "Read a file.",
               "parameters": {"type": "object", "properties": {"path": {}, "start_line": {}}}},
              {"name": "git_commit", "description": "Commit staged changes.", "use_cases": "save my work"}]
    assert client.select_tools(schema, "save my work in git", k=1)[0].name == "git_commit"
    with pytest.raises(vembed.InvalidRequest, match="duplicate tool name"):
        client.select_tools([schema[0], schema[0]], "x")
    with pytest.raises(vembed.InvalidRequest, match="empty"):
        client.select_tools([], "x")
    with pytest.raises(ValueError, match="unknown fields"):
        client.select_tools([{"name": "a", "description": "b", "bogus": 1}], "x")


def test_index_and_search_through_the_host(client, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "mail.py").write_text(
        "def send_welcome_email(user):\n    \"\"\"Email a greeting to a user who just signed up.\"\"\"\n"
        "    smtp.send(user.email, 'Welcome!')\n"
    )
    (repo / "stats.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")
    seen = []
    summary = client.index(repo, progress=seen.append, index_dir=tmp_path / "ix")
    assert summary["files_seen"] == 2 and summary["indexed"] == 2 and summary["chunks_added"] >= 2
    hits = client.search(repo, "greet new users by mail", k=2, index_dir=tmp_path / "ix")
    assert hits[0]["path"] == "mail.py" and hits[0]["symbol"] == "send_welcome_email"
    assert hits[0]["score"] > hits[1]["score"]
    assert hits[0]["semantic_rank"] == 1 and hits[0]["lexical_rank"] is not None
    # Words alone: the exact identifier, no embedding; the meaning alone.
    lexical = client.search(repo, "send_welcome_email", index_dir=tmp_path / "ix", mode="lexical")
    assert [h["path"] for h in lexical] == ["mail.py"]
    assert lexical[0]["lexical_rank"] == 1 and lexical[0]["semantic_rank"] is None
    assert lexical[0]["score"] == lexical[0]["lexical_score"] > 0
    semantic = client.search(repo, "average of numbers", k=2, index_dir=tmp_path / "ix", mode="semantic")
    assert semantic[0]["path"] == "stats.py" and semantic[0]["lexical_rank"] is None
    assert semantic[0]["score"] == semantic[0]["semantic_score"]
    with pytest.raises(ValueError, match="mode must be one of"):
        client.search(repo, "x", index_dir=tmp_path / "ix", mode="fuzzy")
    again = client.index(repo, index_dir=tmp_path / "ix")
    assert again["unchanged"] == 2 and again["indexed"] == 0
    with pytest.raises(vembed.CodeIndexError):
        client.search(tmp_path / "nowhere", "x", index_dir=tmp_path / "nowhere-ix")


def test_status_and_ping(client):
    client.ping()
    s = client.status()
    assert s["pid"] == client.hello["pid"] and s["models"][0]["info"]["name"] == MODEL_NAME
    assert s["memory"]["rss"] > 0
    assert "torch" not in sys.modules and "transformers" not in sys.modules
