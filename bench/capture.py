#!/usr/bin/env python3
"""Capture-side benchmark of `sprof record`, side by side with `perf record --call-graph dwarf`.

Run as root from the package root (see bench/README.md):

    swift build -c release --product sprof --scratch-path .build-bench
    sudo python3 bench/capture.py                  # ~3 minutes, prints a markdown table
    sudo python3 bench/capture.py --write-results  # also bench/results-YYYY-MM-DD.md

What it measures, per configuration (workload x user-stack size), alternating sprof and perf
runs on the same two busy targets (one pinned to each of CPU 0 and CPU 1):

  * received / expected samples: expected = the targets' CPU time inside the recording window
    (sum_exec_runtime from /proc/PID/task/*/schedstat, polled every 20 ms and interpolated)
    x the frequency; lost = sprof's `lost` (dump header) or perf's LOST / LOST_SAMPLES records;
  * the profiler's own CPU: total (user+sys from wait4, start-up and shut-down included) and
    while recording (slope of utime+stime from /proc/PID/stat over the middle of the run);
  * bytes on disk per sample (output file size / samples);
  * sprof only: the BPF program's run_time_ns / run_cnt (kernel.bpf_stats_enabled=1, read from
    /proc/SPROF_PID/fdinfo of sprof's own program fd every 50 ms; the last reading before sprof
    exits is used; it is the same counter `bpftool prog show` prints). A "filter-only" run
    (the target sleeps, so every run of the program just rejects another task) gives the cost
    of a filtered run, which is subtracted to estimate the cost per emitted sample.

Only the standard library; nothing here is part of the package.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def mono():
    return time.monotonic_ns()  # CLOCK_MONOTONIC, the clock sprof's file and perf -k use


# ---------------------------------------------------------------- /proc readers

def task_cpu_ns(pid):
    """sum_exec_runtime of every thread of pid (ns, exact), or None if it is gone."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
    except FileNotFoundError:
        return None
    return total


def proc_cpu_s(pid):
    """utime+stime of a whole process from /proc/PID/stat (seconds, tick resolution)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def prog_fds(pid):
    """{prog_id: {run_time_ns, run_cnt}} for the BPF program fds a process holds."""
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/fdinfo")
    except FileNotFoundError:
        return out
    for fd in names:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if "prog_type:" not in text or "run_cnt:" not in text:
            continue  # link fds name a prog_id too, but have no prog_type
        kv = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        try:
            out[int(kv["prog_id"])] = {"type": int(kv["prog_type"]),
                                       "run_time_ns": int(kv["run_time_ns"]), "run_cnt": int(kv["run_cnt"])}
        except (KeyError, ValueError):
            pass
    return out


def bpftool_name(prog_id):
    if not shutil.which("bpftool"):
        return None
    try:
        r = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "--json"],
                           capture_output=True, text=True, timeout=5)
        return json.loads(r.stdout).get("name")
    except Exception:
        return None


class Poller(threading.Thread):
    """Polls the targets' CPU time (and, when set, the profiler's) with CLOCK_MONOTONIC stamps."""

    def __init__(self, pids, period=0.02):
        super().__init__(daemon=True)
        self.pids, self.period = pids, period
        self.samples = []  # (t_ns, total target cpu ns)
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            vals = [task_cpu_ns(p) for p in self.pids]
            if all(v is not None for v in vals):
                self.samples.append((mono(), sum(vals)))
            time.sleep(self.period)

    def cpu_at(self, t):
        s = self.samples
        if not s:
            return None
        if t <= s[0][0]:
            return s[0][1]
        for (t0, c0), (t1, c1) in zip(s, s[1:]):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / max(1, t1 - t0)
        return s[-1][1]

    def cpu_between(self, a, b):
        """Target CPU seconds in [a, b] (ns, CLOCK_MONOTONIC); None if not covered by polls."""
        if not self.samples or a < self.samples[0][0] - 50e6 or b > self.samples[-1][0] + 50e6:
            return None
        return (self.cpu_at(b) - self.cpu_at(a)) / 1e9


# ---------------------------------------------------------------- perf.data reader

PERF_RECORD_LOST, PERF_RECORD_SAMPLE, PERF_RECORD_LOST_SAMPLES = 2, 9, 13


def read_perf_data(path):
    """Samples, lost samples and first/last sample time (ns) of a perf.data file, read directly."""
    with open(path, "rb") as f:
        head = f.read(104)
        if head[:8] != b"PERFILE2":
            raise ValueError(f"{path}: not a perf.data file")
        attr_off, _attr_sz = struct.unpack_from("<QQ", head, 24)
        data_off, data_sz = struct.unpack_from("<QQ", head, 40)
        f.seek(attr_off + 24)
        sample_type = struct.unpack("<Q", f.read(8))[0]
        # where TIME sits in a sample: [IDENTIFIER] [IP] [TID] TIME
        toff = 8 * sum(1 for bit in (1 << 16, 1, 2) if sample_type & bit)
        have_time = bool(sample_type & 4)
        samples = lost = lost_samples = 0
        first = last = None
        pos, end = data_off, data_off + data_sz
        while pos + 8 <= end:
            f.seek(pos)
            hdr = f.read(8 + max(toff + 8, 16))
            if len(hdr) < 8:
                break
            typ, _misc, size = struct.unpack_from("<IHH", hdr)
            if size == 0:
                break
            if typ == PERF_RECORD_SAMPLE:
                samples += 1
                if have_time:
                    t = struct.unpack_from("<Q", hdr, 8 + toff)[0]
                    first = t if first is None else min(first, t)
                    last = t if last is None else max(last, t)
            elif typ == PERF_RECORD_LOST:
                lost += struct.unpack_from("<Q", hdr, 16)[0]
            elif typ == PERF_RECORD_LOST_SAMPLES:
                lost_samples += struct.unpack_from("<Q", hdr, 8)[0]
            pos += size
    # LOST counts ring-buffer overflows, LOST_SAMPLES the per-event lost counter read at the
    # end; both see the same drops, so take the larger rather than the sum.
    return {"samples": samples, "lost": max(lost, lost_samples), "first_ns": first, "last_ns": last}


# ---------------------------------------------------------------- sprof dump reader

def read_sprof_dump(sprof, path, limit=10 ** 7):
    r = subprocess.run([sprof, "dump", path, "--limit", str(limit)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"sprof dump {path}: {r.stderr.strip()}")
    info = {"samples": None, "lost": None, "counters": {}, "start_ns": None, "duration_ns": None}
    copied, per_pid = [], {}
    for line in r.stdout.splitlines():
        if line.startswith("samples "):
            info["samples"] = int(line.split()[1])
        elif line.startswith("lost "):
            m = re.search(r"(\d+)", line)
            info["lost"] = int(m.group(1)) if m else None
        elif line.startswith("counters "):
            info["counters"] = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        elif line.startswith("started "):
            m = re.search(r"monotonic (\d+) ns", line)
            info["start_ns"] = int(m.group(1)) if m else None
        elif line.startswith("duration "):
            m = re.search(r"([\d.]+) ms", line)
            info["duration_ns"] = float(m.group(1)) * 1e6 if m else None
        else:
            m = re.search(r"\s(\d+)/(\d+)\s", line)
            if m and re.match(r"\s*[\d.]+\s+\d+\s+\d+\s", line):
                copied.append(int(m.group(1)))
                pid = int(line.split()[1])
                per_pid[pid] = per_pid.get(pid, 0) + 1
    info["per_pid"] = per_pid
    info["ustack_mean"] = statistics.mean(copied) if copied else None
    return info


# ---------------------------------------------------------------- one run

class Bench:
    def __init__(self, args, workdir):
        self.args, self.workdir = args, workdir
        self.children = []  # pids this script started, killed on the way out

    def spawn(self, argv, cpu=None, **kw):
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        p = subprocess.Popen(argv, preexec_fn=pre, **kw)
        self.children.append(p)
        return p

    def wait_rusage(self, p, timeout):
        """wait4() the child: (returncode, user+sys CPU seconds of it and its reaped children)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                return p.returncode, ru.ru_utime + ru.ru_stime
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        return p.returncode, ru.ru_utime + ru.ru_stime

    def watch_profiler(self, p, launch_ns, want_prog, steady_after=1.0):
        """Poll the profiler's CPU (and its BPF program's stats) until it exits."""
        cpu_track, prog_id, last_stats = [], None, None
        while True:
            # Not p.poll(): that would reap the child, and wait4() must get its rusage.
            try:
                with open(f"/proc/{p.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        break
            except (FileNotFoundError, ProcessLookupError, IndexError):
                break
            c = proc_cpu_s(p.pid)
            if c is not None:
                cpu_track.append((mono(), c))
            if want_prog:
                progs = prog_fds(p.pid)
                if prog_id is None and progs:
                    perf_progs = [i for i, v in progs.items() if v["type"] == 7]  # BPF_PROG_TYPE_PERF_EVENT
                    for i in perf_progs:
                        if bpftool_name(i) in (None, "sprof_cpu_sample"):
                            prog_id = i
                            break
                if prog_id is not None and prog_id in progs:
                    last_stats = dict(progs[prog_id], t=mono())
            time.sleep(0.05)
        # while recording: the slope between 1 s after launch and the last poll
        steady = None
        lo = [x for x in cpu_track if x[0] >= launch_ns + steady_after * 1e9]
        if len(lo) >= 2 and lo[-1][0] - lo[0][0] > 0.5e9:
            steady = (lo[-1][1] - lo[0][1]) / ((lo[-1][0] - lo[0][0]) / 1e9)
        return steady, prog_id, last_stats

    def run_sprof(self, pids, size, poller):
        a = self.args
        out = os.path.join(self.workdir, "run.sprof")
        argv = [a.sprof, "record", "-p", ",".join(map(str, pids)), "-F", str(a.frequency),
                "-d", str(a.duration), "--stack-size", size, "-o", out]
        launch = mono()
        with open(os.path.join(self.workdir, "sprof.err"), "w") as err:
            p = self.spawn(argv, stdout=subprocess.DEVNULL, stderr=err)
            steady, prog_id, stats = self.watch_profiler(p, launch, want_prog=True)
            rc, cpu = self.wait_rusage(p, a.duration + 60)
        if rc != 0:
            raise RuntimeError(f"sprof record failed ({rc}): " + open(os.path.join(self.workdir, "sprof.err")).read())
        d = read_sprof_dump(a.sprof, out)
        fsize = os.path.getsize(out)
        os.unlink(out)
        tcpu = poller.cpu_between(d["start_ns"], d["start_ns"] + d["duration_ns"]) if poller else None
        c = d["counters"]
        res = {"samples": d["samples"], "lost": d["lost"], "bytes": fsize, "cpu": cpu, "steady": steady,
               "target_cpu": tcpu, "window_s": d["duration_ns"] / 1e9, "ustack_mean": d["ustack_mean"], "counters": c, "prog_id": prog_id}
        if stats and stats["run_cnt"] > 0:
            res["ns_per_run"] = stats["run_time_ns"] / stats["run_cnt"]
            res["run_cnt"], res["run_time_ns"] = stats["run_cnt"], stats["run_time_ns"]
        return res

    def run_self_sampling(self, seconds=2.0):
        """`sprof record -a`: how many samples land on sprof's own threads, against its CPU time.

        An unbiased sampler gives a process samples in proportion to its CPU time. sprof's
        reader is woken by the ring buffer right after a sample on one CPU and can be running
        when the other CPU's timer fires (the per-CPU timers share one period, at a fixed
        phase), so it can be over-sampled, and in -p mode those samples are filtered out.
        """
        a = self.args
        out = os.path.join(self.workdir, "self.sprof")
        argv = [a.sprof, "record", "-a", "-F", str(a.frequency), "-d", str(seconds), "--stack-size", "4k", "-o", out]
        launch = mono()
        p = self.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        steady, _, _ = self.watch_profiler(p, launch, want_prog=False, steady_after=0.5)
        rc, cpu = self.wait_rusage(p, seconds + 60)
        if rc != 0:
            raise RuntimeError(f"sprof record -a failed ({rc})")
        d = read_sprof_dump(a.sprof, out, limit=10 ** 7)
        os.unlink(out)
        own = d["per_pid"].get(p.pid, 0)
        return {"samples": d["samples"], "own": own, "steady": steady, "window_s": d["duration_ns"] / 1e9}

    def run_perf(self, pids, dwarf, poller):
        a = self.args
        out = os.path.join(self.workdir, "perf.data")
        argv = [a.perf, "record", "-F", str(a.frequency), "-e", "cpu-clock", "--call-graph", f"dwarf,{dwarf}",
                "-k", "CLOCK_MONOTONIC", "-p", ",".join(map(str, pids)), "-o", out, "--", "sleep", str(a.duration)]
        launch = mono()
        with open(os.path.join(self.workdir, "perf.err"), "w") as err:
            p = self.spawn(argv, stdout=subprocess.DEVNULL, stderr=err)
            steady, _, _ = self.watch_profiler(p, launch, want_prog=False)
            rc, cpu = self.wait_rusage(p, a.duration + 120)
        if rc != 0:
            raise RuntimeError(f"perf record failed ({rc}): " + open(os.path.join(self.workdir, "perf.err")).read())
        d = read_perf_data(out)
        fsize = os.path.getsize(out)
        os.unlink(out)
        tcpu = None
        if poller and d["first_ns"] is not None:
            # the window perf sampled: one period before the first sample to the last one
            tcpu = poller.cpu_between(d["first_ns"] - 1e9 / a.frequency, d["last_ns"])
        window = (d["last_ns"] - d["first_ns"]) / 1e9 + 1 / a.frequency if d["first_ns"] is not None else None
        return {"samples": d["samples"], "lost": d["lost"], "bytes": fsize, "cpu": cpu, "steady": steady,
                "target_cpu": tcpu, "window_s": window}


# ---------------------------------------------------------------- workloads

def build_workloads(workdir):
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        sys.exit("capture.py: needs gcc to build the workloads")
    srcs = {"deep": os.path.join(HERE, "deep.c"), "chain": os.path.join(ROOT, "Tests", "Fixtures", "chain.c")}
    bins = {}
    for name, src in srcs.items():
        out = os.path.join(workdir, name)
        subprocess.run([cc, "-O2", "-fomit-frame-pointer", "-g", "-o", out, src], check=True)
        bins[name] = out
    return bins


def start_targets(bench, binary, seconds, extra=()):
    """Two instances, pinned to CPU 0 and CPU 1; returns once both print `started`."""
    procs = []
    for cpu in (0, 1):
        p = bench.spawn([binary, str(seconds), *extra], cpu=cpu, stdout=subprocess.PIPE, text=True)
        procs.append(p)
    for p in procs:
        for line in p.stdout:
            # deep prints `started`; chain's last line before its hot loop is `run=`
            if line.strip() == "started" or line.startswith("run="):
                break
    return procs


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


# ---------------------------------------------------------------- table

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="{:.0f}", none="–"):
    return none if x is None else spec.format(x)


def ratio(a, b, spec="{:.2f}×"):
    return "–" if a is None or b in (None, 0) else spec.format(a / b)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sprof", default=os.path.join(ROOT, ".build-bench", "release", "sprof"))
    ap.add_argument("--perf", default=shutil.which("perf"))
    ap.add_argument("--no-perf", action="store_true", help="sprof only")
    ap.add_argument("-d", "--duration", type=float, default=4.0, help="seconds per recording (default 4)")
    ap.add_argument("-r", "--reps", type=int, default=3, help="runs per tool and configuration (default 3)")
    ap.add_argument("-F", "--frequency", type=int, default=999)
    ap.add_argument("--workloads", default="deep,chain", help="comma list of deep, chain")
    ap.add_argument("--sizes", default="32k,64k", help="comma list of sprof stack sizes: 32k, 64k")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the runs without a profiler (targets' CPU share on their own)")
    ap.add_argument("--no-self-check", action="store_true",
                    help="skip the 2 s `sprof record -a` run that counts samples landing on sprof itself")
    ap.add_argument("--write-results", action="store_true", help="also write bench/results-DATE.md")
    ap.add_argument("--json", help="write every run's raw numbers here")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("capture.py: run as root (BPF, perf -p, kernel.bpf_stats_enabled)")
    if not os.access(args.sprof, os.X_OK):
        sys.exit(f"capture.py: no sprof at {args.sprof}; build it first:\n"
                 "  swift build -c release --product sprof --scratch-path .build-bench")
    if args.no_perf or not args.perf:
        if not args.no_perf:
            log("capture.py: perf not found, sprof only")
        args.perf = None
    if os.cpu_count() < 2:
        sys.exit("capture.py: needs 2 CPUs (one busy target per CPU)")
    perf_dwarf = {"32k": 32768, "64k": 65528}  # perf's largest dwarf copy is 65528 (u16 record size)

    # Turn SIGTERM/SIGHUP into an exception so the finally block restores the sysctl.
    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    workdir = tempfile.mkdtemp(prefix="sprof-bench-")
    bench = Bench(args, workdir)
    with open(STATS_SYSCTL) as f:
        stats_before = f.read().strip()
    results = []  # dicts: workload, size, tool, rep, + numbers
    t_begin = time.time()
    try:
        bins = build_workloads(workdir)
        with open(STATS_SYSCTL, "w") as f:
            f.write("1")
        log(f"kernel.bpf_stats_enabled: {stats_before} -> 1 (restored at exit); workdir {workdir}")

        # 1. filter-only: the target sleeps, so every run of the program rejects another task.
        sleeper = bench.spawn(["sleep", "3600"])
        for rep in range(args.reps):
            d0 = args.duration
            args.duration = min(2.0, d0)
            r = bench.run_sprof([sleeper.pid], "32k", None)
            args.duration = d0
            r.update(workload="idle", size="32k", tool="sprof", rep=rep)
            results.append(r)
            log(f"  idle  filter-only rep {rep}: {fmt(r.get('ns_per_run'), '{:.0f}')} ns/run, "
                f"{r.get('run_cnt')} runs, {r['samples']} samples")
        stop([sleeper])

        sizes = args.sizes.split(",")
        for wl in args.workloads.split(","):
            runs_here = len(sizes) * args.reps * (2 if args.perf else 1)
            life = runs_here * (args.duration + 8) + 30
            targets = start_targets(bench, bins[wl], life)
            pids = [p.pid for p in targets]
            poller = Poller(pids)
            poller.start()
            time.sleep(0.3)
            try:
                for size in sizes:
                    for rep in range(args.reps):
                        if size == sizes[0] and not args.no_baseline:
                            # no profiler: how much of the CPUs the targets get on their own
                            t0 = mono()
                            time.sleep(args.duration)
                            t1 = mono()
                            results.append({"workload": wl, "size": "-", "tool": "none", "rep": rep,
                                            "target_cpu": poller.cpu_between(t0, t1), "window_s": (t1 - t0) / 1e9})
                            log(f"  {wl:5s} no profiler rep {rep}: targets held "
                                f"{100 * results[-1]['target_cpu'] / (2 * results[-1]['window_s']):.0f}% of the CPUs")
                        tools = ["sprof", "perf"] if args.perf else ["sprof"]
                        if rep % 2 == 1:
                            tools.reverse()  # alternate who goes first
                        for tool in tools:
                            if tool == "sprof":
                                r = bench.run_sprof(pids, size, poller)
                            else:
                                r = bench.run_perf(pids, perf_dwarf[size], poller)
                            r.update(workload=wl, size=size, tool=tool, rep=rep)
                            results.append(r)
                            exp = r["target_cpu"] * args.frequency if r.get("target_cpu") else None
                            log(f"  {wl:5s} {size} {tool:5s} rep {rep}: {r['samples']} samples "
                                f"(expected {fmt(exp)} over {fmt(r.get('window_s'), '{:.2f}')} s), lost {r['lost']}, cpu {r['cpu']:.2f} s, "
                                f"{r['bytes'] / max(1, r['samples']):.0f} B/sample"
                                + (f", {r['ns_per_run']:.0f} ns/run" if r.get("ns_per_run") else ""))
                            time.sleep(0.3)
                for rep in range(args.reps if wl == "deep" and not args.no_self_check else 0):
                    r = bench.run_self_sampling()
                    r.update(workload=wl, size="4k", tool="sprof -a", rep=rep)
                    results.append(r)
                    log(f"  {wl:5s} sprof -a: {r['own']} of {r['samples']} samples on sprof itself, "
                        f"sprof at {fmt(None if r['steady'] is None else 100 * r['steady'], '{:.1f}')}% of a CPU")
            finally:
                poller.stop_flag.set()
                stop(targets)
    except KeyboardInterrupt as e:
        log(f"capture.py: interrupted ({e}); partial results follow")
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(stats_before)
        for p in bench.children:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        log(f"kernel.bpf_stats_enabled restored to {stats_before}")

    elapsed = time.time() - t_begin
    report = render(results, args, elapsed)
    print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    if args.write_results:
        path = os.path.join(HERE, f"results-{datetime.date.today().isoformat()}.md")
        with open(path, "w") as f:
            f.write(report + "\n")
        log(f"wrote {path}")


def render(results, args, elapsed):
    F = args.frequency
    L = []
    uname = os.uname()
    L.append(f"# sprof capture benchmark — {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    L.append("")
    L.append(f"{uname.nodename}, Linux {uname.release}, {os.cpu_count()} CPUs; -F {F}, {args.duration:g} s per "
             f"recording, {args.reps} runs per tool, sprof/perf alternating; two targets pinned to CPU 0 and 1; "
             f"medians; total {elapsed:.0f} s. perf: `perf record -F {F} -e cpu-clock --call-graph dwarf,N "
             f"-k CLOCK_MONOTONIC -p PIDS -- sleep {args.duration:g}`.")
    L.append("")

    def group(wl, size, tool):
        return [r for r in results if r["workload"] == wl and r["size"] == size and r["tool"] == tool]

    def share(r):  # % of the two CPUs' time the targets held during the recording
        return 100 * r["target_cpu"] / (2 * r["window_s"]) if r.get("target_cpu") and r.get("window_s") else None

    def bpf_share(r):  # the program's run time as a % of the two CPUs' time (last reading)
        return 100 * r["run_time_ns"] / 1e9 / (2 * r["window_s"]) if r.get("run_time_ns") and r.get("window_s") else None

    # --- kernel-side cost
    idle = group("idle", "32k", "sprof")
    ns_filter = med([r.get("ns_per_run") for r in idle])
    L.append("## 1. Kernel-side cost of `sprof_cpu_sample` (run_time_ns / run_cnt, kernel.bpf_stats_enabled=1)")
    L.append("")
    L.append("| workload | --stack-size | user bytes copied / sample | runs | emitted % of runs | targets' share of CPU time % | "
             "ns / run | ns / emitted sample (est.) | BPF time, % of 2 CPUs |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    if idle:
        L.append(f"| sleeping target (filter only) | – | – | {fmt(med([r.get('run_cnt') for r in idle]))} | "
                 f"{fmt(med([100 * r['counters'].get('emitted', 0) / max(1, r['counters'].get('runs', 1)) for r in idle]), '{:.1f}')} | "
                 f"– | {fmt(ns_filter)} | – | {fmt(med([bpf_share(r) for r in idle]), '{:.2f}')} |")
    wls = [w for w in args.workloads.split(",")]
    sizes = args.sizes.split(",")
    for wl in wls:
        for size in sizes:
            g = group(wl, size, "sprof")
            if not g:
                continue
            per_emit = []
            for r in g:
                c = r["counters"]
                if not r.get("run_cnt") or not c.get("runs"):
                    continue
                ef = c.get("emitted", 0) / c["runs"]
                ff = c.get("filtered", 0) / c["runs"]
                emitted_runs = r["run_cnt"] * ef
                if emitted_runs > 0:
                    per_emit.append((r["run_time_ns"] - r["run_cnt"] * ff * (ns_filter or 0)) / emitted_runs)
            L.append(f"| {wl} ×2 | {size} | {fmt(med([r.get('ustack_mean') for r in g]))} | "
                     f"{fmt(med([r.get('run_cnt') for r in g]))} | "
                     f"{fmt(med([100 * r['counters'].get('emitted', 0) / max(1, r['counters'].get('runs', 1)) for r in g]), '{:.1f}')} | "
                     f"{fmt(med([share(r) for r in g]), '{:.1f}')} | "
                     f"{fmt(med([r.get('ns_per_run') for r in g]))} | {fmt(med(per_emit))} | "
                     f"{fmt(med([bpf_share(r) for r in g]), '{:.2f}')} |")
    L.append("")

    # --- rate, CPU, bytes
    L.append("## 2–3. Samples received vs expected, lost, profiler CPU, bytes per sample")
    L.append("")
    L.append("| workload | stack | tool | targets' CPU share % | received | expected | recv/exp | lost | "
             "profiler CPU total (s) | while recording (% of a CPU) | CPU µs / sample, total | "
             "CPU µs / sample, while recording | bytes / sample |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for wl in wls:
        base = group(wl, "-", "none")
        if base:
            L.append(f"| {wl} ×2 | – | (no profiler) | {fmt(med([share(r) for r in base]), '{:.0f}')} | "
                     + " | ".join(["–"] * 9) + " |")
        for size in sizes:
            row = {}
            for tool in ("sprof", "perf"):
                g = group(wl, size, tool)
                if not g:
                    continue
                recv = med([r["samples"] for r in g])
                exp = med([r["target_cpu"] * F if r.get("target_cpu") else None for r in g])
                rr = med([r["samples"] / (r["target_cpu"] * F) if r.get("target_cpu") else None for r in g])
                lost = med([r["lost"] for r in g])
                lost_max = max((r["lost"] or 0) for r in g)
                cpu = med([r["cpu"] for r in g])
                steady = med([r["steady"] for r in g])
                us = med([1e6 * r["cpu"] / max(1, r["samples"]) for r in g])
                us_rec = med([1e6 * r["steady"] * r["window_s"] / max(1, r["samples"])
                              if r.get("steady") is not None and r.get("window_s") else None for r in g])
                bps = med([r["bytes"] / max(1, r["samples"]) for r in g])
                row[tool] = dict(rr=rr, cpu=cpu, steady=steady, us=us, us_rec=us_rec, bps=bps)
                stack = size if tool == "sprof" else f"dwarf,{ {'32k': 32768, '64k': 65528}[size] }"
                L.append(f"| {wl} ×2 | {stack} | {tool} | {fmt(med([share(r) for r in g]), '{:.0f}')} | {fmt(recv)} | {fmt(exp)} | {fmt(rr, '{:.3f}')} | "
                         f"{fmt(lost)}{'' if lost_max == (lost or 0) else f' (max {lost_max})'} | "
                         f"{fmt(cpu, '{:.2f}')} | {fmt(None if steady is None else 100 * steady, '{:.1f}')} | "
                         f"{fmt(us, '{:.0f}')} | {fmt(us_rec, '{:.0f}')} | {fmt(bps, '{:,.0f}')} |")
            if "sprof" in row and "perf" in row:
                ratios.append((wl, size, row["sprof"], row["perf"]))
    L.append("")
    if ratios:
        L.append("## sprof / perf (ratios of the medians; < 1 means sprof uses less)")
        L.append("")
        L.append("| workload | stack | recv/exp | CPU total | CPU while recording | CPU per sample, total | "
                 "CPU per sample, while recording | bytes per sample |")
        L.append("|---|---|---|---|---|---|---|---|")
        for wl, size, s, p in ratios:
            L.append(f"| {wl} ×2 | {size} | {ratio(s['rr'], p['rr'])} | {ratio(s['cpu'], p['cpu'])} | "
                     f"{ratio(s['steady'], p['steady'])} | {ratio(s['us'], p['us'])} | "
                     f"{ratio(s['us_rec'], p['us_rec'])} | {ratio(s['bps'], p['bps'])} |")
        L.append("")
    selfs = [r for r in results if r["tool"] == "sprof -a"]
    if selfs:
        parts = []
        for r in selfs:
            exp_own = r["steady"] * r["window_s"] * F if r.get("steady") is not None else None
            parts.append(f"{r['own']} of {r['samples']} ({100 * r['own'] / max(1, r['samples']):.1f}%; "
                         f"its CPU, {fmt(None if r['steady'] is None else 100 * r['steady'], '{:.1f}')}% of a CPU, "
                         f"would give ~{fmt(exp_own)})")
        L.append("Self-sampling check (`sprof record -a -d 2 --stack-size 4k` while the deep targets run), samples "
                 "landing on sprof's own threads: " + "; ".join(parts) + ". Far more than its CPU share means the "
                 "sampling timer tends to fire while sprof runs; in -p mode those are the targets' missing samples.")
        L.append("")
    L.append("Per run (received/expected samples, lost, profiler CPU s):")
    L.append("")
    for wl in wls:
        base = group(wl, "-", "none")
        if base:
            L.append(f"- {wl} no profiler: targets held " + ", ".join(f"{share(r):.0f}%" for r in base if share(r) is not None)
                     + " of the CPUs")
        for size in sizes:
            for tool in ("sprof", "perf"):
                g = group(wl, size, tool)
                if g:
                    L.append(f"- {wl} {size} {tool}: " + ", ".join(
                        f"{r['samples']}/{fmt(r['target_cpu'] * F if r.get('target_cpu') else None)} "
                        f"lost {r['lost']} cpu {r['cpu']:.2f}"
                        + (f" (targets held {share(r):.0f}% of the CPUs, {100 * r['counters']['emitted'] / max(1, r['counters']['runs']):.0f}% of runs emitted)"
                           if tool == "sprof" and r.get("counters") and share(r) is not None else "")
                        for r in g))
    return "\n".join(L)


if __name__ == "__main__":
    main()
