"""Run a program that uses sentence-transformers on the vembed host instead,
unchanged.

    python -m vembed.shim victor chat          # a console script on PATH
    python -m vembed.shim -m some.module ARGS  # a module, as python -m runs it

or, in code, before the program imports sentence-transformers:

    import vembed.shim
    vembed.shim.install()

``install()`` makes ``import sentence_transformers`` give a module whose
``SentenceTransformer`` is ``vembed.SentenceTransformer``; torch and
transformers are never imported. Only ``SentenceTransformer`` is provided:
anything else a program takes from sentence-transformers (``CrossEncoder``,
``util``, training) raises ``AttributeError`` naming what is missing, so a
program that needs more fails loudly instead of half working.
"""

import os
import runpy
import shutil
import sys
import types


class _Shim(types.ModuleType):
    def __getattr__(self, name):
        raise AttributeError(
            "sentence_transformers.%s is not provided by vembed.shim (only SentenceTransformer "
            "is); run without the shim to use the real sentence-transformers" % name
        )


def install():
    """Makes ``sentence_transformers`` resolve to vembed's drop-in. Returns the module."""
    from .sentence_transformer import SentenceTransformer

    current = sys.modules.get("sentence_transformers")
    if isinstance(current, _Shim):
        return current
    if current is not None:
        raise RuntimeError(
            "sentence_transformers was imported before vembed.shim.install(); install the shim first"
        )
    mod = _Shim("sentence_transformers", "vembed's stand-in for sentence-transformers")
    mod.SentenceTransformer = SentenceTransformer
    mod.__version__ = "vembed-shim"
    mod.__path__ = []  # a package, so `import sentence_transformers.x` fails cleanly
    sys.modules["sentence_transformers"] = mod
    return mod


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    install()
    if argv[0] == "-m":
        if len(argv) < 2:
            print("usage: python -m vembed.shim -m MODULE [ARGS...]", file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return 0
    script = argv[0] if os.path.sep in argv[0] else shutil.which(argv[0])
    if not script or not os.path.isfile(script):
        print("vembed.shim: %s: not found on PATH" % argv[0], file=sys.stderr)
        return 127
    sys.argv = [script] + argv[1:]
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
