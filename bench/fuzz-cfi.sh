#!/bin/sh
# Fuzzes the DWARF CFI reader (Sources/Unwind/DWARF) for a fixed time: arbitrary
# .eh_frame / .debug_frame / .eh_frame_hdr bytes and DWARF expressions must
# parse, evaluate, or fail with a CFIError — never crash, never hang.
#
#   bench/fuzz-cfi.sh [SECONDS]            libFuzzer + AddressSanitizer (default, 60 s)
#   bench/fuzz-cfi.sh --xctest [SECONDS]   the seeded mutation test (CFIFuzzTests) instead
#
# libFuzzer mode runs `bench/fuzz.sh SECONDS cfi` (see there): SprofBase and
# SprofELF built as modules, the DWARF folder plus bench/fuzz/CFIFuzzTarget.swift
# as SprofUnwind with `swiftc -sanitize=fuzzer,address`; seeds made at run time
# (`objcopy -O binary --only-section=...`, one selector byte in front: see
# CFIFuzzTarget.swift). Run from anywhere; exits non-zero on a crash, a hang
# (-timeout=5 per input), or a build failure.
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

# libFuzzer mode is bench/fuzz.sh's target "cfi" (same harness, same seeds:
# libc's and a compiled program's .eh_frame/.eh_frame_hdr/.debug_frame).
# Crash inputs land in $OUT/cfi/crashes (OUT defaults to /tmp/sprof-fuzz).
exec bench/fuzz.sh "${1:-60}" cfi
