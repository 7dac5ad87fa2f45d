#!/usr/bin/env python3
"""ClickHouse ingest with the real agent: samples/s written and bytes per sample stored.

Starts Debian's clickhouse-server (18.16) on a free loopback port with a config in a temporary
directory (as Tests/SprofTests/ClickHouseTests.swift does), runs `sprof agent --clickhouse URL
--no-store` system-wide with a few busy processes (Tests/Fixtures/chain.c, no frame pointers) at
each rate, stops it with SIGTERM (the open window is flushed), and reads from the server:

- rows and samples in sprof_samples, stacks in sprof_stacks;
- bytes on disk of both tables' active parts (system.parts), as inserted and after
  OPTIMIZE TABLE ... FINAL (ReplacingMergeTree drops the repeated stacks then);
- samples/s written = samples / the agent's running time.

A sample here is one sampled stack (the `samples` column sums them); a row is a (window, stack,
labels) sum. The sink's own capacity on synthetic windows is printed by the ClickHouse tests
(ClickHouseTests.testIngestRateAndBytesPerSample).

    sudo python3 bench/clickhouse.py [--sprof PATH] [-d SECONDS] [--rates 19,999] [--results FILE]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(directory):
    port = free_port()
    for d in ("log", "data", "tmp", "user_files", "format_schemas"):
        os.makedirs(os.path.join(directory, d), exist_ok=True)
    with open(os.path.join(directory, "config.xml"), "w") as f:
        f.write(f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{directory}/log/server.log</log><errorlog>{directory}/log/error.log</errorlog></logger>
  <http_port>{port}</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{directory}/data/</path>
  <tmp_path>{directory}/tmp/</tmp_path>
  <user_files_path>{directory}/user_files/</user_files_path>
  <format_schema_path>{directory}/format_schemas/</format_schema_path>
  <users_config>{directory}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
</yandex>
""")
    with open(os.path.join(directory, "users.xml"), "w") as f:
        f.write("""<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
""")
    proc = subprocess.Popen(["/usr/sbin/clickhouse-server", f"--config-file={directory}/config.xml"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/ping", timeout=1).read().strip() == b"Ok.":
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("clickhouse-server did not answer /ping within 30 s")


def query(url, sql):
    req = urllib.request.Request(url + "/", data=sql.encode(), method="POST")
    return urllib.request.urlopen(req, timeout=60).read().decode()


def sizes(url):
    out = {}
    for line in query(url, "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active AND database = 'default' "
                           "AND table IN ('sprof_samples', 'sprof_stacks') GROUP BY table FORMAT TSV").splitlines():
        table, rows, size = line.split("\t")
        out[table] = (int(rows), int(size))
    return out


def build_chain(work):
    exe = os.path.join(work, "chain")
    subprocess.check_call(["gcc", "-O2", "-fomit-frame-pointer", "-g", "-o", exe, os.path.join(ROOT, "Tests/Fixtures/chain.c")])
    return exe


def run_rate(sprof, url, rate, seconds, busy, work):
    procs = [subprocess.Popen([busy, str(seconds + 30)], stdout=subprocess.DEVNULL) for _ in range(4)]
    agent = subprocess.Popen([sprof, "agent", "--config", "/dev/null", "--no-store", "--http", "off", "-F", str(rate),
                              "--cpu-budget", "100%", "--clickhouse", url, "--clickhouse-spool", os.path.join(work, f"spool-{rate}"),
                              "--label", f"bench=rate{rate}"], stderr=subprocess.PIPE, text=True)
    start = time.time()
    time.sleep(seconds)
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=60)
    elapsed = time.time() - start
    for p in procs:
        p.kill()
        p.wait()
    rows, samples = (int(x) for x in query(url, f"SELECT count(), sum(samples) FROM sprof_samples WHERE labels.value[indexOf(labels.key, 'bench')] = 'rate{rate}' FORMAT TSV").split())
    return {"rate": rate, "seconds": round(elapsed, 1), "rows": rows, "samples": samples,
            "samples_per_s": samples / elapsed, "rows_per_s": rows / elapsed, "agent_status": agent.returncode,
            "agent_log_tail": err.strip().splitlines()[-3:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sprof", default=os.environ.get("SPROF", os.path.join(ROOT, ".build-bench/release/sprof")))
    ap.add_argument("-d", "--duration", type=float, default=60)
    ap.add_argument("--rates", default="19,999")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench/CLICKHOUSE-RESULTS.md"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/clickhouse.py: run as root (the agent loads BPF)")
    if not os.path.exists("/usr/sbin/clickhouse-server"):
        sys.exit("bench/clickhouse.py: clickhouse-server is missing (apt-get install clickhouse-server)")
    work = tempfile.mkdtemp(prefix="sprof-bench-ch-")
    server, url = start_server(os.path.join(work, "server"))
    runs = []
    try:
        busy = build_chain(work)
        for rate in (int(r) for r in a.rates.split(",")):
            r = run_rate(a.sprof, url, rate, a.duration, busy, work)
            print(json.dumps(r), file=sys.stderr)
            runs.append(r)
        inserted = sizes(url)
        query(url, "OPTIMIZE TABLE sprof_samples FINAL")
        query(url, "OPTIMIZE TABLE sprof_stacks FINAL")
        optimized = sizes(url)
    finally:
        server.terminate()
        server.wait(timeout=30)
    total_samples = sum(r["samples"] for r in runs)
    total_rows = sum(r["rows"] for r in runs)
    kernel = os.uname().release

    def bytes_line(what, s):
        b = sum(v[1] for v in s.values())
        return (f"| {what} | {s.get('sprof_samples', (0, 0))[0]:,} | {s.get('sprof_stacks', (0, 0))[0]:,} | {b:,} | "
                f"{b / max(total_rows, 1):.1f} | {b / max(total_samples, 1):.2f} |")

    lines = [
        "# ClickHouse ingest with the real agent (bench/clickhouse.py)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Linux {kernel}, {os.cpu_count()} CPUs, clickhouse-server 18.16 on loopback; "
        f"`sprof agent --no-store --clickhouse URL -F RATE --cpu-budget 100%` for {a.duration:.0f} s per rate, system-wide, "
        "with 4 busy `chain` processes (Tests/Fixtures/chain.c).",
        "",
        "| rate (Hz per CPU) | samples written | rows | samples/s | rows/s | agent exit |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(f"| {r['rate']} | {r['samples']:,} | {r['rows']:,} | {r['samples_per_s']:.0f} | {r['rows_per_s']:.1f} | {r['agent_status']} |")
    lines += [
        "",
        "Bytes on disk (both tables, active parts; all rates together):",
        "",
        "| when | sample rows | stack rows | bytes | bytes/row | bytes/sample |",
        "|---|---:|---:|---:|---:|---:|",
        bytes_line("as inserted", inserted),
        bytes_line("after OPTIMIZE FINAL", optimized),
        "",
        "A row sums one stack's samples for one (window, labels), so bytes per sample depend on how many",
        "distinct stacks and processes a window holds: these busy loops repeat a few stacks, a real server
        "has fewer samples per row. The sink's own capacity (synthetic windows of 20 processes with",
        "varied stacks, no sampling) is printed by `swift test --filter testIngestRateAndBytesPerSample`.",
    ]
    with open(a.results, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
