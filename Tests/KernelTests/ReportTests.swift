import Foundation
import XCTest
import SprofProfile

/// The two commands people type — `sprof record -- CMD` (or `-p PID`), then
/// `sprof report` / `sprof report --flamegraph` — in one directory, and the
/// profile read by `go tool pprof`, the reference reader.
final class ReportTests: XCTestCase {
    var sprof: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
    }

    /// Runs a command in `dir`; returns stdout (stderr in the failure message).
    @discardableResult
    func run(_ tool: String, _ args: [String], in dir: String, env: [String: String] = [:]) throws -> String {
        let r = try runProcess(tool, args, in: dir, env: env)
        XCTAssertEqual(r.status, 0, "\(tool) \(args): \(r.stderr)")
        return r.stdout
    }

    func testRecordThenReportInOneDirectory() throws {
        try requireKernelAccess()
        let bin = try Fixtures.build("chain")
        let dir = NSTemporaryDirectory() + "sprof-report-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        try run(sprof, ["record", "--", bin, "1"], in: dir)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/sprof.pb.gz"), "record writes ./sprof.pb.gz by default")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".raw") }, [],
                       "no intermediate raw file is left")

        // The profile: sample types, period, labels, build-ids, inline-capable locations.
        let profile = try Pprof.read(path: dir + "/sprof.pb.gz")
        XCTAssertEqual(profile.sampleTypes, [.init("samples", "count"), .init("cpu", "nanoseconds")])
        XCTAssertEqual(profile.periodType, .init("cpu", "nanoseconds"))
        XCTAssertEqual(profile.period, 1_000_000_000 / 999)
        XCTAssertGreaterThan(profile.durationNanos, 500_000_000)
        XCTAssertGreaterThan(profile.timeNanos, 1_700_000_000_000_000_000)
        let sample = try XCTUnwrap(profile.samples.first)
        XCTAssertEqual(Set(sample.labels.map(\.key)), ["pid", "tid", "comm", "thread_name"])
        let binary = try XCTUnwrap(profile.mappings.first { $0.file == bin })
        XCTAssertEqual(binary.buildID.count, 40, "the fixture's GNU build-id, in hex")
        XCTAssertTrue(binary.hasFunctions && binary.hasFilenames && binary.hasLineNumbers)

        // `sprof report` with no file reads ./sprof.pb.gz; --top is asked for explicitly (stdout is a pipe).
        let top = try run(sprof, ["report", "--top", "--limit", "5"], in: dir)
        XCTAssertTrue(top.contains("leaf_hot"), top)
        let folded = try run(sprof, ["report"], in: dir)
        let hottest = try XCTUnwrap(folded.split(separator: "\n").max {
            Int($0.split(separator: " ").last!)! < Int($1.split(separator: " ").last!)!
        })
        XCTAssertTrue(hottest.hasPrefix("chain;"), "the process name is the first frame: \(hottest)")
        XCTAssertTrue(hottest.contains(";main;run;level1;level2;leaf_hot "), String(hottest))

        // `sprof report --flamegraph` writes ./flamegraph.svg and prints its path.
        let printed = try run(sprof, ["report", "--flamegraph"], in: dir)
        XCTAssertEqual(printed, "flamegraph.svg\n")
        let svg = try String(contentsOfFile: dir + "/flamegraph.svg", encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<?xml") || svg.hasPrefix("<svg"), String(svg.prefix(80)))
        XCTAssertTrue(svg.contains("leaf_hot"))

        // The same profile against itself: a differential graph; a filtered re-export; speedscope.
        XCTAssertEqual(try run(sprof, ["report", "--flamegraph", "diff.svg", "--diff", "sprof.pb.gz"], in: dir), "diff.svg\n")
        XCTAssertTrue(try String(contentsOfFile: dir + "/diff.svg", encoding: .utf8).contains("leaf_hot"))
        let pid = try XCTUnwrap(sample.label("pid")?.number)
        try run(sprof, ["report", "--pprof", "one.pb.gz", "--pid", "\(pid)", "--focus", "leaf_hot"], in: dir)
        let one = try Pprof.read(path: dir + "/one.pb.gz")
        XCTAssertFalse(one.samples.isEmpty)
        XCTAssertTrue(one.samples.allSatisfy { $0.label("pid")?.number == pid })
        XCTAssertLessThanOrEqual(one.samples.count, profile.samples.count)
        try run(sprof, ["report", "--speedscope", "s.json"], in: dir)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/s.json"))) as? [String: Any]
        XCTAssertNotNil(json?["profiles"])

        // go tool pprof reads it: leaf_hot has most of the flat time.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/go") else {
            throw skipOrFailInCI("needs go (Debian: golang-go) for go tool pprof")
        }
        let env = ["HOME": dir, "GOCACHE": dir + "/gocache", "PPROF_TMPDIR": dir]
        let pprofTop = try run("/usr/bin/go", ["tool", "pprof", "-top", "-nodecount=5", "sprof.pb.gz"], in: dir, env: env)
        let leafLine = try XCTUnwrap(pprofTop.split(separator: "\n").first { $0.hasSuffix(" leaf_hot") }, pprofTop)
        let flatPercent = try XCTUnwrap(Double(leafLine.split(separator: " ")[1].dropLast()))
        XCTAssertGreaterThan(flatPercent, 90, pprofTop)
        let tags = try run("/usr/bin/go", ["tool", "pprof", "-tags", "sprof.pb.gz"], in: dir, env: env)
        XCTAssertTrue(tags.contains("comm: Total") && tags.contains("chain"), tags)
        let raw = try run("/usr/bin/go", ["tool", "pprof", "-raw", "sprof.pb.gz"], in: dir, env: env)
        XCTAssertTrue(raw.contains("c_chain") || raw.contains(bin), "mappings are listed: \(raw.prefix(2000))")
    }
}

extension ReportTests {
    /// Runs sprof in `dir` expecting failure; returns stderr.
    func failing(_ args: [String], in dir: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: sprof)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertNotEqual(p.terminationStatus, 0, "sprof \(args) should fail")
        return String(decoding: data, as: UTF8.self)
    }

    /// Bad input to `report` and `flamegraph`: one clear line each, no file written.
    func testBadInputIsNamed() throws {
        let dir = NSTemporaryDirectory() + "sprof-report-bad-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertTrue(try failing(["report"], in: dir).contains("no sprof.pb.gz here: record one with `sprof record"))
        try "not a profile at all".write(toFile: dir + "/junk.pb.gz", atomically: true, encoding: .utf8)
        XCTAssertTrue(try failing(["report", "junk.pb.gz"], in: dir).contains("junk.pb.gz: not a pprof profile"))
        // A real profile cut in half: a truncated gzip stream.
        let whole = try Pprof.encode(Profile(folded: [(["app", "main", "work"], 5)]))
        try Data(whole.prefix(whole.count / 2)).write(to: URL(fileURLWithPath: dir + "/cut.pb.gz"))
        XCTAssertTrue(try failing(["report", "cut.pb.gz", "--top"], in: dir).contains("truncated"))
        // An empty profile: no SVG at all, rather than a broken one.
        try Data(try Pprof.encode(Profile())).write(to: URL(fileURLWithPath: dir + "/empty.pb.gz"))
        let empty = try failing(["report", "empty.pb.gz", "--flamegraph", "e.svg"], in: dir)
        XCTAssertFalse(empty.isEmpty)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/e.svg"))
        // Folded input with a bad line: its number.
        try "a;b 1\na;c x\n".write(toFile: dir + "/bad.folded", atomically: true, encoding: .utf8)
        XCTAssertTrue(try failing(["flamegraph", "bad.folded"], in: dir).contains("line 2"))
    }
}
