import Foundation
import XCTest
@testable import SprofProfile

/// The profile model and its pprof encoding: round trips, `go tool pprof`
/// as the oracle that the files are real pprof, and damaged input.
final class ProfileTests: XCTestCase {
    static let folded = """
        app;_start;main;run;compute 40
        app;_start;main;run;compute;mix_[i];step_[i] 25
        app;_start;main;app::Runner::run(double);std::vector<int, std::allocator<int> >::push_back(int const&) 7
        app;_start;main;write;entry_SYSCALL_64_after_hwframe_[k];do_syscall_64_[k];ksys_write_[k] 12
        node;[truncated: no unwind information];jit_hot_loop_[j] 9
        node;main;uv_run;libuv.so.1+0x1f00 3
        """

    func lines(_ text: String) -> [([String], Int64)] {
        text.split(separator: "\n").map { line in
            let space = line.lastIndex(of: " ")!
            return (line[..<space].split(separator: ";").map(String.init), Int64(line[line.index(after: space)...])!)
        }
    }

    /// folded → profile → pprof bytes → profile → folded: identical text.
    func testFoldedPprofFoldedRoundTrip() throws {
        let profile = Profile(folded: lines(Self.folded))
        let bytes = try Pprof.encode(profile)
        XCTAssertTrue(Gzip.isGzip(bytes))
        let back = try Pprof.decode(bytes, path: "mem")
        XCTAssertEqual(back, profile)
        let expected = Self.folded.split(separator: "\n").sorted().joined(separator: "\n") + "\n"
        XCTAssertEqual(Profile.renderFolded(back.foldedStacks()), expected)
    }

    /// Inlined frames share one location, innermost first, as pprof wants.
    func testInlinedFramesShareALocation() {
        let p = Profile(folded: lines("app;main;compute;mix_[i];step_[i] 1"))
        let leaf = p.location(p.samples[0].locationIDs[0])!
        XCTAssertEqual(leaf.lines.map { p.function($0.functionID)!.name }, ["step", "mix", "compute"])
        XCTAssertEqual(p.samples[0].locationIDs.count, 2, "main, and compute with its two inlined functions")
    }

    func testTopTable() {
        let p = Profile(folded: lines(Self.folded))
        let (rows, total) = p.top()
        XCTAssertEqual(total, 96)
        XCTAssertEqual(rows.first, .init(name: "compute", flat: 40, cumulative: 65))
        XCTAssertEqual(rows.first { $0.name == "main" }, .init(name: "main", flat: 0, cumulative: 87))
        XCTAssertEqual(rows.first { $0.name == "step" }?.flat, 25)
        let text = Profile.renderTop(rows, total: total, limit: 3, unit: "samples")
        XCTAssertTrue(text.hasPrefix("Showing 3 of "), text)
        XCTAssertTrue(text.contains("        40  41.67%  41.67%         65  67.71%  compute\n"), text)
    }

    func testFilters() throws {
        var p = Profile(folded: lines(Self.folded))
        var f = SampleFilter()
        f.comms = ["node"]
        XCTAssertEqual(p.foldedStacks(filter: f).values.reduce(0, +), 12)
        f = SampleFilter()
        f.focus = try Regex("^ksys_")
        XCTAssertEqual(p.foldedStacks(filter: f).values.reduce(0, +), 12)
        p.samples[0].labels.append(.init(key: "pid", number: 42))
        f = SampleFilter()
        f.pids = [42]
        XCTAssertEqual(p.foldedStacks(filter: f).values.reduce(0, +), 40)
    }

    /// `go tool pprof` (the reference reader) reads the file: its -top
    /// table has our functions with our counts.
    func testGoToolPprofReadsIt() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/go") else {
            throw skipOrFailInCI("needs go (Debian: apt-get install golang-go) for go tool pprof")
        }
        var profile = Profile(folded: lines(Self.folded))
        profile.sampleTypes = [.init("samples", "count")]
        profile.periodType = .init("cpu", "nanoseconds")
        profile.period = 1_001_001
        profile.durationNanos = 1_000_000_000
        let path = NSTemporaryDirectory() + "sprof-profile-\(getpid()).pb.gz"
        defer { unlink(path) }
        try Data(try Pprof.encode(profile)).write(to: URL(fileURLWithPath: path))
        let out = try goPprof(["-top", "-nodecount=50", path])
        XCTAssertTrue(out.contains("Showing nodes accounting for 96, 100% of 96 total"), out)
        XCTAssertTrue(out.range(of: #"\s40\s+41\.67%\s+41\.67%\s+65\s+67\.71%\s+compute\n"#, options: .regularExpression) != nil, out)
        // pprof shortens C++ names for display (std::vector::push_back); the full one is in the file.
        XCTAssertTrue(out.contains("std::vector::push_back"), out)
        XCTAssertTrue(out.contains("step (inline)") && out.contains("mix (inline)"), "inlined lines: \(out)")
        XCTAssertTrue(out.contains("ksys_write"), out)
    }

    func goPprof(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/go")
        p.arguments = ["tool", "pprof"] + args
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = env["HOME"] ?? NSTemporaryDirectory()
        env["PPROF_TMPDIR"] = NSTemporaryDirectory()
        env["GOCACHE"] = NSTemporaryDirectory() + "sprof-gocache"
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, text)
        return text
    }

    // MARK: - Damaged input

    func testNotGzipNotPprof() {
        XCTAssertThrowsError(try Pprof.decode(Array("hello, this is not a profile".utf8), path: "x.pb.gz")) { error in
            guard case ProfileError.notPprof(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "x.pb.gz")
        }
    }

    func testTruncatedGzipSaysTruncated() throws {
        let bytes = try Pprof.encode(Profile(folded: lines(Self.folded)))
        XCTAssertThrowsError(try Pprof.decode(Array(bytes.prefix(bytes.count / 2)), path: "cut.pb.gz")) { error in
            guard case ProfileError.badGzip(_, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("truncated"), reason)
        }
        var corrupt = bytes
        corrupt[20] ^= 0xff
        corrupt[21] ^= 0xff
        XCTAssertThrowsError(try Pprof.decode(corrupt, path: "bad.pb.gz"))
    }

    func testDanglingReferencesAreNamed() throws {
        var p = Profile(folded: lines("app;main 1"))
        p.samples[0].locationIDs.append(999)
        let bytes = try Pprof.encode(p)
        XCTAssertThrowsError(try Pprof.decode(bytes, path: "d.pb.gz")) { error in
            XCTAssertTrue("\(error)".contains("location 999"), "\(error)")
        }
    }
}
