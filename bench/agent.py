#!/usr/bin/env python3
"""`sprof agent`'s cost and soak test, on this machine only, bounded in time.

Run as root from the package root (see bench/README.md, "Agent"):

    swift build -c release --product sprof --scratch-path .build-bench     # bench/run --agent does both
    sudo python3 bench/agent.py              # ~14 min; writes bench/AGENT-RESULTS.md
    sudo python3 bench/agent.py --quick      # ~4 min smoke test; results in /tmp

Workloads, built with `gcc -O2 -fomit-frame-pointer -g` into a temporary directory:
`chain` (Tests/Fixtures/chain.c: main -> run -> level1 -> level2 -> leaf_hot, busy for its
argument's seconds), `short` (bench/short.c: spins a few ms of CPU in short_lived_work, exits)
and `storm` (bench/storm.c: posix_spawn()s `short` at a target rate from 8 threads, reaping the
children). Phase lengths: a19 180 s, a19u and b99u 120 s, b99 90 s, soak 300 s (--cost-seconds
scales the first four, --soak-seconds sets the last; --quick: 40 s each, soak 60 s).

Phases, each a fresh agent with its own temporary store and config (an empty TOML file, so
/etc/sprof/agent.toml does not leak in):

    sprof agent --config EMPTY --store DIR --http 127.0.0.1:PORT -F HZ --window 10s [--cpu-budget 100%]

    a19     19 Hz, default budget (1% of a core), 4 busy chains          (cost, as deployed)
    a19u    19 Hz, --cpu-budget 100%, 4 busy chains                      (cost, unthrottled)
    b99u    99 Hz, --cpu-budget 100%, 4 busy chains                      (cost, unthrottled)
    b99     99 Hz, default budget, 4 busy chains                         (the throttle at work)
    soak    19 Hz, --cpu-budget 100% (--soak-budget), 20 busy chains + storm of `short` at ~300
            spawns/s (the soak tests robustness, so the budget must not cut the rate to 1 Hz)

The workloads start first; the agent runs for the phase's length and is stopped with SIGTERM
(it writes the open window and exits; status 0 expected). Measured:

  * agent CPU: utime+stime from /proc/PID/stat (all threads), polled every second; the steady
    rate is the slope from one window (+2 s) after launch to the last poll before SIGTERM, as a
    percentage of one core; the total (start-up and shut-down included) from wait4();
  * run-queue wait: how long the agent's threads were runnable but not running (field 2 of
    /proc/PID/task/*/schedstat, summed over threads), as % of the steady part: contention;
  * RSS: VmRSS from /proc/PID/status every second; steady median and max after the first minute
    (the first third for phases shorter than 3 min); VmHWM at the end;
  * "levels off": the median RSS of the last third of the run against the middle third
    (growth < 10%), and no monotone climb: the medians of six equal slices of the last two
    thirds are not strictly increasing; plus the least-squares slope there (MiB per minute);
  * /metrics scraped every 10 s and just before SIGTERM: samples, lost samples, windows,
    windows written to the store, dropped windows, errors by kind, sampling_hz, throttled; the
    rate changes the agent logged (its stderr);
  * windows: every *.pb.gz in the store passes `gzip -t`; their (time_nanos, duration_nanos)
    tile the run (largest gap and overlap); write lag = file mtime - window end; count against
    ceil(run / window) +-1; `sprof report --store DIR --folded` exits 0 and prints no "skipped"
    line; samples by comm (what else ran: other people's processes are in the agent's view);
  * soak only: `sprof report --store DIR --since 1h --where comm=short --folded`: how many of
    short's samples carry the whole chain (main -> short_lived_work), short_lived_work with its
    callers cut, the dynamic loader's start-up, other named user frames, only kernel frames, or a
    user address in no mapping the agent knew (the process was gone before its maps were read;
    those at short_lived_work's offsets within a page are counted too); the storm's achieved
    spawns per second (its own count);
  * the machine: steal and busy share of all CPUs over the phase (/proc/stat), other sprof
    processes running at the start (another agent would sample too).

Exit status: 1 if an agent crashed (died before SIGTERM, or did not exit 0 after it) or a window
was unreadable; misses on the cost targets are reported, not fatal. Only the standard library;
it kills only the processes it started.
"""
import argparse
import datetime
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing compare
from compare import pprof_window  # noqa: E402  (same directory, standard library)

CLK_TCK = os.sysconf("SC_CLK_TCK")
WINDOW_S = 10
CPU_TARGET_PCT = 1.0      # the issue: agent CPU <= 1% of one core at 19 Hz, steady state
RSS_TARGET_MB = 100.0     # ... and RSS <= 100 MB (10^6 bytes)
GROWTH_LIMIT = 0.10       # "levels off": last third's median RSS < 110% of the middle third's

# name: (Hz, --cpu-budget or None for the default, busy chains, storm?)
PHASES = {
    "a19": (19, None, 4, False),
    "a19u": (19, "100%", 4, False),
    "b99u": (99, "100%", 4, False),
    "b99": (99, None, 4, False),
    "soak": (19, "--soak-budget", 20, True),
}
PHASE_TITLE = {
    "a19": "19 Hz, default budget (1%), 4 busy",
    "a19u": "19 Hz, --cpu-budget 100%, 4 busy",
    "b99u": "99 Hz, --cpu-budget 100%, 4 busy",
    "b99": "99 Hz, default budget (1%), 4 busy",
    "soak": "soak: 19 Hz, 20 busy + storm",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def mono():
    return time.monotonic()


# ---------------------------------------------------------------- /proc readers

def proc_stat(pid):
    """(state, utime+stime seconds) of pid from /proc/PID/stat, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 (proc(5))


def proc_status_kb(pid, keys=("VmRSS", "VmHWM")):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out


def sched_wait_s(pid):
    """Seconds pid's live threads have waited on a run queue (field 2 of /proc/PID/task/*/schedstat)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def cpu_times():
    """The aggregate `cpu` line of /proc/stat: (total, idle+iowait, steal) in ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is in user already
    return sum(v[:8]), v[3] + v[4], v[7]


def other_sprofs(mine):
    """Other sprof processes on the machine (pid: command line), not started by this script."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in mine or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if f.read().strip() != "sprof":
                    continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                out[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            pass
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    """/metrics as {'name{labels}': value}, or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


# ---------------------------------------------------------------- workloads

def build_workloads(workdir):
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        sys.exit("agent.py: needs gcc to build the workloads")
    srcs = {"chain": os.path.join(ROOT, "Tests", "Fixtures", "chain.c"),
            "short": os.path.join(HERE, "short.c"), "storm": os.path.join(HERE, "storm.c")}
    bins = {}
    for name, src in srcs.items():
        out = os.path.join(workdir, name)
        subprocess.run([cc, "-O2", "-fomit-frame-pointer", "-g", "-pthread", "-o", out, src], check=True)
        bins[name] = out
    return bins


class Sampler(threading.Thread):
    """The agent's CPU seconds, RSS and state once a second, without reaping it."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.rows = []  # (t, cpu s, rss kB)
        self.waits = []  # (t, run-queue wait s)
        self.died_at = None
        self.stop_flag = threading.Event()

    def run(self):
        t0 = mono()
        k = 0
        while not self.stop_flag.is_set():
            st = proc_stat(self.pid)
            kb = proc_status_kb(self.pid)
            if st is None or st[0] in ("Z", "X") or kb is None:
                self.died_at = mono()
                return
            self.rows.append((mono(), st[1], kb.get("VmRSS", 0)))
            w = sched_wait_s(self.pid)
            if w is not None:
                self.waits.append((mono(), w))
            k += 1
            self.stop_flag.wait(max(0.0, t0 + k - mono()))


class Bench:
    def __init__(self, args, workdir, bins):
        self.args, self.workdir, self.bins = args, workdir, bins
        self.children = []  # Popen objects this script started, killed on the way out
        self.empty_config = os.path.join(workdir, "empty.toml")
        open(self.empty_config, "w").close()

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.children.append(p)
        return p

    def cleanup(self):
        for p in self.children:
            if p.returncode is None:
                try:
                    p.kill()
                    p.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass

    def agent_argv(self, store, port, hz, budget):
        argv = [self.args.sprof, "agent", "--config", self.empty_config, "--store", store,
                "--http", f"127.0.0.1:{port}", "-F", str(hz), "--window", f"{WINDOW_S}s"]
        if budget:
            argv += ["--cpu-budget", budget]
        return argv

    def run_phase(self, name, seconds, run_index):
        a = self.args
        hz, budget, busy, storm = PHASES[name]
        if budget == "--soak-budget":
            budget = None if a.soak_budget == "default" else a.soak_budget
        pdir = tempfile.mkdtemp(prefix=f"{name}-{run_index}-", dir=self.workdir)
        store = os.path.join(pdir, "store")
        port = free_port()
        rec = {"phase": name, "run": run_index, "hz": hz, "budget": budget or "default (1%)",
               "busy": busy, "seconds": seconds, "started": datetime.datetime.now().isoformat(timespec="seconds")}
        log(f"== {name} (run {run_index}): {PHASE_TITLE[name]}, {seconds:.0f} s")

        # the workloads first, so the agent meets them running
        chains = [self.spawn([self.bins["chain"], str(seconds + 60)], stdout=subprocess.DEVNULL) for _ in range(busy)]
        storm_p = None
        if storm:
            storm_p = self.spawn([self.bins["storm"], str(seconds + 60), str(a.storm_rate), str(a.storm_threads),
                                  self.bins["short"], str(a.short_ms)],
                                 stdout=subprocess.PIPE, text=True, cwd=self.workdir)
        time.sleep(1)
        ours = {p.pid for p in self.children}
        rec["other_sprof"] = other_sprofs(ours)
        if rec["other_sprof"]:
            log(f"   note: other sprof processes are running: {rec['other_sprof']}")

        argv = self.agent_argv(store, port, hz, budget)
        rec["command"] = " ".join(argv)
        err_path = os.path.join(pdir, "agent.err")
        c0 = cpu_times()
        launch = mono()
        launch_wall = time.time()
        with open(err_path, "w") as err:
            agent = self.spawn(argv, stdout=subprocess.DEVNULL, stderr=err)
        sampler = Sampler(agent.pid)
        sampler.start()

        scrapes = []
        next_scrape = launch + 10
        end = launch + seconds
        while mono() < end and sampler.died_at is None:
            time.sleep(min(1.0, max(0.0, end - mono())))
            if mono() >= next_scrape:
                m = scrape(port)
                if m is not None:
                    scrapes.append((mono() - launch, m))
                next_scrape += 10
        final = scrape(port) if sampler.died_at is None else None
        term_at = mono()
        term_wall = time.time()
        c1 = cpu_times()
        alive_until_term = sampler.died_at is None
        if alive_until_term:
            agent.send_signal(signal.SIGTERM)
        sampler.stop_flag.set()
        sampler.join()
        rc, total_cpu, exit_s = self.wait_rusage(agent, 60)
        rec["exit_after_term_s"] = exit_s if alive_until_term else None

        # workloads down
        if storm_p is not None:
            storm_p.send_signal(signal.SIGTERM)
            out, _ = storm_p.communicate(timeout=60)
            rec["storm"] = dict(kv.split("=", 1) for kv in out.split())
        for p in chains:
            p.kill()
            p.wait()

        rec.update(alive_until_term=alive_until_term, exit_status=rc, total_cpu_s=total_cpu,
                   run_s=term_at - launch)
        if not alive_until_term:
            rec["died_after_s"] = sampler.died_at - launch
        with open(err_path) as f:
            rec["agent_stderr"] = f.read()[-20000:]

        # machine
        dt, didle, dsteal = (c1[i] - c0[i] for i in range(3))
        rec["steal_pct"] = 100.0 * dsteal / dt if dt else None
        rec["busy_pct"] = 100.0 * (dt - didle) / dt if dt else None

        # CPU and RSS
        rows = [(t - launch, c, kb) for t, c, kb in sampler.rows]
        rec["series"] = [(round(t, 2), round(c, 2), kb) for t, c, kb in rows]
        steady = [r for r in rows if r[0] >= WINDOW_S + 2]
        if len(steady) >= 2 and steady[-1][0] - steady[0][0] > 5:
            rec["cpu_pct"] = 100.0 * (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
        waits = [(t - launch, w) for t, w in sampler.waits if t - launch >= WINDOW_S + 2]
        if len(waits) >= 2 and waits[-1][0] - waits[0][0] > 5:
            # how long the agent's threads were runnable but not running: contention, not its own cost
            rec["runq_wait_pct"] = 100.0 * (waits[-1][1] - waits[0][1]) / (waits[-1][0] - waits[0][0])
        rss_from = min(60.0, seconds / 3)
        rss = [kb for t, _, kb in rows if t >= rss_from]
        if rss:
            rec["rss_median_mb"] = statistics.median(rss) * 1024 / 1e6
            rec["rss_max_mb"] = max(rss) * 1024 / 1e6
        rec["rss_from_s"] = rss_from
        rec.update(levels_off(rows, (term_at - launch)))
        hwm = [kb for _, _, kb in rows]
        rec["rss_peak_mb"] = max(hwm) * 1024 / 1e6 if hwm else None

        # metrics
        rec["metrics_final"] = final
        rec["metrics_series"] = [(round(t, 1), {k: v for k, v in m.items() if k.startswith("sprof_agent_")}) for t, m in scrapes]
        rec["rate_log"] = [line for line in rec["agent_stderr"].splitlines()
                           if "budget" in line and ("sampling at" in line)]

        # windows
        rec.update(self.check_store(store, launch_wall, term_wall, name))
        if a.keep:
            rec["store"] = store
        else:
            shutil.rmtree(pdir, ignore_errors=True)
        summary(rec)
        return rec

    def wait_rusage(self, p, timeout):
        """wait4() the agent: (exit code, user+sys CPU seconds, seconds it took to exit)."""
        t0 = mono()
        deadline = t0 + timeout
        while mono() < deadline:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                return p.returncode, ru.ru_utime + ru.ru_stime, mono() - t0
            time.sleep(0.05)
        log(f"   agent did not exit {timeout} s after SIGTERM: killing it")
        p.kill()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        return p.returncode, ru.ru_utime + ru.ru_stime, None

    def check_store(self, store, launch_wall, term_wall, name):
        a = self.args
        out = {}
        files = sorted(glob.glob(os.path.join(store, "*", "*.pb.gz")))
        out["windows"] = len(files)
        out["leftover_tmp"] = len(glob.glob(os.path.join(store, "*", "*.tmp-*")))
        out["expected_windows"] = -(-(term_wall - launch_wall) // WINDOW_S)
        bad_gzip, spans, lags = [], [], []
        for f in files:
            if subprocess.run(["gzip", "-t", f], capture_output=True).returncode != 0:
                bad_gzip.append(os.path.basename(f))
                continue
            try:
                start, dur = pprof_window(f)
                spans.append((start or 0, dur or 0))
                lags.append(os.stat(f).st_mtime - ((start or 0) + (dur or 0)) / 1e9)
            except Exception as e:  # noqa: BLE001  (a window that does not parse is the finding)
                bad_gzip.append(f"{os.path.basename(f)}: {e}")
        out["bad_gzip"] = bad_gzip
        spans.sort()
        gaps = [(b[0] - (a_[0] + a_[1])) / 1e9 for a_, b in zip(spans, spans[1:])]
        out["max_gap_s"] = max(gaps) if gaps else None
        out["min_gap_s"] = min(gaps) if gaps else None  # negative: overlap
        out["window_lengths_s"] = [round(d / 1e9, 2) for _, d in spans]
        # from a window's end to its file in the store: conversion (unwinding done, naming, merging) + write
        out["write_lag_s"] = [round(x, 2) for x in lags]
        out["write_lag_median_s"] = med(lags)
        out["write_lag_max_s"] = max(lags) if lags else None
        r = subprocess.run([a.sprof, "report", "--store", store, "--folded"], capture_output=True, text=True)
        out["report_status"] = r.returncode
        out["report_skipped"] = [line for line in r.stderr.splitlines() if "skipped" in line]
        out["report_stderr"] = r.stderr[-2000:]
        by_comm = {}
        total = 0
        for line in r.stdout.splitlines():
            stack, _, n = line.rpartition(" ")
            comm = stack.split(";", 1)[0]
            by_comm[comm] = by_comm.get(comm, 0) + int(n)
            total += int(n)
        out["report_samples"] = total
        out["by_comm"] = dict(sorted(by_comm.items(), key=lambda kv: -kv[1])[:12])
        out["unnamed_comm_samples"] = sum(v for k, v in by_comm.items() if k in ("", "?") or k.isdigit())
        out["readable"] = not bad_gzip and r.returncode == 0 and not out["report_skipped"]
        if name == "soak":
            out.update(short_names(a.sprof, store, self.bins["short"]))
        return out


def levels_off(rows, run_s):
    """Middle vs last third medians, monotone climb over six slices of the last two thirds, slope."""
    out = {}
    mid = [kb for t, _, kb in rows if run_s / 3 <= t < 2 * run_s / 3]
    last = [kb for t, _, kb in rows if t >= 2 * run_s / 3]
    if mid and last:
        out["rss_mid_mb"] = statistics.median(mid) * 1024 / 1e6
        out["rss_last_mb"] = statistics.median(last) * 1024 / 1e6
        out["rss_growth"] = out["rss_last_mb"] / out["rss_mid_mb"] - 1
    tail = [(t, kb) for t, _, kb in rows if t >= run_s / 3]
    if len(tail) >= 12:
        span = run_s * 2 / 3
        slices = []
        for i in range(6):
            lo, hi = run_s / 3 + span * i / 6, run_s / 3 + span * (i + 1) / 6
            xs = [kb for t, kb in tail if lo <= t < hi]
            if xs:
                slices.append(statistics.median(xs) * 1024 / 1e6)
        out["rss_slices_mb"] = [round(x, 2) for x in slices]
        out["rss_monotone_climb"] = len(slices) == 6 and all(b > a for a, b in zip(slices, slices[1:]))
        n = len(tail)
        mt = sum(t for t, _ in tail) / n
        mk = sum(kb for _, kb in tail) / n
        var = sum((t - mt) ** 2 for t, _ in tail)
        if var > 0:
            out["rss_slope_mib_per_min"] = sum((t - mt) * (kb - mk) for t, kb in tail) / var * 60 / 1024
    if "rss_growth" in out and "rss_monotone_climb" in out:
        out["levels_off"] = out["rss_growth"] < GROWTH_LIMIT and not out["rss_monotone_climb"]
    return out


FULL = "main -> short_lived_work"
LEAF = "short_lived_work, callers cut"
LOADER = "dynamic loader start-up (_dl_*), named"
OTHER_USER = "other named user frames (libc start, exit)"
KERNEL = "kernel frames only (exec, exit)"
UNMAPPED = "user address not in any mapping the agent knew (unnamed)"
KINDS = (FULL, LEAF, LOADER, OTHER_USER, KERNEL, UNMAPPED)
UNKNOWN = re.compile(r"^\[unknown\]\+0x([0-9a-fA-F]+)$")


def page_offsets(exe, symbol):
    """The offsets within a 4 KiB page that `symbol` of `exe` covers (nm -S), for telling which
    unmapped addresses were most likely in it: a PIE is mapped at a page-aligned base, so an
    address keeps its offset within the page."""
    out = subprocess.run(["nm", "-S", exe], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[3] == symbol:
            v, n = int(f[0], 16), int(f[1], 16)
            return {(v + i) & 0xFFF for i in range(n)}
    return set()


def short_names(sprof, store, short_exe):
    """`--where comm=short`: its samples by what their frames say."""
    r = subprocess.run([sprof, "report", "--store", store, "--since", "1h", "--where", "comm=short", "--folded"],
                       capture_output=True, text=True)
    out = {"short_status": r.returncode, "short_stderr": r.stderr[-1000:]}
    offsets = page_offsets(short_exe, "short_lived_work")
    kinds = {k: 0 for k in KINDS}
    examples = {}
    lines = likely_work = 0
    for line in r.stdout.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        lines += 1
        n = int(n)
        frames = stack.split(";")[1:]
        user = [f for f in frames if not f.endswith("_[k]") and not f.startswith("[truncated")]
        unknown = [UNKNOWN.match(f) for f in user]
        if "short_lived_work" in user:
            k = FULL if "main" in user[:user.index("short_lived_work")] else LEAF
        elif any(unknown):
            k = UNMAPPED
            # the deepest unknown frame, in a PIE executable's range (0x55..., 0x56...)?
            addr = int([m for m in unknown if m][-1].group(1), 16)
            if addr >> 40 in (0x55, 0x56) and (addr & 0xFFF) in offsets:
                likely_work += n
        elif any(f.startswith("_dl_") for f in user):
            k = LOADER
        elif not user:
            k = KERNEL
        else:
            k = OTHER_USER
        kinds[k] += n
        if k not in examples or n > examples[k][1]:
            examples[k] = (stack, n)
    total = sum(kinds.values())
    out.update(short_lines=lines, short_samples=total, short_kinds=kinds, short_unmapped_in_work=likely_work,
               short_examples={k: v[0][:300] for k, v in examples.items()},
               short_full_share=kinds[FULL] / total if total else None)
    return out


# ---------------------------------------------------------------- summaries

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="{:.2f}", none="–"):
    return none if x is None else spec.format(x)


def mval(rec, key):
    m = rec.get("metrics_final") or (rec.get("metrics_series") or [(0, {})])[-1][1]
    return m.get(key) if m else None


def summary(rec):
    log(f"   exit {rec['exit_status']} (alive until SIGTERM: {rec['alive_until_term']}); "
        f"CPU {fmt(rec.get('cpu_pct'), '{:.3f}')}% of a core; RSS median {fmt(rec.get('rss_median_mb'), '{:.1f}')} MB, "
        f"max {fmt(rec.get('rss_max_mb'), '{:.1f}')} MB; growth {fmt(rec.get('rss_growth'), '{:+.1%}')}; "
        f"windows {rec['windows']}/{rec['expected_windows']:.0f}, readable {rec['readable']}; "
        f"Hz at end {fmt(mval(rec, 'sprof_agent_sampling_hz'), '{:.0f}')}, lost {fmt(mval(rec, 'sprof_agent_lost_samples_total'), '{:.0f}')}; "
        f"steal {fmt(rec.get('steal_pct'), '{:.1f}')}%")
    if "short_samples" in rec:
        log(f"   short: {rec['short_samples']} samples, kinds {rec['short_kinds']}; storm {rec.get('storm')}")


def verdict(ok):
    return "–" if ok is None else ("PASS" if ok else "MISS")


def render(runs, args, elapsed, argv):
    by = {}
    for r in runs:
        by.setdefault(r["phase"], []).append(r)
    kernel = platform.release()
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open(args.sprof, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    L = []
    L.append("# sprof agent: cost and soak (bench/agent.py)")
    L.append("")
    L.append(f"Run {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {socket.gethostname()}: kernel {kernel}, "
             f"{os.cpu_count()} CPUs ({model}); {elapsed / 60:.1f} min in all.")
    L.append(f"Command: `{' '.join(['sudo python3 bench/agent.py', *argv])}`.")
    L.append(f"Binary: `{args.sprof}` (sha256 {digest}). Windows of {WINDOW_S} s; each phase a fresh agent:")
    L.append("")
    L.append(f"    {runs[0]['command'].replace(args.sprof, 'sprof')}" if runs else "")
    L.append("")
    L.append("(with `-F`, `--cpu-budget` as the phase says; `--config` is an empty file). Every figure is the median "
             "over the phase's runs; per-run numbers are at the end. CPU is % of one core over the steady part "
             f"(one window + 2 s after launch to SIGTERM); RSS is VmRSS sampled every second after the first "
             f"minute (first third for shorter phases). MB = 10^6 bytes.")
    L.append("")

    # ---- cost
    cost = [p for p in ("a19", "a19u", "b99u", "b99") if p in by]
    if cost:
        L.append("## Cost (4 busy processes)")
        L.append("")
        L.append("| phase | runs | agent CPU % of a core | RSS median MB | RSS max MB | Hz at end | throttled | rate changes | samples | lost | windows (exp.) | readable | write lag median / max s | exit after SIGTERM s | run-queue wait % | steal % | busy % |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for p in cost:
            rs = by[p]
            L.append("| " + " | ".join([
                PHASE_TITLE[p], str(len(rs)),
                fmt(med(r.get("cpu_pct") for r in rs), "{:.3f}"),
                fmt(med(r.get("rss_median_mb") for r in rs), "{:.1f}"),
                fmt(med(r.get("rss_max_mb") for r in rs), "{:.1f}"),
                fmt(med(mval(r, "sprof_agent_sampling_hz") for r in rs), "{:.0f}"),
                ", ".join("yes" if mval(r, "sprof_agent_throttled") else "no" for r in rs),
                ", ".join(str(len(r["rate_log"])) for r in rs),
                fmt(med(mval(r, "sprof_agent_samples_total") for r in rs), "{:.0f}"),
                fmt(med(mval(r, "sprof_agent_lost_samples_total") for r in rs), "{:.0f}"),
                ", ".join(f"{r['windows']} ({r['expected_windows']:.0f})" for r in rs),
                "yes" if all(r["readable"] for r in rs) else "**NO**",
                f"{fmt(med(r.get('write_lag_median_s') for r in rs), '{:.1f}')} / {fmt(med(r.get('write_lag_max_s') for r in rs), '{:.1f}')}",
                fmt(med(r.get("exit_after_term_s") for r in rs), "{:.1f}"),
                fmt(med(r.get("runq_wait_pct") for r in rs), "{:.1f}"),
                fmt(med(r.get("steal_pct") for r in rs), "{:.1f}"),
                fmt(med(r.get("busy_pct") for r in rs), "{:.0f}"),
            ]) + " |")
        L.append("")
        L.append("Targets (the issue: system-wide at 19 Hz with a few busy processes, steady state; at 99 Hz report the figures):")
        L.append("")
        L.append("| phase | target | measured | result |")
        L.append("|---|---|---|---|")
        for p in cost:
            rs = by[p]
            c = med(r.get("cpu_pct") for r in rs)
            rm = med(r.get("rss_median_mb") for r in rs)
            rx = med(r.get("rss_max_mb") for r in rs)
            if p.startswith("a"):
                L.append(f"| {PHASE_TITLE[p]} | CPU ≤ {CPU_TARGET_PCT:g}% of one core | {fmt(c, '{:.3f}')}% | "
                         f"{verdict(None if c is None else c <= CPU_TARGET_PCT)} |")
                L.append(f"| {PHASE_TITLE[p]} | RSS ≤ {RSS_TARGET_MB:g} MB (median / max) | {fmt(rm, '{:.1f}')} / {fmt(rx, '{:.1f}')} MB | "
                         f"{verdict(None if rx is None else rx <= RSS_TARGET_MB)} |")
            else:
                L.append(f"| {PHASE_TITLE[p]} | report (no target); RSS against 100 MB for reference | "
                         f"{fmt(c, '{:.3f}')}%, {fmt(rm, '{:.1f}')} / {fmt(rx, '{:.1f}')} MB | – |")
        L.append("")
        L.append("What else the agent saw (samples by comm over the whole store, top 6: other people's builds and tests "
                 "on this machine are in the agent's view and in its cost):")
        L.append("")
        for p in cost:
            for r in by[p]:
                L.append(f"- {p} run {r['run']}: " + ", ".join(f"{k or '(empty)'} {v}" for k, v in list(r["by_comm"].items())[:6])
                         + (f"; other sprof processes: {len(r['other_sprof'])}" if r["other_sprof"] else ""))
        L.append("")
        L.append("Rate changes the agent logged (its stderr), per run:")
        L.append("")
        for p in cost:
            for r in by[p]:
                if r["rate_log"]:
                    L.append(f"- {p} run {r['run']}: " + "; ".join(x.replace("sprof agent: ", "") for x in r["rate_log"][:6])
                             + (f" (+{len(r['rate_log']) - 6} more)" if len(r["rate_log"]) > 6 else ""))
                else:
                    L.append(f"- {p} run {r['run']}: none")
        L.append("")

    # ---- soak
    if "soak" in by:
        rs = by["soak"]
        L.append(f"## Soak (20 busy `chain` + `storm` of `short` at {args.storm_rate}/s, {args.short_ms:g} ms of CPU each; "
                 f"19 Hz, --cpu-budget {rs[0]['budget']})")
        L.append("")
        L.append("| check | target | measured | result |")
        L.append("|---|---|---|---|")
        for r in rs:
            tag = f" (run {r['run']})" if len(rs) > 1 else ""
            alive = r["alive_until_term"] and r["exit_status"] == 0
            L.append(f"| agent alive, exit after SIGTERM{tag} | alive throughout, status 0 | "
                     f"{'alive' if r['alive_until_term'] else 'died after %.0f s' % r.get('died_after_s', 0)}, status {r['exit_status']}"
                     f", exited {fmt(r.get('exit_after_term_s'), '{:.1f}')} s after SIGTERM | {verdict(alive)} |")
            L.append(f"| RSS levels off{tag} | last third's median < {1 + GROWTH_LIMIT:.2f}× the middle third's, no monotone climb | "
                     f"{fmt(r.get('rss_mid_mb'), '{:.1f}')} → {fmt(r.get('rss_last_mb'), '{:.1f}')} MB ({fmt(r.get('rss_growth'), '{:+.1%}')}); "
                     f"slices {r.get('rss_slices_mb')}; slope {fmt(r.get('rss_slope_mib_per_min'), '{:+.2f}')} MiB/min | "
                     f"{verdict(r.get('levels_off'))} |")
            L.append(f"| RSS steady{tag} | ≤ {RSS_TARGET_MB:g} MB | median {fmt(r.get('rss_median_mb'), '{:.1f}')}, max {fmt(r.get('rss_max_mb'), '{:.1f}')} MB | "
                     f"{verdict(None if r.get('rss_max_mb') is None else r['rss_max_mb'] <= RSS_TARGET_MB)} |")
            wn = r["windows"] - r["expected_windows"]
            written = mval(r, 'sprof_agent_windows_written_total{sink="store"}')
            L.append(f"| windows written{tag} | ceil(run / {WINDOW_S} s) ± 1 | {r['windows']} of {r['expected_windows']:.0f} expected; "
                     f"store count in /metrics before SIGTERM {fmt(written, '{:.0f}')}, "
                     f"dropped {fmt(mval(r, 'sprof_agent_windows_dropped_total') or 0, '{:.0f}')}; gaps between windows "
                     f"{fmt(r.get('min_gap_s'), '{:.3f}')}…{fmt(r.get('max_gap_s'), '{:.3f}')} s; from a window's end to its file: "
                     f"median {fmt(r.get('write_lag_median_s'), '{:.1f}')} s, max {fmt(r.get('write_lag_max_s'), '{:.1f}')} s | {verdict(abs(wn) <= 1)} |")
            L.append(f"| windows readable{tag} | every file passes gzip -t; report skips none | "
                     f"{r['windows'] - len(r['bad_gzip'])}/{r['windows']} pass gzip -t; report status {r['report_status']}, "
                     f"{len(r['report_skipped'])} skipped; {r['leftover_tmp']} leftover temp files | {verdict(r['readable'])} |")
            lost = mval(r, "sprof_agent_lost_samples_total")
            samples = mval(r, "sprof_agent_samples_total")
            L.append(f"| lost samples{tag} | report | {fmt(lost, '{:.0f}')} of {fmt(samples, '{:.0f}')} "
                     f"({fmt(None if not samples else 100 * (lost or 0) / samples, '{:.2f}')}%) | – |")
            named = r.get("short_samples", 0) > 0 and r["short_kinds"][FULL] > 0
            kinds = r.get("short_kinds", {})
            share = ", ".join(f"{k} {v} ({100 * v / r['short_samples']:.1f}%)" for k, v in kinds.items() if v) if r.get("short_samples") else "none"
            L.append(f"| short-lived processes named{tag} | `--where comm=short` has lines; frames include short_lived_work | "
                     f"{r.get('short_lines', 0)} lines, {r.get('short_samples', 0)} samples: {share} | {verdict(named)} |")
            if r.get("short_samples"):
                L.append(f"| … whole chain among short's samples{tag} | report | {100 * r['short_full_share']:.1f}% carry main → "
                         f"short_lived_work; of the {r['short_kinds'][UNMAPPED]} unnamed, {r['short_unmapped_in_work']} sit at "
                         f"short_lived_work's offsets in the executable (named they would have been) | – |")
            st = r.get("storm", {})
            L.append(f"| storm{tag} | ~{args.storm_rate} spawns/s | {st.get('rate', '–')} spawns/s achieved "
                     f"({st.get('started', '–')} started, {st.get('failed', '–')} failed, at most {st.get('max_live', '–')} alive at once) | – |")
            L.append(f"| agent CPU, rate{tag} | report (budget {r['budget']}) | {fmt(r.get('cpu_pct'), '{:.3f}')}% of a core; "
                     f"{fmt(mval(r, 'sprof_agent_sampling_hz'), '{:.0f}')} Hz at the end, {len(r['rate_log'])} rate changes | – |")
            L.append(f"| machine{tag} | context | steal {fmt(r.get('steal_pct'), '{:.1f}')}%, busy {fmt(r.get('busy_pct'), '{:.0f}')}% of both CPUs; "
                     f"the agent's threads waited on a run queue {fmt(r.get('runq_wait_pct'), '{:.1f}')}% of the time (summed over threads) | – |")
        L.append("")
        for r in rs:
            if r.get("short_examples"):
                L.append(f"Heaviest stack of each kind among `short`'s samples (run {r['run']}):")
                L.append("")
                for k, s in r["short_examples"].items():
                    L.append(f"- {k}: `{s}`")
                L.append("")
            L.append(f"Samples by comm, whole store (run {r['run']}): "
                     + ", ".join(f"{k or '(empty)'} {v}" for k, v in r["by_comm"].items())
                     + f"; samples with no usable comm: {r['unnamed_comm_samples']}.")
            L.append("")
            if r["rate_log"]:
                L.append(f"Rate changes (run {r['run']}): " + "; ".join(x.replace("sprof agent: ", "") for x in r["rate_log"][:8]))
                L.append("")

    # ---- raw
    L.append("## Raw, per run")
    L.append("")
    L.append("| phase | run | started | s | CPU % | CPU total s | RSS median / max / mid→last MB | growth | slope MiB/min | Hz end | samples | lost | windows | readable | exit | steal % | other sprof |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        L.append("| " + " | ".join([
            r["phase"], str(r["run"]), r["started"], f"{r['run_s']:.0f}", fmt(r.get("cpu_pct"), "{:.3f}"),
            fmt(r.get("total_cpu_s"), "{:.2f}"),
            f"{fmt(r.get('rss_median_mb'), '{:.1f}')} / {fmt(r.get('rss_max_mb'), '{:.1f}')} / "
            f"{fmt(r.get('rss_mid_mb'), '{:.1f}')}→{fmt(r.get('rss_last_mb'), '{:.1f}')}",
            fmt(r.get("rss_growth"), "{:+.1%}"), fmt(r.get("rss_slope_mib_per_min"), "{:+.2f}"),
            fmt(mval(r, "sprof_agent_sampling_hz"), "{:.0f}"),
            fmt(mval(r, "sprof_agent_samples_total"), "{:.0f}"), fmt(mval(r, "sprof_agent_lost_samples_total"), "{:.0f}"),
            f"{r['windows']}/{r['expected_windows']:.0f}", "yes" if r["readable"] else "**NO**",
            f"{r['exit_status']}{'' if r['alive_until_term'] else ' (died)'}",
            fmt(r.get("steal_pct"), "{:.1f}"), str(len(r["other_sprof"])),
        ]) + " |")
    L.append("")
    errs = [(r["phase"], r["run"], k, v) for r in runs for k, v in (r.get("metrics_final") or {}).items()
            if k.startswith("sprof_agent_errors_total") and v]
    L.append("Errors in /metrics before SIGTERM: " + ("; ".join(f"{p} run {n}: {k} = {v:.0f}" for p, n, k, v in errs) if errs else "none") + ".")
    L.append("")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sprof", default=os.environ.get("SPROF", os.path.join(ROOT, ".build-bench", "release", "sprof")),
                    help="the sprof binary (default $SPROF or .build-bench/release/sprof)")
    ap.add_argument("--quick", action="store_true", help="short phases (40 s, soak 60 s): a smoke test; results in /tmp")
    ap.add_argument("--phases", default="a19,a19u,b99u,b99,soak", help="which phases, in order (default: all)")
    ap.add_argument("--cost-seconds", type=float, default=None,
                    help="length of a19 (default 180; a19u, b99u 120, b99 90); scales the others")
    ap.add_argument("--soak-seconds", type=float, default=None, help="length of the soak (default 300, --quick 60)")
    ap.add_argument("-r", "--repeat", type=int, default=1, help="runs of each cost phase, order reversed every other round")
    ap.add_argument("--storm-rate", type=int, default=300, help="spawns per second the storm aims at (default 300)")
    ap.add_argument("--storm-threads", type=int, default=8, help="the storm's spawning threads (default 8; see storm.c)")
    ap.add_argument("--short-ms", type=float, default=2.0, help="ms of CPU each short-lived process spins (default 2)")
    ap.add_argument("--soak-budget", default="100%",
                    help="the soak's --cpu-budget (default 100%%, so it stays at 19 Hz; 'default' for the agent's 1%%)")
    ap.add_argument("--results", default=None, help="markdown output (default bench/AGENT-RESULTS.md; --quick: /tmp)")
    ap.add_argument("--json", default=None, help="also write every run's raw numbers here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary stores (paths in the JSON)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("agent.py: run as root (the agent loads BPF programs and samples every CPU)")
    if not os.access(args.sprof, os.X_OK):
        sys.exit(f"agent.py: no sprof binary at {args.sprof} (swift build -c release --product sprof --scratch-path .build-bench, or --sprof PATH)")
    phases = [p for p in args.phases.split(",") if p]
    for p in phases:
        if p not in PHASES:
            sys.exit(f"agent.py: unknown phase {p} (known: {', '.join(PHASES)})")
    base = args.cost_seconds or (40 if args.quick else 180)
    lengths = {"a19": base, "a19u": base * 2 / 3, "b99u": base * 2 / 3, "b99": base / 2,
               "soak": args.soak_seconds or (60 if args.quick else 300)}
    if args.quick:
        lengths.update(a19u=base, b99u=base, b99=base)
    if args.results is None:
        args.results = (os.path.join(os.environ.get("TMPDIR", "/tmp"), "sprof-agent-quick.md") if args.quick
                        else os.path.join(HERE, "AGENT-RESULTS.md"))

    t0 = mono()
    workdir = tempfile.mkdtemp(prefix="sprof-agent-bench-")
    bins = build_workloads(workdir)
    bench = Bench(args, workdir, bins)

    def on_signal(sig, _frame):
        bench.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)

    cost = [p for p in phases if p != "soak"]
    order = []
    for i in range(args.repeat):
        order += [(p, i + 1) for p in (cost if i % 2 == 0 else cost[::-1])]
    if "soak" in phases:
        order.append(("soak", 1))
    total = sum(lengths[p] for p, _ in order)
    log(f"agent.py: {len(order)} phases, ~{total / 60:.1f} min of agent time; sprof {args.sprof}")
    runs = []
    try:
        for p, i in order:
            runs.append(bench.run_phase(p, lengths[p], i))
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    finally:
        bench.cleanup()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = mono() - t0
    if not runs:
        return 1
    text = render(runs, args, elapsed, sys.argv[1:])
    with open(args.results, "w") as f:
        f.write(text)
    log(f"wrote {args.results}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1, default=str)
    crashed = [f"{r['phase']} run {r['run']}" for r in runs if not r["alive_until_term"] or r["exit_status"] != 0]
    unreadable = [f"{r['phase']} run {r['run']}" for r in runs if not r["readable"]]
    if crashed:
        log(f"agent crashed or failed to stop cleanly: {', '.join(crashed)}")
    if unreadable:
        log(f"unreadable windows: {', '.join(unreadable)}")
    return 1 if crashed or unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
