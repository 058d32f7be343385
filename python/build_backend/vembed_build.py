"""The build backend of the ``vembed`` Python package (PEP 517).

A wheel carries the Python package and, in its ``.data/scripts`` (what pip
installs into the environment's ``bin``), the two Rust binaries: ``vembed``
(the CLI, a console command) and ``vembed-host``. They come from three
places, first match wins:

- ``VEMBED_WHEEL_BINARIES=DIR``: prebuilt ``vembed`` and ``vembed-host`` in
  DIR (``scripts/build-wheel`` passes the release build the test command
  already made, so nothing compiles twice);
- ``VEMBED_WHEEL_PURE=1``: none, a ``py3-none-any`` wheel for a program that
  reaches a host installed some other way;
- else ``cargo build --release --locked`` of the two binaries in the Cargo
  workspace beside the package (the repository, or the sdist's ``rust/``).

The binaries are copied without their debug sections (symbols are kept, so
a panic's backtrace still names functions). The wheel's platform tag is
``manylinux_2_N_<arch>`` with N the newest glibc symbol version the binaries
need, read from their ELF version-needs tables, never assumed.

Why our own backend and not maturin or setuptools-rust: the wheel carries
two binaries from two crates of one workspace (maturin's ``bin`` bindings
take one crate's), it must reuse a build already made, and it needs nothing
from the network to build (only ``tomli`` on Pythons older than 3.11).
"""

import base64
import csv
import hashlib
import io
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

BINARIES = ("vembed", "vembed-host")
# The cargo packages that build them.
PACKAGES = ("vembed", "vembed-host")
# What an sdist carries of the workspace (every member must exist for cargo
# to read the workspace, and Cargo.lock must stay as it is for --locked).
WORKSPACE_FILES = ("Cargo.toml", "Cargo.lock", "rustfmt.toml", "LICENSE-MIT", "LICENSE-APACHE")
WORKSPACE_DIRS = ("crates", "tests", "benches", "examples")

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildError(Exception):
    """A wheel or sdist that cannot be built, with the reason."""


def _project_dir():
    # The backend runs in the directory of pyproject.toml.
    return os.getcwd()


def _project():
    with open(os.path.join(_project_dir(), "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _workspace():
    """The Cargo workspace: ``rust/`` in an sdist, else the repository root."""
    for d in (os.path.join(_project_dir(), "rust"), os.path.dirname(_project_dir())):
        if os.path.isfile(os.path.join(d, "Cargo.lock")):
            return d
    raise BuildError("no Cargo workspace beside the package (rust/ or ..): cannot build the binaries")


def _dist_name(project):
    return re.sub(r"[-_.]+", "_", project["name"]).lower()


def _metadata(project):
    lines = ["Metadata-Version: 2.1", "Name: %s" % project["name"], "Version: %s" % project["version"]]
    if "description" in project:
        lines.append("Summary: %s" % project["description"])
    if "requires-python" in project:
        lines.append("Requires-Python: %s" % project["requires-python"])
    lic = project.get("license", {})
    if "text" in lic:
        lines.append("License: %s" % lic["text"])
    for c in project.get("classifiers", []):
        lines.append("Classifier: %s" % c)
    for label, url in project.get("urls", {}).items():
        lines.append("Project-URL: %s, %s" % (label, url))
    for dep in project.get("dependencies", []):
        lines.append("Requires-Dist: %s" % dep)
    for extra, deps in project.get("optional-dependencies", {}).items():
        lines.append("Provides-Extra: %s" % extra)
        for dep in deps:
            marker = 'extra == "%s"' % extra
            if ";" in dep:
                req, m = dep.split(";", 1)
                lines.append("Requires-Dist: %s; (%s) and %s" % (req.strip(), m.strip(), marker))
            else:
                lines.append("Requires-Dist: %s; %s" % (dep, marker))
    readme = project.get("readme")
    body = ""
    if isinstance(readme, str):
        with open(os.path.join(_project_dir(), readme), encoding="utf-8") as f:
            body = f.read()
        lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + body


def _entry_points(project):
    out = []
    for group, eps in project.get("entry-points", {}).items():
        out.append("[%s]" % group)
        out.extend("%s = %s" % (k, v) for k, v in eps.items())
        out.append("")
    return "\n".join(out)


# ---- the binaries -------------------------------------------------------


def _built_binaries(tmp):
    """Paths of the two binaries to ship, copied into ``tmp`` without debug
    sections; or None for a pure wheel."""
    if os.environ.get("VEMBED_WHEEL_PURE") == "1":
        return None
    src = os.environ.get("VEMBED_WHEEL_BINARIES")
    if src and not os.path.isabs(src):
        # pip runs the backend in a copy of the project: relative to what?
        raise BuildError("VEMBED_WHEEL_BINARIES must be an absolute path, not %r" % src)
    if not src:
        ws = _workspace()
        cmd = ["cargo", "build", "--release", "--locked"]
        for p in PACKAGES:
            cmd += ["-p", p]
        for b in BINARIES:
            cmd += ["--bin", b]
        print("vembed: " + " ".join(cmd), file=sys.stderr)
        try:
            subprocess.run(cmd, cwd=ws, check=True)
        except FileNotFoundError:
            raise BuildError(
                "building vembed's binaries needs cargo (https://rustup.rs), or a prebuilt wheel; "
                "VEMBED_WHEEL_BINARIES=DIR takes them from DIR"
            )
        except subprocess.CalledProcessError as e:
            raise BuildError("cargo build failed (exit %d)" % e.returncode)
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ws, "target")
        src = os.path.join(target, "release")
    out = []
    for b in BINARIES:
        path = os.path.join(src, b)
        if not os.access(path, os.X_OK):
            raise BuildError("no executable %s in %s" % (b, src))
        dest = os.path.join(tmp, b)
        strip = shutil.which("strip")
        if strip:
            subprocess.run([strip, "--strip-debug", "-o", dest, path], check=True)
        else:
            print("vembed: no strip on PATH; %s is shipped with its debug sections" % b, file=sys.stderr)
            shutil.copy2(path, dest)
        out.append(dest)
    return out


def glibc_needed(path):
    """The newest ``GLIBC_x.y`` version an ELF file needs, as ``(x, y)``, or
    None if it needs none (a static binary). Reads the section headers and
    the ``SHT_GNU_verneed`` table (64-bit little-endian ELF only)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BuildError("%s is not a 64-bit little-endian ELF file" % path)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for i in range(shnum):
        name, typ, flags, addr, off, size, link, info, align, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", data, shoff + i * shentsize
        )
        sections.append((typ, off, size, link, info))
    best = None
    for typ, off, size, link, info in sections:
        if typ != 0x6FFFFFFE:  # SHT_GNU_verneed
            continue
        strtab = sections[link][1]

        def cstr(at):
            end = data.index(b"\0", strtab + at)
            return data[strtab + at : end].decode()

        at = off
        for _ in range(info):  # sh_info: the number of Verneed entries
            vn_version, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, at)
            aux = at + vn_aux
            for _ in range(vn_cnt):
                vna_hash, vna_flags, vna_other, vna_name, vna_next = struct.unpack_from("<IHHII", data, aux)
                m = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", cstr(vna_name))
                if m:
                    v = (int(m.group(1)), int(m.group(2)))
                    best = v if best is None or v > best else best
                aux += vna_next
            if not vn_next:
                break
            at += vn_next
    return best


def _platform_tag(binaries):
    if sys.platform != "linux":
        raise BuildError("vembed's binaries are built for Linux only")
    arch = platform.machine()
    needs = [glibc_needed(b) for b in binaries]
    needs = [n for n in needs if n]
    if not needs:
        return "linux_%s" % arch
    major, minor = max(needs)
    # manylinux_2_17 is the oldest PEP 600 tag x86_64 and aarch64 define.
    minor = max(minor, 17) if major == 2 else minor
    return "manylinux_%d_%d_%s" % (major, minor, arch)


# ---- the wheel ----------------------------------------------------------


class _Wheel:
    def __init__(self, path):
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self.records = []

    def add(self, arcname, data, mode=0o644):
        info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data, compresslevel=6)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.records.append((arcname, "sha256=" + digest, str(len(data))))

    def close(self, record_name):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for r in self.records:
            w.writerow(r)
        w.writerow((record_name, "", ""))
        info = zipfile.ZipInfo(record_name, date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        self.zip.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        self.zip.close()


def _package_files():
    src = os.path.join(_project_dir(), "src")
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, name)
            yield os.path.relpath(full, src).replace(os.sep, "/"), full


def _dist_info(wheel, project, tag, name):
    info = "%s-%s.dist-info" % (name, project["version"])
    wheel.add(info + "/METADATA", _metadata(project).encode())
    wheel.add(
        info + "/WHEEL",
        ("Wheel-Version: 1.0\nGenerator: vembed_build\nRoot-Is-Purelib: %s\nTag: %s\n"
         % ("true" if tag == "py3-none-any" else "false", tag)).encode(),
    )
    eps = _entry_points(project)
    if eps:
        wheel.add(info + "/entry_points.txt", eps.encode())
    return info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    name = _dist_name(project)
    with tempfile.TemporaryDirectory() as tmp:
        binaries = _built_binaries(tmp)
        tag = "py3-none-any" if binaries is None else "py3-none-" + _platform_tag(binaries)
        filename = "%s-%s-%s.whl" % (name, project["version"], tag)
        path = os.path.join(wheel_directory, filename)
        wheel = _Wheel(path)
        for arcname, full in _package_files():
            with open(full, "rb") as f:
                wheel.add(arcname, f.read())
        for b in binaries or ():
            with open(b, "rb") as f:
                wheel.add("%s-%s.data/scripts/%s" % (name, project["version"], os.path.basename(b)), f.read(), 0o755)
        info = _dist_info(wheel, project, tag, name)
        wheel.close(info + "/RECORD")
    return filename


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    """The ``.dist-info`` without building (so pip runs cargo once)."""
    project = _project()
    info = "%s-%s.dist-info" % (_dist_name(project), project["version"])
    d = os.path.join(metadata_directory, info)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata(project))
    eps = _entry_points(project)
    if eps:
        with open(os.path.join(d, "entry_points.txt"), "w", encoding="utf-8") as f:
            f.write(eps)
    return info


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """An editable install of the Python package only (a ``.pth`` to
    ``src``); the binaries come from PATH or ``VEMBED_HOST_BIN``."""
    project = _project()
    name = _dist_name(project)
    tag = "py3-none-any"
    filename = "%s-%s-%s.whl" % (name, project["version"], tag)
    wheel = _Wheel(os.path.join(wheel_directory, filename))
    wheel.add("_%s_editable.pth" % name, (os.path.join(_project_dir(), "src") + "\n").encode())
    info = _dist_info(wheel, project, tag, name)
    wheel.close(info + "/RECORD")
    return filename


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


# ---- the sdist ----------------------------------------------------------


def _tracked(root, rel):
    """Files under ``root/rel``, without build output and caches."""
    base = os.path.join(root, rel)
    if os.path.isfile(base):
        yield rel
        return
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in ("target", "__pycache__", ".git"))
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            yield os.path.relpath(os.path.join(dirpath, name), root)


def build_sdist(sdist_directory, config_settings=None):
    """The package, this backend and the whole Cargo workspace (as
    ``rust/``), so that building a wheel from it runs cargo."""
    project = _project()
    name = _dist_name(project)
    base = "%s-%s" % (name, project["version"])
    filename = base + ".tar.gz"
    here = _project_dir()
    ws = _workspace()
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tar:

        def add(path, arcname):
            info = tar.gettarinfo(path, arcname)
            info.mtime = int(time.time())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as f:
                tar.addfile(info, f)

        for rel in ("pyproject.toml", "README.md"):
            add(os.path.join(here, rel), base + "/" + rel)
        for top in ("src", "build_backend"):
            for rel in _tracked(here, top):
                add(os.path.join(here, rel), base + "/" + rel)
        for top in WORKSPACE_FILES + WORKSPACE_DIRS:
            if not os.path.exists(os.path.join(ws, top)):
                continue
            for rel in _tracked(ws, top):
                add(os.path.join(ws, rel), base + "/rust/" + rel)
        pkg_info = io.BytesIO(_metadata(project).encode())
        info = tarfile.TarInfo(base + "/PKG-INFO")
        info.size = len(pkg_info.getvalue())
        info.mtime = int(time.time())
        tar.addfile(info, pkg_info)
    return filename
