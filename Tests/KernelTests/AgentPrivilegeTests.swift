import Foundation
import SprofProfile
import SprofStore
import XCTest
@testable import SprofCapture

/// `sprof agent` started as root keeps only the capabilities it needs once
/// its programs are attached (PrivilegePlan.agent in
/// Sources/Capture/Privileges.swift), on every one of its threads, and still
/// profiles a process of another user whose binary only that user may read;
/// a SIGHUP still loads the program again. With --keep-root it keeps them
/// all. The real binary, real processes, each thread's
/// /proc/PID/task/TID/status.
final class AgentPrivilegeTests: XCTestCase {
    var sprof: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
    }

    /// The user `nobody` (Debian's 65534), and setpriv(1) to become it.
    let nobody: UInt32 = 65534
    let setpriv = "/usr/bin/setpriv"

    /// What the agent keeps on this kernel, written out here rather than
    /// taken from the code under test: 5.9+ (cap_last_cap 40 and up).
    var expectedKept: CapabilitySet {
        get throws {
            guard Privileges.lastCapability >= Capability.checkpointRestore.rawValue else {
                throw skipOrFailInCI("this kernel predates CAP_CHECKPOINT_RESTORE (cap_last_cap \(Privileges.lastCapability)); the test expects 5.9+")
            }
            return CapabilitySet([.bpf, .perfmon, .sysPtrace, .dacReadSearch, .checkpointRestore, .syslog])
        }
    }

    func requireRoot() throws {
        try requireKernelAccess()
        guard getuid() == 0 else { throw skipOrFailInCI("the privilege tests start the agent as uid 0 and a workload as nobody: run as root") }
        guard FileManager.default.isExecutableFile(atPath: setpriv) else { throw skipOrFailInCI("setpriv is missing (apt-get install util-linux)") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw skipOrFailInCI("curl is missing (apt-get install curl)") }
    }

    func makeDirectory(_ name: String) throws -> String {
        let d = tempPath(name)
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }


    /// Polls every 200 ms until `condition` holds, the agent exits, or `timeout` passes.
    @discardableResult
    func waitFor(_ what: String, agent: AgentTests.Agent, timeout: Double = 90, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            if !agent.process.isRunning { break }
            usleep(200_000)
        }
        XCTFail("waited for \(what); the agent's log:\n\(agent.log)")
        return false
    }

    /// The chain fixture copied where only nobody can read it: a 0700
    /// directory and a 0700 binary, both nobody's. Returns the binary's path.
    func privateChain(in dir: String) throws -> String {
        let chain = try Fixtures.build("chain")
        let home = dir + "/nobody-home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let binary = home + "/chain"
        try FileManager.default.copyItem(atPath: chain, toPath: binary)
        for path in [binary, home] {
            XCTAssertEqual(chown(path, nobody, nobody), 0, "chown \(path)")
            XCTAssertEqual(chmod(path, 0o700), 0, "chmod \(path)")
        }
        XCTAssertEqual(chmod(dir, 0o755), 0)
        return binary
    }

    /// Every thread of the agent, read from /proc; fails unless it has several.
    func threads(of pid: Int32) -> [ThreadCapabilities] {
        let t = ThreadCapabilities.of(pid: pid)
        // main, the recorder's reader and writer, the windows thread, the HTTP endpoint's, Dispatch's.
        XCTAssertGreaterThanOrEqual(t.count, 4, "the agent's threads: \(t.map { "\($0.tid) \($0.name)" })")
        return t
    }

    /// The drop on every thread, a workload of another user profiled with
    /// its names after it, a SIGHUP that loads the program again, and the
    /// threads made since (Dispatch workers, the sinks') holding no more.
    func testAgentKeepsOnlyWhatItNeedsOnEveryThread() throws {
        try requireRoot()
        let kept = try expectedKept
        let dir = try makeDirectory("agent-privileges")
        let binary = try privateChain(in: dir)
        let fx = try FixtureProcess(setpriv, ["--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups", "--", binary, "60"])
        let pid = Int32(try fx.wait(for: "pid")[0]) ?? -1
        XCTAssertEqual(pid, fx.pid, "setpriv execs the workload in place")
        XCTAssertTrue(KernelInfo.readFile("/proc/\(pid)/status")?.contains("Uid:\t\(nobody)\t") ?? false, "the workload runs as nobody")
        // The premise: without CAP_DAC_READ_SEARCH (and CAP_DAC_OVERRIDE)
        // root cannot read that binary through /proc/PID/root; with the
        // agent's set it can.
        let path = "/proc/\(pid)/root" + binary
        let without = try runProcess(setpriv, ["--bounding-set", "-dac_read_search,-dac_override", "--", "/usr/bin/head", "-c", "4", path])
        XCTAssertNotEqual(without.status, 0, "root without cap_dac_read_search reads \(path): the test would prove nothing")
        let keptNames = kept.members.map { "+" + String($0.name.dropFirst(4)) }.joined(separator: ",")
        let with = try runProcess(setpriv, ["--inh-caps=-all", "--bounding-set=-all," + keptNames, "--", "/usr/bin/head", "-c", "4", path])
        XCTAssertEqual(with.status, 0, "with only \(kept): \(with.stderr)")

        // The same binary deleted once started: readable only through
        // /proc/PID/map_files, which needs cap_checkpoint_restore.
        let gone = (binary as NSString).deletingLastPathComponent + "/chain-deleted"
        try FileManager.default.copyItem(atPath: binary, toPath: gone)
        XCTAssertEqual(chown(gone, nobody, nobody), 0)
        let deleted = try FixtureProcess(setpriv, ["--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups", "--", gone, "60"])
        _ = try deleted.wait(for: "pid")
        XCTAssertEqual(unlink(gone), 0)

        // In the kernel most of the time: its kernel frames are named from
        // /proc/kallsyms, read after the drop (no per-boot copy: SPROF_CACHE_DIR=off),
        // whose addresses need cap_syslog while kernel.perf_event_paranoid > 1.
        let syscalls = try FixtureProcess(try Fixtures.build("syscalls"), ["60"])
        _ = try syscalls.wait(for: "pid")

        let store = dir + "/store"
        let config = dir + "/agent.toml"
        try "frequency = 199\nwindow = \"2s\"\ncpu_budget = 1.0\n".write(toFile: config, atomically: true, encoding: .utf8)
        let agent = try AgentTests.Agent(sprof, ["--config", config, "--store", store, "--http", "127.0.0.1:0"],
                                         env: ["SPROF_RUNTIME_DIR": dir + "/run", "SPROF_CACHE_DIR": "off"])
        defer { if agent.process.isRunning { _ = agent.stop() } }
        let page = try agent.pageURL()
        waitFor("the capabilities said", agent: agent) { agent.log.contains("kept capabilities:") }
        XCTAssertTrue(agent.log.contains("kept capabilities: cap_bpf, cap_perfmon, cap_sys_ptrace, cap_dac_read_search, cap_checkpoint_restore, cap_syslog (dropped the rest; --keep-root keeps all)"),
                      agent.log)

        func checkThreads(_ when: String) {
            for t in threads(of: agent.pid) {
                let what = "\(when), thread \(t.tid) (\(t.name))"
                XCTAssertEqual(t.effective, kept, "\(what): CapEff")
                XCTAssertEqual(t.permitted, kept, "\(what): CapPrm")
                XCTAssertEqual(t.bounding, kept, "\(what): CapBnd")
                XCTAssertTrue(t.inheritable.isEmpty, "\(what): CapInh \(t.inheritable)")
                XCTAssertTrue(t.ambient.isEmpty, "\(what): CapAmb \(t.ambient)")
                XCTAssertTrue(t.noNewPrivileges, "\(what): NoNewPrivs")
            }
        }
        checkThreads("after the drop")

        // The workload, named after the drop: its maps, its binary through
        // /proc/PID/root (nobody's 0700 directory), unwound and symbolized.
        let s = try ProfileStore(directory: store)
        var metrics = ""
        waitFor("two windows written", agent: agent) {
            metrics = (try? get(page + "/metrics")) ?? ""
            return metric(metrics, "sprof_agent_windows_written_total{sink=\"store\"}") ?? 0 >= 2
        }
        XCTAssertEqual(metric(metrics, "sprof_agent_capabilities_dropped"), 1, metrics)
        func chains(_ where_: String) throws -> (exact: Int64, total: Int64) {
            let stacks = try s.load(where: [LabelMatch(parsing: where_)]).profile.foldedStacks()
            let exact = stacks.filter { k, _ in k.filter { !$0.hasSuffix("_[k]") }.suffix(5) == ["main", "run", "level1", "level2", "leaf_hot"] }
            return (exact.values.reduce(0, +), stacks.values.reduce(0, +))
        }
        let before = try chains("pid=\(pid)")
        XCTAssertGreaterThan(before.total, 0, "samples of nobody's process")
        XCTAssertGreaterThan(Double(before.exact) / Double(max(before.total, 1)), 0.8,
                             "nobody's process is unwound and named: \(before.exact) of \(before.total)")
        let unlinked = try chains("pid=\(deleted.pid)")
        XCTAssertGreaterThan(unlinked.total, 0, "samples of nobody's process whose binary was deleted")
        XCTAssertGreaterThan(Double(unlinked.exact) / Double(max(unlinked.total, 1)), 0.8,
                             "the deleted binary is read through map_files: \(unlinked.exact) of \(unlinked.total)")
        let labels = try s.load(where: [LabelMatch(parsing: "pid=\(pid)")]).profile.samples.first?.labels ?? []
        XCTAssertEqual(labels.first { $0.key == "exe" }?.string, binary)
        let kernelFrames = try s.load(where: [LabelMatch(parsing: "pid=\(syscalls.pid)")]).profile.foldedStacks()
            .flatMap { k, n in k.filter { $0.hasSuffix("_[k]") }.map { ($0, n) } }
        let unnamed = kernelFrames.filter { $0.0.hasPrefix("[kernel.kallsyms]+0x") }.reduce(0) { $0 + $1.1 }
        let all = kernelFrames.reduce(0) { $0 + $1.1 }
        XCTAssertGreaterThan(all, 0, "kernel frames of the syscalls fixture")
        XCTAssertLessThan(Double(unnamed) / Double(max(all, 1)), 0.05,
                          "kernel frames named from /proc/kallsyms: \(unnamed) of \(all) unnamed: \(kernelFrames.prefix(5).map(\.0))")

        // SIGHUP: a new recorder loads the program again with what was kept.
        try "frequency = 199\nwindow = \"2s\"\ncpu_budget = 1.0\n[labels]\nphase = \"reloaded\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        kill(agent.pid, SIGHUP)
        waitFor("windows of the reloaded recorder", agent: agent) {
            ((try? s.load(where: [LabelMatch(parsing: "phase=reloaded"), LabelMatch(parsing: "pid=\(pid)")]).profile.samples.count) ?? 0) > 0
        }
        XCTAssertTrue(agent.log.contains("configuration reloaded"), agent.log)
        checkThreads("after SIGHUP")

        XCTAssertEqual(agent.stop(SIGTERM), 0, agent.log)
        XCTAssertFalse(agent.log.contains("could not"), agent.log)
    }

    /// A drop that fails stops the agent, saying where, rather than leave it
    /// running as full root: started with SECBIT_NOROOT_LOCKED but not
    /// SECBIT_NOROOT (root's execve still gives every capability), the
    /// agent cannot set SECBIT_NOROOT (security/commoncap.c cap_task_prctl:
    /// a locked bit cannot change, EPERM).
    func testFailedDropStopsTheAgent() throws {
        try requireRoot()
        let dir = try makeDirectory("agent-drop-fails")
        let r = try runProcess(setpriv, ["--securebits", "+noroot_locked", "--", sprof, "agent", "--store", dir + "/store",
                                         "--http", "off", "-d", "60"], env: ["SPROF_RUNTIME_DIR": dir + "/run"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("could not drop capabilities on thread"), r.stderr)
        XCTAssertTrue(r.stderr.contains("locking the securebits (prctl PR_SET_SECUREBITS) failed: Operation not permitted (EPERM)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("--keep-root runs without dropping any"), r.stderr)
        XCTAssertFalse(r.stderr.contains("kept capabilities:"), r.stderr)
        // The same start with --keep-root runs (and is stopped by -d).
        let kept = try runProcess(setpriv, ["--securebits", "+noroot_locked", "--", sprof, "agent", "--store", dir + "/store",
                                            "--http", "off", "-d", "3", "--keep-root"], env: ["SPROF_RUNTIME_DIR": dir + "/run"])
        XCTAssertEqual(kept.status, 0, kept.stderr)
        XCTAssertTrue(kept.stderr.contains("kept every capability (--keep-root)"), kept.stderr)
    }

    /// --keep-root: every thread keeps what root started with, and the log says so.
    func testKeepRootKeepsEverything() throws {
        try requireRoot()
        let dir = try makeDirectory("agent-keep-root")
        let own = ThreadCapabilities.of(pid: getpid()).first { $0.tid == getpid() }
        let full = try XCTUnwrap(own?.effective)
        XCTAssertTrue(full.contains(.sysAdmin) && full.contains(.setpcap), "the test runs with root's capabilities: \(full)")
        let agent = try AgentTests.Agent(sprof, ["--store", dir + "/store", "--http", "127.0.0.1:0", "--window", "2s", "--keep-root"],
                                         env: ["SPROF_RUNTIME_DIR": dir + "/run"])
        defer { if agent.process.isRunning { _ = agent.stop() } }
        let page = try agent.pageURL()
        waitFor("the capabilities said", agent: agent) { agent.log.contains("kept every capability (--keep-root)") }
        XCTAssertFalse(agent.log.contains("kept capabilities:"), agent.log)
        for t in threads(of: agent.pid) {
            XCTAssertEqual(t.effective, full, "thread \(t.tid) (\(t.name)): CapEff")
            XCTAssertEqual(t.bounding, own?.bounding, "thread \(t.tid) (\(t.name)): CapBnd")
            XCTAssertFalse(t.noNewPrivileges, "thread \(t.tid) (\(t.name)): NoNewPrivs")
        }
        XCTAssertEqual(metric(try get(page + "/metrics"), "sprof_agent_capabilities_dropped"), 0)
        XCTAssertEqual(agent.stop(SIGTERM), 0, agent.log)
    }
}
