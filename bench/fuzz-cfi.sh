#!/bin/sh
# Fuzzes the DWARF CFI reader (Sources/Unwind/DWARF) for a fixed time: arbitrary
# .eh_frame / .debug_frame / .eh_frame_hdr bytes and DWARF expressions must
# parse, evaluate, or fail with a CFIError — never crash, never hang.
#
#   bench/fuzz-cfi.sh [SECONDS]            libFuzzer + AddressSanitizer (default, 60 s)
#   bench/fuzz-cfi.sh --xctest [SECONDS]   the seeded mutation test (CFIFuzzTests) instead
#
# libFuzzer mode builds SprofBase and SprofELF as modules and the DWARF folder
# plus bench/fuzz/CFIFuzzTarget.swift as SprofUnwind with
# `swiftc -sanitize=fuzzer,address`; it needs nothing else of the package. Its
# seed corpus is made at run time from libc and a program compiled here
# (`objcopy -O binary --only-section=...`, one selector byte in front: see
# CFIFuzzTarget.swift). Crash inputs land in $OUT (default /tmp/sprof-fuzz-cfi).
# Run from anywhere; exits non-zero on a crash, a hang (-timeout=5 per input),
# or a build failure.
set -eu
cd "$(dirname "$0")/.."
SWIFT_BIN=${SWIFT_BIN:-/opt/swift/usr/bin}
export PATH="$SWIFT_BIN:$PATH"

if [ "${1:-}" = "--xctest" ]; then
    SECONDS_TO_RUN=${2:-60}
    swift build --scratch-path .build-cfi --build-tests
    # The test stops itself after SECONDS_TO_RUN; timeout catches a hang.
    SPROF_CFI_FUZZ_SECONDS=$SECONDS_TO_RUN SPROF_CFI_FUZZ_SEED=${SPROF_CFI_FUZZ_SEED:-$(date +%s)} \
        timeout $((SECONDS_TO_RUN + 300)) \
        swift test --scratch-path .build-cfi --skip-build --filter CFIFuzzTests
    exit $?
fi

SECONDS_TO_RUN=${1:-60}
OUT=${OUT:-/tmp/sprof-fuzz-cfi}
B="$OUT/build"
mkdir -p "$B" "$OUT/corpus" "$OUT/crashes"

echo "building the fuzz target in $B"
swiftc -parse-as-library -wmo -O -module-name SprofBase -emit-module -emit-module-path "$B/SprofBase.swiftmodule" \
    -c Sources/Base/*.swift -o "$B/SprofBase.o"
# SprofELF's C part (openat2, the SIGBUS guard): a clang object and its module map.
clang -O2 -c Sources/CSprofFiles/files.c -I Sources/CSprofFiles/include -o "$B/CSprofFiles.o"
swiftc -parse-as-library -wmo -O -module-name SprofELF -I "$B" -I Sources/CSprofFiles/include -emit-module -emit-module-path "$B/SprofELF.swiftmodule" \
    -c Sources/ELF/*.swift -o "$B/SprofELF.o"
# ld.gold warns once per ASan helper ("Cannot export local symbol"): noise.
swiftc -parse-as-library -O -sanitize=fuzzer,address -module-name SprofUnwind -I "$B" \
    -I Sources/CSprofFiles/include \
    Sources/Unwind/DWARF/*.swift bench/fuzz/CFIFuzzTarget.swift "$B/SprofBase.o" "$B/SprofELF.o" "$B/CSprofFiles.o" \
    -o "$B/fuzz-cfi" 2>&1 | grep -v "Cannot export local symbol" || true
[ -x "$B/fuzz-cfi" ] || { echo "build failed" >&2; exit 1; }

# Seed corpus: byte 0 selects the reader (0 .eh_frame, 1 .debug_frame, 2 .eh_frame_hdr too).
seed() {  # seed SELECTOR FILE SECTION NAME
    tmp="$OUT/section.bin"
    if objcopy -O binary --only-section="$3" "$2" "$tmp" 2>/dev/null && [ -s "$tmp" ]; then
        { printf "\\$(printf '%03o' "$1")"; head -c 16384 "$tmp"; } > "$OUT/corpus/$4"
    fi
    rm -f "$tmp"
}
LIBC=/lib/x86_64-linux-gnu/libc.so.6
if [ -f "$LIBC" ]; then
    seed 0 "$LIBC" .eh_frame libc-eh_frame
    seed 2 "$LIBC" .eh_frame_hdr libc-eh_frame_hdr
fi
if command -v gcc >/dev/null; then
    cat > "$OUT/p.c" <<'C'
#include <alloca.h>
#include <string.h>
int sink(int x) { return x ^ 0x5a; }
__attribute__((noinline)) int framed(int n) { char *p = alloca(n); memset(p, 1, n); return p[n / 2] + sink(n); }
__attribute__((noinline)) int early(int n) { if (n < 0) return sink(-n); char b[256]; memset(b, n, 256); return sink(b[n & 255]); }
int main(int argc, char **argv) { return framed(argc + 10) + early(argc - 2); }
C
    gcc -O2 -o "$OUT/p-eh" "$OUT/p.c" && seed 0 "$OUT/p-eh" .eh_frame gcc-eh_frame
    gcc -O2 -g -fno-asynchronous-unwind-tables -o "$OUT/p-debug" "$OUT/p.c" && seed 1 "$OUT/p-debug" .debug_frame gcc-debug_frame
fi

echo "fuzzing for $SECONDS_TO_RUN s"
"$B/fuzz-cfi" -max_total_time="$SECONDS_TO_RUN" -timeout=5 -max_len=16384 -print_final_stats=1 \
    -artifact_prefix="$OUT/crashes/" "$OUT/corpus"
