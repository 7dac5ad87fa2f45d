#!/bin/sh
# Builds the unwinding fixtures into OUTDIR (default ${TMPDIR:-/tmp}/sprof-unwind-fixtures).
# Nothing is written beside the sources. No frame pointers anywhere (-fomit-frame-pointer;
# Rust release and Swift -O omit them by default on Linux), so only CFI can unwind them.
# Needs gcc and g++; Rust (cargo) and Swift (swiftc) fixtures are skipped with a
# "skip NAME: reason" line when their toolchain is missing. Recipes: README.md.
set -eu
SRC=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${TMPDIR:-/tmp}/sprof-unwind-fixtures}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$SRC"

CC=${CC:-gcc}
CXX=${CXX:-g++}
CFLAGS="-O2 -fomit-frame-pointer"

# C chain: with DWARF, without (.eh_frame only), and with its CFI only in .debug_frame.
$CC $CFLAGS -g -o "$OUT/c_chain_g" c_chain.c
$CC $CFLAGS -o "$OUT/c_chain_nog" c_chain.c
$CC $CFLAGS -g -fno-asynchronous-unwind-tables -o "$OUT/c_chain_debugframe" c_chain.c
# C++ namespaces and templates.
$CXX $CFLAGS -g -o "$OUT/cpp_chain" cpp_chain.cpp
# A library dlopen()ed after a delay, found next to the executable.
$CC $CFLAGS -g -shared -fPIC -o "$OUT/libunwind_plugin.so" plugin.c
$CC $CFLAGS -g -o "$OUT/c_dlopen" c_dlopen.c -ldl
# libc frames in the middle (qsort), a signal frame, deep recursion, a 20 KiB frame, threads.
$CC $CFLAGS -g -o "$OUT/c_qsort" c_qsort.c
$CC $CFLAGS -g -o "$OUT/c_signal" c_signal.c
$CC $CFLAGS -g -o "$OUT/c_recursion" c_recursion.c
$CC $CFLAGS -g -o "$OUT/c_bigframe" c_bigframe.c
$CC $CFLAGS -g -pthread -o "$OUT/c_threads" c_threads.c

# Rust release (no dependencies; Cargo.lock is committed so cargo writes nothing here).
if command -v cargo >/dev/null 2>&1; then
    CARGO_TARGET_DIR="$OUT/cargo" cargo build --release --offline --locked -q \
        --manifest-path rust_chain/Cargo.toml
    cp "$OUT/cargo/release/rust_chain" "$OUT/rust_chain"
else
    echo "skip rust_chain: cargo not found on PATH (install a Rust toolchain to build it)"
fi

# Swift -O.
SWIFTC=${SWIFTC:-$(command -v swiftc || true)}
if [ -z "$SWIFTC" ] && [ -x /opt/swift/usr/bin/swiftc ]; then SWIFTC=/opt/swift/usr/bin/swiftc; fi
if [ -n "$SWIFTC" ]; then
    # -module-name fixes the mangled names in expected.json; the module cache goes to OUT.
    "$SWIFTC" -O -module-name unwind_swift -module-cache-path "$OUT/swift-module-cache" \
        -o "$OUT/swift_chain" swift_chain.swift
else
    echo "skip swift_chain: swiftc not found (set SWIFTC or put swiftc on PATH)"
fi
echo "built into $OUT"
