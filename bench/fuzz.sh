#!/bin/sh
# Fuzzes sprof's parsers of untrusted input with libFuzzer + AddressSanitizer,
# one target after another, SECONDS each (default 60): every input must parse,
# or fail with the module's error, never crash, hang or trip the sanitizer.
#
#   bench/fuzz.sh [SECONDS] [TARGET...]     all targets when none is named
#   bench/fuzz.sh --list                    the targets
#
# Prints per target the executions, exec/s, libFuzzer's coverage (`cov:`
# edges, `ft:` features), the corpus size and the crashes found, then a
# summary table (the rows of bench/FUZZ-RESULTS.md). Exits non-zero when any
# target crashed, hung (-timeout=5 s per input), ran out of memory
# (-rss_limit_mb=2048) or failed to build. Crash inputs are kept in
# $OUT/<target>/crashes (OUT defaults to /tmp/sprof-fuzz); reproduce one with
# `$OUT/build/fuzz-<target> FILE`, minimise it with `-minimize_crash=1
# -runs=10000 FILE`, and commit it under Tests/Fixtures/fuzz/<target>/ (see
# the README there) so FuzzCorpusTests replays it.
#
# Adding a target (the convention; one table line and one file):
#   1. bench/fuzz/<Stem>FuzzTarget.swift defines
#      `@_cdecl("LLVMFuzzerTestOneInput") public func ...(_ data:
#      UnsafePointer<UInt8>, _ size: Int) -> CInt`, and says in its header
#      what an input is and what it exercises.
#   2. A line in TARGETS below:
#        name  stem  module  sources  libraries  max_len
#      name:      what `bench/fuzz.sh 60 name` runs; also the corpus folder
#                 Tests/Fixtures/fuzz/<name>/ (its files are seeds).
#      stem:      <Stem> of the harness file.
#      module:    the Swift module name the harness is compiled as.
#      sources:   package sources compiled into that same module (internal
#                 access without -enable-testing; globs allowed), or "-".
#      libraries: comma list of library modules the harness imports, built
#                 into $OUT/build by the `library_<name>` functions below
#                 (again only when their sources changed)
#                 (base, elf, symbols, capture, protobuf, profile,
#                 flamegraph, store; add a function for a new
#                 one), in dependency order; "-" for none. They are
#                 compiled with -enable-testing, so a harness may
#                 `@testable import` them.
#      max_len:   libFuzzer's -max_len (bytes).
#   3. Optionally a function `seeds_<name> DIR` that writes seed inputs made
#      at run time (from real files: libc, a program compiled here) into DIR.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
SWIFT_BIN=${SWIFT_BIN:-/opt/swift/usr/bin}
export PATH="$SWIFT_BIN:$PATH"
# A Swift trap (overflow, out-of-range index) then ends as libFuzzer's
# "deadly signal" with its stack: the runtime's own backtracer trips over
# AddressSanitizer's interceptors instead.
export SWIFT_BACKTRACE=enable=no

TARGETS='
# name     stem      module        sources                        libraries          max_len
cfi        CFI       SprofUnwind   Sources/Unwind/DWARF/*.swift   base,elf           16384
elf        ELF       FuzzELF       -                              base,elf           65536
symtab     Symtab    FuzzSymtab    -                              base,elf,symbols   65536
dwarf      DWARF     FuzzDWARF     -                              base,elf,symbols   65536
procmaps   ProcMaps  FuzzProcMaps  -                              base,capture       16384
perfmap    PerfMap   FuzzPerfMap   -                              base,elf,symbols   16384
pprof      Pprof     FuzzPprof     -                              protobuf,profile   8192
raw        RawFile   FuzzRaw       -                              base,capture       8192
folded     Folded    SprofFlameGraph flamegraph/*.swift           -                  4096
toml       TOML      SprofAgent    Sources/Agent/*.swift          base,protobuf,profile,flamegraph,store 8192
'

table() { printf '%s\n' "$TARGETS" | grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$'; }

if [ "${1:-}" = "--list" ]; then table | awk '{ print $1 }'; exit 0; fi
SECONDS_TO_RUN=60
case "${1:-}" in [0-9]*) SECONDS_TO_RUN=$1; shift ;; esac
SELECTED=${*:-$(table | awk '{ print $1 }')}
for t in $SELECTED; do
    table | awk -v t="$t" '$1 == t { found = 1 } END { exit !found }' || { echo "unknown target: $t (bench/fuzz.sh --list)" >&2; exit 2; }
done

OUT=${OUT:-/tmp/sprof-fuzz}
B="$OUT/build"
mkdir -p "$B"
SWIFTC="swiftc -parse-as-library -O -sanitize=fuzzer,address -enable-testing"
# The package's C modules (module maps), for every compile.
INCLUDES="-I $B -I Sources/CLibDW -I Sources/CLibElf -I Sources/CLibIberty -I Sources/CSprofFiles/include -I Sources/CZlib"

# ---------------------------------------------------------------------------
# Library modules: library_<name> compiles $B/<Module>.o and .swiftmodule
# and prints the linker flags the module needs (one line). Built once a run.

# fresh OBJECT SOURCE...: whether OBJECT exists and no SOURCE is newer (skip the build).
fresh() { obj=$1; shift; [ -f "$obj" ] && [ -z "$(find "$@" -newer "$obj" 2>/dev/null | head -1)" ]; }

library_base() {
    fresh "$B/SprofBase.o" Sources/Base && { echo "$B/SprofBase.o"; return; }
    $SWIFTC -wmo -module-name SprofBase -emit-module -emit-module-path "$B/SprofBase.swiftmodule" \
        -c Sources/Base/*.swift -o "$B/SprofBase.o" &&
    echo "$B/SprofBase.o"
}
# SprofELF's C part (openat2, the SIGBUS guard) is a clang object.
library_elf() {
    fresh "$B/SprofELF.o" Sources/ELF Sources/CSprofFiles "$B/SprofBase.o" && { echo "$B/SprofELF.o $B/CSprofFiles.o"; return; }
    clang -O2 -c Sources/CSprofFiles/files.c -I Sources/CSprofFiles/include -o "$B/CSprofFiles.o" &&
    $SWIFTC -wmo -module-name SprofELF $INCLUDES -emit-module -emit-module-path "$B/SprofELF.swiftmodule" \
        -c Sources/ELF/*.swift -o "$B/SprofELF.o" &&
    echo "$B/SprofELF.o $B/CSprofFiles.o"
}
library_symbols() {
    fresh "$B/SprofSymbols.o" symbols "$B/SprofELF.o" && { echo "$B/SprofSymbols.o -ldw -lelf -liberty"; return; }
    $SWIFTC -wmo -module-name SprofSymbols $INCLUDES \
        -emit-module -emit-module-path "$B/SprofSymbols.swiftmodule" -c symbols/*.swift -o "$B/SprofSymbols.o" &&
    echo "$B/SprofSymbols.o -ldw -lelf -liberty"
}
# Only the capture files the /proc/PID/maps parser needs (no libbpf): the
# parser, the module's error enum and what that enum names. CSprof's header
# is given a module map of its own here (SwiftPM makes one for the package).
library_capture() {
    fresh "$B/SprofCapture.o" Sources/Capture Sources/CSprof bpf/include "$B/SprofBase.o" bench/fuzz.sh && { echo "$B/SprofCapture.o"; return; }
    mkdir -p "$B/csprof"
    printf 'module CSprof {\n    header "%s"\n    export *\n}\n' "$ROOT/Sources/CSprof/include/sprof_shim.h" \
        > "$B/csprof/module.modulemap"
    $SWIFTC -wmo -module-name SprofCapture $INCLUDES -I "$B/csprof" -Xcc -I -Xcc bpf/include \
        -emit-module -emit-module-path "$B/SprofCapture.swiftmodule" \
        -c Sources/Capture/ProcMaps.swift Sources/Capture/CaptureError.swift Sources/Capture/Syscalls.swift \
        Sources/Capture/RawFile.swift Sources/Capture/RawSample.swift Sources/Capture/RawFileReader.swift \
        Sources/Capture/Dump.swift -o "$B/SprofCapture.o" &&
    echo "$B/SprofCapture.o"
}
# SwiftProtobuf from the package's pinned checkout (Package.resolved), resolved
# into $OUT/spm; its `package` declarations need -package-name.
library_protobuf() {
    fresh "$B/SwiftProtobuf.o" Package.resolved && { echo "$B/SwiftProtobuf.o"; return; }
    swift package resolve --scratch-path "$OUT/spm" >&2 &&
    $SWIFTC -wmo -module-name SwiftProtobuf -package-name swift_protobuf -enable-upcoming-feature ExistentialAny \
        -emit-module -emit-module-path "$B/SwiftProtobuf.swiftmodule" \
        -c "$OUT"/spm/checkouts/swift-protobuf/Sources/SwiftProtobuf/*.swift -o "$B/SwiftProtobuf.o" &&
    echo "$B/SwiftProtobuf.o"
}
library_profile() {
    fresh "$B/SprofProfile.o" Sources/Profile "$B/SwiftProtobuf.o" && { echo "$B/SprofProfile.o -lz"; return; }
    $SWIFTC -wmo -module-name SprofProfile $INCLUDES -emit-module -emit-module-path "$B/SprofProfile.swiftmodule" \
        -c Sources/Profile/*.swift Sources/Profile/Proto/*.swift -o "$B/SprofProfile.o" &&
    echo "$B/SprofProfile.o -lz"
}
library_flamegraph() {
    fresh "$B/SprofFlameGraph.o" flamegraph && { echo "$B/SprofFlameGraph.o"; return; }
    $SWIFTC -wmo -module-name SprofFlameGraph -emit-module -emit-module-path "$B/SprofFlameGraph.swiftmodule" \
        -c flamegraph/*.swift -o "$B/SprofFlameGraph.o" &&
    echo "$B/SprofFlameGraph.o"
}
library_store() {
    fresh "$B/SprofStore.o" Sources/Store "$B/SprofProfile.o" && { echo "$B/SprofStore.o"; return; }
    $SWIFTC -wmo -module-name SprofStore $INCLUDES -emit-module -emit-module-path "$B/SprofStore.swiftmodule" \
        -c Sources/Store/*.swift -o "$B/SprofStore.o" &&
    echo "$B/SprofStore.o"
}

# ---------------------------------------------------------------------------
# Seeds made at run time, from real files. $REAL holds programs compiled once.

REAL="$OUT/real"
make_real_files() {
    [ -d "$REAL" ] && return 0
    mkdir -p "$REAL.tmp"
    cat > "$REAL.tmp/p.c" <<'C'
#include <alloca.h>
#include <stdlib.h>
#include <string.h>
static inline int twice(int x) { return x * 2 + (x >> 3); }
static inline int inner(int x) { return twice(x) ^ 0x5a; }
int sink(int x) { return inner(x) + 1; }
__attribute__((noinline)) int framed(int n) { char *p = alloca(n); memset(p, 1, n); return p[n / 2] + sink(n); }
__attribute__((noinline)) int early(int n) { if (n < 0) return sink(-n); char b[256]; memset(b, n, 256); return sink(b[n & 255]); }
static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
int main(int argc, char **argv) { int v[4] = {argc, 3, 1, 2}; qsort(v, 4, sizeof v[0], cmp); return framed(argc + 10) + early(argc - 2) + v[0]; }
C
    cat > "$REAL.tmp/q.cc" <<'C'
namespace outer { namespace inner {
template <typename T> struct Box { T v; __attribute__((always_inline)) T get() const { return v + 1; } };
__attribute__((noinline)) int use(int x) { Box<int> b{x}; return b.get() * 3; }
} }
int main(int argc, char **) { return outer::inner::use(argc); }
C
    # Linked without page alignment (the programs cannot run, but read as
    # real ELF files): 5-9 KB instead of 16-20 KB, so libFuzzer's mutations
    # fall on headers and tables rather than on padding.
    small="-Wl,-z,noseparate-code -Wl,-z,max-page-size=0x10 -Wl,-z,common-page-size=0x10"
    if command -v gcc >/dev/null; then
        cc() { out=$1; shift; gcc "$@" $small -o "$REAL.tmp/$out" "$REAL.tmp/p.c" 2>/dev/null || true; }
        cc c-O2 -O2
        cc c-O2-g -O2 -g
        cc c-O2-gdwarf4 -O2 -g -gdwarf-4
        cc c-O2-gz -O2 -g -gz=zlib
        cc c-O0-g -O0 -g -fno-asynchronous-unwind-tables
        cc c-now -O2 -Wl,-z,now
        cc c-ibt -O2 -fcf-protection=full -Wl,-z,ibtplt
        cc c.so -O2 -g -shared -fPIC
        gcc -O2 -g -c -o "$REAL.tmp/c.o" "$REAL.tmp/p.c"
        strip -o "$REAL.tmp/c-stripped" "$REAL.tmp/c-O2"
        objcopy --only-keep-debug "$REAL.tmp/c-O2-g" "$REAL.tmp/c.debug"
        objcopy --add-gnu-debuglink="$REAL.tmp/c.debug" "$REAL.tmp/c-stripped" "$REAL.tmp/c-debuglink"
    fi
    if command -v g++ >/dev/null; then
        g++ -O2 -g $small -o "$REAL.tmp/cxx-O2-g" "$REAL.tmp/q.cc" || true
    fi
    rm -f "$REAL.tmp/p.c" "$REAL.tmp/q.cc"
    mv "$REAL.tmp" "$REAL"
}

# Whole small ELF files (each under max_len), for the ELF-reading targets.
seeds_elf() { make_real_files; for f in "$REAL"/*; do [ "$(wc -c < "$f")" -le 65536 ] && cp "$f" "$1/real-$(basename "$f")"; done; true; }
seeds_symtab() { seeds_elf "$1"; }
seeds_dwarf() { seeds_elf "$1"; }

# Byte 0 selects the CFI reader (see CFIFuzzTarget.swift), the rest is a section.
seeds_cfi() {
    make_real_files
    cfi_seed() {  # cfi_seed SELECTOR FILE SECTION NAME
        tmp="$OUT/section.bin"
        if objcopy -O binary --only-section="$3" "$2" "$tmp" 2>/dev/null && [ -s "$tmp" ]; then
            { printf "\\$(printf '%03o' "$1")"; head -c 16384 "$tmp"; } > "$DIR/$4"
        fi
        rm -f "$tmp"
    }
    DIR=$1
    LIBC=/lib/x86_64-linux-gnu/libc.so.6
    if [ -f "$LIBC" ]; then
        cfi_seed 0 "$LIBC" .eh_frame libc-eh_frame
        cfi_seed 2 "$LIBC" .eh_frame_hdr libc-eh_frame_hdr
    fi
    [ -f "$REAL/c-O2" ] && cfi_seed 0 "$REAL/c-O2" .eh_frame gcc-eh_frame
    [ -f "$REAL/c-O0-g" ] && cfi_seed 1 "$REAL/c-O0-g" .debug_frame gcc-debug_frame
    true
}

seeds_procmaps() {
    cp /proc/self/maps "$1/real-self"
    cp /proc/1/maps "$1/real-init" 2>/dev/null || true
}

# A perf map as Node and CPython write them (jit-interface.txt), made here.
seeds_perfmap() {
    {
        echo "7f0e3830d7b1 b py::name:/path/script.py"
        echo "0x3a2c1e0 1f LazyCompile:~main /app/index.js:1"
        echo "40000 100 with spaces in the name"
        echo "40080 10 newer wins"
        echo "ffffffffffffff00 ff top of memory"
        printf '4000 20 crlf\r\n'
    } > "$1/made-perfmap"
}

# ---------------------------------------------------------------------------

FAILED=""
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
BUILT=""
LINK_base="" LINK_elf="" LINK_symbols="" LINK_capture="" LINK_protobuf="" LINK_profile="" LINK_flamegraph="" LINK_store=""

build_target() {  # build_target NAME STEM MODULE SOURCES LIBRARIES
    name=$1 stem=$2 module=$3 sources=$4 libraries=$5
    links=""
    for lib in $(echo "$libraries" | tr ',' ' '); do
        [ "$lib" = "-" ] && continue
        case " $BUILT " in
            *" $lib "*) ;;
            *)
                echo "building library $lib"
                flags=$(library_"$lib") || return 1
                eval "LINK_$lib=\"\$flags\""
                BUILT="$BUILT $lib"
                ;;
        esac
        eval "links=\"\$links \$LINK_$lib\""
    done
    [ "$sources" = "-" ] && sources=""
    echo "building fuzz-$name"
    rm -f "$B/fuzz-$name"
    # ld.gold warns once per ASan helper ("Cannot export local symbol"): noise.
    # shellcheck disable=SC2086  # globs and flag lists are meant to split
    $SWIFTC -module-name "$module" $INCLUDES -I "$B/csprof" \
        $sources "bench/fuzz/${stem}FuzzTarget.swift" $links -o "$B/fuzz-$name" 2>&1 \
        | grep -v "Cannot export local symbol" || true
    [ -x "$B/fuzz-$name" ]
}

run_target() {  # run_target NAME MAX_LEN
    name=$1 max_len=$2
    T="$OUT/$name"
    mkdir -p "$T/corpus" "$T/crashes" "$T/seeds"
    rm -f "$T/seeds"/*
    if [ -d "Tests/Fixtures/fuzz/$name" ]; then
        find "Tests/Fixtures/fuzz/$name" -maxdepth 1 -type f ! -name '*.md' -exec cp {} "$T/seeds/" \;
    fi
    if command -v "seeds_$name" >/dev/null 2>&1; then "seeds_$name" "$T/seeds"; fi
    before=$(find "$T/crashes" -type f | wc -l)
    echo "fuzzing $name for $SECONDS_TO_RUN s ($(find "$T/seeds" -type f | wc -l) seeds, $(find "$T/corpus" -type f | wc -l) in the corpus)"
    status=0
    "$B/fuzz-$name" -max_total_time="$SECONDS_TO_RUN" -timeout=5 -rss_limit_mb=2048 -max_len="$max_len" \
        -print_final_stats=1 -artifact_prefix="$T/crashes/" "$T/corpus" "$T/seeds" > "$T/log" 2>&1 || status=$?
    rm -f /dev/shm/sprof-fuzz-"$name"-*  # a harness's scratch file (DWARFFuzzTarget.swift)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$T/log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$T/log" | grep ' cov: ' | tail -1 || true)
    cov=$(printf '%s' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corpus=$(find "$T/corpus" -type f | wc -l)
    crashes=$(( $(find "$T/crashes" -type f | wc -l) - before ))
    result="ok"
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        result="FAILED (exit $status)"
        FAILED="$FAILED $name"
        grep -E 'ERROR: |SUMMARY: |Fatal error|deadly signal|timeout|out-of-memory' "$T/log" | head -5 | sed 's/^/  /'
        find "$T/crashes" -type f -newer "$T/seeds" | sed 's/^/  input: /'
    fi
    echo "$name: ${execs:-?} executions, ${rate:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus $corpus, crashes $crashes: $result (log: $T/log)"
    echo "| $name | $(date -u +%Y-%m-%d) | $SECONDS_TO_RUN | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $corpus | $crashes | $result |" >> "$SUMMARY"
}

for t in $SELECTED; do
    # The line's fields, globs unexpanded (build_target expands them).
    set -f
    # shellcheck disable=SC2046
    set -- $(table | awk -v t="$t" '$1 == t')
    set +f
    if ! build_target "$1" "$2" "$3" "$4" "$5"; then
        echo "$t: build failed" >&2
        FAILED="$FAILED $t"
        echo "| $t | $(date -u +%Y-%m-%d) | - | - | - | - | - | - | - | build failed |" >> "$SUMMARY"
        continue
    fi
    run_target "$1" "$6"
done

echo
echo "| target | date | seconds | executions | exec/s | cov | ft | corpus | crashes | result |"
echo "|---|---|---|---|---|---|---|---|---|---|"
cat "$SUMMARY"
if [ -n "$FAILED" ]; then
    echo "failed:$FAILED" >&2
    exit 1
fi
