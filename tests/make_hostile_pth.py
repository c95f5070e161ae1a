"""Makes tests/fixtures/pth-hostile/: small malformed or malicious `.pth` files
that the worker's checkpoint reader (worker/src/pth.rs) must refuse with a clear
error in bounded memory and time, plus valid/: real small state_dicts saved by
torch, the seeds of the mutation fuzzing in worker/tests/pth_hostile.rs.

The files are committed (they are tiny), so the tests need no Python. Rerun
after changing a case (the valid/ files differ byte-wise on each run because
torch.save writes a random serialization id):

    $SWEEP_PYTHON tests/make_hostile_pth.py   # a Python with torch 2.11

It also writes the folder's README.md, whose table (file, expected error
fragment, what it is) is what worker/tests/pth_hostile.rs checks against.
"""
import io
import json
import os
import struct
import sys
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "pth-hostile")
STAMP = (2024, 1, 1, 0, 0, 0)

# ---------------------------------------------------------------- pickle bits


def i(v):
    """An int opcode, as pickle protocol 2 would choose it."""
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    return b"\x8a\x08" + v.to_bytes(8, "little", signed=True)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return b"X" + struct.pack("<I", len(b)) + b


def tup(*items):
    return b"(" + b"".join(items) + b"t"


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


ORDERED = glob("collections", "OrderedDict") + b")R"


def tensor(key, offset, size, stride, storage="FloatStorage", numel=1):
    pid = tup(s("storage"), glob("torch", storage), s(key), s("cpu"), i(numel)) + b"Q"
    args = tup(pid, i(offset), tup(*map(i, size)), tup(*map(i, stride)), b"\x89", ORDERED)
    return glob("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict(pairs):
    """A protocol-2 pickle of an OrderedDict name → (already encoded) value."""
    return b"\x80\x02" + ORDERED + b"(" + b"".join(s(k) + v for k, v in pairs) + b"u."


def floats(*v):
    return struct.pack(f"<{len(v)}f", *v)


# ---------------------------------------------------------------- zip bits


def torch_zip(pkl, storages=None, deflate=(), byteorder=b"little"):
    """The layout torch.save writes: archive/data.pkl, archive/data/<key>, …
    Entries named in `deflate` are compressed (torch itself stores them)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:

        def put(name, data):
            info = zipfile.ZipInfo("archive/" + name, STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            z.writestr(info, data)

        put("data.pkl", pkl)
        if byteorder is not None:
            put("byteorder", byteorder)
        for k, v in (storages or {}).items():
            put("data/" + k, v)
        put("version", b"3\n")
    return buf.getvalue()


def patch_uncompressed_size(data, name, size):
    """Rewrites the uncompressed size of entry `name` in its local header and
    in the central directory (a zip that lies about what an entry expands to)."""
    data = bytearray(data)
    n = name.encode()
    at = 0
    while (at := data.find(b"PK\x03\x04", at)) >= 0:
        if data[at + 30 : at + 30 + len(n)] == n:
            data[at + 22 : at + 26] = struct.pack("<I", size)
        at += 4
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:
        if data[at + 46 : at + 46 + len(n)] == n:
            data[at + 24 : at + 28] = struct.pack("<I", size)
        at += 4
    return bytes(data)


def overlapping_entries(count, nbytes):
    """One stored entry `archive/data/0` of `nbytes`, and `count` central
    directory records archive/data/0..count-1 that all point at its data."""
    pkl = state_dict([(f"t{k}", tensor(str(k), 0, [nbytes // 4], [1], numel=nbytes // 4)) for k in range(count)])
    base = torch_zip(pkl, {"0": bytes(nbytes)}, deflate={"data.pkl", "data/0"})
    z = zipfile.ZipFile(io.BytesIO(base))
    cd_at = base.find(b"PK\x01\x02")
    eocd_at = base.rfind(b"PK\x05\x06")
    records = []
    at = cd_at
    while at < eocd_at:
        nlen, elen, clen = struct.unpack("<HHH", base[at + 28 : at + 34])
        end = at + 46 + nlen + elen + clen
        records.append(base[at:end])
        at = end
    zero = next(r for r in records if r[46:].startswith(b"archive/data/0"))
    for k in range(1, count):
        name = f"archive/data/{k}".encode()
        r = bytearray(zero[:46]) + name
        r[28:30] = struct.pack("<H", len(name))
        r[30:34] = b"\0\0\0\0"
        records.append(bytes(r))
    cd = b"".join(records)
    eocd = bytearray(base[eocd_at : eocd_at + 22])
    eocd[8:10] = eocd[10:12] = struct.pack("<H", len(records))
    eocd[12:16] = struct.pack("<I", len(cd))
    eocd[16:20] = struct.pack("<I", cd_at)
    del z
    return base[:cd_at] + cd + bytes(eocd)


def legacy(root_pickle, keys_and_storages, keys=None):
    """The pre-1.6 format: magic, protocol, sys info, the object, the key
    list, then each storage as u64 numel + bytes."""
    magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
    proto = b"\x80\x02M\xe9\x03."
    sysinfo = b"\x80\x02}(" + s("little_endian") + b"\x88u."
    if keys is None:
        keys = b"\x80\x02](" + b"".join(s(k) for k, _, _ in keys_and_storages) + b"e."
    tail = b"".join(struct.pack("<Q", numel) + data for _, numel, data in keys_and_storages)
    return magic + proto + sysinfo + root_pickle + keys + tail


# ---------------------------------------------------------------- the cases

CASES = []  # (file, expected error fragment, description)


def case(name, fragment, description, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    CASES.append((name, fragment, description))


def real_state_dict():
    """A real small model's state_dict with deterministic values, plus views
    that exercise strides, offsets, expansion and other dtypes."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    sd = m.state_dict()
    with torch.no_grad():
        for k, (name, t) in enumerate(sd.items()):
            if t.is_floating_point():
                t.copy_((torch.arange(t.numel(), dtype=torch.float32) * 0.25 + k).view(t.shape))
    base = torch.arange(12, dtype=torch.float32)
    sd["view.transposed"] = base[:6].view(2, 3).t()
    sd["view.offset"] = base[4:7]
    sd["view.expanded"] = torch.tensor([7.0]).expand(5)
    sd["view.empty"] = torch.zeros(0, 3)
    sd["dtype.half"] = torch.arange(4, dtype=torch.float16)
    sd["dtype.int64"] = torch.arange(3, dtype=torch.int64) - 1
    sd["dtype.bool"] = torch.tensor([True, False, True])
    return sd


def main():
    os.makedirs(os.path.join(OUT, "valid"), exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".pth"):
            os.remove(os.path.join(OUT, f))

    sd = real_state_dict()
    torch.save(sd, os.path.join(OUT, "valid", "small.pth"))
    torch.save(sd, os.path.join(OUT, "valid", "small.legacy.pth"), _use_new_zipfile_serialization=False)
    expected = {k: {"shape": list(v.shape), "values": v.double().flatten().tolist()} for k, v in sd.items()}
    with open(os.path.join(OUT, "valid", "small.json"), "w") as f:
        json.dump(expected, f, indent=0, sort_keys=True)
    real = open(os.path.join(OUT, "valid", "small.pth"), "rb").read()
    real_legacy = open(os.path.join(OUT, "valid", "small.legacy.pth"), "rb").read()

    ok_tensor = tensor("0", 0, [2], [1], numel=2)
    ok_storage = {"0": floats(1, 2)}

    # --- memory and time bombs in the pickle
    bomb = b"\x80\x02]" + b"q\x00h\x00a" * 64 + b"."
    case("memo-bomb.pth", "levels deep", "a list that appends a memo-get of itself 64 times: 2^64 elements when a memo-get deep-copies (the bomb that made `sweep predict` abort)", torch_zip(bomb))
    pairs = b"\x80\x02]q\x00" + b"h\x00h\x00\x86q\x00" * 80 + b"."
    case("memo-pairs.pth", "levels deep", "a tuple (x, x) of the previous tuple, 80 times: a DAG of 2^80 leaves", torch_zip(pairs))
    deep = b"\x80\x02]" + b"\x85" * 100000 + b"."
    case("deep-nesting.pth", "levels deep", "100 000 nested 1-tuples (a recursive drop or walk would overflow the stack)", torch_zip(deep, deflate={"data.pkl"}))
    flood = b"\x80\x02" + b"]" * 400000 + b"."
    case("op-flood.pth", "pickle bomb", "400 000 empty lists (a 400 KB pickle deflated to a few hundred bytes): over the pickle's memory budget", torch_zip(flood, deflate={"data.pkl"}))
    wide = b"\x80\x02}q\x00" + s("x") + b"](](" + b"h\x00" * 1000 + b"eq\x01" + b"h\x01" * 999 + b"es."
    case("memo-wide.pth", "holds no tensors", "d = {'x': [L] * 1000} with L = [d] * 1000: a million paths through shared lists, and a cycle", torch_zip(wide))
    cyc = b"\x80\x02}q\x00" + s("self") + b"h\x00s" + s("other") + b"h\x00s."
    case("wrapped-cycle.pth", "holds no tensors", "a dict that contains itself (the search for a wrapped state_dict must not loop)", torch_zip(cyc))
    wrap = b"\x80\x02" + b"".join(b"}" + s("m") for _ in range(20)) + b"}" + b"s" * 20 + b"."
    case("wrapped-deep.pth", "wrapped in more than", "a state_dict search through 20 nested {'m': …} dicts", torch_zip(wrap))
    names = b"\x80\x02" + ORDERED + b"(" + s("n" * 1000) + b"q\x09" + ok_tensor + b"u" + b"(" + b"h\x09\x88" * 5000 + b"u."
    case("odd-value.pth", "holds no tensors", "5000 SETITEMs of one 1000-byte name, the last to a bool: names are shared and the last value wins", torch_zip(names, ok_storage))

    # --- pickle syntax
    whole = state_dict([("w", ok_tensor)])
    case("truncated-pickle.pth", "truncated pickle", "data.pkl cut in the middle of a string", torch_zip(whole[: whole.index(b"storage") + 3], ok_storage))
    case("stack-underflow.pth", "underflow", "STOP on an empty stack", torch_zip(b"\x80\x02."))
    case("mark-fence.pth", "underflow", "APPEND right after a MARK pops across it", torch_zip(b"\x80\x02](a."))
    case("memo-miss.pth", "memo entry 5 missing", "BINGET of a memo slot never set", torch_zip(b"\x80\x02h\x05."))
    case("unsupported-opcode.pth", "unsupported pickle opcode 0x93", "STACK_GLOBAL, which torch.save never writes", torch_zip(b"\x80\x04" + s("os") + s("system") + b"\x93."))
    rce = b"\x80\x02" + glob("os", "system") + tup(s("echo pwned > /tmp/pwned")) + b"R."
    case("os-system.pth", "not a state_dict", "the classic pickle exploit, os.system('echo pwned'): a REDUCE of an unknown global is never called", torch_zip(rce))
    case("unterminated-global.pth", "unterminated GLOBAL", "GLOBAL without its newline", torch_zip(b"\x80\x02ctorch._utils"))
    case("huge-string.pth", "truncated pickle", "BINUNICODE claiming 4 GB", torch_zip(b"\x80\x02X\xfe\xff\xff\xff" + b"abc"))
    case("odd-setitems.pth", "odd number", "SETITEMS with a key but no value", torch_zip(b"\x80\x02}(" + s("k") + b"u."))
    case("append-to-int.pth", "neither a list nor a dict", "APPEND onto an int", torch_zip(b"\x80\x02K\x01K\x02a."))
    case("not-a-dict.pth", "not a state_dict", "the pickle is a list of tensors, not a dict", torch_zip(b"\x80\x02](" + ok_tensor + b"e.", ok_storage))
    case("no-tensors.pth", "holds no tensors", "an empty dict", torch_zip(b"\x80\x02}."))
    bad_type = state_dict([("w", tensor("0", 0, [2], [1], storage="ComplexFloatStorage", numel=2))])
    case("bad-storage-type.pth", "unsupported storage type", "a ComplexFloatStorage", torch_zip(bad_type, ok_storage))
    two = state_dict([("a", tensor("0", 0, [2], [1], numel=2)), ("b", tensor("0", 0, [2], [1], storage="LongStorage", numel=2))])
    case("storage-two-types.pth", "two element types", "one storage described as float and as long", torch_zip(two, ok_storage))
    bad_args = state_dict([("w", glob("torch._utils", "_rebuild_tensor_v2") + tup(i(1), i(2)) + b"R")])
    case("rebuild-args.pth", "unexpected _rebuild_tensor_v2 arguments", "_rebuild_tensor_v2(1, 2)", torch_zip(bad_args))

    # --- tensor views against their storage
    def one(name, fragment, desc, t, storages=None):
        case(name, fragment, desc, torch_zip(state_dict([("w", t)]), ok_storage if storages is None else storages))

    one("view-past-end.pth", "reaches element 9", "size [10] on a storage of 2 floats", tensor("0", 0, [10], [1], numel=2))
    one("view-offset.pth", "reaches element 1000", "storage offset 1000 on a storage of 2 floats", tensor("0", 1000, [1], [1], numel=2))
    one("view-stride.pth", "reaches element", "size [2, 2] with stride [1000, 1] on 2 floats", tensor("0", 0, [2, 2], [1000, 1], numel=2))
    one("expand-bomb.pth", "allowance", "one float expanded by stride 0 to 2^30 elements (4 GiB if made contiguous)", tensor("0", 0, [1 << 30], [0], numel=1), {"0": floats(1)})
    one("overflow-size.pth", "overflows", "size [2^62, 2^62]: numel overflows", tensor("0", 0, [1 << 62, 1 << 62], [0, 0], numel=2))
    one("overflow-stride.pth", "overflows", "stride 2^62 on a size-5 dimension", tensor("0", 0, [5], [1 << 62], numel=2))
    one("empty-overflow.pth", "overflows", "an empty tensor [0, 2^62, 2^62] whose other dimensions overflow", tensor("0", 0, [0, 1 << 62, 1 << 62], [1, 1, 1], numel=2))
    one("negative-stride.pth", "negative", "stride -1", tensor("0", 1, [2], [-1], numel=2))
    one("negative-offset.pth", "negative", "storage offset -4", tensor("0", -4, [2], [1], numel=2))
    one("negative-size.pth", "negative", "size -3", tensor("0", 0, [-3], [1], numel=2))
    one("size-stride-mismatch.pth", "sizes but", "3 sizes with 1 stride", tensor("0", 0, [1, 1, 2], [1], numel=2))
    one("too-many-dims.pth", "dimensions", "a tensor with 100 dimensions", tensor("0", 0, [1] * 100, [1] * 100, numel=2))
    one("missing-storage.pth", "storage 7", "a tensor on storage 7, which the archive lacks", tensor("7", 0, [2], [1], numel=2))
    one("storage-not-multiple.pth", "not a multiple", "a float storage of 7 bytes", tensor("0", 0, [1], [1], numel=2), {"0": b"\0" * 7})
    many = state_dict([(f"w{k}", tensor("0", k % 1024, [1 << 20], [0], numel=1024)) for k in range(20)])
    case("expand-many.pth", "allowance", "20 distinct 4 MiB stride-0 views of one 4 KiB storage (80 MiB in all)", torch_zip(many, {"0": bytes(4096)}))

    # --- the zip container
    case("not-a-checkpoint.pth", "neither a zip archive nor a legacy", "a text file", b"this is not a checkpoint\n" * 4)
    case("empty.pth", "neither a zip archive nor a legacy", "an empty file", b"")
    case("truncated-zip.pth", "not a readable zip archive", "a real torch.save file cut in half", real[: len(real) // 2])
    case("no-data-pkl.pth", "no data.pkl", "a zip without data.pkl", torch_zip(b"", byteorder=None).replace(b"archive/data.pkl", b"archive/xxxx.pkl"))
    case("big-endian.pth", "byte order", "byteorder says big", torch_zip(state_dict([("w", ok_tensor)]), ok_storage, byteorder=b"big"))
    lie = torch_zip(state_dict([("w", ok_tensor)]), ok_storage, deflate={"data.pkl"})
    case("pkl-declares-4gb.pth", "more than the pickle limit", "data.pkl declares 4 GB uncompressed", patch_uncompressed_size(lie, "archive/data.pkl", 0xFFFFFF00))
    case("pkl-size-lie.pth", "more than the 10 bytes its zip header declares", "data.pkl declares 10 bytes but inflates to more", patch_uncompressed_size(lie, "archive/data.pkl", 10))
    big = torch_zip(state_dict([("w", tensor("0", 0, [1], [1], numel=2))]), ok_storage, deflate={"data/0"})
    case("storage-declares-4gb.pth", "compression bomb", "a storage entry declares 4 GB", patch_uncompressed_size(big, "archive/data/0", 0xFFFFFF00))
    case("storage-size-lie.pth", "more than the 4 bytes its zip header declares", "a storage declares 4 bytes but inflates to 8", patch_uncompressed_size(big, "archive/data/0", 4))
    case("storage-short.pth", "holds 8 bytes, not the 12 its zip header declares", "a storage declares 12 bytes but inflates to 8", patch_uncompressed_size(big, "archive/data/0", 12))
    zeros = 20 << 20
    deflate_bomb = torch_zip(state_dict([("w", tensor("0", 0, [zeros // 4], [1], numel=zeros // 4))]), {"0": bytes(zeros)}, deflate={"data/0"})
    case("deflate-bomb.pth", "compression bomb", "a storage of 20 MiB of zeros deflated to ~20 KB (more than file size + 16 MiB)", deflate_bomb)
    case("overlapping-entries.pth", "compression bomb", "300 central-directory entries sharing the data of one 64 KiB entry: 19 MiB from a 21 KB file", overlapping_entries(300, 64 << 10))

    # --- the legacy format
    leg_root = b"\x80\x02}" + s("w") + glob("torch._utils", "_rebuild_tensor_v2") + tup(
        tup(s("storage"), glob("torch", "FloatStorage"), s("k"), s("cpu"), i(2), b"N") + b"Q", i(0), tup(i(2)), tup(i(1)), b"\x89", ORDERED
    ) + b"Rs."
    case("legacy-numel-lie.pth", "elements but only", "legacy storage header claims 2^60 elements", legacy(leg_root, [("k", 1 << 60, floats(1, 2))]))
    case("legacy-truncated.pth", "truncated header", "legacy file cut before a storage header", legacy(leg_root, [("k", 2, floats(1, 2))])[:-12])
    case("legacy-unknown-key.pth", "never described", "legacy key list names a storage no tensor describes", legacy(leg_root, [("zz", 2, floats(1, 2))]))
    case("legacy-cut.pth", "truncated pickle", "a real legacy file cut inside its pickles", real_legacy[: real_legacy.index(b"storage") + 3])
    case("legacy-no-keys.pth", "without a storage key list", "legacy file whose key list is a dict", legacy(leg_root, [], keys=b"\x80\x02}."))

    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(README_HEAD)
        f.write("| file | expected error fragment | what it is |\n|---|---|---|\n")
        for name, fragment, desc in CASES:
            f.write(f"| `{name}` | `{fragment}` | {desc} |\n")
        f.write(README_TAIL)
    sizes = sum(os.path.getsize(os.path.join(OUT, n)) for n, _, _ in CASES)
    print(f"{len(CASES)} hostile files ({sizes} bytes) and valid/ written to {OUT}", file=sys.stderr)


README_HEAD = """# Hostile `.pth` files

Made by `tests/make_hostile_pth.py` (rerun it to regenerate; do not edit by
hand). `worker/tests/pth_hostile.rs` reads every file below with the worker's
checkpoint reader and requires an `Err` whose message names the file and
contains the expected fragment, within bounded memory and time; it also fails
if a `.pth` here is missing from the table or the other way round. (The
folder's `.gitignore` re-includes the `*.pth` that the root `.gitignore`
excludes: these files are committed.)

"""

README_TAIL = """
`valid/` holds real state_dicts saved by `torch.save` (zip and legacy format)
of a small Conv2d/BatchNorm2d/Linear model, with deterministic values, plus
views (transposed, offset, stride-0 expanded, empty) and half/int64/bool
tensors; `valid/small.json` has every tensor's shape and values. They must load
exactly, and they are the seeds that the fuzz test mutates (byte flips,
truncations, insertions).
"""

if __name__ == "__main__":
    main()
