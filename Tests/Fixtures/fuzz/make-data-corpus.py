#!/usr/bin/env python3
"""Writes the hand-crafted hostile inputs of the data-format fuzz targets
(pprof, raw, folded, toml) into Tests/Fixtures/fuzz/<target>/.

    python3 Tests/Fixtures/fuzz/make-data-corpus.py

Each file is small (< 8 KB) and named for what it tries; README.md ("Data
formats") lists them. Files that libFuzzer found are minimised crash inputs
and are not written here. Deterministic: same bytes every run.
"""
import gzip
import io
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < 8192, (name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    # mtime 0: reproducible bytes.
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as g:
        g.write(data)
    return out.getvalue()


# ---------------------------------------------------------------- pprof
# profile.proto (google/pprof, proto/profile.proto), field numbers:
# Profile: 1 sample_type, 2 sample, 3 mapping, 4 location, 5 function,
# 6 string_table, 9 time_nanos, 10 duration_nanos, 11 period_type, 12 period,
# 13 comment, 14 default_sample_type. ValueType: 1 type, 2 unit.
# Sample: 1 location_id (packed), 2 value (packed), 3 label.
# Label: 1 key, 2 str, 3 num. Mapping: 1 id, 2 memory_start, 3 memory_limit,
# 4 file_offset, 5 filename, 6 build_id. Location: 1 id, 2 mapping_id,
# 3 address, 4 line. Line: 1 function_id, 2 line. Function: 1 id, 2 name,
# 3 system_name, 4 filename, 5 start_line.

def varint(n):
    n &= (1 << 64) - 1  # int64 as protobuf writes it: two's complement, 10 bytes if negative
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b


def packed(num, values):
    return field_bytes(num, b"".join(varint(v) for v in values))


def value_type(t, u):
    return field_varint(1, t) + field_varint(2, u)


def profile(strings, sample_types=((1, 2),), samples=(), mappings=(), locations=(), functions=(),
            time_nanos=None, duration_nanos=None, extra=b""):
    out = bytearray()
    for t, u in sample_types:
        out += field_bytes(1, value_type(t, u))
    for locs, values, labels in samples:
        s = packed(1, locs) + packed(2, values)
        for key, st, num in labels:
            s += field_bytes(3, field_varint(1, key) + (field_varint(2, st) if st else b"") + (field_varint(3, num) if num else b""))
        out += field_bytes(2, s)
    for mid, start, limit, off, fname in mappings:
        out += field_bytes(3, field_varint(1, mid) + field_varint(2, start) + field_varint(3, limit)
                           + field_varint(4, off) + field_varint(5, fname))
    for lid, mid, addr, lines in locations:
        m = field_varint(1, lid) + field_varint(2, mid) + field_varint(3, addr)
        for fid, line in lines:
            m += field_bytes(4, field_varint(1, fid) + field_varint(2, line))
        out += field_bytes(4, m)
    for fid, name, sysname, fname in functions:
        out += field_bytes(5, field_varint(1, fid) + field_varint(2, name) + field_varint(3, sysname) + field_varint(4, fname))
    for s in strings:
        out += field_bytes(6, s)
    if time_nanos is not None:
        out += field_varint(9, time_nanos)
    if duration_nanos is not None:
        out += field_varint(10, duration_nanos)
    return bytes(out + extra)


STRINGS = ["", "samples", "count", "main", "work", "/bin/app", "comm", "app"]
FUNCS = [(1, 3, 3, 5), (2, 4, 4, 5)]
MAPS = [(1, 0x400000, 0x500000, 0, 5)]
LOCS = [(1, 1, 0x401000, [(1, 10)]), (2, 1, 0x402000, [(2, 20)])]
I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)


def pprof_cases():
    ok = profile(STRINGS, samples=[([2, 1], [5], [(6, 7, 0)])], mappings=MAPS, locations=LOCS, functions=FUNCS)
    write("pprof", "valid-small.pb", ok)
    write("pprof", "valid-small.pb.gz", gz(ok))
    # Sums of hostile values: the same stack twice, Int64.max each (folded
    # stacks, top, speedscope add them up), and a value whose percentage
    # (v * 10000) overflows.
    write("pprof", "values-sum-overflow.pb", profile(STRINGS, samples=[([2, 1], [I64_MAX], []), ([2, 1], [I64_MAX], []),
                                                                      ([1], [I64_MAX], [])],
                                                     mappings=MAPS, locations=LOCS, functions=FUNCS))
    write("pprof", "values-negative-overflow.pb", profile(STRINGS, samples=[([2, 1], [I64_MIN], []), ([2, 1], [-1], []),
                                                                           ([1], [I64_MIN], [])],
                                                          mappings=MAPS, locations=LOCS, functions=FUNCS))
    write("pprof", "percent-overflow.pb", profile(STRINGS, samples=[([2, 1], [10 ** 15], []), ([1], [3], [])],
                                                  mappings=MAPS, locations=LOCS, functions=FUNCS))
    # Times whose merged duration overflows (start near Int64.min).
    write("pprof", "time-overflow.pb", profile(STRINGS, samples=[([1], [1], [])], mappings=MAPS, locations=LOCS,
                                               functions=FUNCS, time_nanos=I64_MIN + 1, duration_nanos=I64_MAX))
    # References that are not there.
    write("pprof", "string-index-out-of-range.pb", profile(STRINGS, samples=[([1], [1], [])], mappings=MAPS,
                                                           locations=LOCS, functions=[(1, 99, 3, 5), (2, 4, 4, 5)]))
    write("pprof", "string-index-negative.pb", profile(STRINGS, samples=[([1], [1], [])], mappings=MAPS,
                                                       locations=LOCS, functions=[(1, -1, 3, 5), (2, 4, 4, 5)]))
    write("pprof", "label-string-out-of-range.pb", profile(STRINGS, samples=[([1], [1], [(6, 1 << 40, 0)])],
                                                           mappings=MAPS, locations=LOCS, functions=FUNCS))
    write("pprof", "sample-type-string-out-of-range.pb", profile(STRINGS, sample_types=[(1, 1 << 62)],
                                                                 samples=[([1], [1], [])], mappings=MAPS,
                                                                 locations=LOCS, functions=FUNCS))
    write("pprof", "missing-location.pb", profile(STRINGS, samples=[([7, 1], [1], [])], mappings=MAPS,
                                                  locations=LOCS, functions=FUNCS))
    write("pprof", "missing-function.pb", profile(STRINGS, samples=[([1], [1], [])], mappings=MAPS,
                                                  locations=[(1, 1, 0x401000, [(9, 1)])], functions=FUNCS))
    write("pprof", "missing-mapping.pb", profile(STRINGS, samples=[([1], [1], [])], mappings=MAPS,
                                                 locations=[(1, 3, 0x401000, [(1, 1)])], functions=FUNCS))
    # Ids that repeat, and a location referring to itself as a mapping id.
    write("pprof", "duplicate-ids.pb", profile(STRINGS, samples=[([1, 1, 1], [1], [])], mappings=MAPS + MAPS,
                                               locations=LOCS + [(1, 1, 0x403000, [(1, 1), (1, 1)])],
                                               functions=FUNCS + FUNCS))
    write("pprof", "value-count-mismatch.pb", profile(STRINGS, samples=[([1], [1, 2, 3], [])], mappings=MAPS,
                                                      locations=LOCS, functions=FUNCS))
    write("pprof", "string-table-not-empty-first.pb", profile(["x"] + STRINGS[1:], samples=[([1], [1], [])],
                                                              mappings=MAPS, locations=LOCS, functions=FUNCS))
    # A sample 5000 locations deep (the same two), and one with no locations.
    write("pprof", "deep-stack.pb", profile(STRINGS, samples=[([1, 2] * 1500, [1], []), ([], [1], [])],
                                            mappings=MAPS, locations=LOCS, functions=FUNCS))
    # Not protobuf: a length running past the end, a bad wire type, nesting
    # deeper than SwiftProtobuf's limit (100) through unknown group fields.
    write("pprof", "length-past-end.pb", bytes([0x12, 0xFF, 0xFF, 0xFF, 0x0F, 0x08, 0x01]))
    write("pprof", "bad-wire-type.pb", bytes([0x0F, 0x01, 0x02]))
    write("pprof", "deep-groups.pb", bytes([0xA3, 0x06]) * 3000)  # field 100, start group, never ended
    # gzip: truncated, a bad CRC, and a bomb. The bomb inflates to 8 MiB
    # from under 8 KB: the fuzz harness and DataFuzzCorpusTests read with a
    # 4 MiB cap, as `sprof report` reads with 1 GiB (a 1 GiB bomb is 1 MB of
    # gzip, too big to keep here; the same code and message either way).
    z = gz(ok)
    write("pprof", "gzip-truncated.pb.gz", z[: len(z) // 2])
    write("pprof", "gzip-bad-crc.pb.gz", z[:-8] + bytes([z[-8] ^ 0xFF]) + z[-7:])
    write("pprof", "gzip-header-only.pb.gz", bytes([0x1F, 0x8B]))
    bomb = gz(bytes(8 << 20))
    write("pprof", "gzip-bomb-8MiB.pb.gz", bomb)


# ---------------------------------------------------------------- raw
# docs/raw-format.md; the layouts are RawFile.swift's.

def s32(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("<I", len(b)) + b


def record(rtype, payload):
    return struct.pack("<II", rtype, len(payload)) + payload


def raw_header(major=1, minor=2, size=48):
    return b"SPROFRAW" + struct.pack("<HHI", major, minor, size) + b"fuzz".ljust(32, b"\0") + bytes(size - 48)


def metadata():
    return record(1, struct.pack("<QQII", 1_700_000_000 * 10 ** 9, 1000, 99, 16384) + s32("0.1") + s32("6.1.0")
                  + s32("host") + s32("all") + struct.pack("<I", 1) + s32("ringbuf")
                  + struct.pack("<I", 1) + s32("k") + s32("v"))


def process(pid=42):
    return record(2, struct.pack("<iIQ", pid, 3, 5000) + s32("app") + s32("/bin/app"))


def mappings(pid=42, count=None, generation=1):
    m = struct.pack("<QQQIIQBB", 0x400000, 0x500000, 0, 8, 1, 77, 5, 4) + b"\xAA\xBB\xCC\xDD" + s32("/bin/app")
    n = 1 if count is None else count
    return record(3, struct.pack("<iIQ", pid, n, generation) + m)


def sample_fixed(kind=1, kframes=1, tgid=42, ustack_len=16):
    f = struct.pack("<HHIiiQII", kind, kframes, 2, tgid, tgid, 2000, 0, 16384)
    f += struct.pack("<QQQQQI", 0x401000, 0x7FFF0000, 0x7FFF0100, 0, 0x7FFF8000, ustack_len)
    f += b"app".ljust(16, b"\0")
    assert len(f) == 92
    return f


def raw_sample(kframes=1, ustack=16, tgid=42, **kw):
    return record(4, sample_fixed(kframes=kframes, tgid=tgid, ustack_len=ustack, **kw)
                  + struct.pack("<Q", 0xFFFFFFFF81000000) * kframes + bytes(range(ustack)))


def unwound_sample(kframes=1, frames=3, count=None, tgid=42):
    n = frames if count is None else count
    return record(6, sample_fixed(kframes=kframes, tgid=tgid, ustack_len=4096)
                  + struct.pack("<Q", 0xFFFFFFFF81000000) * kframes
                  + struct.pack("<HBB", n, 0, 0) + struct.pack("<Q", 0x401234) * frames)


def locations(count=None, frames_count=None):
    frame = s32("main") + s32("main") + s32("app.c") + struct.pack("<IB", 7, 0)
    loc = struct.pack("<iQQBB", 42, 1, 0x401234, 1, 0) + s32("/bin/app") + struct.pack("<Q", 0x1234)
    loc += struct.pack("<I", 1 if frames_count is None else frames_count) + frame
    return record(7, struct.pack("<I", 1 if count is None else count) + loc)


def stats(written=3, count=None):
    return record(5, struct.pack("<QQQ", written, 0, 10 ** 9) + s32("duration elapsed")
                  + struct.pack("<I", 1 if count is None else count) + s32("drops") + struct.pack("<Q", 0))


def raw_cases():
    body = [metadata(), process(), mappings(), raw_sample(), unwound_sample(), raw_sample(kframes=0, ustack=0),
            locations(), stats()]
    ok = raw_header() + b"".join(body)
    write("raw", "valid-small.raw", ok)
    # Cut short: inside the header, inside a frame, inside a payload.
    write("raw", "truncated-header.raw", ok[:30])
    write("raw", "truncated-frame.raw", ok[: len(raw_header() + metadata() + process()) + 5])
    write("raw", "truncated-sample.raw", ok[: len(raw_header() + metadata() + process() + mappings()) + 40])
    pre = raw_header() + metadata() + process()
    # Counts the payload cannot hold.
    write("raw", "huge-mapping-count.raw", pre + mappings(count=0x7FFFFFFF) + raw_sample())
    write("raw", "huge-kernel-frames.raw", pre + mappings() + raw_sample(kframes=1)[:8 + 2] + struct.pack("<H", 0xFFFF)
          + raw_sample(kframes=1)[8 + 4:])
    write("raw", "huge-user-stack-length.raw", pre + mappings()
          + record(4, sample_fixed(ustack_len=0xFFFFFFFF) + struct.pack("<Q", 1)))
    write("raw", "huge-user-frame-count.raw", pre + mappings() + unwound_sample(frames=1, count=0xFFFF))
    write("raw", "huge-location-count.raw", pre + locations(count=0xFFFFFFFF))
    write("raw", "huge-frame-count.raw", pre + locations(frames_count=0xFFFFFFFF))
    write("raw", "huge-stats-counters.raw", pre + stats(count=0xFFFFFFFF))
    # A record length past the end of the file (read as truncation).
    write("raw", "record-length-past-end.raw", pre + struct.pack("<II", 4, 0xFFFFFFF0) + bytes(100))
    # Header fields: a header size larger than the file, below 48, another major.
    write("raw", "header-size-huge.raw", raw_header()[:12] + struct.pack("<I", 0xFFFFFFFF) + raw_header()[16:] + metadata())
    write("raw", "header-size-small.raw", raw_header()[:12] + struct.pack("<I", 8) + raw_header()[16:] + metadata())
    write("raw", "major-version-2.raw", raw_header(major=2) + metadata())
    # No metadata first; a second metadata and stats; records after stats;
    # unknown record types and sample kinds; a sample with no snapshot.
    write("raw", "sample-before-metadata.raw", raw_header() + raw_sample() + metadata())
    write("raw", "repeats-and-unknowns.raw", raw_header() + metadata() + metadata() + record(99, b"xyz")
          + raw_sample(tgid=7) + record(4, sample_fixed(kind=9, ustack_len=0)) + stats() + stats() + raw_sample())
    # Strings whose lengths run past the payload, and invalid UTF-8.
    write("raw", "string-length-past-payload.raw", raw_header()
          + record(1, struct.pack("<QQII", 0, 0, 0, 0) + struct.pack("<I", 0xFFFFFFFF) + b"abc"))
    write("raw", "invalid-utf8.raw", raw_header() + metadata()
          + record(2, struct.pack("<iIQ", 42, 0, 0) + s32(b"\xff\xfe\xc0") + s32(b"\xed\xa0\x80")) + raw_sample())
    # Sample fields at their extremes: addresses 0 and 2^64-1, a mapping
    # ending at 2^64-1, a time before the monotonic start.
    ext = record(4, struct.pack("<HHIiiQII", 2, 0, 0xFFFFFFFF, -1, -1, 0, 0xFFFFFFFF, 0xFFFFFFFF)
                 + struct.pack("<QQQQQI", (1 << 64) - 1, 0, (1 << 64) - 1, (1 << 64) - 1, (1 << 64) - 1, 0)
                 + b"\xff" * 16)
    top = record(3, struct.pack("<iIQ", -1, 1, (1 << 64) - 1)
                 + struct.pack("<QQQIIQBB", 0xFFFF0000, (1 << 64) - 1, (1 << 64) - 1, 0, 0, 0, 0xFF, 0) + s32(""))
    write("raw", "extreme-values.raw", raw_header() + metadata() + top + ext)


# ---------------------------------------------------------------- folded

def folded_cases():
    write("folded", "valid-small.folded", "app;main;work 3\napp;main 1\napp;main;work_[k] 2\n")
    write("folded", "count-overflow-total.folded", "a 18446744073709551615\nb 1\n")
    write("folded", "count-too-large.folded", "a 99999999999999999999\n")
    write("folded", "count-max-one-line.folded", "a;b;c 18446744073709551615\n")
    # Over FoldedStacks.maxDepth (100,000) frames would take 200 KB; this is
    # 4000 frames deep, drawn full width (one stack) at every depth.
    write("folded", "deep-stack.folded", ";".join(["f"] * 4000) + " 1\n")
    write("folded", "many-empty-frames.folded", "a" + ";" * 7000 + "b 1\n")
    write("folded", "no-frames.folded", ";;; 5\n")
    write("folded", "missing-count.folded", "a;b\n")
    write("folded", "negative-count.folded", "a -1\n")
    write("folded", "crlf-and-blanks.folded", "\r\n  \t\r\na;b 1\r\n\n")
    write("folded", "invalid-utf8.folded", b"\xff\xfe;\xc0\xaf 2\na;\xed\xa0\x80 1\n")
    write("folded", "control-and-markup.folded", "<script>&\"';\x01\x7f 1\n[off-cpu] wait;x_[k] 2\n")
    write("folded", "zero-counts.folded", "a;b 0\nc 0\n")
    write("folded", "wide-root.folded", "".join(f"r{i} 1\n" for i in range(900)))
    write("folded", "no-newline-at-end.folded", "a;b 1")


# ---------------------------------------------------------------- toml

def toml_cases():
    write("toml", "valid.toml", 'frequency = 49\nwindow = "10s"\n\n[store]\nmax_age = "7d"\nmax_size = "2GiB"\n\n[labels]\nteam = "infra"\n')
    write("toml", "nested-arrays.toml", "a = " + "[" * 3000 + "]" * 3000 + "\n")
    write("toml", "nested-arrays-64.toml", "a = " + "[" * 64 + "]" * 64 + "\n")
    write("toml", "nested-arrays-65.toml", "a = " + "[" * 65 + "]" * 65 + "\n")
    write("toml", "unclosed-array.toml", "a = [1, 2,\n# c\n")
    write("toml", "inline-table.toml", "a = { b = 1 }\n")
    write("toml", "dotted-table.toml", "[a.b.c.d]\n")
    write("toml", "array-of-tables.toml", "[[a]]\n")
    write("toml", "integer-overflow.toml", "frequency = 99999999999999999999\n")
    write("toml", "hex-overflow.toml", "a = 0xFFFFFFFFFFFFFFFFFF\n")
    write("toml", "huge-float.toml", "a = 1e999999\nb = -0.0\nc = nan\n")
    write("toml", "bad-escape.toml", 'a = "\\uD800"\nb = "\\U0011FFFF"\n')
    write("toml", "unterminated-string.toml", 'a = "abc\n')
    write("toml", "control-chars.toml", "a = 1 # \x01\n")
    write("toml", "cr-without-lf.toml", "a = 1\r")
    write("toml", "duplicate-table.toml", "[store]\n[store]\n")
    write("toml", "duplicate-key.toml", "a = 1\na = 2\n")
    write("toml", "long-unknown-key.toml", "[store]\n" + "x" * 6000 + " = 1\n")
    write("toml", "size-overflow.toml", '[store]\nmax_size = "99999999999TiB"\n')
    write("toml", "duration-overflow.toml", 'window = "1e308d"\n')


if __name__ == "__main__":
    pprof_cases()
    raw_cases()
    folded_cases()
    toml_cases()
