"""One wire format: every frame the Rust side writes (one per Request and
Response variant, and per value of each enum inside them) decodes to the
value Rust's serde JSON shows, and re-encodes to the identical bytes."""

import glob
import json
import os
import struct

from vembed import _wire

FIXTURES = os.environ.get("VEMBED_WIRE_FIXTURES") or ""


def fixtures():
    found = sorted(glob.glob(os.path.join(FIXTURES, "*.bin")))
    assert found, "no fixtures in %r (VEMBED_WIRE_FIXTURES)" % FIXTURES
    return found


def plain(v):
    """Decoded values with arrays as lists, for comparing with JSON."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if hasattr(v, "typecode"):
        return list(v)
    return v


def same(a, b, path="frame"):
    if isinstance(a, float) or isinstance(b, float):
        # JSON holds f32s in their shortest form: compare as f32.
        assert struct.pack("<f", a) == struct.pack("<f", b) or a == b, "%s: %r != %r" % (path, a, b)
        return
    assert type(a) is type(b) or (isinstance(a, int) and isinstance(b, int)), "%s: %r vs %r" % (path, a, b)
    if isinstance(a, dict):
        assert a.keys() == b.keys(), "%s: keys %s vs %s" % (path, sorted(a), sorted(b))
        for k in a:
            same(a[k], b[k], path + "." + k)
    elif isinstance(a, list):
        assert len(a) == len(b), "%s: %d vs %d items" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s[%d]" % (path, i))
    else:
        assert a == b, "%s: %r != %r" % (path, a, b)


def test_every_fixture_round_trips_byte_for_byte():
    for path in fixtures():
        raw = open(path, "rb").read()
        (n,) = struct.unpack("<I", raw[:4])
        assert n == len(raw) - 4, path
        kind = _wire.REQUEST_FRAME if os.path.basename(path).startswith("request-") else _wire.RESPONSE_FRAME
        value = _wire.decode(kind, raw[4:])
        with open(path[:-4] + ".json") as f:
            expected = json.load(f)
        same(plain(value), expected, os.path.basename(path))
        assert _wire.frame(_wire.encode(kind, value)) == raw, "re-encoding %s" % path
        # From plain lists too, as a caller builds requests.
        assert _wire.frame(_wire.encode(kind, plain(value))) == raw, "re-encoding %s from lists" % path


def variants_seen():
    seen = {}
    for path in fixtures():
        with open(path[:-4] + ".json") as f:
            walk(json.load(f), seen)
    return seen


def walk(v, seen):
    if isinstance(v, dict):
        for k, x in v.items():
            seen.setdefault("keys", set()).add(k)
            walk(x, seen)
    elif isinstance(v, list):
        for x in v:
            walk(x, seen)
    elif isinstance(v, str):
        seen.setdefault("strings", set()).add(v)


def test_the_fixtures_cover_every_variant_python_knows():
    seen = variants_seen()
    names = seen["keys"] | seen["strings"]
    for enum in (
        _wire.REQUEST,
        _wire.RESPONSE,
        _wire.ERROR_CODE,
        _wire.ROLE,
        _wire.MODEL_REF,
        _wire.TOOL_METHOD,
        _wire.TOOL_FALLBACK,
    ):
        missing = [n for n, _ in enum.variants if n not in names]
        assert not missing, "%s variants without a fixture: %s" % (enum.name, missing)


def test_truncated_and_unknown_frames_are_errors_not_garbage():
    raw = open(os.path.join(FIXTURES, "response-embeddings.bin"), "rb").read()[4:]
    for cut in (1, 7, 12, len(raw) - 1):
        try:
            _wire.decode(_wire.RESPONSE_FRAME, raw[:cut])
        except _wire.DecodeError:
            continue
        raise AssertionError("a frame cut at %d decoded" % cut)
    unknown = struct.pack("<QI", 1, 200)
    try:
        _wire.decode(_wire.RESPONSE_FRAME, unknown)
    except _wire.DecodeError as e:
        assert "no variant 200" in str(e)
    else:
        raise AssertionError("an unknown variant decoded")


def test_the_documented_hello_bytes():
    # PROTOCOL.md's example: Hello { version: 1, client: "py" } with id 1.
    hello = {"Hello": {"version": 1, "client": "py"}}
    assert _wire.encode_request(1, hello) == bytes.fromhex(
        "1a000000" "0100000000000000" "00000000" "01000000" "0200000000000000" "7079"
    )


def test_every_error_code_has_its_exception_class():
    from vembed import errors

    for code in _wire.ERROR_CODES:
        e = errors.host_error({"code": code, "message": "m"})
        assert type(e) is not errors.HostError and e.code == code, code
