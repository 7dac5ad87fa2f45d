import Foundation
import XCTest
import SprofBase
import SprofCapture
@testable import SprofSymbols

/// `PerfMap`: the parser on hand-written text, then two real writers of
/// perf map files: the Tests/Fixtures/jit.c fixture (hand-made machine code in
/// anonymous memory) and CPython 3.12's `-X perf` trampolines.
final class PerfMapTests: XCTestCase {

    // MARK: - Parser

    func testNamesRunToTheEndOfTheLineSpacesIncluded() {
        let map = PerfMap(text: """
            7f0e3830d7b1 b py::sprof_marker_function:/tmp/with space/script.py
            1000 10 LazyCompile:*fib /home/me/app.js:3:13\r
            2000\t8\tStub:\tCallICTrampoline
            """)
        XCTAssertEqual(map.skippedLines, 0)
        XCTAssertEqual(map.symbols.map(\.name), ["LazyCompile:*fib /home/me/app.js:3:13",
                                                 "Stub:\tCallICTrampoline",
                                                 "py::sprof_marker_function:/tmp/with space/script.py"],
                       "sorted by start; a CR before the newline is not part of the name")
        let hit = map.lookup(ProcessAddress(0x7f0e_3830_d7b1 + 3))
        XCTAssertEqual(hit?.name, "py::sprof_marker_function:/tmp/with space/script.py")
        XCTAssertEqual(hit?.start, ProcessAddress(0x7f0e_3830_d7b1))
        XCTAssertEqual(hit?.offset, 3)
    }

    func testBoundariesAreStartThroughStartPlusSizeMinusOne() {
        let map = PerfMap(text: "1000 10 a\n1010 8 b\n1020 4 c\n")
        XCTAssertNil(map.lookup(ProcessAddress(0xfff)))
        XCTAssertEqual(map.lookup(ProcessAddress(0x1000))?.name, "a")
        XCTAssertEqual(map.lookup(ProcessAddress(0x100f))?.name, "a")
        XCTAssertEqual(map.lookup(ProcessAddress(0x100f))?.offset, 0xf)
        XCTAssertEqual(map.lookup(ProcessAddress(0x1010))?.name, "b", "start+size is the next symbol's")
        XCTAssertEqual(map.lookup(ProcessAddress(0x1017))?.name, "b")
        XCTAssertNil(map.lookup(ProcessAddress(0x1018)), "the gap between b and c")
        XCTAssertEqual(map.lookup(ProcessAddress(0x1023))?.name, "c")
        XCTAssertNil(map.lookup(ProcessAddress(0x1024)))
        XCTAssertNil(map.lookup(ProcessAddress(UInt64.max)))
        XCTAssertNil(PerfMap(text: "").lookup(ProcessAddress(0)))
        // The top of the address space: the end must fit 64 bits, so the
        // last byte is never named (no user space reaches it: x86-64's ends
        // at 2^47, aarch64's at 2^52).
        let top = PerfMap(text: "fffffffffffffff0 f top\nfffffffffffffff0 10 past\n")
        XCTAssertEqual(top.skippedLines, 1)
        XCTAssertEqual(top.lookup(ProcessAddress(UInt64.max - 1))?.offset, 0xe)
        XCTAssertNil(top.lookup(ProcessAddress(UInt64.max)))
    }

    func testMalformedLinesAreSkippedAndCounted() {
        let map = PerfMap(text: """
            1000 10 good

            1000 10
            1000 10 \u{20}
            1000
            zz00 10 bad start
            1000 1g bad size
            10000000000000000 10 seventeen digits
            ffffffffffffffff 2 past the top
            -1000 10 negative
              1000 10 leading blank
            0x2000 0x10 prefixed
            00000000000003000 4 leading zeros are not too long
            4000 0 empty
            """)
        // Blank lines are not counted. Blanks after a field are eaten, so
        // "1000 10" followed by spaces has no name; a leading blank is no hex.
        XCTAssertEqual(map.skippedLines, 9)
        XCTAssertEqual(map.symbols.map(\.name), ["good", "prefixed", "leading zeros are not too long"])
        XCTAssertNil(map.lookup(ProcessAddress(0x4000)), "size 0 names no address")
    }

    func testLaterLinesWinTheirRangeOfAnOverlap() {
        let map = PerfMap(text: """
            1000 100 old
            1040 20 new
            1000 100 older duplicate
            1000 100 newest whole
            2000 40 left
            2020 40 right
            2030 4 inner
            """)
        // "newest whole" covers all of 0x1000..0x1100: the earlier three own nothing.
        XCTAssertEqual(map.lookup(ProcessAddress(0x1050))?.name, "newest whole")
        XCTAssertEqual(map.lookup(ProcessAddress(0x1050))?.offset, 0x50)
        XCTAssertFalse(map.symbols.contains { $0.name == "old" || $0.name == "new" || $0.name == "older duplicate" })
        // left [2000,2040), right [2020,2060) wins 2020.., inner [2030,2034) wins its 4 bytes.
        XCTAssertEqual(map.lookup(ProcessAddress(0x201f))?.name, "left")
        XCTAssertEqual(map.lookup(ProcessAddress(0x2020))?.name, "right")
        XCTAssertEqual(map.lookup(ProcessAddress(0x2030))?.name, "inner")
        XCTAssertEqual(map.lookup(ProcessAddress(0x2033))?.offset, 3)
        let after = map.lookup(ProcessAddress(0x2034))
        XCTAssertEqual(after?.name, "right", "what is left of an older symbol keeps its name and its start")
        XCTAssertEqual(after?.start, ProcessAddress(0x2020))
        XCTAssertEqual(after?.offset, 0x14)
        XCTAssertNil(map.lookup(ProcessAddress(0x2060)))
        XCTAssertEqual(map.symbols.map(\.name), ["newest whole", "left", "right", "inner"])

        // An older symbol split in two by a newer one inside it.
        let split = PerfMap(text: "1000 100 outer\n1040 10 inner\n")
        XCTAssertEqual(split.lookup(ProcessAddress(0x103f))?.name, "outer")
        XCTAssertEqual(split.lookup(ProcessAddress(0x1040))?.name, "inner")
        XCTAssertEqual(split.lookup(ProcessAddress(0x1050))?.name, "outer")
        XCTAssertEqual(split.lookup(ProcessAddress(0x1050))?.offset, 0x50)
    }

    /// Random overlapping lines against the definition: an address belongs to
    /// the last line whose range holds it.
    func testOverlapResolutionMatchesTheDefinitionOnRandomMaps() {
        var rng = SplitMix64(seed: 0x9E7F_0A9)
        for _ in 0..<300 {
            var lines: [(start: UInt64, size: UInt64)] = []
            for _ in 0..<Int(rng.next() % 12) {
                lines.append((0x100 + rng.next() % 64, rng.next() % 20))
            }
            let text = lines.enumerated().map { String($1.start, radix: 16) + " " + String($1.size, radix: 16) + " L\($0)" }
                .joined(separator: "\n")
            let map = PerfMap(text: text)
            for a in UInt64(0xf0)..<0x180 {
                let want = lines.indices.last { a >= lines[$0].start && a < lines[$0].start + lines[$0].size }
                let got = map.lookup(ProcessAddress(a))
                XCTAssertEqual(got?.name, want.map { "L\($0)" }, "address \(a) in\n\(text)")
                if let w = want {
                    XCTAssertEqual(got?.start, ProcessAddress(lines[w].start))
                    XCTAssertEqual(got?.offset, a - lines[w].start)
                }
            }
            XCTAssertEqual(map.symbols.map(\.start), map.symbols.map(\.start).sorted())
        }
    }

    func testNamespacePIDIsTheLastNSpidField() {
        XCTAssertEqual(PerfMap.namespacePID(status: "Name:\tpython3\nNSpid:\t4242\t17\t1\nPPid:\t1\n"), 1)
        XCTAssertEqual(PerfMap.namespacePID(status: "NSpid:\t4242\n"), 4242)
        XCTAssertNil(PerfMap.namespacePID(status: "Name:\told kernel\nPid:\t4242\n"))
        let mine = getpid()
        XCTAssertEqual(PerfMap.paths(pid: mine), ["/proc/\(mine)/root/tmp/perf-\(mine).map", "/tmp/perf-\(mine).map"],
                       "the tests run in one pid namespace")
    }

    func testNoFileIsNil() {
        XCTAssertNil(PerfMap.load(pid: Int32.max))
    }

    // MARK: - Tests/Fixtures/jit.c

    func testFixtureJITCodeIsNamedByItsPerfMap() throws {
        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        let exe = dir + "/jit"
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/jit.c").path
        do {
            try ELFTestTools.gcc(["-O2", "-fomit-frame-pointer", "-g", "-o", exe, source])
        } catch let skip as XCTSkip {
            throw skipOrFailInCI(skip.message ?? "needs gcc")
        }

        let child = try PerfMapChild(exe, ["2"])
        defer { child.kill() }
        let values = try child.values(["pid", "jit"])
        let pid = try XCTUnwrap(values["pid"].flatMap { Int32($0) })
        let jit = ProcessAddress(try XCTUnwrap(values["jit"].flatMap { UInt64($0, radix: 16) }))
        XCTAssertEqual(pid, child.pid)

        let maps = try ProcMaps.read(pid: pid)
        let region = try XCTUnwrap(maps.first { $0.contains(jit) }, "\(jit) is mapped")
        XCTAssertTrue(region.isExecutable && !region.permissions.contains(.write), "\(region.permissions)")
        XCTAssertTrue(region.inode == 0 && region.path.isEmpty, "anonymous, not '\(region.path)'")

        let map = try XCTUnwrap(PerfMap.load(pid: pid), "perf-\(pid).map")
        XCTAssertEqual(map.skippedLines, 0)
        XCTAssertEqual(map.symbols.map(\.name), ["jit_hot_loop", "jit decoy (never called)"])
        let size = try XCTUnwrap(map.symbols.first).size  // 14 bytes on x86-64, 16 on aarch64
        for offset: UInt64 in [0, 5, size - 1] {
            let hit = map.lookup(jit.advanced(by: Int64(offset)))
            XCTAssertEqual(hit?.name, "jit_hot_loop")
            XCTAssertEqual(hit?.start, jit)
            XCTAssertEqual(hit?.offset, offset)
        }
        XCTAssertNil(map.lookup(jit.advanced(by: Int64(size))))
        XCTAssertEqual(map.lookup(jit.advanced(by: 0x100 + 3))?.name, "jit decoy (never called)")
        let text = try XCTUnwrap(maps.first { $0.path == exe && $0.isExecutable }, "\(exe)'s text is mapped")
        XCTAssertNil(map.lookup(text.start))
        XCTAssertNil(map.lookup(text.start.advanced(by: Int64(text.size / 2))))

        XCTAssertEqual(child.wait(), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/perf-\(pid).map"), "the fixture removes its map")
    }

    // MARK: - CPython 3.12 -X perf

    static let pythonScript = """
        import os, sys, time

        def sprof_marker_function(n):
            s = 0
            for i in range(n):
                s += i
            return s

        sprof_marker_function(1)
        print(f"pid={os.getpid()}", flush=True)
        print(f"trampoline={sys.is_stack_trampoline_active()}", flush=True)
        end = time.monotonic() + 30  # the test kills it long before
        while time.monotonic() < end:
            sprof_marker_function(1000)

        """

    func testPython312PerfTrampolinesAreFound() throws {
        let python = try Self.findPython312()
        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        let script = dir + "/marker.py"
        try ELFTestTools.write(Self.pythonScript, to: script)

        let child = try PerfMapChild(python, ["-X", "perf", script], environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"])
        var pid: Int32 = 0
        defer {
            child.kill()
            if pid > 0 { try? FileManager.default.removeItem(atPath: "/tmp/perf-\(pid).map") }
        }
        let values = try child.values(["pid", "trampoline"])
        pid = try XCTUnwrap(values["pid"].flatMap { Int32($0) })
        guard values["trampoline"] == "True" else {
            throw skipOrFailInCI("\(python) -X perf: sys.is_stack_trampoline_active() is \(values["trampoline"] ?? "?") (built without perf trampolines?)")
        }

        // CPython writes a line when a code object first runs through its trampoline.
        let file = "/tmp/perf-\(pid).map"
        let deadline = Date().addingTimeInterval(10)
        while !((try? String(contentsOfFile: file, encoding: .utf8))?.contains("sprof_marker_function") ?? false) {
            guard Date() < deadline else { return XCTFail("\(file) has no sprof_marker_function after 10 s") }
            usleep(50_000)
        }

        let map = try XCTUnwrap(PerfMap.load(pid: pid))
        let marker = try XCTUnwrap(map.symbols.first { $0.name.contains("sprof_marker_function") })
        XCTAssertTrue(marker.name.hasPrefix("py::sprof_marker_function:"), marker.name)
        XCTAssertGreaterThan(map.symbols.count, 10, "the interpreter's own startup functions are there too")

        let maps = try ProcMaps.read(pid: pid)
        let region = try XCTUnwrap(maps.first { $0.contains(marker.start) }, "\(marker.start) is mapped")
        XCTAssertTrue(region.isExecutable, "\(region.permissions)")
        XCTAssertTrue(region.inode == 0 && region.path.isEmpty, "anonymous, not '\(region.path)'")

        let hit = map.lookup(marker.start)
        XCTAssertEqual(hit?.name, marker.name)
        XCTAssertEqual(hit?.start, marker.start)
        XCTAssertEqual(hit?.offset, 0)
    }

    /// A CPython 3.12: `python3.12` on PATH (a pyenv shim there needs
    /// PYENV_VERSION), then pyenv's own versions; the interpreter's
    /// `sys.executable`, so the test runs it directly.
    static func findPython312() throws -> String {
        let env = ProcessInfo.processInfo.environment
        var candidates: [String] = []
        for dir in (env["PATH"] ?? "").split(separator: ":") { candidates.append(dir + "/python3.12") }
        for root in [env["PYENV_ROOT"], NSHomeDirectory() + "/.pyenv", "/root/.pyenv"].compactMap({ $0 }) {
            let versions = root + "/versions"
            let names = (try? FileManager.default.contentsOfDirectory(atPath: versions)) ?? []
            for v in names.filter({ $0.hasPrefix("3.12") }).sorted(by: >) { candidates.append("\(versions)/\(v)/bin/python3.12") }
        }
        candidates += ["/usr/local/bin/python3.12", "/usr/bin/python3.12"]

        var probeEnv = env
        if probeEnv["PYENV_VERSION"] == nil { probeEnv["PYENV_VERSION"] = "3.12.1" }
        var tried: [String] = []
        for c in candidates where !tried.contains(c) {
            tried.append(c)
            guard FileManager.default.isExecutableFile(atPath: c) else { continue }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: c)
            p.arguments = ["-c", "import sys; print(sys.version_info[0], sys.version_info[1], sys.executable)"]
            p.environment = probeEnv
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { continue }
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let f = String(decoding: data, as: UTF8.self).split(separator: " ", maxSplits: 2)
            if p.terminationStatus == 0, f.count == 3, f[0] == "3", f[1] == "12" {
                return f[2].trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        throw skipOrFailInCI("needs CPython 3.12 for -X perf (tried python3.12 on PATH and pyenv's versions/3.12*)")
    }
}

/// A child whose stdout `key=value` lines are read until the wanted keys are there.
private final class PerfMapChild {
    let process = Process()
    private let output = Pipe()
    private var text = ""

    struct Exited: Error, CustomStringConvertible { var description: String }

    init(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = output
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    func values(_ keys: [String]) throws -> [String: String] {
        while true {
            var values: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                values[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
            if keys.allSatisfy({ values[$0] != nil }) { return values }
            let data = output.fileHandleForReading.availableData
            guard !data.isEmpty else { throw Exited(description: "child exited before printing \(keys); said '\(text)'") }
            text += String(decoding: data, as: UTF8.self)
        }
    }

    /// Waits for the exit; the exit status.
    func wait() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    func kill() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}
