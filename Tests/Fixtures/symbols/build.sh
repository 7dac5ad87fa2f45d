#!/bin/sh
# Builds the symbolization fixtures into OUTDIR (default ${TMPDIR:-/tmp}/sprof-symbol-fixtures).
# Nothing is written beside the sources. Recipes, one line each, are in README.md.
# Rust and Swift fixtures are skipped with a "skip NAME: reason" line when their
# compiler is missing.
set -eu
SRC=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${TMPDIR:-/tmp}/sprof-symbol-fixtures}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$SRC"

# C: inline chain, static function, qsort through the PLT.
gcc -O2 -g -fomit-frame-pointer -o "$OUT/c_inline" c_inline.c
# The same, stripped of everything but .dynsym: names come from elsewhere or not at all.
cp "$OUT/c_inline" "$OUT/c_inline_stripped" && strip --strip-all "$OUT/c_inline_stripped"
# Split debug info: the binary keeps no .symtab or DWARF; its debug file is
# found by build-id (placed by the test) or by .gnu_debuglink beside it.
objcopy --only-keep-debug "$OUT/c_inline" "$OUT/c_inline_split.debug"
cp "$OUT/c_inline" "$OUT/c_inline_split" && strip --strip-all "$OUT/c_inline_split"
(cd "$OUT" && objcopy --add-gnu-debuglink=c_inline_split.debug c_inline_split)
# The same with its DWARF in zlib-compressed sections (SHF_COMPRESSED), as distributions ship debug files.
gcc -O2 -g -gz=zlib -fomit-frame-pointer -o "$OUT/c_inline_gz" c_inline.c
# C++.
g++ -O2 -g -fomit-frame-pointer -o "$OUT/cpp_names" cpp_names.cpp

# Rust, legacy and v0 mangling.
RUSTC=${RUSTC:-$(command -v rustc || true)}
if [ -n "$RUSTC" ]; then
    # Legacy (_ZN...17h<hash>E) is stable rustc's default; naming it needs -Z on stable.
    "$RUSTC" -O -g -o "$OUT/rust_legacy" rust_names.rs
    "$RUSTC" -O -g -C symbol-mangling-version=v0 -o "$OUT/rust_v0" rust_names.rs
else
    echo "skip rust_legacy: rustc not found on PATH"
    echo "skip rust_v0: rustc not found on PATH"
fi

# Swift -O -g.
SWIFTC=${SWIFTC:-$(command -v swiftc || true)}
if [ -z "$SWIFTC" ] && [ -x /opt/swift/usr/bin/swiftc ]; then SWIFTC=/opt/swift/usr/bin/swiftc; fi
if [ -n "$SWIFTC" ]; then
    "$SWIFTC" -O -g -module-name symbols_swift -module-cache-path "$OUT/swift-module-cache" \
        -o "$OUT/swift_names" swift_names.swift
else
    echo "skip swift_names: swiftc not found"
fi
