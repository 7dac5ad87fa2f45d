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

    /// speedscope's format: frames shared, one sampled profile whose
    /// samples rebuild the folded stacks with their weights.
    func testSpeedscopeExport() throws {
        let p = Profile(folded: lines(Self.folded))
        let json = try JSONSerialization.jsonObject(with: Data(try p.speedscope(name: "t"))) as! [String: Any]
        XCTAssertEqual(json["$schema"] as? String, "https://www.speedscope.app/file-format-schema.json")
        let frames = ((json["shared"] as! [String: Any])["frames"] as! [[String: Any]]).map { $0["name"] as! String }
        let profile = (json["profiles"] as! [[String: Any]])[0]
        XCTAssertEqual(profile["type"] as? String, "sampled")
        let samples = profile["samples"] as! [[Int]]
        let weights = profile["weights"] as! [Int]
        var rebuilt = ""
        for (s, w) in zip(samples, weights) { rebuilt += s.map { frames[$0] }.joined(separator: ";") + " \(w)\n" }
        XCTAssertEqual(rebuilt, Profile.renderFolded(p.foldedStacks()))
        XCTAssertEqual(profile["endValue"] as? Int, 96)
    }

    // MARK: - Golden files

    /// A profile as `sprof record` builds it (kernel, JIT, inlined,
    /// truncated and unnamed frames, two processes), and its folded and top
    /// renderings, compared with Tests/Fixtures/profile/*. Re-record with
    /// SPROF_RECORD_GOLDEN=1 after a deliberate change (and read the diff).
    func testGoldenFoldedAndTop() throws {
        var b = ProfileBuilder(sampleTypes: [.init("samples", "count"), .init("cpu", "nanoseconds")])
        b.setPeriod(.init("cpu", "nanoseconds"), 1_001_001)
        let exe = b.mapping(start: 0x5555_0000_0000, limit: 0x5555_0001_0000, fileOffset: 0, file: "/usr/bin/app", buildID: "ab12")
        let libc = b.mapping(start: 0x7f00_0000_0000, limit: 0x7f00_0020_0000, fileOffset: 0x28000, file: "/lib/libc.so.6", buildID: "cd34")
        let kernel = b.mapping(start: 0xffff_8000_0000_0000, limit: .max, fileOffset: 0, file: "[kernel.kallsyms]", buildID: "")
        let jit = b.mapping(start: 0x7e00_0000_0000, limit: 0x7e00_0001_0000, fileOffset: 0, file: "[jit]", buildID: "")
        func f(_ name: String, _ system: String? = nil) -> UInt64 { b.function(name: name, systemName: system ?? name, file: "/src/app.cpp") }
        let start = b.location(mappingID: libc, address: 0x7f00_0002_9d90, lines: [.init(functionID: f("__libc_start_call_main"), line: 58)])
        let main = b.location(mappingID: exe, address: 0x5555_0000_1100, lines: [.init(functionID: f("main"), line: 10)])
        let hot = b.location(mappingID: exe, address: 0x5555_0000_1200, lines: [
            .init(functionID: f("mix(unsigned long)", "_Z3mixm"), line: 7),
            .init(functionID: f("inner<int>(int)", "_Z5innerIiEii"), line: 12),
            .init(functionID: f("app::Runner::run()", "_ZN3app6Runner3runEv"), line: 30)])
        let write = b.location(mappingID: libc, address: 0x7f00_0011_4870, lines: [.init(functionID: f("write"), line: 0)])
        let entry = b.location(mappingID: kernel, address: 0xffff_ffff_8200_0070, lines: [.init(functionID: f("entry_SYSCALL_64_after_hwframe"), line: 0)])
        let vfs = b.location(mappingID: kernel, address: 0xffff_ffff_8140_0010, lines: [.init(functionID: f("vfs_write"), line: 0)])
        let jitted = b.location(mappingID: jit, address: 0x7e00_0000_0040, lines: [.init(functionID: f("LazyCompile:*fib app.js:3"), line: 0)])
        let unnamed = b.location(mappingID: exe, address: 0x5555_0000_3f00, lines: [])
        let truncated = b.location(mappingID: 0, address: 0, lines: [.init(functionID: f("[truncated: no unwind information]"), line: 0)])
        func labels(_ pid: Int64, _ comm: String) -> [Profile.Label] {
            [.init(key: "pid", number: pid), .init(key: "tid", number: pid), .init(key: "comm", string: comm), .init(key: "thread_name", string: comm)]
        }
        for _ in 0..<50 { b.addSample(locationIDs: [hot, main, start], values: [1, 1_001_001], labels: labels(100, "app")) }
        for _ in 0..<20 { b.addSample(locationIDs: [vfs, entry, write, main, start], values: [1, 1_001_001], labels: labels(100, "app")) }
        for _ in 0..<7 { b.addSample(locationIDs: [jitted, truncated], values: [1, 1_001_001], labels: labels(200, "node")) }
        for _ in 0..<3 { b.addSample(locationIDs: [unnamed, main, start], values: [1, 1_001_001], labels: labels(100, "app")) }
        let profile = try Pprof.decode(try Pprof.encode(b.profile), path: "golden")
        XCTAssertEqual(profile.samples.count, 4, "identical samples merged")

        let folded = Profile.renderFolded(profile.foldedStacks())
        let mangled = Profile.renderFolded(profile.foldedStacks(mangled: true))
        let (rows, total) = profile.top()
        let top = Profile.renderTop(rows, total: total, limit: 20, unit: "samples")
        try golden("profile.folded", folded)
        try golden("profile-mangled.folded", mangled)
        try golden("profile.top", top)
    }

    /// Compares `text` with Tests/Fixtures/profile/NAME, or writes it there
    /// when SPROF_RECORD_GOLDEN=1.
    func golden(_ name: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fixtures/profile/\(name)").standardized.path
        if ProcessInfo.processInfo.environment["SPROF_RECORD_GOLDEN"] == "1" {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        let expected = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertEqual(text, expected, "\(name) differs from the golden file (SPROF_RECORD_GOLDEN=1 re-records it)", file: file, line: line)
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

/// "both" in `sprof report --value both`: a column summing others.
final class ProfileSumTests: XCTestCase {
    func testAddingSumAppendsAColumnPerSample() {
        var b = ProfileBuilder(sampleTypes: [.init("samples", "count"), .init("cpu", "nanoseconds"), .init("offcpu", "nanoseconds")])
        let f = b.function(name: "f", systemName: "f", file: "")
        let l = b.location(mappingID: 0, address: 1, lines: [.init(functionID: f, line: 0)])
        let g = b.location(mappingID: 0, address: 2, lines: [.init(functionID: b.function(name: "g", systemName: "g", file: ""), line: 0)])
        b.addSample(locationIDs: [l], values: [1, 10, 0], labels: [])
        b.addSample(locationIDs: [g, l], values: [0, 0, 500], labels: [])
        let p = b.profile.addingSum(of: [1, 2], as: .init("wall", "nanoseconds"))
        XCTAssertEqual(p.sampleTypes.map(\.type), ["samples", "cpu", "offcpu", "wall"])
        XCTAssertEqual(p.samples.map(\.values), [[1, 10, 0, 10], [0, 0, 500, 500]])
        XCTAssertEqual(p.foldedStacks(valueIndex: 3).values.reduce(0, +), 510)
    }
}
