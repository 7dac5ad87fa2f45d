#!/usr/bin/env python3
"""sprof side by side with perf, in one run (issue 8, first cut).

Run as root from the package root (see bench/README.md):

    swift build -c release --product sprof --scratch-path .build-bench
    sudo python3 bench/compare.py                  # table on stdout, bench/RESULTS.md

Workloads: the unwinding fixtures (Tests/Fixtures/unwind/build.sh, no frame pointers, known
chains in expected.json). Each run starts a fresh fixture (it spins for D + 6 s), then, in
alternating order from round to round (A B C D E, E D C B A, ...):

    none          nothing recording, D seconds
    sprof         sprof record -F 999 -p PID -d D -o F.pb.gz ; sprof report F.pb.gz --folded
    perf dwarf    perf record -F 999 -e cpu-clock --call-graph dwarf -k CLOCK_REALTIME -p PID -o F -- sleep D
                  ; perf script -i F | (fold in this script)
    perf 65528    the same with --call-graph dwarf,65528
    perf fp       the same with --call-graph fp

The fixture is killed as soon as the recorder exits, so post-processing runs without it.
Measured per run:
  * target CPU rate: CPU seconds per wall second of the fixture (sum_exec_runtime from
    /proc/PID/task/*/schedstat, polled every 20 ms) inside the recording window (sprof: the
    pprof's time_nanos + duration_nanos; perf: its first to last sample, CLOCK_REALTIME stamps).
    The fixtures print no work counter, so slowdown = lost target CPU against the unprofiled
    runs. Time spent in the sampling interrupt (perf's stack copy, sprof's BPF program) is charged
    to the target and does not show here;
  * profiler CPU: user+sys from wait4() of the recorder and of the post-processor (sprof report /
    perf script); this script's own folding of perf script output is timed separately (fold CPU);
  * bytes on disk per sample, samples and lost samples (sprof: its summary line; perf: LOST and
    LOST_SAMPLES records read from perf.data);
  * exact chains: among samples whose leaf is the expected hot leaf, the share whose stack ends
    with the chain in expected.json (kernel and inlined frames dropped, see match_frame);
  * stop -> folded: from the end of the recording window to the folded file being written;
  * peak RSS (ru_maxrss) of the recorder and of the post-processor.

Only the standard library. Sets kernel.bpf_stats_enabled=1 (as the other bench scripts do) and
puts back the previous value at exit; kills only the processes it started.
"""
import argparse
import datetime
import gzip
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
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing capture
from capture import read_perf_data, task_cpu_ns  # noqa: E402  (same directory, standard library)

STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "unwind")
DEFAULT_WORKLOADS = "c_chain_g,cpp_chain,rust_chain,swift_chain,c_threads,c_recursion,c_bigframe"
CONFIGS = ["none", "sprof", "perf-dwarf", "perf-dwarf65528", "perf-fp", "sprof-raw"]
PERF_CG = {"perf-dwarf": "dwarf", "perf-dwarf65528": "dwarf,65528", "perf-fp": "fp"}

sys.setrecursionlimit(20000)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def now_ns():
    return time.time_ns()  # CLOCK_REALTIME: the clock of sprof's pprof time_nanos and perf -k


# ---------------------------------------------------------------- polling the target

WORK_SYMBOLS = ("sprof_work", "SPROF_WORK")  # C/C++ and Rust; Swift's is mangled (…9sprofWork…vp)


class WorkCounter:
    """A fixture's outer-loop counter (Tests/Fixtures/unwind/common.h), read through
    /proc/PID/mem at the symbol's run-time address: nm's value plus the load bias, which for a
    PIE is where the executable's offset-0 mapping starts (less its first PT_LOAD's page)."""

    def __init__(self, pid, exe):
        self.fd, self.addr = None, None
        out = subprocess.run(["nm", exe], capture_output=True, text=True).stdout
        value = None
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and (parts[2] in WORK_SYMBOLS or ("9sprofWork" in parts[2] and parts[2].endswith("vp"))):
                value = int(parts[0], 16)
        if value is None:
            return
        with open(exe, "rb") as f:
            hdr = f.read(64)
            e_type, = struct.unpack_from("<H", hdr, 16)
            phoff, = struct.unpack_from("<Q", hdr, 32)
            phentsize, phnum = struct.unpack_from("<HH", hdr, 54)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
        loads = [struct.unpack_from("<IIQQ", ph, i * phentsize) for i in range(phnum)]
        first = min(v for t, _, _, v in loads if t == 1)  # PT_LOAD p_vaddr
        bias = 0
        if e_type == 3:  # ET_DYN: a PIE
            real = os.path.realpath(exe)
            with open(f"/proc/{pid}/maps") as m:
                for line in m:
                    f = line.split()
                    if len(f) >= 6 and f[5] == real and int(f[2], 16) == 0:
                        bias = int(f[0].split("-")[0], 16) - (first & ~0xFFF)
                        break
                else:
                    return
        self.addr = value + bias
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)

    def read(self):
        if self.fd is None:
            return None
        try:
            return struct.unpack("<Q", os.pread(self.fd, 8, self.addr))[0]
        except OSError:
            return None

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Poller(threading.Thread):
    """The target's CPU time (schedstat) and work counter every 20 ms, interpolated."""

    def __init__(self, pid, exe=None, period=0.02):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples = []  # (t ns, cpu ns, work or None)
        self.counter = WorkCounter(pid, exe) if exe else None
        self.stop_flag = threading.Event()

    def run(self):
        try:
            while not self.stop_flag.is_set():
                v = task_cpu_ns(self.pid)
                w = self.counter.read() if self.counter else None
                if v is None:
                    break
                self.samples.append((now_ns(), v, w))
                time.sleep(self.period)
        finally:
            if self.counter:
                self.counter.close()

    def at(self, t, k=1):
        s = self.samples
        if t <= s[0][0]:
            return s[0][k]
        for a, b in zip(s, s[1:]):
            if a[0] <= t <= b[0]:
                return a[k] + (b[k] - a[k]) * (t - a[0]) / max(1, b[0] - a[0])
        return s[-1][k]

    def covers(self, a, b):
        return len(self.samples) >= 2 and a < b and a >= self.samples[0][0] - 50e6 and b <= self.samples[-1][0] + 50e6

    def rate(self, a, b):
        """Target CPU seconds per wall second in [a, b] (CLOCK_REALTIME ns)."""
        return (self.at(b) - self.at(a)) / (b - a) if self.covers(a, b) else None

    def window(self, a, b):
        """{win_s, win_cpu_s, win_work} of [a, b]; work only when the counter was read throughout."""
        if not self.covers(a, b):
            return {}
        out = {"win_s": (b - a) / 1e9, "win_cpu_s": (self.at(b) - self.at(a)) / 1e9}
        if all(x[2] is not None for x in self.samples):
            out["win_work"] = self.at(b, 2) - self.at(a, 2)
        return out


# ---------------------------------------------------------------- pprof header (time_nanos, duration_nanos)

def _varint(buf, i):
    shift = v = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, i
        shift += 7


def pprof_window(path):
    """(time_nanos, duration_nanos) of a gzipped pprof: top-level fields 9 and 10."""
    with gzip.open(path, "rb") as f:
        buf = f.read()
    i, out = 0, {}
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
            out[field] = v
        elif wt == 2:
            n, i = _varint(buf, i)
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            break
    return out.get(9), out.get(10)


# ---------------------------------------------------------------- chains

def norm(name):
    n = name.strip()
    n = re.sub(r"_\[[kij]\]$", "", n)
    n = re.sub(r"::h[0-9a-f]{16}$", "", n)  # Rust legacy hash
    if "(" in n and not n.startswith("("):
        n = n.split("(", 1)[0]  # parameter lists (C++ / Swift demangled)
    return n.strip()


def match_frame(frame, candidates):
    """A frame names a function of the chain if, after norm(), it equals the mangled or the
    demangled name, or one ends with the other after '::' or '.' (Rust paths, Swift modules)."""
    f = norm(frame)
    for c in candidates:
        c = norm(c)
        if f == c or f.endswith("::" + c) or f.endswith("." + c) or c.endswith("::" + f) or c.endswith("." + f):
            return True
    return False


def chain_patterns(chain):
    """[(kind, candidates, count)] root -> leaf from one expected.json chain."""
    frames, dem = chain["frames"], chain.get("demangled") or chain["frames"]
    out = []
    for k, fr in enumerate(frames):
        if fr == "*":
            out.append(("any", None, 0))
            continue
        m = re.match(r"^(.*)\*(\d+)$", fr)
        if m:
            out.append(("rep", [m.group(1)], int(m.group(2))))
        else:
            out.append(("one", [fr, dem[k]], 1))
    return out


def chain_matches(pat, frames):
    """Does frames (root -> leaf) end with pat? Frames above the root are free."""
    rp, rf = pat[::-1], frames[::-1]
    memo = {}

    def m(i, j):
        if i == len(rp):
            return True
        key = (i, j)
        if key in memo:
            return memo[key]
        kind, cand, n = rp[i]
        r = False
        if kind == "any":
            r = any(m(i + 1, k) for k in range(j, len(rf) + 1))
        elif kind == "rep":
            r = j + n <= len(rf) and all(match_frame(rf[k], cand) for k in range(j, j + n)) and m(i + 1, j + n)
        else:
            r = j < len(rf) and match_frame(rf[j], cand) and m(i + 1, j + 1)
        memo[key] = r
        return r

    return m(0, 0)


def score(stacks, chains):
    """stacks: {tuple(frames root->leaf): count}. Returns hot-leaf samples, exact, total."""
    pats = [chain_patterns(c) for c in chains]
    leaves = [p[-1][1] for p in pats]
    total = hot = exact = 0
    for frames, n in stacks.items():
        total += n
        user = [f for f in frames if not f.endswith("_[k]") and not f.endswith("_[i]")]
        if not user:
            continue
        if any(match_frame(user[-1], lv) for lv in leaves):
            hot += n
            if any(chain_matches(p, user) for p in pats):
                exact += n
    return {"hot": hot, "exact": exact, "total": total}


def read_sprof_folded(path):
    stacks = {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            st, _, cnt = line.rpartition(" ")
            try:
                n = int(cnt)
            except ValueError:
                continue
            frames = tuple(st.split(";")[1:])  # first frame is the process name
            stacks[frames] = stacks.get(frames, 0) + n
    return stacks


def fold_perf_script(stream, out_path):
    """Fold `perf script` output: header line, then `\\taddr sym+off (dso)` lines leaf first."""
    stacks, cur, comm = {}, None, None

    def flush():
        if cur is not None:
            frames = tuple(reversed(cur))
            stacks[frames] = stacks.get(frames, 0) + 1

    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if not line.strip():
            flush()
            cur = None
            continue
        if line[0] not in " \t":
            flush()
            cur, comm = [], line.split()[0] if line.split() else "?"
            continue
        if cur is None:
            continue
        body = line.strip()
        parts = body.split(None, 1)
        rest = parts[1] if len(parts) > 1 else "[unknown]"
        dso = ""
        k = rest.rfind(" (")
        if k >= 0 and rest.endswith(")"):
            rest, dso = rest[:k], rest[k + 2:-1]
        sym = re.sub(r"\+0x[0-9a-f]+$", "", rest)
        if dso.startswith("[kernel") or dso.startswith("[guest.kernel"):
            sym += "_[k]"
        cur.append(sym)
    flush()
    with open(out_path, "w") as f:
        for frames, n in sorted(stacks.items()):
            f.write("perf;" + ";".join(frames) + f" {n}\n")
    return stacks


# ---------------------------------------------------------------- runs

class Bench:
    def __init__(self, args, workdir, bins, expected):
        self.args, self.workdir, self.bins, self.expected = args, workdir, bins, expected
        self.children = []

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.children.append(p)
        return p

    def wait4(self, p):
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        return p.returncode, ru.ru_utime + ru.ru_stime, ru.ru_maxrss

    def start_target(self, wl):
        p = self.spawn([self.bins[wl], str(self.args.duration + 6)], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
        line = p.stdout.readline().decode()
        if not line.startswith("pid="):
            raise RuntimeError(f"{wl}: no pid= line ({line!r})")
        time.sleep(0.3)  # past start-up, threads spinning
        return p

    def stop_target(self, p):
        if p.poll() is None:
            p.kill()
        p.wait()

    def run(self, wl, cfg):
        a = self.args
        tgt = self.start_target(wl)
        poller = Poller(tgt.pid, self.bins[wl])
        poller.start()
        r = {"workload": wl, "config": cfg}
        try:
            if cfg == "none":
                time.sleep(0.2)
                t0 = now_ns()
                time.sleep(a.duration)
                t1 = now_ns()
                time.sleep(0.05)
                r["rate"] = poller.rate(t0, t1)
                r.update(poller.window(t0, t1))
                return r
            if cfg == "sprof":
                self.run_sprof(wl, tgt, poller, r)
            elif cfg == "sprof-raw":
                self.run_sprof_raw(wl, tgt, poller, r)
            else:
                self.run_perf(wl, cfg, tgt, poller, r)
            return r
        finally:
            poller.stop_flag.set()
            self.stop_target(tgt)

    def run_sprof(self, wl, tgt, poller, r):
        a = self.args
        out = os.path.join(self.workdir, "run.pb.gz")
        folded = os.path.join(self.workdir, "run.sprof.folded")
        argv = [a.sprof, "record", "-F", "999", "-p", str(tgt.pid), "-d", str(a.duration), "-o", out]
        p = self.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = p.stdout.read().decode("utf-8", "replace")
        rc, cpu, rss = self.wait4(p)
        poller.stop_flag.set()
        self.stop_target(tgt)
        if rc != 0:
            raise RuntimeError(f"sprof record failed ({rc}): {text}")
        m = re.findall(r"(\d+) samples, (\d+) lost", text)
        r["samples"], r["lost"] = (int(m[-1][0]), int(m[-1][1])) if m else (None, None)
        start, dur = pprof_window(out)
        stop = start + dur if start and dur else None
        r["rate"] = poller.rate(start, stop) if stop else None
        if stop:
            r.update(poller.window(start, stop))
        with open(folded, "w") as f:
            q = self.spawn([a.sprof, "report", out, "--folded"], stdout=f, stderr=subprocess.PIPE)
            err = q.stderr.read().decode("utf-8", "replace")
            rc2, pcpu, prss = self.wait4(q)
        done = now_ns()
        if rc2 != 0:
            raise RuntimeError(f"sprof report failed ({rc2}): {err}")
        r.update(rec_cpu=cpu, post_cpu=pcpu, fold_cpu=0.0, rec_rss_kib=rss, post_rss_kib=prss,
                 bytes=os.path.getsize(out), stop_to_folded=(done - stop) / 1e9 if stop else None)
        r.update(score(read_sprof_folded(folded), self.expected[wl]["chains"]))
        os.unlink(out)

    def run_sprof_raw(self, wl, tgt, poller, r):
        """Unwinding speed: a raw recording (stack bytes kept), then `sprof report --stats`:
        frames/s of the unwinder alone over the samples in memory, tables built."""
        a = self.args
        out = os.path.join(self.workdir, "run.raw")
        p = self.spawn([a.sprof, "record", "--raw", "-F", "999", "-p", str(tgt.pid), "-d", str(a.duration), "-o", out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = p.stdout.read().decode("utf-8", "replace")
        rc, _, _ = self.wait4(p)
        poller.stop_flag.set()
        self.stop_target(tgt)
        if rc != 0:
            raise RuntimeError(f"sprof record --raw failed ({rc}): {text}")
        st = subprocess.run([a.sprof, "report", out, "--stats"], capture_output=True, text=True)
        m = re.search(r"unwind only\s+(\d+) samples/s, (\d+) frames/s", st.stdout)
        n = re.search(r"^frames\s+(\d+)", st.stdout, re.M)
        k = re.search(r"^samples\s+(\d+)", st.stdout, re.M)
        if not m:
            raise RuntimeError(f"sprof report --stats: {st.stdout}{st.stderr}")
        r.update(unwind_fps=float(m.group(2)), unwind_frames=int(n.group(1)), samples=int(k.group(1)))
        os.unlink(out)

    def perf_unwind_rate(self, data, first_ns):
        """perf's unwinding speed on the same recording: `perf script -F ip` (libunwind, no symbol
        names) over the whole file, less a run restricted by --time to its first 20 ms, which pays
        the same start-up (reading the file, DSOs) but unwinds almost nothing. Marginal frames/s."""
        t0 = first_ns / 1e9
        runs = {"all": [], "start": []}
        for _ in range(3):  # alternating, the smallest CPU time of each kind
            for kind, extra in (("all", []), ("start", ["--time", f"{t0:.6f},{t0 + 0.02:.6f}"])):
                p = self.spawn([self.args.perf, "script", "-F", "ip", "-i", data] + extra,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                frames = sum(1 for line in p.stdout if line.strip())
                _, cpu, _ = self.wait4(p)
                runs[kind].append((cpu, frames))
        c1, f1 = min(runs["all"])
        c0, f0 = min(runs["start"])
        return {"perf_unwind_fps": (f1 - f0) / (c1 - c0) if c1 > c0 and f1 > f0 else None,
                "perf_script_ip_cpu": c1, "perf_script_start_cpu": c0, "perf_unwind_frames": f1}

    def run_perf(self, wl, cfg, tgt, poller, r):
        a = self.args
        out = os.path.join(self.workdir, "run.perf.data")
        folded = os.path.join(self.workdir, "run.perf.folded")
        argv = [a.perf, "record", "-F", "999", "-e", "cpu-clock", "--call-graph", PERF_CG[cfg],
                "-k", "CLOCK_REALTIME", "-p", str(tgt.pid), "-o", out, "--", "sleep", str(a.duration)]
        p = self.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = p.stderr.read().decode("utf-8", "replace")
        rc, cpu, rss = self.wait4(p)
        poller.stop_flag.set()
        self.stop_target(tgt)
        if rc != 0:
            raise RuntimeError(f"perf record failed ({rc}): {err}")
        d = read_perf_data(out)
        r["samples"], r["lost"] = d["samples"], d["lost"]
        m = re.search(r"lost (\d+) chunks", err)
        r["lost_chunks_msg"] = int(m.group(1)) if m else 0
        stop = d["last_ns"] + 1_001_001 if d["last_ns"] else None
        r["rate"] = poller.rate(d["first_ns"] - 1_001_001, d["last_ns"]) if d["first_ns"] else None
        if d["first_ns"]:
            r.update(poller.window(d["first_ns"] - 1_001_001, d["last_ns"]))
        q = self.spawn([a.perf, "script", "-i", out], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        c0 = time.process_time()
        stacks = fold_perf_script(q.stdout, folded)
        fcpu = time.process_time() - c0
        rc2, pcpu, prss = self.wait4(q)
        done = now_ns()
        r.update(rec_cpu=cpu, post_cpu=pcpu, fold_cpu=fcpu, rec_rss_kib=rss, post_rss_kib=prss,
                 bytes=os.path.getsize(out), stop_to_folded=(done - stop) / 1e9 if stop else None)
        r.update(score(stacks, self.expected[wl]["chains"]))
        if cfg == "perf-dwarf" and d["first_ns"]:
            r.update(self.perf_unwind_rate(out, d["first_ns"]))
        os.unlink(out)


# ---------------------------------------------------------------- summary

def med(rows, key):
    v = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(v) if v else None


def fmt(x, spec="{:.2f}", none="–"):
    return none if x is None else spec.format(x)


def fmt_bps(x):
    return fmt(x, "{:,.0f}" if x is not None and x >= 100 else "{:.2f}")


def per_work(r):
    """Target CPU seconds per unit of work in the recording window."""
    return r["win_cpu_s"] / r["win_work"] if r.get("win_work") else None


def summarize(results, workloads):
    """{(wl, cfg): {metric: median}}"""
    out = {}
    for wl in workloads:
        base_rows = [r for r in results if r["workload"] == wl and r["config"] == "none" and "error" not in r]
        base_cpw = med([{"x": per_work(r)} for r in base_rows], "x")
        base_wps = med([{"x": r["win_work"] / r["win_s"] if r.get("win_work") else None} for r in base_rows], "x")
        for cfg in CONFIGS:
            rows = [r for r in results if r["workload"] == wl and r["config"] == cfg and "error" not in r]
            if not rows:
                continue
            s = {"n": len(rows), "rate": med(rows, "rate")}
            for r in rows:
                if r.get("win_work") and base_cpw and base_wps:
                    r["work_rel"] = (r["win_work"] / r["win_s"]) / base_wps
                    r["cpw_rel"] = per_work(r) / base_cpw - 1
                    if cfg not in ("none", "sprof-raw"):
                        r["overhead"] = (r["win_cpu_s"] + r["rec_cpu"] + r["post_cpu"]) / (r["win_work"] * base_cpw) - 1
            for k in ("work_rel", "cpw_rel", "overhead", "unwind_fps", "perf_unwind_fps", "perf_script_ip_cpu"):
                s[k] = med(rows, k)
            if cfg == "sprof-raw":
                s["samples"] = med(rows, "samples")
                out[(wl, cfg)] = s
                continue
            if cfg != "none":
                for r in rows:
                    r["prof_cpu"] = r["rec_cpu"] + r["post_cpu"]
                    r["bps"] = r["bytes"] / r["samples"] if r.get("samples") else None
                    r["exact_pct"] = 100.0 * r["exact"] / r["hot"] if r.get("hot") else None
                    r["hot_pct"] = 100.0 * r["hot"] / r["total"] if r.get("total") else None
                    r["rss_mib"] = max(r["rec_rss_kib"], r["post_rss_kib"]) / 1024
                for k in ("samples", "lost", "rec_cpu", "post_cpu", "fold_cpu", "prof_cpu", "bps", "exact_pct",
                          "hot_pct", "stop_to_folded", "rec_rss_kib", "post_rss_kib", "rss_mib"):
                    s[k] = med(rows, k)
                s["lost_max"] = max((r["lost"] or 0) for r in rows)
            out[(wl, cfg)] = s
    return out


def pct(x):
    return fmt(100 * x if x is not None else None, "{:+.1f}%")


def overhead_table(summ, workloads):
    L = ["| workload | config | work/s vs none | target CPU per unit of work vs none | total CPU overhead (target + profiler, per unit of work) |",
         "|---|---|---|---|---|"]
    for wl in workloads:
        for cfg in ("sprof", "perf-dwarf", "perf-dwarf65528", "perf-fp"):
            s = summ.get((wl, cfg))
            if s:
                L.append(f"| {wl} | {cfg} | {fmt(s.get('work_rel'), '{:.3f}')} | {pct(s.get('cpw_rel'))} | {pct(s.get('overhead'))} |")
    return L


def unwind_table(summ, workloads):
    L = ["| workload | sprof frames/s (unwinder alone) | perf script -F ip frames/s (marginal) | sprof / perf |",
         "|---|---|---|---|"]
    for wl in workloads:
        s, p = summ.get((wl, "sprof-raw")), summ.get((wl, "perf-dwarf"))
        if s and p and s.get("unwind_fps") and p.get("perf_unwind_fps"):
            L.append(f"| {wl} | {s['unwind_fps'] / 1e6:.2f} M | {p['perf_unwind_fps'] / 1e6:.3f} M | "
                     f"{s['unwind_fps'] / p['perf_unwind_fps']:.1f}× |")
    return L


def table(summ, workloads):
    L = ["| workload | config | target CPU rate (vs none) | samples | lost (max) | profiler CPU s: record + post = total | "
         "fold CPU s | bytes/sample | hot leaf % | exact chain % of hot | stop→folded s | peak RSS MiB record / post |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for wl in workloads:
        base = summ.get((wl, "none"), {}).get("rate")
        for cfg in CONFIGS:
            s = summ.get((wl, cfg))
            if not s or cfg == "sprof-raw":
                continue
            rel = f" ({s['rate'] / base:.3f})" if s.get("rate") and base else ""
            if cfg == "none":
                L.append(f"| {wl} | none | {fmt(s['rate'], '{:.3f}')} | | | | | | | | | |")
                continue
            L.append(f"| {wl} | {cfg} | {fmt(s['rate'], '{:.3f}')}{rel} | {fmt(s['samples'], '{:.0f}')} | "
                     f"{fmt(s['lost'], '{:.0f}')} ({s['lost_max']}) | {fmt(s['rec_cpu'])} + {fmt(s['post_cpu'])} = "
                     f"{fmt(s['prof_cpu'])} | {fmt(s['fold_cpu'])} | {fmt_bps(s['bps'])} | "
                     f"{fmt(s['hot_pct'], '{:.1f}')} | {fmt(s['exact_pct'], '{:.1f}')} | {fmt(s['stop_to_folded'])} | "
                     f"{fmt(s['rec_rss_kib'] / 1024 if s['rec_rss_kib'] else None, '{:.0f}')} / "
                     f"{fmt(s['post_rss_kib'] / 1024 if s['post_rss_kib'] else None, '{:.0f}')} |")
    return L


def ratio_table(summ, workloads):
    L = ["| workload | total CPU overhead sprof/perf dwarf | profiler CPU sprof/perf dwarf | bytes/sample sprof/perf dwarf | stop→folded sprof/perf dwarf | "
         "peak RSS (max of record, post) sprof/perf dwarf | exact % sprof − perf dwarf (pts) | unwinding frames/s sprof/perf |",
         "|---|---|---|---|---|---|---|---|"]
    for wl in workloads:
        s, p = summ.get((wl, "sprof")), summ.get((wl, "perf-dwarf"))
        if not s or not p:
            continue

        def rt(k):
            return fmt(s[k] / p[k] if s.get(k) is not None and p.get(k) else None, "{:.3f}")
        d = s["exact_pct"] - p["exact_pct"] if s.get("exact_pct") is not None and p.get("exact_pct") is not None else None
        u = summ.get((wl, "sprof-raw"), {}).get("unwind_fps")
        pu = p.get("perf_unwind_fps")
        L.append(f"| {wl} | {rt('overhead')} | {rt('prof_cpu')} | {rt('bps')} | {rt('stop_to_folded')} | {rt('rss_mib')} | "
                 f"{fmt(d, '{:+.1f}')} | {fmt(u / pu if u and pu else None, '{:.1f}×')} |")
    return L


def targets(summ, workloads):
    L = []
    ok_exact, notes = True, []
    for wl in workloads:
        s, p = summ.get((wl, "sprof")), summ.get((wl, "perf-dwarf"))
        if not s or not p or s.get("exact_pct") is None:
            ok_exact = False
            notes.append(f"{wl}: missing")
            continue
        pe = p["exact_pct"] or 0.0
        if s["exact_pct"] < pe:
            ok_exact = False
            notes.append(f"{wl}: sprof {s['exact_pct']:.1f}% < perf {pe:.1f}%")
    L.append(f"- Exact chains ≥ perf dwarf's on every workload: **{'met' if ok_exact else 'NOT met'}**"
             + (f" ({'; '.join(notes)})" if notes else "") + ".")
    bs, bp = summ.get(("c_bigframe", "sprof")), summ.get(("c_bigframe", "perf-dwarf"))
    if bs and bp:
        met = bs["exact_pct"] is not None and bs["exact_pct"] >= 100.0
        L.append(f"- c_bigframe 100% for sprof (perf dwarf default: {fmt(bp['exact_pct'], '{:.1f}')}%): "
                 f"sprof {fmt(bs['exact_pct'], '{:.1f}')}% → **{'met' if met else 'NOT met'}**.")
    else:
        L.append("- c_bigframe: not run.")
    ratios = []
    for wl in workloads:
        s, p = summ.get((wl, "sprof")), summ.get((wl, "perf-dwarf"))
        if s and p and s.get("overhead") is not None and p.get("overhead"):
            ratios.append((wl, s["overhead"], p["overhead"]))
    if ratios:
        bad = [w for w, x, y in ratios if x > 0.5 * y]
        L.append(f"- Total CPU overhead at 999 Hz (target + profiler CPU per unit of work ÷ unprofiled − 1) ≤ ½ of perf "
                 f"dwarf's: **{'met' if not bad else 'NOT met' + ' on ' + ', '.join(bad)}** ("
                 + ", ".join(f"{w} {100 * x:+.1f}% vs {100 * y:+.1f}% = {x / y:.2f}" for w, x, y in ratios) + ").")
    else:
        L.append("- Total CPU overhead: not measured (no work counter read).")
    uw = []
    for wl in workloads:
        s, p = summ.get((wl, "sprof-raw")), summ.get((wl, "perf-dwarf"))
        if s and p and s.get("unwind_fps") and p.get("perf_unwind_fps"):
            uw.append((wl, s["unwind_fps"] / p["perf_unwind_fps"]))
    if uw:
        bad = [w for w, x in uw if x < 25]
        L.append(f"- Unwinding ≥ 25× perf's frames/s: **{'met' if not bad else 'NOT met on ' + ', '.join(bad)}** ("
                 + ", ".join(f"{w} {x:.0f}×" for w, x in uw) + ").")
    bps = []
    for wl in workloads:
        s, p = summ.get((wl, "sprof")), summ.get((wl, "perf-dwarf"))
        if s and p and s.get("bps") and p.get("bps"):
            bps.append((wl, s["bps"], p["bps"]))
    if bps:
        bad = [w for w, x, y in bps if x > 0.01 * y]
        L.append(f"- Bytes per sample ≤ 1% of perf dwarf's: **{'met' if not bad else 'NOT met'}** ("
                 + ", ".join(f"{w} {fmt_bps(x)} vs {y:,.0f} = {100 * x / y:.3f}%" for w, x, y in bps) + ").")
    return L


# ---------------------------------------------------------------- chart

CHART_METRICS = [
    # (label, key, better: "lower" sprof value is better -> factor = perf / sprof, target factor or None)
    ("total CPU overhead", "overhead", "lower", 2.0),
    ("profiler CPU", "prof_cpu", "lower", None),
    ("bytes per sample", "bps", "lower", 100.0),
    ("stop → folded", "stop_to_folded", "lower", None),
    ("peak memory", "rss_mib", "lower", None),
    ("unwinding frames/s", "unwind", "higher", 25.0),
]


def chart_factors(summ, workloads):
    """{(workload, key): how many times better sprof is than perf dwarf (>1: sprof better)}."""
    out = {}
    for wl in workloads:
        s, p, raw = summ.get((wl, "sprof")), summ.get((wl, "perf-dwarf")), summ.get((wl, "sprof-raw"), {})
        if not s or not p:
            continue
        for _, key, better, _ in CHART_METRICS:
            if key == "unwind":
                a, b = raw.get("unwind_fps"), p.get("perf_unwind_fps")
                if a and b:
                    out[(wl, key)] = a / b
            elif s.get(key) and p.get(key) and s[key] > 0 and p[key] > 0:
                out[(wl, key)] = p[key] / s[key] if better == "lower" else s[key] / p[key]
    return out


def chart_svg(summ, workloads, title):
    """A horizontal bar chart, log scale: for each metric, one bar per workload, the factor by
    which sprof beats perf dwarf (right of 1×) or loses to it (left), with the issue's target."""
    import math
    f = chart_factors(summ, workloads)
    wls = [w for w in workloads if any((w, k) in f for _, k, _, _ in CHART_METRICS)]
    if not wls:
        return None
    lo, hi = 0.25, 100000.0
    W, left, right, bar, gap, top = 980, 190, 30, 11, 16, 56
    plot = W - left - right
    rows = len(CHART_METRICS) * (len(wls) * bar + gap)
    H = top + rows + 70
    colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]

    def x(v):
        v = min(max(v, lo), hi)
        return left + plot * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15">{title}</text>',
         f'<text x="{W / 2}" y="38" text-anchor="middle" fill="#555">how many times better sprof is than '
         'perf --call-graph dwarf (log scale; right of 1× sprof is better; ◆ the issue\'s target)</text>']
    for t in [0.25, 0.5, 1, 2, 5, 10, 25, 100, 1000, 10000, 100000]:
        e.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{top + rows}" '
                 f'stroke="{"#000" if t == 1 else "#ddd"}" stroke-width="{1.5 if t == 1 else 1}"/>')
        e.append(f'<text x="{x(t):.1f}" y="{top + rows + 16}" text-anchor="middle" fill="#333">{t:g}×</text>')
    y = top
    for label, key, better, target in CHART_METRICS:
        e.append(f'<text x="{left - 8}" y="{y + len(wls) * bar / 2 + 4:.1f}" text-anchor="end">{label}</text>')
        for i, wl in enumerate(wls):
            v = f.get((wl, key))
            yy = y + i * bar
            if v is not None:
                x0, x1 = sorted((x(1), x(v)))
                e.append(f'<rect x="{x0:.1f}" y="{yy + 1}" width="{max(x1 - x0, 1):.1f}" height="{bar - 2}" '
                         f'fill="{colors[i % len(colors)]}"><title>{wl}: {v:.3g}×</title></rect>')
        if target:
            e.append(f'<path d="M{x(target):.1f},{y - 4} l4,4 l-4,4 l-4,-4 z" fill="#000"><title>target {target:g}×</title></path>')
        y += len(wls) * bar + gap
    lx = left
    for i, wl in enumerate(wls):
        e.append(f'<rect x="{lx}" y="{H - 30}" width="12" height="12" fill="{colors[i % len(colors)]}"/>'
                 f'<text x="{lx + 16}" y="{H - 20}">{wl}</text>')
        lx += 16 + 8 * len(wl) + 18
    e.append("</svg>")
    return "\n".join(e) + "\n"


def machine(args):
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            info["cpu"] = m.group(1) if m else "?"
    except OSError:
        info["cpu"] = "?"
    info["ncpu"] = os.cpu_count()
    info["kernel"] = os.uname().release
    try:
        info["perf"] = subprocess.run([args.perf, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        info["perf"] = "?"
    try:
        info["sprof"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip()
    except OSError:
        info["sprof"] = "?"
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def build(workdir):
    out = os.path.join(workdir, "fixtures")
    r = subprocess.run(["sh", os.path.join(FIXTURES, "build.sh"), out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"build.sh failed: {r.stdout}{r.stderr}")
    for line in r.stdout.splitlines():
        if line.startswith("skip"):
            log(line)
    return {n: os.path.join(out, n) for n in os.listdir(out) if os.access(os.path.join(out, n), os.X_OK)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default=DEFAULT_WORKLOADS)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("-d", "--duration", type=float, default=4.0)
    ap.add_argument("--sprof", default=os.path.join(ROOT, ".build-bench", "release", "sprof"))
    ap.add_argument("--perf", default=shutil.which("perf"))
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"), help="markdown output ('' for none)")
    ap.add_argument("--json", help="every run's raw numbers")
    ap.add_argument("--from-json", help="do not run: summarize the runs of an earlier --json file")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
        args.rounds = 1 + max(r["round"] for r in results)
        report(args, args.workloads.split(","), results, None)
        return
    if os.geteuid() != 0:
        sys.exit("compare.py: run as root")
    if not os.access(args.sprof, os.X_OK):
        sys.exit(f"compare.py: no sprof at {args.sprof}")
    if not args.perf:
        sys.exit("compare.py: perf not found")
    workloads = args.workloads.split(",")
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        expected = {x["name"]: x for x in json.load(f)["fixtures"]}

    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    workdir = tempfile.mkdtemp(prefix="sprof-compare-")
    with open(STATS_SYSCTL) as f:
        stats_before = f.read().strip()
    results, bench, t_begin = [], None, time.time()
    try:
        bins = build(workdir)
        with open(STATS_SYSCTL, "w") as f:
            f.write("1")
        log(f"kernel.bpf_stats_enabled: {stats_before} -> 1 (restored at exit); workdir {workdir}")
        bench = Bench(args, workdir, bins, expected)
        for wl in workloads:
            if wl not in bins or wl not in expected:
                log(f"skip {wl}: not built or not in expected.json")
                continue
            for rnd in range(args.rounds):
                order = CONFIGS if rnd % 2 == 0 else CONFIGS[::-1]
                for cfg in order:
                    try:
                        r = bench.run(wl, cfg)
                    except RuntimeError as e:
                        r = {"workload": wl, "config": cfg, "error": str(e)[:500]}
                        log(f"  {wl} {cfg}: ERROR {e}")
                    r["round"] = rnd
                    results.append(r)
                    if "error" not in r:
                        log(f"  {wl:12s} {cfg:16s} r{rnd}: {run_line(r)}")
                    time.sleep(0.3)
    except KeyboardInterrupt as e:
        log(f"compare.py: interrupted ({e}); partial results follow")
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(stats_before)
        if bench:
            for p in bench.children:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        log(f"kernel.bpf_stats_enabled restored to {stats_before}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    report(args, workloads, results, time.time() - t_begin)


def run_line(r):
    w = f"rate {fmt(r.get('rate'), '{:.3f}')} work {fmt(r.get('win_work'), '{:.0f}')} in {fmt(r.get('win_cpu_s'), '{:.3f}')} cpu-s"
    if r["config"] == "none":
        return w
    if r["config"] == "sprof-raw":
        return f"{w} unwind {fmt(r.get('unwind_fps'), '{:.0f}')} frames/s over {r.get('unwind_frames')} frames"
    line = (f"{w} samples {r['samples']} lost {r['lost']} cpu {r['rec_cpu']:.2f}+{r['post_cpu']:.2f} "
            f"fold {r['fold_cpu']:.2f} bytes {r['bytes']} exact {r['exact']}/{r['hot']}/{r['total']} "
            f"stop→folded {fmt(r['stop_to_folded'])} rss {r['rec_rss_kib']}/{r['post_rss_kib']} KiB")
    if r.get("perf_unwind_fps"):
        line += f" script-ip {r['perf_script_ip_cpu']:.2f}s {r['perf_unwind_frames']} frames, marginal {r['perf_unwind_fps']:.0f}/s"
    return line


def report(args, workloads, results, elapsed):
    summ = summarize(results, workloads)
    T, R, G = table(summ, workloads), ratio_table(summ, workloads), targets(summ, workloads)
    O, U = overhead_table(summ, workloads), unwind_table(summ, workloads)
    print("\n".join(T + [""] + O + [""] + U + [""] + R + [""] + G))
    if args.results:
        info = machine(args)
        errs = [r for r in results if "error" in r]
        L = ["# sprof vs perf, side by side (bench/compare.py)", "",
             f"One run on one machine, not a reference. {info['date']}; {info['cpu']}, {info['ncpu']} CPUs (VM, "
             f"noisy); kernel {info['kernel']}; {info['perf']}; sprof at commit {info['sprof']} (+ working tree), "
             f"`.build-bench` release build. {args.rounds} rounds × {len(CONFIGS)} configurations, "
             f"-d {args.duration:g} s, alternating order" + (f"; {elapsed / 60:.1f} min" if elapsed else "")
             + ". Every cell is a median.", "",
             "Command: `sudo python3 bench/compare.py" + (f" -r {args.rounds}" if args.rounds != 3 else "")
             + (f" -d {args.duration:g}" if args.duration != 4 else "")
             + (f" --workloads {args.workloads}" if args.workloads != DEFAULT_WORKLOADS else "") + "`", "",
             "Per run (fresh fixture, killed when the recorder exits):", "",
             "    sprof record -F 999 -p PID -d D -o F.pb.gz; sprof report F.pb.gz --folded > F.folded",
             "    perf record -F 999 -e cpu-clock --call-graph dwarf|dwarf,65528|fp -k CLOCK_REALTIME -p PID -o F -- sleep D",
             "    perf script -i F | (folded in compare.py)", "",
             "    sprof record --raw -F 999 -p PID -d D -o F.raw; sprof report F.raw --stats   (unwinding speed)",
             "    perf script -F ip -i F  and  perf script -F ip --time FIRST,FIRST+20ms -i F  (perf dwarf runs: perf's unwinding speed)", "",
             "## Targets of issue 8", ""] + G + ["", "## Ratios, sprof / perf dwarf (default 8192-byte copy)", ""] + R + [
             "", "## Cost to the machine (medians)", ""] + O + ["", "## Unwinding speed (medians)", ""] + U + [
             "", "## Medians", ""] + T + [
             "", "## How to read it", "",
             "- **work**: each fixture counts its outer-loop iterations in a global (`sprof_work`, read through "
             "/proc/PID/mem every 20 ms with its CPU time from schedstat, interpolated to the recording window). "
             "**work/s vs none**: throughput against the unprofiled runs (moves with the VM's load). "
             "**target CPU per unit of work vs none**: the target's own CPU per iteration, which includes the time "
             "of the sampling interrupt charged to it (perf's stack copy, sprof's BPF program): the kernel-side cost. "
             "**total CPU overhead**: (target CPU in the window + profiler CPU of record and post-processing) ÷ "
             "(work in the window × unprofiled CPU per unit of work) − 1; the profiler's start-up and shut-down are "
             "in it, so it depends on the recording length (-d). sprof's BPF program also runs, and is rejected, "
             "on other tasks' CPU (it samples per CPU and filters by pid): that time is charged to those tasks and "
             "is not in this number (capture.py measures it: ~0.5 µs a rejected run).",
             "- **target CPU rate**: CPU seconds per wall second of the fixture inside the recording window "
             "(c_threads: two spinning threads, up to 2); on this 2-CPU VM it mostly moves with other load.",
             "- **unwinding frames/s**: sprof — `sprof report F.raw --stats` \"unwind only\" (the unwinder over the "
             "samples in memory, tables built, frames counted); perf — `perf script -F ip` on the perf dwarf run's "
             "file (libunwind, addresses only), the frames/CPU-second beyond a run of the same file limited to its first 20 ms.",
             "- **profiler CPU**: user+sys from wait4() of `sprof record` / `perf record` (start-up, BPF load, "
             "perf's build-id pass, write) + of the post-processor (`sprof report --folded` / `perf script`). "
             "**fold CPU** is this script's Python folding of perf script output (a stand-in for "
             "stackcollapse-perf.pl), not counted in the total.",
             "- **bytes/sample**: output file size / samples (sprof: gzipped pprof, unwound and symbolized online; "
             "perf: perf.data with the raw stack copies).",
             "- **hot leaf %**: samples whose innermost user frame is the expected hot leaf; **exact chain %**: of "
             "those, the share whose stack ends with the whole chain of expected.json (`*` any run, `name*N` "
             "exactly N); frames above the root are free; kernel `_[k]` and inlined `_[i]` frames are dropped; "
             "names match mangled or demangled, parameter lists and Rust hashes ignored, and a frame "
             "`a::b::run` matches `run`. c_threads pools both threads' chains.",
             "- **stop→folded**: from the end of the recording window (sprof: pprof time_nanos + duration_nanos; "
             "perf: its last sample + 1 ms) to the folded file written; includes the recorder's own shut-down "
             "(sprof's symbolization and write, perf's build-id pass).",
             "- **lost**: sprof's summary line; perf's LOST / LOST_SAMPLES records in perf.data.",
             "- **peak RSS**: ru_maxrss of the recorder / of the post-processor.", "",
             "## Not done", "",
             "- Kernel-side per-sample cost in ns (see capture.py for sprof's; perf exposes none): here it shows only "
             "as target CPU per unit of work.",
             ]
        if errs:
            L += ["", "## Errors", ""] + [f"- {r['workload']} {r['config']} round {r['round']}: {r['error']}" for r in errs]
        L += ["", "## Every run", "", "```"]
        for r in results:
            if "error" not in r:
                L.append(f"{r['workload']:12s} {r['config']:16s} r{r['round']} {run_line(r)}")
        L.append("```")
        svg = chart_svg(summ, workloads, f"sprof vs perf dwarf, {info['date'][:10]}, {info['ncpu']}-CPU VM, medians of {args.rounds}")
        chart_path = os.path.splitext(args.results)[0] + ".svg"
        if svg:
            with open(chart_path + ".tmp", "w") as f:
                f.write(svg)
            os.replace(chart_path + ".tmp", chart_path)
            L.insert(L.index("## Targets of issue 8"), f"![ratios]({os.path.basename(chart_path)})\n")
        with open(args.results + ".tmp", "w") as f:
            f.write("\n".join(L) + "\n")
        os.replace(args.results + ".tmp", args.results)
        log(f"wrote {args.results}" + (f" and {chart_path}" if svg else ""))


if __name__ == "__main__":
    main()
