import Foundation
import XCTest
@testable import SprofCapture

/// Kernel tests load the real BPF programs and profile real processes. They
/// need root. Outside CI a non-root run skips them loudly; with CI=true a
/// test that would skip fails instead (DEVELOPERS.md: never silently skip).
func requireKernelAccess(file: StaticString = #filePath, line: UInt = #line) throws {
    let missing = KernelInfo.missingCapabilities
    guard missing.isEmpty else {
        throw skipOrFailInCI("kernel test needs root (or \(missing.joined(separator: ", "))) to load BPF programs",
                             file: file, line: line)
    }
}

/// A test that cannot run here (no root, a missing tool or toolchain):
/// outside CI it skips, loudly; with CI=true it fails instead. Throw what
/// this returns.
func skipOrFailInCI(_ why: String, file: StaticString = #filePath, line: UInt = #line) -> XCTSkip {
    if ProcessInfo.processInfo.environment["CI"] == "true" {
        XCTFail("CI=true: \(why)", file: file, line: line)
        return XCTSkip("failed above: \(why)")
    }
    return XCTSkip(why)
}

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    nonisolated(unsafe) private static var built: [String: String] = [:]
    private static let lock = NSLock()
    static let dir: String = {
        let d = NSTemporaryDirectory() + "sprof-fixtures-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    /// Compiles Tests/Fixtures/NAME.c with -O2 -fomit-frame-pointer -g (once per test run).
    static func build(_ name: String) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let p = built[name] { return p }
        let out = dir + "/" + name
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["gcc", "-O2", "-fomit-frame-pointer", "-g", "-pthread", "-o", out, root.appendingPathComponent(name + ".c").path]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw NSError(domain: "fixture", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "gcc failed for \(name)"]) }
        built[name] = out
        return out
    }
}

/// A running fixture whose `key=value` stdout lines are collected.
final class FixtureProcess: @unchecked Sendable {
    let process = Process()
    private let pipe = Pipe()
    private let lock = NSLock()
    private var buffer = ""
    private var values: [String: [String]] = [:]

    init(_ path: String, _ args: [String] = []) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        process.standardOutput = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.buffer += String(decoding: data, as: UTF8.self)
            while let nl = self.buffer.firstIndex(of: "\n") {
                let line = String(self.buffer[..<nl])
                self.buffer = String(self.buffer[self.buffer.index(after: nl)...])
                if let eq = line.firstIndex(of: "=") {
                    self.values[String(line[..<eq]), default: []].append(String(line[line.index(after: eq)...]))
                } else {
                    self.values[line, default: []].append("")
                }
            }
            self.lock.unlock()
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits (up to 10 s) until `key` has been printed `count` times; returns its values.
    func wait(for key: String, count: Int = 1) throws -> [String] {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            lock.lock()
            let v = values[key] ?? []
            lock.unlock()
            if v.count >= count { return v }
            usleep(5_000)
        }
        throw NSError(domain: "fixture", code: 1, userInfo: [NSLocalizedDescriptionKey: "fixture never printed \(key)"])
    }

    func waitForExit() { process.waitUntilExit() }
    deinit { if process.isRunning { process.terminate() } }
}

/// utime + stime of a process in seconds (/proc/PID/stat fields 14 and 15, proc(5)).
func cpuSeconds(pid: Int32) -> Double? {
    guard let stat = KernelInfo.readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
    guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
    return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

func tempPath(_ name: String) -> String {
    NSTemporaryDirectory() + "sprof-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-" + name
}

/// Runs `tool` to its end: its stdout (through a pipe, read to the end),
/// its stderr (through a file, so a chatty tool never blocks on a full pipe)
/// and its exit status.
func runProcess(_ tool: String, _ args: [String], in dir: String? = nil,
                env: [String: String] = [:]) throws -> (stdout: String, stderr: String, status: Int32) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = args
    if let dir { p.currentDirectoryURL = URL(fileURLWithPath: dir) }
    p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
    let errPath = tempPath("stderr-\(UInt32.random(in: 0...UInt32.max))")
    FileManager.default.createFile(atPath: errPath, contents: nil)
    defer { unlink(errPath) }
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    let out = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    try err.close()
    return (String(decoding: data, as: UTF8.self), (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
            p.terminationStatus)
}

/// What the agent tests read from its HTTP endpoint (AgentTests,
/// AgentPrivilegeTests, AbuseTests).
extension XCTestCase {
    /// The body at `url`, fetched with curl (a failure is a test failure).
    func get(_ url: String) throws -> String {
        let r = try runProcess("/usr/bin/curl", ["-sS", "--max-time", "10", url])
        XCTAssertEqual(r.status, 0, "curl \(url): \(r.stderr)")
        return r.stdout
    }

    /// A metric's value in Prometheus text.
    func metric(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }
}
