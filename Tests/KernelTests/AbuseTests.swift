import Foundation
import SprofProfile
import SprofStore
import XCTest
@testable import SprofCapture

/// `sprof agent` beside processes that abuse a profiler's resources
/// (Tests/Fixtures/abuse.c): tens of thousands of mappings, a binary with
/// 100 MB of `.eh_frame`, threads started without end under names of their
/// own; and a JIT (Tests/Fixtures/jit.c) whose perf map has a million and
/// a half lines. Each runs next to `chain` (a known five-deep chain, no
/// frame pointers) while the real agent samples every CPU at 199 Hz in 2 s
/// windows. Each test checks that the agent's peak memory stays under
/// ``rssBound``, that it keeps writing windows, that `chain`'s stacks in
/// them are still whole, and that what it shed is counted in its metrics.
final class AbuseTests: XCTestCase {
    /// The agent's peak anonymous memory allowed here: its bounded caches
    /// as `AgentBounds` states them (Sources/sprof/Agent.swift: unwind
    /// tables 48 MiB, symbols 32 MiB, sample queue 16 MiB, ring buffer
    /// 512 KiB mapped twice), plus 64 MiB for the rest (the Swift runtime's
    /// and the libraries' heaps, a window being converted; a debug build's
    /// is about 90 MiB in all on the development VM beside other people's
    /// compilers). Measured as RssAnon (proc(5), /proc/PID/status), polled
    /// every 100 ms: the binaries the agent maps to read their CFI and
    /// symbols are file pages, shared with the processes that run them and
    /// reclaimable, and VmHWM counts them (a 150 MB compiler on the machine
    /// adds 100 MB to it). Without the bounds the `.eh_frame` fixture alone
    /// makes the agent build 35 million rows (840 MB).
    static let rssBound = (48 + 32 + 16 + 1 + 64) << 20

    var sprof: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
    }

    func testManyMappings() throws {
        let abuse = try Fixtures.build("abuse")
        var made = 0
        try run("maps", start: {
            let fx = try FixtureProcess(abuse, ["maps", "90"])
            _ = try fx.wait(for: "pid")
            made = Int(try fx.wait(for: "mappings")[0]) ?? 0
            return fx
        }, check: { metrics, log, abusing, _ in
            // 60,000 asked for; whatever the kernel allowed, it must be past what the agent keeps.
            XCTAssertGreaterThan(made, ProcessTable.defaultMaxMappingsPerProcess, "the fixture made \(made) mappings")
            XCTAssertGreaterThan(self.metric(metrics, "sprof_agent_shed_total{kind=\"mappings\"}") ?? 0, 0, metrics)
            XCTAssertTrue(log.contains("more mappings than"), log)
            // The abusing process is still profiled: its executable's text was kept, its own chain is whole.
            let (exact, total) = self.chains(abusing, ["main", "maps_run", "maps_level", "maps_leaf"])
            XCTAssertGreaterThan(Double(exact) / Double(max(total, 1)), 0.5, "maps: \(exact) of \(total) whole:\n\(self.top(abusing))")
        })
    }

    func testGiganticEHFrame() throws {
        let abuse = try Fixtures.build("abuse")
        // 100 MiB of CFI rows in one FDE, built at test time (about 5 s).
        let dir = Fixtures.dir + "/ehframe-100"
        let binary = dir + "/ehframe"
        if !FileManager.default.fileExists(atPath: binary) {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let gen = try runProcess(abuse, ["ehframe-gen", dir, "100"])
            XCTAssertEqual(gen.status, 0, gen.stderr)
            let cc = try runProcess("/usr/bin/env", ["gcc", "-O2", "-fomit-frame-pointer", "-g", "-o", binary,
                                                     Fixtures.root.appendingPathComponent("abuse.c").path, dir + "/big.s", "-DBIG_CODE"])
            XCTAssertEqual(cc.status, 0, cc.stderr)
            unlink(dir + "/rows.bin")
        }
        let size = try FileManager.default.attributesOfItem(atPath: binary)[.size] as? Int ?? 0
        XCTAssertGreaterThan(size, 100 << 20, "the .eh_frame fixture is over 100 MiB")
        try run("ehframe", start: {
            let fx = try FixtureProcess(binary, ["90"])
            _ = try fx.wait(for: "pid")
            return fx
        }, check: { metrics, log, abusing, _ in
            XCTAssertGreaterThanOrEqual(self.metric(metrics, "sprof_agent_shed_total{kind=\"unwind_tables\"}") ?? 0, 1, metrics)
            XCTAssertGreaterThan(self.metric(metrics, "sprof_agent_shed_total{kind=\"unwind_samples\"}") ?? 0, 0, metrics)
            XCTAssertTrue(log.contains("shed: ") && log.contains(binary), log)
            // Its samples are there, named, cut at the binary that was not tabulated.
            let stacks = self.folded(abusing)
            let inBig = stacks.filter { $0.key.last == "big_code" }.values.reduce(0, +)
            XCTAssertGreaterThan(inBig, 0, "samples in big_code:\n\(self.top(abusing))")
        })
    }

    func testEndlessThreads() throws {
        let abuse = try Fixtures.build("abuse")
        try run("threads", start: {
            let fx = try FixtureProcess(abuse, ["threads", "90"])
            _ = try fx.wait(for: "pid")
            return fx
        }, check: { metrics, _, abusing, windows in
            XCTAssertGreaterThan(self.metric(metrics, "sprof_agent_shed_total{kind=\"thread_names\"}") ?? 0, 0, metrics)
            let names = Set(abusing.samples.compactMap { $0.label("thread_name")?.string })
            XCTAssertTrue(names.contains("(other threads)"), "\(names.count) names")
            // Each window keeps at most 64 names and the fold; the store merged the windows.
            XCTAssertLessThanOrEqual(names.count, 65 * windows, "\(names.count) names in \(windows) windows")
        })
    }

    func testPerfMapOfMillionsOfLines() throws {
        let jit = try Fixtures.build("jit")
        var mapSize = 0
        try run("perfmap", start: {
            let fx = try FixtureProcess(jit, ["90"])
            _ = try fx.wait(for: "jit")
            // 1.5 million decoy lines (about 70 MB) before the fixture's own,
            // which stay last (the newest, as a JIT appends).
            let path = "/tmp/perf-\(fx.pid).map"
            let own = try String(contentsOfFile: path, encoding: .utf8)
            var text = ""
            text.reserveCapacity(75_000_000)
            for i in 0..<1_500_000 {
                text += String(0x1_0000_0000 + i * 0x40, radix: 16) + " 40 decoy_jit_function_number_\(i)\n"
            }
            text += own
            try text.write(toFile: path + ".new", atomically: false, encoding: .utf8)
            XCTAssertEqual(rename(path + ".new", path), 0)
            mapSize = text.utf8.count
            return fx
        }, check: { metrics, _, abusing, _ in
            XCTAssertGreaterThan(mapSize, 64 << 20)
            // Only the newest 4 MiB were read: the rest counted, the fixture's code still named.
            let skipped = self.metric(metrics, "sprof_agent_perf_map_skipped_bytes_total") ?? 0
            XCTAssertGreaterThanOrEqual(skipped, Double(mapSize - (4 << 20)), metrics)
            let hot = self.folded(abusing).filter { $0.key.contains { $0.hasPrefix("jit_hot_loop") } }.values.reduce(0, +)
            XCTAssertGreaterThan(hot, 0, "jit_hot_loop named:\n\(self.top(abusing))")
        })
    }

    // MARK: - The run

    /// Starts `chain`, the abusing fixture (`start`), then the agent; waits
    /// for its first window and four more; checks the common properties,
    /// then `check(metrics, agent log, the abusing process's samples, windows)`.
    private func run(_ name: String, start: () throws -> FixtureProcess,
                     check: (String, String, Profile, Int) throws -> Void) throws {
        try requireKernelAccess()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw skipOrFailInCI("curl is missing (apt-get install curl)") }
        let chain = try Fixtures.build("chain")
        let dir = tempPath("abuse-" + name)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/agent.toml"
        try """
            frequency = 199
            window = "2s"
            cpu_budget = 1.0
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let steady = try FixtureProcess(chain, ["90"])
        _ = try steady.wait(for: "pid")
        let abusing = try start()
        let agent = try AgentTests.Agent(sprof, ["--config", config, "--store", dir + "/store", "--http", "127.0.0.1:0"],
                                         env: ["SPROF_RUNTIME_DIR": dir + "/run"])
        defer { if agent.process.isRunning { _ = agent.stop(SIGKILL) } }
        let peaks = PeakMemory(pid: agent.pid)
        let page = try agent.pageURL()
        var metrics = ""
        func written() throws -> Double {
            guard agent.process.isRunning else { throw NSError(domain: "agent", code: 1, userInfo: [NSLocalizedDescriptionKey: "the agent stopped: \(agent.log)"]) }
            metrics = try get(page + "/metrics")
            return metric(metrics, "sprof_agent_windows_written_total{sink=\"store\"}") ?? 0
        }
        // The first window names every binary on the machine (seconds in a debug build), then four more.
        try waitFor("the first window written", timeout: 90) { try written() >= 1 }
        let first = try written()
        try waitFor("four more windows written", timeout: 30) { try written() >= first + 4 }
        let (anon, hwm) = peaks.stop()
        XCTAssertEqual(agent.stop(SIGTERM), 0, agent.log)
        let log = agent.log

        // Memory: the peak over the whole run, against the stated bound.
        XCTAssertGreaterThan(anon, 0)
        XCTAssertLessThan(anon, Self.rssBound, "\(name): the agent's peak RssAnon \(anon >> 20) MiB, bound \(Self.rssBound >> 20) MiB")
        print("abuse \(name): agent peak RssAnon \(anon >> 20) MiB (bound \(Self.rssBound >> 20) MiB), VmHWM \(hwm >> 20) MiB; "
              + "lost samples \(metric(metrics, "sprof_agent_lost_samples_total") ?? -1) of \(metric(metrics, "sprof_agent_samples_total") ?? -1)")

        // Windows kept coming, and the known chain beside the abuse is whole in them.
        let store = try ProfileStore(directory: dir + "/store", create: false)
        let windows = try store.windows().count
        XCTAssertGreaterThanOrEqual(windows, 5)
        let steadyProfile = try store.load(where: [LabelMatch(parsing: "pid=\(steady.pid)")]).profile
        let (exact, total) = chains(steadyProfile, ["main", "run", "level1", "level2", "leaf_hot"])
        XCTAssertGreaterThan(total, 0)
        XCTAssertGreaterThan(Double(exact) / Double(max(total, 1)), 0.8,
                             "\(name): chain's whole stacks \(exact) of \(total):\n\(top(steadyProfile))")
        let abusingProfile = try store.load(where: [LabelMatch(parsing: "pid=\(abusing.pid)")]).profile
        XCTAssertGreaterThan(abusingProfile.samples.count, 0, "\(name): the abusing process was sampled")
        try check(metrics, log, abusingProfile, windows)
    }

    // MARK: - Helpers

    /// Polls a process's RssAnon and VmHWM (proc(5), /proc/PID/status) every
    /// 100 ms on its own thread; ``stop()`` returns the largest of each, in bytes.
    final class PeakMemory: @unchecked Sendable {
        private let lock = NSLock()
        private var anon = 0, hwm = 0, running = true
        private let done = DispatchSemaphore(value: 0)

        init(pid: Int32) {
            Thread.detachNewThread { [self] in
                while lock.withLock({ running }) {
                    if let a = Self.field("RssAnon", pid: pid), let h = Self.field("VmHWM", pid: pid) {
                        lock.withLock { anon = max(anon, a); hwm = max(hwm, h) }
                    }
                    usleep(100_000)
                }
                done.signal()
            }
        }

        func stop() -> (anon: Int, hwm: Int) {
            lock.withLock { running = false }
            done.wait()
            return lock.withLock { (anon, hwm) }
        }

        static func field(_ key: String, pid: Int32) -> Int? {
            guard let status = KernelInfo.readFile("/proc/\(pid)/status") else { return nil }
            for line in status.split(separator: "\n") where line.hasPrefix(key + ":") {
                return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }.map { $0 << 10 }
            }
            return nil
        }
    }

    /// The `n` heaviest folded stacks, one a line, for messages.
    func top(_ p: Profile, _ n: Int = 5) -> String {
        folded(p).sorted { $0.value > $1.value }.prefix(n).map { "\($0.value) \($0.key.joined(separator: ";"))" }.joined(separator: "\n")
    }

    func folded(_ p: Profile) -> [[String]: Int64] { p.foldedStacks() }

    /// Samples whose stack (root first) ends in `suffix` at the leaf, kernel
    /// frames and inlined ones (`_[i]`: what gcc inlines is its choice) aside; and all samples.
    func chains(_ p: Profile, _ suffix: [String]) -> (exact: Int64, total: Int64) {
        let stacks = folded(p)
        let total = stacks.values.reduce(0, +)
        let exact = stacks.filter { k, _ in
            k.filter { !$0.hasSuffix("_[k]") && !$0.hasSuffix("_[i]") }.suffix(suffix.count) == ArraySlice(suffix)
        }.values.reduce(0, +)
        return (exact, total)
    }


    func waitFor(_ what: String, timeout: Double, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(200_000)
        }
        XCTFail("waited \(timeout) s for \(what)")
    }
}
