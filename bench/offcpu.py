#!/usr/bin/env python3
"""Cost per context switch of `sprof record --off-cpu`, side by side with perf's way of doing it.

Run as root from the package root (see bench/README.md, "Off-CPU"):

    swift build -c release --product sprof --scratch-path .build-bench
    sudo python3 bench/offcpu.py                    # ~8 minutes, prints markdown tables
    sudo python3 bench/offcpu.py --write-results    # also bench/results-YYYY-MM-DD-offcpu.md

The workload is bench/pingpong.c: two threads bouncing one byte over two pipes, in two modes:
`same` (both threads on CPU 0: every round trip is two direct thread-to-thread switches) and
`split` (CPU 0 and CPU 1: every wait goes through the idle task, so the machine does two more
switches per round trip than the target's threads). Each mode runs unthrottled (as many
switches as the CPUs allow) and throttled to `--rate` round trips per second (25,000 = ~50,000
switches of the target per second).

One pingpong runs for each (mode, rate) block; in each of `-r` rounds, five configurations are
measured one after another, the order rotating each round:

    none      no profiler
    sprof     sprof record -p PID -d 120 -o F                           (on-CPU sampling only)
    offcpu    sprof record --off-cpu -p PID -d 120 -o F                 (default threshold, 1000 µs)
    offcpu0   sprof record --off-cpu --off-cpu-min-us 0 -p PID -d 120 -o F   (every wait recorded)
    perf      perf record --off-cpu -p PID -o F            if this perf has BPF skeletons, else
              perf record -e sched:sched_switch --call-graph dwarf -p PID -o F

A profiler is started, the script waits until it is attached (sprof: its BPF programs have run;
perf: its output file grows), waits 0.3 s more, then measures a window of `-w` seconds and stops
the profiler with SIGINT (both write their files on SIGINT). In the window, from two snapshots:

  * round trips: pingpong's counter, read through /proc/PID/mem (pingpong prints its address);
  * the target's context switches: voluntary_ctxt_switches + nonvoluntary_ctxt_switches of
    both threads (/proc/PID/task/*/status), and its CPU time (sum_exec_runtime, schedstat);
  * sprof's BPF programs: run_time_ns and run_cnt from /proc/SPROF_PID/fdinfo (the counters
    `bpftool prog show` prints; kernel.bpf_stats_enabled=1 for the whole run), names from bpftool;
  * the profiler's own CPU time (schedstat of all its threads) and the machine's steal time.

Added cost per context switch, two ways:
  (a) throughput: (median wall µs per round trip - the no-profiler median) / switches per
      round trip; also the same from the target's CPU time per round trip (the time BPF
      programs run in the target's context is charged to it); in the throttled blocks the
      rate is fixed, so only the CPU-time form says anything;
  (b) BPF: sum over sprof's programs of Δrun_time_ns / Δ(target switches) — includes runs on
      other tasks' switches and syscalls (the programs run machine-wide and filter by pid).

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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
CONFIGS = ["none", "sprof", "offcpu", "offcpu0", "perf"]
LABEL = {"none": "no profiler", "sprof": "sprof (on-CPU only)", "offcpu": "sprof --off-cpu (1000 µs)",
         "offcpu0": "sprof --off-cpu --off-cpu-min-us 0", "perf": "perf"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def mono():
    return time.monotonic_ns()


# ---------------------------------------------------------------- /proc readers

def read_trips(pid, addr):
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
        f.seek(addr)
        return struct.unpack("<Q", f.read(8))[0]


def tasks_of(pid):
    try:
        return os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []


def cpu_ns(pid):
    """sum_exec_runtime of every thread of pid (ns, exact)."""
    total = 0
    for tid in tasks_of(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def ctx_switches(pid):
    """(voluntary, involuntary) context switches summed over the threads of pid."""
    vol = inv = 0
    for tid in tasks_of(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        inv += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return vol, inv


def cpu_times():
    """(total jiffies, steal jiffies) of the machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[7]


def prog_fds(pid):
    """{prog_id: {type, run_time_ns, run_cnt}} for the BPF program fds a process holds."""
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


_names = {}


def prog_name(prog_id, ptype):
    if prog_id in _names:
        return _names[prog_id]
    name = None
    if shutil.which("bpftool"):
        try:
            r = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "--json"],
                               capture_output=True, text=True, timeout=5)
            name = json.loads(r.stdout).get("name")
        except Exception:
            name = None
    _names[prog_id] = name or f"type{ptype}#{prog_id}"
    return _names[prog_id]


def snapshot(target, addr, prof=None):
    tot, steal = cpu_times()
    s = {"t": mono(), "trips": read_trips(target, addr), "cpu": cpu_ns(target),
         "ctx": ctx_switches(target), "jiffies": tot, "steal": steal}
    if prof is not None:
        s["prof_cpu"] = cpu_ns(prof)
        s["progs"] = prog_fds(prof)
    return s


# ---------------------------------------------------------------- perf.data reader

PERF_RECORD_LOST, PERF_RECORD_SAMPLE, PERF_RECORD_LOST_SAMPLES = 2, 9, 13


def read_perf_data(path):
    """Samples and lost samples of a perf.data file, read directly (as bench/capture.py does)."""
    samples = lost = lost_samples = 0
    with open(path, "rb") as f:
        head = f.read(104)
        if head[:8] != b"PERFILE2":
            raise ValueError(f"{path}: not a perf.data file")
        data_off, data_sz = struct.unpack_from("<QQ", head, 40)
        pos, end = data_off, data_off + data_sz
        while pos + 8 <= end:
            f.seek(pos)
            hdr = f.read(24)
            if len(hdr) < 8:
                break
            typ, _misc, size = struct.unpack_from("<IHH", hdr)
            if size == 0:
                break
            if typ == PERF_RECORD_SAMPLE:
                samples += 1
            elif typ == PERF_RECORD_LOST:
                lost += struct.unpack_from("<Q", hdr, 16)[0]
            elif typ == PERF_RECORD_LOST_SAMPLES:
                lost_samples += struct.unpack_from("<Q", hdr, 8)[0]
            pos += size
    # LOST counts ring-buffer overflows, LOST_SAMPLES the per-event counter read at the end;
    # both see the same drops, so take the larger rather than the sum.
    return samples, max(lost, lost_samples)


# ---------------------------------------------------------------- sprof summary

def parse_sprof_summary(text):
    r = {}
    m = re.search(r"sprof: (\d+) samples, (\d+) lost, ([\d.]+) s, ([\d.]+) (kB|MB) written", text)
    if m:
        r["samples"], r["lost"], r["rec_s"] = int(m.group(1)), int(m.group(2)), float(m.group(3))
        r["bytes"] = float(m.group(4)) * (1e3 if m.group(5) == "kB" else 1e6)
    m = re.search(r"off-CPU via ([^:]+): (\d+) waits recorded, (\d+) shorter than", text)
    if m:
        r["attach"], r["waits"], r["short"] = m.group(1), int(m.group(2)), int(m.group(3))
        m2 = re.search(r"(\d+) without a user stack", text)
        r["no_ustack"] = int(m2.group(1)) if m2 else 0
        m2 = re.search(r"(\d+) lost to full maps", text)
        r["map_full"] = int(m2.group(1)) if m2 else 0
    return r


# ---------------------------------------------------------------- runs

class Bench:
    def __init__(self, args, workdir):
        self.args, self.workdir = args, workdir
        self.children = []

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.children.append(p)
        return p

    def wait_rusage(self, p, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                return p.returncode, ru.ru_utime + ru.ru_stime
            time.sleep(0.02)
        p.kill()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        return p.returncode, ru.ru_utime + ru.ru_stime

    def window(self, target, addr, prof=None):
        s0 = snapshot(target, addr, prof)
        time.sleep(self.args.window)
        s1 = snapshot(target, addr, prof)
        return s0, s1

    def run(self, cfg, target, addr):
        a = self.args
        if cfg == "none":
            time.sleep(0.3)
            s0, s1 = self.window(target, addr)
            return measure(s0, s1)
        if cfg == "perf":
            out = os.path.join(self.workdir, "perf.data")
            argv = [a.perf, "record"] + a.perf_args + ["-p", str(target), "-o", out]
        else:
            out = os.path.join(self.workdir, "out.pb.gz")
            argv = [a.sprof, "record"] + {"sprof": [], "offcpu": ["--off-cpu"],
                                          "offcpu0": ["--off-cpu", "--off-cpu-min-us", "0"]}[cfg] \
                + ["-p", str(target), "-d", "120", "-o", out]
        errpath = os.path.join(self.workdir, "prof.err")
        launch = time.time()
        with open(errpath, "w") as err:
            p = self.spawn(argv, stdout=subprocess.DEVNULL, stderr=err)
            attached = self.wait_attached(cfg, p, out)
            time.sleep(0.3)
            s0, s1 = self.window(target, addr, p.pid)
            stop_at = time.time()
            p.send_signal(signal.SIGINT)
            rc, cpu = self.wait_rusage(p, 300)
        text = open(errpath, errors="replace").read()
        if rc not in (0, -signal.SIGINT):  # perf re-raises SIGINT after writing its file
            raise RuntimeError(f"{cfg} failed ({rc}): {' '.join(argv)}\n{text}")
        r = measure(s0, s1)
        r.update(prof_cpu_total=cpu, prof_wall=time.time() - launch, attach_s=attached,
                 stop_s=time.time() - stop_at)
        if cfg == "perf":
            r["bytes"] = os.path.getsize(out)
            r["samples"], r["lost"] = read_perf_data(out)
            m = re.search(r"lost ([\d.]+)%", text)
            r["perf_lost_pct_msg"] = float(m.group(1)) if m else 0.0
            r["rec_s"] = r["prof_wall"] - r["stop_s"]  # roughly: launch to SIGINT
        else:
            r.update(parse_sprof_summary(text))
        r["stderr"] = text.strip()[-600:]
        os.unlink(out)
        return r

    def wait_attached(self, cfg, p, out, timeout=15):
        """Seconds from launch until the profiler is seen working (None: gave up, measured anyway)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if p.poll() is not None:
                return None
            if cfg == "perf":
                try:
                    if os.path.getsize(out) > (1 << 20):
                        return time.time() - t0
                except FileNotFoundError:
                    pass
            else:
                progs = prog_fds(p.pid)
                sample = [v for v in progs.values() if v["type"] == 7]
                tracing = [v for v in progs.values() if v["type"] != 7]
                if sample and all(v["run_cnt"] > 0 for v in sample) and \
                        (cfg == "sprof" or any(v["run_cnt"] > 0 for v in tracing)):
                    took = time.time() - t0
                    for i, v in progs.items():  # names now, while the programs are loaded
                        prog_name(i, v["type"])
                    return took
            time.sleep(0.02)
        return None


def measure(s0, s1):
    dt = (s1["t"] - s0["t"]) / 1e9
    trips = s1["trips"] - s0["trips"]
    vol = s1["ctx"][0] - s0["ctx"][0]
    inv = s1["ctx"][1] - s0["ctx"][1]
    sw = vol + inv
    r = {"dt": dt, "trips": trips, "switches": sw, "vol": vol, "inv": inv,
         "sw_rate": sw / dt, "rt_rate": trips / dt, "sw_per_rt": sw / max(1, trips),
         "wall_us_rt": 1e6 * dt / max(1, trips), "cpu_us_rt": (s1["cpu"] - s0["cpu"]) / 1e3 / max(1, trips),
         "target_cpu_frac": (s1["cpu"] - s0["cpu"]) / 1e9 / dt,
         "steal_pct": 100 * (s1["steal"] - s0["steal"]) / max(1, s1["jiffies"] - s0["jiffies"])}
    if "prof_cpu" in s0:
        r["prof_cpu_frac"] = (s1["prof_cpu"] - s0["prof_cpu"]) / 1e9 / dt
        progs = {}
        for pid_, v1 in s1["progs"].items():
            v0 = s0["progs"].get(pid_)
            if v0 is None:
                continue
            runs = v1["run_cnt"] - v0["run_cnt"]
            ns = v1["run_time_ns"] - v0["run_time_ns"]
            progs[prog_name(pid_, v1["type"])] = {"runs": runs, "ns": ns}
        if progs:  # perf holds no BPF programs
            r["progs"] = progs
            r["bpf_ns"] = sum(v["ns"] for v in progs.values())
            r["bpf_ns_per_sw"] = r["bpf_ns"] / max(1, sw)
            ss = [v["runs"] for n, v in progs.items() if n.startswith("sprof_offcpu")]
            if ss and ss[0] > 0:  # per switch of the machine (the sched_switch program's runs)
                r["bpf_ns_per_msw"] = r["bpf_ns"] / ss[0]
    return r


# ---------------------------------------------------------------- perf probe

def probe_perf(bench, perf, pingpong):
    """Does `perf record --off-cpu` work here? Returns (works, what perf said)."""
    pp = bench.spawn([pingpong, "3", "same"], stdout=subprocess.PIPE, text=True)
    line = pp.stdout.readline()
    pid = int(re.search(r"pid=(\d+)", line).group(1))
    out = os.path.join(bench.workdir, "probe.data")
    r = subprocess.run([perf, "record", "--off-cpu", "-p", str(pid), "-o", out, "--", "sleep", "0.5"],
                       capture_output=True, text=True)
    pp.wait()
    said = (r.stderr or "").strip()
    works = r.returncode == 0 and "ignored" not in said and "BUILD_BPF_SKEL" not in said
    if works and os.path.exists(out):
        h = subprocess.run([perf, "evlist", "-i", out], capture_output=True, text=True).stdout
        works = "offcpu-time" in h
        said += " | evlist: " + h.strip().replace("\n", ", ")
    if os.path.exists(out):
        os.unlink(out)
    return works, said


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sprof", default=os.path.join(ROOT, ".build-bench", "release", "sprof"))
    ap.add_argument("--perf", default=shutil.which("perf"))
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("-r", "--reps", type=int, default=5, help="rounds per block (default 5)")
    ap.add_argument("-w", "--window", type=float, default=3.0, help="seconds measured per run (default 3)")
    ap.add_argument("--modes", default="same,split")
    ap.add_argument("--rates", default="max,25000",
                    help="round trips per second per block; max = unthrottled (default max,25000)")
    ap.add_argument("--write-results", action="store_true",
                    help="also write bench/results-DATE-offcpu.md")
    ap.add_argument("--json", help="write every run's raw numbers here")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("offcpu.py: run as root (BPF, perf -p, kernel.bpf_stats_enabled)")
    if not os.access(args.sprof, os.X_OK):
        sys.exit(f"offcpu.py: no sprof at {args.sprof}; build it first:\n"
                 "  swift build -c release --product sprof --scratch-path .build-bench")
    if os.cpu_count() < 2:
        sys.exit("offcpu.py: needs 2 CPUs (split mode pins the threads to CPU 0 and 1)")
    if args.no_perf or not args.perf:
        args.perf = None
    configs = [c for c in CONFIGS if c != "perf" or args.perf]

    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    workdir = tempfile.mkdtemp(prefix="sprof-bench-offcpu-")
    bench = Bench(args, workdir)
    with open(STATS_SYSCTL) as f:
        stats_before = f.read().strip()
    results, blocks = [], []
    t_begin = time.time()
    steal0 = cpu_times()
    loadavg = open("/proc/loadavg").read().split()[:3]
    args.perf_note = None
    try:
        cc = shutil.which("gcc") or shutil.which("cc")
        pingpong = os.path.join(workdir, "pingpong")
        subprocess.run([cc, "-O2", "-pthread", "-o", pingpong, os.path.join(HERE, "pingpong.c")], check=True)
        if args.perf:
            works, said = probe_perf(bench, args.perf, pingpong)
            if works:
                args.perf_args, args.perf_mode = ["--off-cpu"], "perf record --off-cpu"
            else:
                args.perf_args = ["-e", "sched:sched_switch", "--call-graph", "dwarf"]
                args.perf_mode = "perf record -e sched:sched_switch --call-graph dwarf"
            args.perf_note = f"`perf record --off-cpu -p PID` {'works' if works else 'does not work'} here; it said: " \
                             + said.replace("\n", " ")[:300]
            log(f"perf: {args.perf_note}\nperf: using `{args.perf_mode}`")
        with open(STATS_SYSCTL, "w") as f:
            f.write("1")
        log(f"kernel.bpf_stats_enabled: {stats_before} -> 1 (restored at exit); workdir {workdir}")

        for mode in args.modes.split(","):
            for rate in args.rates.split(","):
                rnum = 0 if rate == "max" else float(rate)
                life = args.reps * len(configs) * (args.window + 15) + 60
                pp = bench.spawn([pingpong, str(life), mode, str(rnum)], stdout=subprocess.PIPE, text=True)
                line = pp.stdout.readline()
                m = re.search(r"pid=(\d+) trips_addr=(0x[0-9a-f]+)", line)
                if not m:
                    raise RuntimeError(f"pingpong said: {line!r}")
                target, addr = int(m.group(1)), int(m.group(2), 16)
                log(f"block {mode} rate={rate}: pingpong pid {target}")
                time.sleep(0.5)
                try:
                    for rep in range(args.reps):
                        k = rep % len(configs)
                        for cfg in configs[k:] + configs[:k]:
                            r = bench.run(cfg, target, addr)
                            r.update(mode=mode, rate=rate, cfg=cfg, rep=rep)
                            results.append(r)
                            extra = ""
                            if cfg != "none":
                                extra = f", prof {100 * r['prof_cpu_frac']:.1f}% CPU"
                            if "bpf_ns" in r:
                                extra += f", BPF {r['bpf_ns_per_sw']:.0f} ns/switch"
                            if "lost" in r:
                                extra += f", samples {r.get('samples')} lost {r.get('lost')}"
                            if "waits" in r:
                                extra += f", waits {r['waits']} short {r['short']} no_ustack {r['no_ustack']} map_full {r['map_full']}"
                            log(f"  {mode:5s} {rate:>5s} {cfg:7s} rep {rep}: {r['sw_rate']:,.0f} switches/s, "
                                f"{r['wall_us_rt']:.3f} µs/rt, {r['sw_per_rt']:.2f} sw/rt, steal {r['steal_pct']:.1f}%" + extra)
                            time.sleep(0.2)
                finally:
                    if pp.poll() is None:
                        pp.send_signal(signal.SIGTERM)
                    end_line = pp.stdout.read().strip()
                    pp.wait()
                    blocks.append({"mode": mode, "rate": rate, "pingpong": end_line})
                    log(f"  pingpong: {end_line}")
    except KeyboardInterrupt as e:
        log(f"offcpu.py: interrupted ({e}); partial results follow")
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(stats_before)
        for p in bench.children:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        log(f"kernel.bpf_stats_enabled restored to {stats_before}")

    steal1 = cpu_times()
    args.steal_total = 100 * (steal1[1] - steal0[1]) / max(1, steal1[0] - steal0[0])
    args.loadavg = loadavg
    elapsed = time.time() - t_begin
    report = render(results, blocks, args, configs, elapsed)
    print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    if args.write_results:
        path = os.path.join(HERE, f"results-{datetime.date.today().isoformat()}-offcpu.md")
        with open(path, "w") as f:
            f.write(report + "\n")
        log(f"wrote {path}")


# ---------------------------------------------------------------- tables

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="{:.0f}", none="–"):
    return none if x is None else spec.format(x)


def noise_notes(results, modes, rates, configs, args):
    """How much the machine moved: spread of the no-profiler runs, steal, and of the BPF column."""
    L = ["**Noise.** A 2-vCPU VM shared with other work (builds and tests of other people, the host's "
         f"other guests): steal time over the whole run {args.steal_total:.1f}% of the CPUs. "
         "The unthrottled blocks measure how fast the two threads can go, which moves with whatever else "
         "runs; the throttled blocks hold the rate, so there only the target's CPU time (a') and the BPF "
         "counters (b) say anything. Spread over the rounds (min–max):"]
    L.append("")
    for mode in modes:
        for rate in rates:
            g = [r for r in results if r["mode"] == mode and r["rate"] == rate]
            base = [r["sw_rate"] for r in g if r["cfg"] == "none"]
            parts = []
            if base:
                parts.append(f"no profiler {min(base):,.0f}–{max(base):,.0f} switches/s "
                             f"(±{50 * (max(base) - min(base)) / statistics.median(base):.0f}% of the median)")
                cpu = [r["cpu_us_rt"] for r in g if r["cfg"] == "none"]
                parts.append(f"its CPU {min(cpu):.2f}–{max(cpu):.2f} µs per round trip")
            for cfg in configs:
                b = [r["bpf_ns_per_sw"] for r in g if r["cfg"] == cfg and r.get("bpf_ns_per_sw") is not None]
                if b and cfg != "sprof":
                    parts.append(f"{cfg} BPF {min(b):.0f}–{max(b):.0f} ns/switch")
            noisy = [f"{r['cfg']} rep {r['rep']} {r['steal_pct']:.0f}%" for r in g if r["steal_pct"] > 2]
            if noisy:
                parts.append("steal > 2% in " + ", ".join(noisy))
            L.append(f"- {mode} {rate}: " + "; ".join(parts))
    L.append("")
    return L


def render(results, blocks, args, configs, elapsed):
    L = []
    u = os.uname()
    model = ""
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except StopIteration:
        pass
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except Exception:
        commit = "?"
    try:
        built = datetime.datetime.fromtimestamp(os.path.getmtime(args.sprof)).strftime("%Y-%m-%d %H:%M")
    except OSError:
        built = "?"
    L.append(f"# sprof off-CPU cost per context switch — {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    L.append("")
    L.append(f"{u.nodename}, Linux {u.release}, {os.cpu_count()} CPUs ({model}); `{args.sprof}` built {built} "
             f"(`swift build -c release --product sprof --scratch-path .build-bench`), HEAD {commit} when the "
             f"tables were written (the work tree may hold uncommitted changes). {args.reps} rounds per block, the five configurations in "
             f"rotating order, {args.window:g} s measured per run; medians; kernel.bpf_stats_enabled=1 throughout "
             f"(it adds two clock reads to every run of a BPF program, so to sprof's programs: it is inside "
             f"both (a) and (b)). Total {elapsed:.0f} s; load average at start {' '.join(args.loadavg)}; "
             f"steal time over the whole run {args.steal_total:.1f}% of the CPUs.")
    L.append("")
    L.append("Commands (PID = the pingpong process; each stopped with SIGINT after the window):")
    L.append("")
    L.append("```")
    L.append(f"sudo python3 bench/offcpu.py -r {args.reps} -w {args.window:g} --modes {args.modes} --rates {args.rates}"
             + (" --write-results" if args.write_results else ""))
    L.append("gcc -O2 -pthread -o pingpong bench/pingpong.c;  pingpong SECONDS same|split [ROUND_TRIPS_PER_S]")
    L.append("sprof record -p PID -d 120 -o F")
    L.append("sprof record --off-cpu -p PID -d 120 -o F")
    L.append("sprof record --off-cpu --off-cpu-min-us 0 -p PID -d 120 -o F")
    if args.perf:
        L.append(f"perf record {' '.join(args.perf_args)} -p PID -o F")
    L.append("```")
    L.append("")
    if args.perf_note:
        L.append(f"perf: {args.perf_note}")
        L.append("")

    def group(mode, rate, cfg):
        return [r for r in results if r["mode"] == mode and r["rate"] == rate and r["cfg"] == cfg]

    modes = args.modes.split(",")
    rates = args.rates.split(",")
    L.append("## Cost per context switch")
    L.append("")
    L.append("switches = the target's own context switches (both threads, voluntary + involuntary). "
             "Added µs/switch: (a) wall = Δ(µs per round trip) / switches per round trip against `none` "
             "(meaningless when throttled: the rate is fixed), (a') target CPU = the same with the "
             "target's CPU time per round trip; (b) BPF = sprof's programs' run time / target switches; "
             "BPF ns / machine switch = the same over the sched_switch program's runs (every switch on "
             "the machine in the window, idle and other tasks included).")
    L.append("")
    L.append("| mode | rate | config | switches/s | vs none | switches / round trip | µs / round trip | "
             "added µs/switch (a) wall | (a') target CPU | (b) BPF ns/switch | BPF ns / machine switch | profiler CPU % of a CPU | "
             "profiler CPU s total | lost (max) | off-CPU waits recorded / shorter | steal % |")
    L.append("|" + "---|" * 16)
    summary = {}
    for mode in modes:
        for rate in rates:
            base = group(mode, rate, "none")
            b_sw = med([r["sw_rate"] for r in base])
            b_wall = med([r["wall_us_rt"] for r in base])
            b_cpu = med([r["cpu_us_rt"] for r in base])
            for cfg in configs:
                g = group(mode, rate, cfg)
                if not g:
                    continue
                sw = med([r["sw_rate"] for r in g])
                spr = med([r["sw_per_rt"] for r in g])
                wall = med([r["wall_us_rt"] for r in g])
                cpu = med([r["cpu_us_rt"] for r in g])
                add_wall = (wall - b_wall) / spr if cfg != "none" and b_wall is not None and spr else None
                add_cpu = (cpu - b_cpu) / spr if cfg != "none" and b_cpu is not None and spr else None
                bpf = med([r.get("bpf_ns_per_sw") for r in g])
                bpfm = med([r.get("bpf_ns_per_msw") for r in g])
                pcpu = med([r.get("prof_cpu_frac") for r in g])
                ptot = med([r.get("prof_cpu_total") for r in g])
                lost = med([r.get("lost") for r in g])
                lost_max = max([r.get("lost") or 0 for r in g]) if cfg != "none" else None
                waits = med([r.get("waits") for r in g])
                short = med([r.get("short") for r in g])
                summary[(mode, rate, cfg)] = dict(sw=sw, add_wall=add_wall, add_cpu=add_cpu, bpf=bpf)
                L.append(f"| {mode} | {rate} | {LABEL[cfg] if cfg != 'perf' else args.perf_mode} | {fmt(sw, '{:,.0f}')} | "
                         f"{'–' if cfg == 'none' or not b_sw else f'{sw / b_sw:.2f}×'} | {fmt(spr, '{:.2f}')} | "
                         f"{fmt(wall, '{:.3f}')} | {fmt(add_wall, '{:+.3f}')} | {fmt(add_cpu, '{:+.3f}')} | "
                         f"{fmt(bpf, '{:.0f}')} | {fmt(bpfm, '{:.0f}')} | {fmt(None if pcpu is None else 100 * pcpu, '{:.1f}')} | "
                         f"{fmt(ptot, '{:.2f}')} | "
                         f"{'–' if cfg == 'none' else fmt(lost, '{:,.0f}') + ('' if lost_max == (lost or 0) else f' ({lost_max:,})')} | "
                         f"{'–' if waits is None else f'{waits:,.0f} / {short:,.0f}'} | "
                         f"{fmt(med([r['steal_pct'] for r in g]), '{:.1f}')} |")
    L.append("")

    L.extend(noise_notes(results, modes, rates, configs, args))

    # per program
    L.append("## sprof's BPF programs (Δrun_time_ns / Δrun_cnt inside the window)")
    L.append("")
    L.append("runs / switch = the program's runs per switch of the target (sched_switch runs on every switch "
             "of the machine: in `split` each wait also switches to and from idle, and other tasks count too; "
             "sys_exit runs on every syscall exit of the machine).")
    L.append("")
    L.append("| mode | rate | config | program | ns / run | runs / switch | ns / switch |")
    L.append("|---|---|---|---|---|---|---|")
    for mode in modes:
        for rate in rates:
            for cfg in ("sprof", "offcpu", "offcpu0"):
                g = group(mode, rate, cfg)
                names = sorted({n for r in g for n in r.get("progs", {})})
                for n in names:
                    per_run = med([r["progs"][n]["ns"] / r["progs"][n]["runs"] for r in g
                                   if n in r.get("progs", {}) and r["progs"][n]["runs"] > 0])
                    rps = med([r["progs"][n]["runs"] / max(1, r["switches"]) for r in g if n in r.get("progs", {})])
                    nps = med([r["progs"][n]["ns"] / max(1, r["switches"]) for r in g if n in r.get("progs", {})])
                    L.append(f"| {mode} | {rate} | {cfg} | {n} | {fmt(per_run, '{:.0f}')} | "
                             f"{fmt(rps, '{:.3f}')} | {fmt(nps, '{:.1f}')} |")
    L.append("")

    # drops at >= 50k switches/s
    L.append("## Drops")
    L.append("")
    for cfg in [c for c in configs if c != "none"]:
        g = [r for r in results if r["cfg"] == cfg]
        hi = [r for r in g if r["sw_rate"] >= 50000]
        hi_drop = [r for r in hi if (r.get("lost") or 0) > 0 or (r.get("map_full") or 0) > 0]
        hi_nou = [r for r in hi if (r.get("no_ustack") or 0) > 0]
        line = (f"- {LABEL[cfg] if cfg != 'perf' else args.perf_mode}: {len(hi)} of {len(g)} runs at ≥ 50,000 "
                f"switches/s; {len(hi_drop)} of those lost records"
                + ("" if not hi_drop else " (" + ", ".join(
                    f"{r['mode']}/{r['rate']} rep {r['rep']}: lost {r.get('lost'):,} of {(r.get('samples') or 0) + (r.get('lost') or 0):,}"
                    + (f", map full {r.get('map_full')}" if r.get('map_full') else "")
                    for r in hi_drop) + ")"))
        if cfg.startswith("offcpu"):
            line += (f"; {len(hi_nou)} had waits recorded without a user stack (the thread ran again before "
                     f"the deferred copy)" + ("" if not hi_nou else ": " + ", ".join(
                         f"{r['mode']}/{r['rate']} rep {r['rep']}: {r['no_ustack']} of {r['waits']:,}" for r in hi_nou)))
        L.append(line)
    L.append("")

    L.append("## Per run")
    L.append("")
    for b in blocks:
        L.append(f"- pingpong {b['mode']} rate={b['rate']} (whole block, all configurations): `{b['pingpong']}`")
    for mode in modes:
        for rate in rates:
            for cfg in configs:
                g = group(mode, rate, cfg)
                if not g:
                    continue
                parts = []
                for r in g:
                    s = f"{r['sw_rate']:,.0f}/s {r['wall_us_rt']:.3f} µs/rt cpu {r['cpu_us_rt']:.3f} µs/rt steal {r['steal_pct']:.0f}%"
                    if "bpf_ns" in r:
                        s += f" BPF {r['bpf_ns_per_sw']:.0f} ns/sw"
                    if cfg != "none":
                        s += f" prof {100 * r['prof_cpu_frac']:.0f}%/{r['prof_cpu_total']:.2f}s"
                    if "lost" in r:
                        s += f" samples {r.get('samples')} lost {r.get('lost')}"
                    if "waits" in r:
                        s += f" waits {r['waits']}/{r['short']}"
                        if r.get("no_ustack") or r.get("map_full"):
                            s += f" no_ustack {r['no_ustack']} map_full {r['map_full']}"
                    if cfg == "perf":
                        s += f" {r['bytes'] / 1e6:,.0f} MB"
                    parts.append(s)
                L.append(f"- {mode} {rate} {cfg}: " + "; ".join(parts))
    return "\n".join(L)


if __name__ == "__main__":
    main()
