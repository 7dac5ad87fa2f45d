#!/usr/bin/env python3
"""`sprof agent` beside processes that abuse a profiler's resources: its memory and CPU with
each abuse fixture (Tests/Fixtures/abuse.c) against the same run without it. Root, from the
package root:

    swift build -c release --product sprof --scratch-path .build-bench
    sudo python3 bench/abuse.py --sprof .build-bench/release/sprof            # ~9 min; writes bench/ABUSE-RESULTS.md
    sudo python3 bench/abuse.py --sprof ... --runs 1 --seconds 30 --out /tmp/abuse.md   # quick

Phases, each --runs times (default 3), each a fresh agent (own store, empty config):

    sprof agent --config EMPTY --store DIR --http 127.0.0.1:PORT -F 99 --window 5s --cpu-budget 100%

    none      `chain 600` (main -> run -> level1 -> level2 -> leaf_hot) alone
    maps      chain + `abuse maps`: 60,000 mappings (its own executable mapped page by page, r-x,
              between anonymous rw- pages), and a fresh executable page run every 100 ms
    ehframe   chain + the `.eh_frame` fixture: one FDE with 100 MiB of CFI rows over 35 MB of code
    threads   chain + `abuse threads`: short-lived threads, 4 at a time, each with a new name

99 Hz and 5 s windows so that a minute holds a dozen windows and enough samples of each abuser.
The workloads start first; the agent runs --seconds (default 45) and is stopped with SIGTERM.
Measured: the agent's CPU (utime+stime from /proc/PID/stat) from 10 s after launch to the last
poll before SIGTERM, as % of one core; VmRSS every second after those 10 s (median and max);
VmHWM (the peak) just before SIGTERM; RssAnon every second (the agent's own heap: VmRSS and VmHWM
also count the file pages of every binary it maps to read CFI and symbols, shared with the processes
that run them; on a machine running compilers that is most of it); /metrics just before SIGTERM (windows written, lost
samples, sprof_agent_shed_total by kind). Medians over the runs. Only the standard library; it
kills only the processes it started.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASES = ["none", "maps", "ehframe", "threads"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 (proc(5))


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == key:
                    return int(v.split()[0])
    except OSError:
        return None
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def build(work):
    cc = ["gcc", "-O2", "-fomit-frame-pointer", "-g", "-pthread"]
    fx = os.path.join(ROOT, "Tests", "Fixtures")
    subprocess.run(cc + ["-o", f"{work}/chain", f"{fx}/chain.c"], check=True)
    subprocess.run(cc + ["-o", f"{work}/abuse", f"{fx}/abuse.c"], check=True)
    t0 = time.monotonic()
    subprocess.run([f"{work}/abuse", "ehframe-gen", work, "100"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(cc + ["-o", f"{work}/ehframe", f"{fx}/abuse.c", f"{work}/big.s", "-DBIG_CODE"], check=True)
    os.unlink(f"{work}/rows.bin")
    log(f"built the .eh_frame fixture ({os.path.getsize(work + '/ehframe') / 1e6:.0f} MB) in {time.monotonic() - t0:.1f} s")


def abuser(phase, work):
    return {"none": None,
            "maps": [f"{work}/abuse", "maps", "3600"],
            "ehframe": [f"{work}/ehframe", "3600"],
            "threads": [f"{work}/abuse", "threads", "3600"]}[phase]


def one_run(sprof, phase, work, seconds):
    d = tempfile.mkdtemp(prefix=f"sprof-abuse-{phase}-")
    started = []
    try:
        open(f"{d}/empty.toml", "w").close()
        started.append(subprocess.Popen([f"{work}/chain", "3600"], stdout=subprocess.DEVNULL))
        argv = abuser(phase, work)
        if argv:
            started.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
        time.sleep(1)  # the abuser sets itself up (60,000 mmap calls take ~0.3 s)
        port = free_port()
        env = dict(os.environ, SPROF_RUNTIME_DIR=f"{d}/run")
        agent = subprocess.Popen([sprof, "agent", "--config", f"{d}/empty.toml", "--store", f"{d}/store",
                                  "--http", f"127.0.0.1:{port}", "-F", "99", "--window", "5s", "--cpu-budget", "100%"],
                                 stdout=subprocess.DEVNULL, stderr=open(f"{d}/agent.log", "w"), env=env)
        t0 = time.monotonic()
        rss, anon, cpu0, last = [], [], None, None
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            if agent.poll() is not None:
                break
            now = time.monotonic() - t0
            if now >= 10:
                c = cpu_seconds(agent.pid)
                if cpu0 is None:
                    cpu0 = (now, c)
                last = (now, c)
                kb = status_kb(agent.pid, "VmRSS")
                if kb:
                    rss.append(kb / 1024)
                kb = status_kb(agent.pid, "RssAnon")
                if kb:
                    anon.append(kb / 1024)
        hwm = status_kb(agent.pid, "VmHWM")
        metrics = scrape(port)
        alive = agent.poll() is None
        agent.send_signal(signal.SIGTERM)
        try:
            status = agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
            status = agent.wait()
        cpu = 100 * (last[1] - cpu0[1]) / (last[0] - cpu0[0]) if cpu0 and last and last[0] > cpu0[0] else None
        with open(f"{d}/agent.log") as f:
            shed_lines = [l.strip() for l in f if "shed:" in l]
        return {"cpu": cpu, "rss_median": statistics.median(rss) if rss else None, "rss_max": max(rss) if rss else None,
                "hwm": hwm / 1024 if hwm else None,
                "anon_median": statistics.median(anon) if anon else None, "anon_max": max(anon) if anon else None, "alive": alive, "status": status, "metrics": metrics, "shed_lines": shed_lines}
    finally:
        for p in started:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="{:.1f}"):
    return "–" if x is None else spec.format(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sprof", default=os.path.join(ROOT, ".build-bench/release/sprof"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=45)
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "ABUSE-RESULTS.md"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the agent loads BPF programs)")
    work = tempfile.mkdtemp(prefix="sprof-abuse-bench-")
    began = time.time()
    try:
        build(work)
        phases = args.phases.split(",")
        results = {p: [] for p in phases}
        for r in range(args.runs):
            for p in phases:  # interleaved: drift on a shared machine falls on every phase alike
                log(f"run {r + 1}/{args.runs}: {p}")
                results[p].append(one_run(args.sprof, p, work, args.seconds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kinds = ["mappings", "unwind_tables", "unwind_samples", "thread_names"]
    lines = ["# sprof agent beside resource abusers (bench/abuse.py)", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime(began))} UTC on {os.uname().nodename}: kernel {os.uname().release}, "
             f"{os.cpu_count()} CPUs; {(time.time() - began) / 60:.1f} min in all.",
             f"Command: `{' '.join(sys.argv)}` (binary {args.sprof}); {args.runs} runs of {args.seconds:g} s per phase, "
             "interleaved; the agent at 99 Hz, 5 s windows, --cpu-budget 100%. Medians over the runs; "
             "CPU is % of one core from 10 s after launch; MB = MiB here.", "",
             "| phase | agent CPU % | RSS median MB | RSS max MB | peak (VmHWM) MB | RssAnon median MB | RssAnon max MB | windows written | samples | lost samples | "
             + " | ".join(f"shed {k}" for k in kinds) + " | alive, exit 0 |",
             "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(kinds) + "---|"]
    written_key = 'sprof_agent_windows_written_total{sink="store"}'
    for p, runs in results.items():
        def m(key):
            return med([r["metrics"].get(key) for r in runs])
        cells = [p, fmt(med([r["cpu"] for r in runs]), "{:.2f}"), fmt(med([r["rss_median"] for r in runs])),
                 fmt(med([r["rss_max"] for r in runs])), fmt(med([r["hwm"] for r in runs])),
                 fmt(med([r["anon_median"] for r in runs])), fmt(med([r["anon_max"] for r in runs])),
                 fmt(m(written_key), "{:.0f}"), fmt(m("sprof_agent_samples_total"), "{:.0f}"),
                 fmt(m("sprof_agent_lost_samples_total"), "{:.0f}")]
        cells += [fmt(m('sprof_agent_shed_total{kind="%s"}' % k), "{:.0f}") for k in kinds]
        cells.append("%d/%d" % (sum(1 for r in runs if r["alive"] and r["status"] == 0), len(runs)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per run (CPU %, RSS median / max / peak MB, RssAnon median / max MB):", ""]
    for p, runs in results.items():
        lines.append(f"- {p}: " + "; ".join(f"{fmt(r['cpu'], '{:.2f}')}%, {fmt(r['rss_median'])} / {fmt(r['rss_max'])} / {fmt(r['hwm'])}, "
                                            f"{fmt(r['anon_median'])} / {fmt(r['anon_max'])}" for r in runs))
    said = sorted({l for runs in results.values() for r in runs for l in r["shed_lines"]})
    if said:
        lines += ["", "What the agents logged about shedding (every distinct line):", ""] + [f"    {l}" for l in said[:20]]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
