#!/usr/bin/env python3
"""Unwinding speed and fidelity, sprof side by side with perf, on the same workloads.

For each workload (built by Tests/Fixtures/unwind/build.sh, no frame pointers):
  1. record it with `sprof record --raw` (stack bytes kept, 32 KiB copies) and with
     `perf record --call-graph dwarf,32768` (the same copy size), alternating which goes first;
  2. unwind offline: `sprof report FILE --stats` (its "unwind only" line: frames per second
     over three passes with the binaries' tables already built, file decoding included,
     symbolization excluded) and `perf script -F ip` (libunwind, what perf users have;
     timed as the CPU time of the process, frames counted from its output; its fixed
     start-up cost is taken out by timing a second recording 4x as long and dividing
     the difference in frames by the difference in CPU time);
  3. repeat, and print medians and the sprof/perf ratio.

Run as root:  swift build -c release --product sprof && sudo python3 bench/unwind.py [-r 3] [-d 2]
"""
import argparse, os, re, resource, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = ["c_chain_nog", "c_recursion", "cpp_chain", "rust_chain", "c_bigframe"]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def cpu_of(cmd):
    """Runs cmd, returns (stdout, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", "--runs", type=int, default=3)
    ap.add_argument("-d", "--seconds", type=float, default=2.0)
    ap.add_argument("--sprof", default=os.path.join(ROOT, ".build/release/sprof"))
    ap.add_argument("--workloads", nargs="*", default=WORKLOADS)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: recording loads BPF programs")
    tmp = tempfile.mkdtemp(prefix="sprof-bench-unwind-")
    sh(["sh", os.path.join(ROOT, "Tests/Fixtures/unwind/build.sh"), tmp])
    rows = []
    for w in a.workloads:
        exe = os.path.join(tmp, w)
        if not os.path.exists(exe):
            print(f"skip {w}: not built", file=sys.stderr)
            continue
        s_fps, p_fps, s_frames, p_frames, s_bytes, p_bytes, tables = [], [], [], [], [], [], ""
        for run in range(a.runs):
            order = ["sprof", "perf"] if run % 2 == 0 else ["perf", "sprof"]
            for tool in order:
                if tool == "sprof":
                    f = os.path.join(tmp, f"{w}.sprof")
                    sh([a.sprof, "record", "--raw", "-F", "999", "-o", f, "--", exe, str(a.seconds)])
                    st = sh([a.sprof, "report", f, "--stats"]).stdout
                    m = re.search(r"unwind only\s+(\d+) samples/s, (\d+) frames/s", st)
                    s_fps.append(float(m.group(2)))
                    n = int(re.search(r"^samples\s+(\d+)", st, re.M).group(1))
                    fr = int(re.search(r"^frames\s+(\d+)", st, re.M).group(1))
                    s_frames.append(fr / max(n, 1))
                    s_bytes.append(os.path.getsize(f) / max(n, 1))
                    tables = re.search(r"^binaries\s+(.*)$", st, re.M).group(1)
                    on = os.path.join(tmp, f"{w}.online.sprof")
                    sh([a.sprof, "record", "-F", "999", "-o", on, "--", exe, str(a.seconds)])
                    s_bytes[-1] = (s_bytes[-1], os.path.getsize(on) / max(n, 1))
                else:
                    # perf script has a fixed start-up cost (~1 s: symbol tables, DSOs); its
                    # unwinding rate is the marginal one, between a short and a 4x longer file.
                    got = []
                    for secs in (a.seconds, 4 * a.seconds):
                        f = os.path.join(tmp, f"{w}.{secs}.data")
                        sh(["perf", "record", "-q", "-F", "999", "-e", "cpu-clock", "--call-graph", "dwarf,32768",
                            "-o", f, "--", exe, str(secs)])
                        out, cpu = cpu_of(["perf", "script", "-i", f, "-F", "ip"])
                        frames = sum(1 for l in out.splitlines() if l.strip())
                        samples = max(len([b for b in out.split("\n\n") if b.strip()]), 1)
                        got.append((frames, cpu, samples, os.path.getsize(f)))
                    (f1, c1, n1, _), (f2, c2, n2, b2) = got
                    p_fps.append((f2 - f1) / max(c2 - c1, 1e-3))
                    p_frames.append(f2 / n2)
                    p_bytes.append(b2 / n2)
        med = statistics.median
        rows.append((w, med(s_fps), med(p_fps), med(s_frames), med(p_frames),
                     med(b[0] for b in s_bytes), med(b[1] for b in s_bytes), med(p_bytes), tables))
    print("| workload | sprof frames/s | perf script frames/s | ratio | frames/sample sprof / perf | bytes/sample sprof raw / online / perf | sprof tables |")
    print("|---|---|---|---|---|---|---|")
    for w, sf, pf, sfr, pfr, sb, so, pb, t in rows:
        print(f"| {w} | {sf/1e6:.2f} M | {pf/1e6:.3f} M | {sf/pf:.1f}× | {sfr:.1f} / {pfr:.1f} | {sb:,.0f} / {so:,.0f} / {pb:,.0f} | {t} |")


if __name__ == "__main__":
    main()
