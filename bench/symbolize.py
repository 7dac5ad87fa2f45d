#!/usr/bin/env python3
"""Symbolization speed, memory and agreement: `sprof symbolize` beside `addr2line -f -i -C`
(binutils, what perf uses for source lines and inline frames), on the same addresses.

For each binary: the addresses are every function's first byte and three more points inside it
(from `nm -S`), at most --max-addresses of them. Then, alternating which goes first:
  1. `addr2line -f -i -C -e BIN` with the addresses on stdin: CPU time, peak RSS;
  2. `sprof symbolize -e BIN` with the same input: CPU time, peak RSS (cold: every file opened
     and every address looked up once, as `sprof record` does at the end of a recording);
  3. `sprof symbolize -e BIN --repeat-count K`: warm lookups (the answers cached per address,
     what a report over a long recording pays per frame), K chosen so that >= 1 M lookups run.
Prints medians of the runs and the ratios, the symbolizer's own tables for the binary (symbol
index, PLT stubs, cached answers; the mapped file and libdw's DWARF are not counted), and how many
addresses both print identically (Swift excluded: addr2line leaves Swift names mangled). The
known differences: where the linker folded identical functions (Rust's DebugList::entry and
DebugSet::entry), sprof prints the symbol table's preferred alias and addr2line DWARF's; for
`main.cold`-style partial copies sprof prints the symbol table's name; and for code without line
information addr2line sometimes names the unit's file where sprof prints `??`.

Run:  swift build -c release --product sprof && python3 bench/symbolize.py [-r 5]
"""
import argparse, os, resource, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_measured(cmd, stdin_text):
    """Runs cmd with stdin_text; returns (stdout, CPU seconds, peak RSS KiB) of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, input=stdin_text, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {p.stderr[-2000:]}")
    rss = int(p.stderr.strip().split("\n")[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p.stdout, cpu, rss


def addresses_of(binary, limit):
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    addrs = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] in "tTwWi":
            start, size = int(f[0], 16), int(f[1], 16)
            if size == 0:
                continue
            for k in range(4):
                addrs.add(start + size * k // 4)
    addrs = sorted(addrs)
    if len(addrs) > limit:
        step = len(addrs) / limit
        addrs = [addrs[int(i * step)] for i in range(limit)]
    return addrs


def split_by_address(text):
    """addr2line -a output -> {address: [lines]}"""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("0x") and len(line) == 18:
            cur = int(line, 16)
            out[cur] = []
        elif cur is not None:
            out[cur].append(line.split(" (discriminator")[0])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", "--runs", type=int, default=5)
    ap.add_argument("--sprof", default=os.path.join(ROOT, ".build/release/sprof"))
    ap.add_argument("--max-addresses", type=int, default=20000)
    ap.add_argument("--fixtures", default="/tmp/sprof-bench-symbol-fixtures")
    ap.add_argument("binaries", nargs="*")
    a = ap.parse_args()
    subprocess.run(["sh", os.path.join(ROOT, "Tests/Fixtures/symbols/build.sh"), a.fixtures], check=True,
                   capture_output=True)
    binaries = a.binaries or [os.path.join(a.fixtures, n) for n in ("cpp_names", "rust_legacy", "swift_names")] + [
        "/opt/swift/usr/lib/swift/linux/libswiftCore.so"]
    print(f"# sprof symbolize vs addr2line -f -i -C ({a.runs} alternating runs, medians)\n")
    print("| binary | addresses | addr2line s | sprof cold s | ratio | addr2line RSS MiB | sprof RSS MiB "
          "| sprof tables KiB | warm lookups/s | agree |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for binary in binaries:
        addrs = addresses_of(binary, a.max_addresses)
        text = "".join("0x%x\n" % x for x in addrs)
        swift = "swift" in os.path.basename(binary)
        a2l_cmd = ["addr2line", "-a", "-f", "-i", "-C", "-e", binary]
        sp_cmd = [a.sprof, "symbolize", "-a", "-e", binary]
        a2l, sp, a2l_rss, sp_rss, warm, table = [], [], [], [], [], 0
        a2l_out = sp_out = ""
        for r in range(a.runs):
            order = [("a2l", a2l_cmd), ("sp", sp_cmd)]
            if r % 2:
                order.reverse()
            for name, cmd in order:
                out, cpu, rss = run_measured(cmd, text)
                if name == "a2l":
                    a2l.append(cpu); a2l_rss.append(rss); a2l_out = out
                else:
                    sp.append(cpu); sp_rss.append(rss); sp_out = out
            repeat = max(1, 1_000_000 // max(len(addrs), 1))
            out, _, _ = run_measured(sp_cmd + ["--repeat-count", str(repeat)], text)
            for line in out.splitlines():
                if line.startswith("warm"):
                    warm.append(float(line.split("(")[1].split()[0]))
                if line.startswith("memory"):
                    table = int(line.split()[1])
        agree = "n/a (Swift)"
        if not swift:
            x, y = split_by_address(a2l_out), split_by_address(sp_out)
            same = sum(1 for k in x if x[k] == y.get(k))
            agree = f"{same}/{len(x)}"
        ma, ms = statistics.median(a2l), statistics.median(sp)
        print(f"| {os.path.basename(binary)} | {len(addrs)} | {ma:.3f} | {ms:.3f} | {ma / ms:.1f}x | "
              f"{statistics.median(a2l_rss) / 1024:.0f} | {statistics.median(sp_rss) / 1024:.0f} | "
              f"{table / 1024:,.0f} | {statistics.median(warm):,.0f} | {agree} |")


if __name__ == "__main__":
    main()
