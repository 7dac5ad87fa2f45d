import Foundation
import XCTest
@testable import SprofCapture
import SprofProfile

/// The `sprof` binary itself, as a user runs it.
final class CLITests: XCTestCase {
    /// The sprof executable SwiftPM built beside the test bundle.
    var sprof: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return dir.appendingPathComponent("sprof").path
    }

    struct Run { var status: Int32; var stdout: String; var stderr: String; var pid: Int32 }

    func run(_ args: [String], prefix: [String] = [], signalAfter: (Double, Int32)? = nil) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: prefix.first ?? sprof)
        p.arguments = prefix.isEmpty ? args : Array(prefix.dropFirst()) + [sprof] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        if let (delay, sig) = signalAfter {
            usleep(UInt32(delay * 1e6))
            kill(p.processIdentifier, sig)
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self),
                   pid: p.processIdentifier)
    }

    func testCommandStatusPropagatesAndSummaryPrinted() throws {
        try requireKernelAccess()
        let bin = try Fixtures.build("exits")
        let out = tempPath("cli.raw")
        defer { unlink(out) }
        let r = try run(["record", "--raw", "-o", out, "--", bin, "0.5", "3"])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("samples, 0 lost"), r.stderr)
        let dump = try run(["dump", out, "--limit", "3"])
        XCTAssertEqual(dump.status, 0)
        XCTAssertTrue(dump.stdout.contains("target exited"), dump.stdout)
        XCTAssertTrue(dump.stdout.contains(bin), dump.stdout)
    }

    /// Ctrl-C stops the recording cleanly and the file is still written.
    func testInterruptWritesFile() throws {
        try requireKernelAccess()
        let bin = try Fixtures.build("exits")
        let fx = try FixtureProcess(bin, ["20", "0"])
        _ = try fx.wait(for: "pid")
        let out = tempPath("int.pb.gz")
        defer { unlink(out) }
        let r = try run(["record", "-p", "\(fx.pid)", "-o", out], signalAfter: (1.5, SIGINT))
        XCTAssertEqual(r.status, 0, r.stderr)
        let profile = try Pprof.read(path: out)
        XCTAssertTrue(profile.comments.contains("ended: \(StopReason.signal.rawValue)"), "\(profile.comments)")
        XCTAssertGreaterThan(profile.samples.reduce(0) { $0 + $1.values[0] }, 100)
        XCTAssertFalse(FileManager.default.fileExists(atPath: (out as NSString).deletingLastPathComponent + "/.sprof-record-\(r.pid).raw"),
                       "the intermediate raw recording is removed")
        fx.process.terminate()
    }

    /// The profile cannot be written (here: its name is taken by a
    /// directory): the raw recording is kept, its path given, and it still
    /// converts to the profile later.
    func testUnwritableProfileKeepsTheRecording() throws {
        try requireKernelAccess()
        let bin = try Fixtures.build("exits")
        let dir = NSTemporaryDirectory() + "sprof-unwritable-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir + "/out.pb.gz", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(["record", "-o", dir + "/out.pb.gz", "--", bin, "0.5", "0"])
        XCTAssertNotEqual(r.status, 0)
        let kept = dir + "/.sprof-record-\(r.pid).raw"
        XCTAssertTrue(r.stderr.contains("the recording is kept at \(kept)"), r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: kept))
        let converted = try run(["report", kept, "--pprof", dir + "/later.pb.gz"])
        XCTAssertEqual(converted.status, 0, converted.stderr)
        XCTAssertGreaterThan(try Pprof.read(path: dir + "/later.pb.gz").samples.count, 0)
    }

    func testBadInputIsOneLineBeforeLoading() throws {
        try requireKernelAccess()
        for (args, needle) in [
            (["record", "-p", "999999999", "-d", "1"], "process 999999999 does not exist"),
            (["record", "-F", "0", "-a", "-d", "1"], "-F 0"),
            (["record", "-F", "100000000", "-a", "-d", "1"], "perf_event_max_sample_rate"),
            (["record", "--stack-size", "128k", "-a", "-d", "1"], "--stack-size 131072"),
            (["record", "-a", "-d", "1", "-o", "/nonexistent-dir/x.sprof"], "/nonexistent-dir"),
            (["record", "-a", "-p", "1"], "exactly one target"),
        ] {
            let r = try run(args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
    }

    /// Without privileges: the missing capabilities are named with how to grant them.
    func testUnprivilegedUserIsTold() throws {
        try requireKernelAccess()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { throw XCTSkip("setpriv (util-linux) missing") }
        let r = try run(["record", "-a", "-d", "1", "-o", "/tmp/unpriv.sprof"],
                        prefix: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("CAP_BPF") && r.stderr.contains("CAP_PERFMON") && r.stderr.contains("setcap"), r.stderr)
    }

    func testDoctorSaysWhatThisKernelAllows() throws {
        try requireKernelAccess()
        let r = try run(["doctor", "--verbose"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        func line(_ name: String) -> String { lines.first { $0.contains(name) } ?? "" }
        XCTAssertTrue(line("perf-event sampling").hasPrefix("[ok"), r.stdout)
        XCTAssertTrue(line("BPF ring buffer").hasPrefix("[ok"), r.stdout)
        // This machine: kprobes absent, fentry refused, tracepoints work.
        XCTAssertTrue(line("kprobe on finish_task_switch").hasPrefix("[no"), r.stdout)
        XCTAssertTrue(line("fentry on finish_task_switch").hasPrefix("[no") && line("fentry").contains("EPERM"), r.stdout)
        XCTAssertTrue(line("tp_btf/sched_switch").hasPrefix("[ok"), r.stdout)
        XCTAssertTrue(line("raw_tp/sched_switch").hasPrefix("[ok"), r.stdout)
        XCTAssertTrue(line("tracepoint sched/sched_switch").hasPrefix("[ok"), r.stdout)
        XCTAssertTrue(line("off-CPU profiling").contains("tp_btf"), r.stdout)
        XCTAssertTrue(r.stdout.contains("this kernel has no kprobes") && r.stdout.contains("fentry is refused (EPERM"), r.stdout)
        XCTAssertTrue(r.stdout.contains("instructions verified"), r.stdout)
    }
}
