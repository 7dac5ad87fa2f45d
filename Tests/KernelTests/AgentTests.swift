import Foundation
import SprofProfile
import SprofStore
import XCTest
@testable import SprofCapture

/// `sprof agent` as a server runs it: the real binary, the real BPF program
/// sampling every CPU, real processes with known call chains (no frame
/// pointers), a real store on disk, its HTTP endpoint over loopback, real
/// signals. Windows are 2 s so a test sees several in a few seconds.
final class AgentTests: XCTestCase {
    var sprof: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
    }

    /// A running agent, its stderr collected as it comes (the first line says where its page is).
    final class Agent: @unchecked Sendable {
        let process = Process()
        private let lock = NSLock()
        private var text = ""
        private let done = DispatchSemaphore(value: 0)

        init(_ sprof: String, _ args: [String], env: [String: String] = [:]) throws {
            process.executableURL = URL(fileURLWithPath: sprof)
            process.arguments = ["agent"] + args
            process.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let handle = err.fileHandleForReading
            Thread.detachNewThread { [self] in
                while true {
                    let d = handle.availableData
                    if d.isEmpty { break }
                    lock.lock(); text += String(decoding: d, as: UTF8.self); lock.unlock()
                }
                done.signal()
            }
        }

        var pid: Int32 { process.processIdentifier }
        var log: String { lock.lock(); defer { lock.unlock() }; return text }

        /// The page's base URL, from the start-up line.
        func pageURL(timeout: Double = 20) throws -> String {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if let r = log.range(of: "page http://") {
                    let rest = log[r.upperBound...]
                    if let end = rest.firstIndex(where: { $0 == "/" || $0 == ";" || $0 == "\n" }) {
                        return "http://" + rest[..<end]
                    }
                }
                if !process.isRunning { break }
                usleep(50_000)
            }
            throw XCTSkip("the agent did not say where its page is: \(log)")
        }

        /// Signals it and waits for it to exit; its status.
        func stop(_ sig: Int32 = SIGTERM, timeout: Double = 30) -> Int32? {
            kill(pid, sig)
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit(); return nil }
            _ = done.wait(timeout: .now() + 5)
            return process.terminationStatus
        }
    }


    /// Polls `condition` every 200 ms until it holds or `timeout` passes (the
    /// first window of a debug build names every binary on the machine: seconds).
    @discardableResult
    func waitFor(_ what: String, timeout: Double = 90, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            usleep(200_000)
        }
        XCTFail("waited \(timeout) s for \(what)")
        return false
    }

    func folded(_ p: Profile) -> [[String]: Int64] { p.foldedStacks() }

    func makeDirectory(_ name: String) throws -> String {
        let d = tempPath(name)
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    /// One agent run, system-wide: a process with a known chain and a storm
    /// of processes that live 20 ms each; sinks that are down (ClickHouse,
    /// Pyroscope on a closed port); SIGTERM. Checks the windows, their
    /// labels and stacks, the metrics, the page, and that the open window
    /// is written at the end.
    func testWindowsLabelsMetricsPageAndShutdown() throws {
        try requireKernelAccess()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw skipOrFailInCI("curl is missing (apt-get install curl)") }
        let chain = try Fixtures.build("chain")
        let exits = try Fixtures.build("exits")
        let dir = try makeDirectory("agent")
        let store = dir + "/store"
        let config = dir + "/agent.toml"
        try """
            frequency = 199
            window = "2s"
            cpu_budget = 1.0
            [labels]
            env = "test"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let fx = try FixtureProcess(chain, ["30"])
        _ = try fx.wait(for: "pid")
        let agent = try Agent(sprof, ["--config", config, "--store", store, "--http", "127.0.0.1:0",
                                      "--clickhouse", "http://127.0.0.1:1", "--clickhouse-spool", dir + "/spool",
                                      "--pyroscope", "http://127.0.0.1:1"],
                              env: ["SPROF_RUNTIME_DIR": dir + "/run"])
        let page = try agent.pageURL()
        XCTAssertEqual(try get(page + "/healthz"), "ok\n")

        // Past the first window (which names every binary on the machine once).
        try waitFor("the first window written") {
            metric(try get(page + "/metrics"), "sprof_agent_windows_written_total{sink=\"store\"}") ?? 0 >= 1
        }
        // Short-lived processes: 20 ms each, about 25 a second, for 4 s.
        var stormPids: Set<Int32> = []
        let stormEnd = Date().addingTimeInterval(4)
        var children: [Process] = []
        while Date() < stormEnd {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exits)
            p.arguments = ["0.02", "0"]
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            stormPids.insert(p.processIdentifier)
            children.append(p)
            usleep(40_000)
            children.removeAll { !$0.isRunning }
        }
        for c in children { c.waitUntilExit() }
        var metrics = ""
        try waitFor("two windows written") {
            metrics = try get(page + "/metrics")
            return metric(metrics, "sprof_agent_windows_written_total{sink=\"store\"}") ?? 0 >= 2
        }
        XCTAssertGreaterThan(metric(metrics, "sprof_agent_samples_total") ?? 0, 0, metrics)
        XCTAssertGreaterThanOrEqual(metric(metrics, "sprof_agent_windows_written_total{sink=\"store\"}") ?? 0, 2, metrics)
        XCTAssertNotNil(metric(metrics, "sprof_agent_rss_bytes"), metrics)
        XCTAssertEqual(metric(metrics, "sprof_agent_sampling_hz"), 199, metrics)
        // The page, from the store the agent is writing.
        let html = try get(page + "/?since=1h&where=comm%3Dchain")
        XCTAssertTrue(html.contains("windows merged"), html)

        let stoppedAt = Date()
        XCTAssertEqual(agent.stop(SIGTERM), 0, agent.log)
        XCTAssertTrue(agent.log.contains("stopped"), agent.log)
        // The sinks that were down: the agent said so and went on.
        XCTAssertTrue(agent.log.contains("clickhouse"), agent.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/agent-\(agent.pid)"), "the runtime directory is removed")

        let s = try ProfileStore(directory: store, create: false)
        let windows = try s.windows()
        XCTAssertGreaterThanOrEqual(windows.count, 4, "\(windows)")
        // The open window was written at SIGTERM: the last one ends after the signal.
        let lastEnd = Date(timeIntervalSince1970: Double(windows.map(\.endNanos).max() ?? 0) / 1e9)
        XCTAssertGreaterThan(lastEnd.timeIntervalSince(stoppedAt), -0.5, "last window ends \(lastEnd), stopped \(stoppedAt)")

        let all = try s.load()
        XCTAssertEqual(all.skipped, [], "every window is readable")
        let chainOnly = try s.load(where: [LabelMatch(parsing: "pid=\(fx.pid)")])
        XCTAssertGreaterThan(chainOnly.profile.samples.count, 0)
        let stacks = folded(chainOnly.profile)
        let total = stacks.values.reduce(0, +)
        let exact = stacks.filter { k, _ in
            let names = k.filter { !$0.hasSuffix("_[k]") }
            return names.suffix(5) == ["main", "run", "level1", "level2", "leaf_hot"]
        }.values.reduce(0, +)
        XCTAssertGreaterThan(Double(exact) / Double(max(total, 1)), 0.8, "exact chains: \(exact) of \(total): \(stacks.keys.prefix(5))")
        let labels = chainOnly.profile.samples[0].labels
        func label(_ k: String) -> Profile.Label? { labels.first { $0.key == k } }
        XCTAssertEqual(label("comm")?.string, "chain")
        XCTAssertEqual(label("exe")?.string, chain)
        XCTAssertEqual(label("env")?.string, "test")
        XCTAssertEqual(label("host")?.string, KernelInfo.hostname)
        XCTAssertNotNil(label("thread_name"))
        XCTAssertNotNil(label("cgroup"), "cgroup v2 is mounted here: \(labels)")
        XCTAssertNil(label("tid"), "windows are summed over threads")

        // Processes that lived 20 ms: named, by comm and by their frames.
        let short = try s.load(where: [LabelMatch(parsing: "comm=exits")]).profile
        let shortPids = Set(short.samples.compactMap { $0.labels.first { $0.key == "pid" }?.number }.map { Int32($0) })
        XCTAssertFalse(shortPids.intersection(stormPids).isEmpty, "samples of the short-lived processes: \(shortPids.count)")
        let shortStacks = folded(short)
        let shortTotal = shortStacks.values.reduce(0, +)
        let named = shortStacks.filter { $0.key.suffix(2) == ["main", "work"] }.values.reduce(0, +)
        print("AgentTests: samples of 20 ms processes with the full chain: \(named) of \(shortTotal)")
        // How many depends on how soon the agent's writer gets a CPU after a
        // sample (both are busy here): 69-85% when run alone, 33% in one CI run.
        // A process gone before its mappings were read keeps its comm only.
        XCTAssertGreaterThan(Double(named) / Double(max(shortTotal, 1)), 0.1,
                             "their frames are named: \(named) of \(shortTotal): \(Array(shortStacks.keys.prefix(5)))")
    }

    /// SIGHUP reloads the configuration (a new label shows in the next
    /// windows); kill -9 loses at most the open window and leaves nothing
    /// that breaks `report --store`; the next agent cleans up after it.
    func testReloadKillAndRestart() throws {
        try requireKernelAccess()
        let chain = try Fixtures.build("chain")
        let dir = try makeDirectory("agent-reload")
        let store = dir + "/store"
        let config = dir + "/agent.toml"
        let env = ["SPROF_RUNTIME_DIR": dir + "/run"]
        func writeConfig(_ value: String) throws {
            try "frequency = 199\nwindow = \"1s\"\ncpu_budget = 1.0\n[labels]\nphase = \"\(value)\"\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
        }
        try writeConfig("one")
        let fx = try FixtureProcess(chain, ["30"])
        _ = try fx.wait(for: "pid")
        let first = try Agent(sprof, ["--config", config, "--store", store, "--http", "off"], env: env)
        let s = try ProfileStore(directory: store)
        try waitFor("two windows") { try s.windows().count >= 2 }
        try writeConfig("two")
        kill(first.pid, SIGHUP)
        try waitFor("windows with the reloaded label") {
            try s.load(where: [LabelMatch(parsing: "phase=two")]).profile.samples.count > 0
        }
        XCTAssertTrue(first.log.contains("configuration reloaded"), first.log)
        kill(first.pid, SIGKILL)
        first.process.waitUntilExit()
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/agent-\(first.pid)"), "kill -9 leaves its open window behind")

        let report = try runProcess(sprof, ["report", "--store", store, "--since", "1h", "--folded"])
        XCTAssertEqual(report.status, 0, report.stderr)
        XCTAssertTrue(report.stdout.contains("leaf_hot"), report.stdout.prefix(500).description)

        let one = try s.load(where: [LabelMatch(parsing: "phase=one")])
        let two = try s.load(where: [LabelMatch(parsing: "phase=two")])
        XCTAssertGreaterThan(one.profile.samples.count, 0)
        XCTAssertGreaterThan(two.profile.samples.count, 0, "windows after SIGHUP carry the new label")
        let before = try s.windows().count

        let second = try Agent(sprof, ["--config", config, "--store", store, "--http", "off", "-d", "8"], env: env)
        second.process.waitUntilExit()
        XCTAssertEqual(second.process.terminationStatus, 0, second.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/agent-\(first.pid)"), "the next agent removed the dead one's directory")
        let after = try s.load()
        XCTAssertEqual(after.skipped, [])
        XCTAssertGreaterThan(after.windows.count, before)
    }

    /// A full disk stops the windows, not the sampling; the error is counted
    /// and said once; writing resumes when space returns. The store is a
    /// 1 MiB tmpfs filled to the last byte.
    func testFullDiskKeepsSamplingAndRecovers() throws {
        try requireKernelAccess()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw skipOrFailInCI("curl is missing (apt-get install curl)") }
        let chain = try Fixtures.build("chain")
        let dir = try makeDirectory("agent-full")
        let store = dir + "/store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        // mode=700: a tmpfs root is 1777 otherwise, which the store refuses (SafeFile: not writable by others).
        let mount = try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=1m,mode=700", "tmpfs", store])
        guard mount.status == 0 else { throw skipOrFailInCI("cannot mount a tmpfs: \(mount.stderr)") }
        defer { _ = try? runProcess("/bin/umount", [store]) }
        let filler = store + "/filler"
        let fill = try runProcess("/bin/dd", ["if=/dev/zero", "of=\(filler)", "bs=4k"])
        XCTAssertNotEqual(fill.status, 0, "dd stops at a full disk")

        let fx = try FixtureProcess(chain, ["30"])
        _ = try fx.wait(for: "pid")
        let agent = try Agent(sprof, ["--store", store, "--http", "127.0.0.1:0", "-F", "199", "--window", "1s", "--cpu-budget", "100%"],
                              env: ["SPROF_RUNTIME_DIR": dir + "/run"])
        let page = try agent.pageURL()
        var full = ""
        try waitFor("store errors") {
            full = try get(page + "/metrics")
            return metric(full, "sprof_agent_errors_total{kind=\"store\"}") ?? 0 >= 2
        }
        XCTAssertGreaterThanOrEqual(metric(full, "sprof_agent_errors_total{kind=\"store\"}") ?? 0, 2, full)
        XCTAssertNil(metric(full, "sprof_agent_windows_written_total{sink=\"store\"}"), full)
        let samplesWhileFull = metric(full, "sprof_agent_samples_total") ?? 0
        XCTAssertGreaterThan(samplesWhileFull, 0, "sampling goes on")
        XCTAssertEqual(agent.log.components(separatedBy: "store:").count - 1, 1, "said once: \(agent.log)")

        unlink(filler)
        try waitFor("windows written again") {
            metric(try get(page + "/metrics"), "sprof_agent_windows_written_total{sink=\"store\"}") ?? 0 >= 2
        }
        XCTAssertEqual(agent.stop(), 0, agent.log)
        XCTAssertTrue(agent.log.contains("store: working again"), agent.log)
        let loaded = try ProfileStore(directory: store, create: false).load()
        XCTAssertEqual(loaded.skipped, [])
        XCTAssertGreaterThan(loaded.profile.samples.count, 0)
    }

    /// What the repository ships for servers: the example configuration is
    /// the agent's own defaults and reads back; the systemd unit passes
    /// `systemd-analyze verify` (with ExecStart pointing at this build).
    func testShippedConfigurationAndUnit() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs").path
        let example = try runProcess(sprof, ["agent", "--config", docs + "/agent.toml", "--print-config"])
        XCTAssertEqual(example.status, 0, example.stderr)
        let defaults = try runProcess(sprof, ["agent", "--config", "/dev/null", "--print-config"])
        XCTAssertEqual(example.stdout, defaults.stdout, "docs/agent.toml holds the defaults")

        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else {
            throw skipOrFailInCI("systemd-analyze is missing (apt-get install systemd)")
        }
        let dir = try makeDirectory("unit")
        let unit = try String(contentsOfFile: docs + "/sprof-agent.service", encoding: .utf8)
        XCTAssertTrue(unit.contains("ExecStart=/usr/local/bin/sprof agent --config /etc/sprof/agent.toml"), unit)
        try unit.replacingOccurrences(of: "/usr/local/bin/sprof", with: sprof)
            .write(toFile: dir + "/sprof-agent.service", atomically: true, encoding: .utf8)
        let verify = try runProcess("/usr/bin/systemd-analyze", ["verify", dir + "/sprof-agent.service"])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        XCTAssertEqual(verify.stderr.trimmingCharacters(in: .whitespacesAndNewlines), "", "no warnings")
    }

    /// The configuration: the effective one printed, a bad one named by line and key (no kernel needed).
    func testPrintConfigAndBadConfig() throws {
        let dir = try makeDirectory("agent-config")
        let config = dir + "/agent.toml"
        try "frequency = 49\n[store]\nmax_age = \"2d\"\n[labels]\nteam = \"db\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let printed = try runProcess(sprof, ["agent", "--config", config, "--window", "30s", "--label", "env=prod", "--print-config"])
        XCTAssertEqual(printed.status, 0, printed.stderr)
        for expected in ["frequency = 49", "window = \"30s\"", "max_age = \"2d\"", "team = \"db\"", "env = \"prod\""] {
            XCTAssertTrue(printed.stdout.contains(expected), "\(expected) in:\n\(printed.stdout)")
        }
        // What it prints reads back as the same configuration.
        try printed.stdout.write(toFile: config, atomically: true, encoding: .utf8)
        let again = try runProcess(sprof, ["agent", "--config", config, "--print-config"])
        XCTAssertEqual(again.stdout, printed.stdout)

        try "frequency = 19\n[store]\nmax_agee = \"2d\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let bad = try runProcess(sprof, ["agent", "--config", config])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("line 3") && bad.stderr.contains("max_agee") && bad.stderr.contains("max_age"), bad.stderr)
        let remote = try runProcess(sprof, ["agent", "--http", "0.0.0.0:7070", "-d", "1", "--no-store"])
        XCTAssertNotEqual(remote.status, 0)
        XCTAssertTrue(remote.stderr.contains("--http-allow-remote"), remote.stderr)
    }
}
