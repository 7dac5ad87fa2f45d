#!/usr/bin/env python3
"""Flame graph rendering speed and size: `sprof flamegraph` beside Brendan Gregg's flamegraph.pl
on the same large folded file.

The input is generated, deterministically from --seed: --lines distinct stacks (default one
million), each a random walk down a fixed call graph of a few thousand functions (C, C++ with
templates, Rust, kernel `_[k]` tails on a fifth of the stacks, inlined `_[i]`, JIT `_[j]`,
`lib.so+0x…` unknowns), 10 to 40 frames deep, heavy-tailed counts, sorted as stackcollapse-*.pl
writes them. It is cached in --cache-dir by its parameters (half a gigabyte for a million lines).

Then, alternating which goes first, --runs times:
  1. `sprof flamegraph IN -o OUT.svg`: wall and CPU time, peak RSS, SVG bytes;
  2. `perl flamegraph.pl IN > OUT.svg` (same width and 0.1 px minimum width, both defaults), when
     a copy is found: --flamegraph-pl, $FLAMEGRAPH_PL, or flamegraph.pl on PATH. If none is found
     the script says so and reports sprof alone.
Prints medians, the CPU-time ratio, and whether both drew the same frames (names and sample
counts from the tooltips). Both drop frames under 0.1 px, so the SVG byte counts are comparable:
what a browser has to open.

Run:  swift build -c release --product sprof && python3 bench/flamegraph.py [-r 3] [--lines N]
"""
import argparse, collections, os, random, re, resource, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATOR_VERSION = 1  # bump when the generator changes, so cached inputs are remade


def make_names(rng, n):
    """n distinct function names of realistic shapes (about 20 bytes on average)."""
    words = ("alloc buffer cache check commit compress decode dispatch drop encode entry event fetch "
             "flush frame handle hash index init insert interp io job key load lock lookup map merge "
             "node open parse poll process query read reader recv record reduce render request reset "
             "resolve run scan schedule send serialize socket sort split state step store stream sync "
             "table task update validate visit wait walk worker write").split()
    classes = "Parser Buffer Request Session Vec Map Node Table Cache Engine Worker Stream Frame".split()
    names, seen = [], set()
    while len(names) < n:
        k = rng.random()
        a, b = rng.choice(words), rng.choice(words)
        if k < 0.45:
            name = f"{a}_{b}"
        elif k < 0.65:
            name = f"app::{rng.choice(classes)}::{a}_{b}"
        elif k < 0.75:
            name = f"std::vector<{rng.choice(classes)}<int>>::{a}"
        elif k < 0.85:
            name = f"core::{a}::{b}<T>"
        elif k < 0.93:
            name = f"{a}_{b}_[i]"
        else:
            name = f"lib{a}.so+0x{rng.randrange(0x1000, 0xfffff):x}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def generate(path, lines, seed):
    rng = random.Random(seed)
    user = make_names(rng, 3000)
    kernel = [f"{a}_{b}_[k]" for a in ("do", "sys", "vfs", "ext4", "tcp", "ip", "sock", "page", "mm", "irq")
              for b in ("read", "write", "fault", "sendmsg", "recvmsg", "poll", "open", "lookup", "alloc",
                        "free", "wake", "schedule", "softirq", "copy", "flush", "timer", "futex", "mmap",
                        "unmap", "exit", "clone", "signal", "epoll", "splice", "ioctl", "stat", "close")]
    jit = [f"Interpreted::method_{i}_[j]" for i in range(200)]
    # The call graph: every function calls 2 to 8 others.
    callees = {f: rng.sample(user, rng.randint(2, 8)) for f in user}
    for f in rng.sample(user, 100):
        callees[f] += rng.sample(jit, 2)
    for f in jit:
        callees[f] = rng.sample(jit, 3) + rng.sample(user, 2)
    kcallees = {f: rng.sample(kernel, 4) for f in kernel}
    roots = [f"comm{i}" for i in range(20)]
    starts = {r: rng.sample(user, 3) for r in roots}
    out, seen = [], set()
    while len(out) < lines:
        root = rng.choice(roots)
        depth = rng.randint(10, 40)
        ktail = rng.randint(3, 8) if rng.random() < 0.2 else 0
        f = rng.choice(starts[root])
        stack = [root, f]
        while len(stack) < depth - ktail:
            f = rng.choice(callees[f])
            stack.append(f)
        if ktail:
            f = "entry_SYSCALL_64_[k]"
            stack.append(f)
            f = rng.choice(kernel)
            while len(stack) < depth:
                stack.append(f)
                f = rng.choice(kcallees[f])
        line = ";".join(stack)
        h = hash(line)
        if h in seen:
            continue
        seen.add(h)
        out.append(f"{line} {1 + int(rng.paretovariate(1.2))}\n")
    out.sort()
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(out)
    os.replace(tmp, path)


def run_measured(cmd, stdout_path=None):
    """Runs cmd; returns (wall seconds, CPU seconds, peak RSS KiB) of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with open(stdout_path, "w") if stdout_path else open(os.devnull, "w") as out:
        p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=out, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}): {p.stderr[-2000:]}")
    rss = int(p.stderr.strip().split("\n")[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rss


def same_frames(sprof_svg, pl_svg):
    """Whether both graphs draw the same frames: (name, samples) multisets from the tooltips,
    `_[k]`-style suffixes cut (flamegraph.pl drops them from its tooltips, sprof keeps them)."""
    def frames(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            titles = re.findall(r"<title>([^<]*)</title>", f.read())
        out = collections.Counter()
        for t in titles:
            m = re.match(r"(.*) \(([\d,]+) samples", t)
            if m:
                out[(re.sub(r"_\[[kij]\]$", "", m.group(1)), m.group(2))] += 1
        return out
    a, b = frames(sprof_svg), frames(pl_svg)
    return a == b, sum(a.values()), sum(b.values())


def find_flamegraph_pl(explicit):
    for c in (explicit, os.environ.get("FLAMEGRAPH_PL"), shutil.which("flamegraph.pl")):
        if c and os.path.isfile(c):
            return c
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-r", "--runs", type=int, default=3)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", default="/tmp")
    ap.add_argument("--sprof", default=os.path.join(ROOT, ".build/release/sprof"))
    ap.add_argument("--flamegraph-pl")
    ap.add_argument("--skip-pl", action="store_true", help="time sprof alone")
    args = ap.parse_args()

    if not os.access(args.sprof, os.X_OK):
        sys.exit(f"no sprof at {args.sprof}: swift build -c release --product sprof")
    inp = os.path.join(args.cache_dir, f"sprof-bench-flamegraph-v{GENERATOR_VERSION}-{args.lines}-s{args.seed}.folded")
    if not os.path.exists(inp):
        print(f"generating {inp} ...", file=sys.stderr)
        t0 = time.monotonic()
        generate(inp, args.lines, args.seed)
        print(f"  {time.monotonic() - t0:.0f} s", file=sys.stderr)
    size = os.path.getsize(inp)
    with open(inp, "rb") as f:
        frames = sum(line.count(b";") + 1 for line in f)
    print(f"input: {inp}\n  {args.lines:,} lines, {frames:,} frames, {size / 2**20:.0f} MiB")

    pl = None if args.skip_pl else find_flamegraph_pl(args.flamegraph_pl)
    if pl is None and not args.skip_pl:
        print("flamegraph.pl: not found on this machine (--flamegraph-pl, $FLAMEGRAPH_PL or PATH); "
              "timing sprof alone")
    tools = {"sprof": lambda out: ([args.sprof, "flamegraph", inp, "-o", out], None)}
    if pl:
        tools["flamegraph.pl"] = lambda out: (["perl", pl, inp], out)
    results = {t: [] for t in tools}
    sizes = {}
    for run in range(args.runs):
        order = list(tools) if run % 2 == 0 else list(reversed(tools))
        for t in order:
            out = os.path.join(args.cache_dir, f"sprof-bench-flamegraph-{t}.svg")
            cmd, stdout_path = tools[t](out)
            wall, cpu, rss = run_measured(cmd, stdout_path)
            results[t].append((wall, cpu, rss))
            sizes[t] = os.path.getsize(out)
            print(f"  run {run + 1} {t:14} wall {wall:7.2f} s  cpu {cpu:7.2f} s  rss {rss / 1024:7.0f} MiB", file=sys.stderr)

    print(f"\n| tool | wall (median of {args.runs}) | CPU | peak RSS | SVG bytes | input lines/s |")
    print("|---|---|---|---|---|---|")
    med = {}
    for t, rs in results.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        rss = statistics.median(r[2] for r in rs)
        med[t] = cpu
        print(f"| {t} | {wall:.2f} s | {cpu:.2f} s | {rss / 1024:.0f} MiB | {sizes[t]:,} | {args.lines / wall:,.0f} |")
    if "flamegraph.pl" in med:
        print(f"\nCPU time ratio flamegraph.pl / sprof: {med['flamegraph.pl'] / med['sprof']:.1f}x")
        same, a, b = same_frames(os.path.join(args.cache_dir, "sprof-bench-flamegraph-sprof.svg"),
                                 os.path.join(args.cache_dir, "sprof-bench-flamegraph-flamegraph.pl.svg"))
        print(f"frames drawn: sprof {a:,}, flamegraph.pl {b:,}; same names and counts: {'yes' if same else 'NO'}")
    elif not args.skip_pl:
        print("\nflamegraph.pl: not on this machine, no ratio")


if __name__ == "__main__":
    main()
