# Run by `vembed setup victor` with the interpreter of Victor's environment:
# prints one JSON line saying what that environment holds. Imports nothing
# of Victor's (fast, and safe on a broken install).
import json
import os
import sys
import sysconfig

try:
    from importlib import metadata
except ImportError:  # Python < 3.8
    metadata = None


def dist(name):
    if metadata is None:
        return None
    try:
        d = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    return {"version": d.version, "location": str(d.locate_file(""))}


def has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


print(json.dumps({
    "executable": sys.executable,
    "version": "%d.%d.%d" % sys.version_info[:3],
    "prefix": sys.prefix,
    "purelib": sysconfig.get_paths()["purelib"],
    "scripts": sysconfig.get_paths()["scripts"],
    "victor_ai": dist("victor-ai"),
    "victor_coding": dist("victor-coding"),
    "vembed": dist("vembed"),
    "pip": has("pip"),
    "torch": has("torch"),
    "writable": os.access(sysconfig.get_paths()["purelib"], os.W_OK),
}))
