import Foundation
import XCTest
import SprofProfile

/// `sprof report` and `sprof flamegraph` writing where another user planted
/// a symlink, as a user runs them (no kernel needed): the outputs replace the
/// link, the file it points to is untouched, and the outputs are 0600
/// (Tests/SprofTests/OutputSafetyTests.swift covers each writer in detail).
final class OutputSafetyCLITests: XCTestCase {
    var sprof: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
    }

    func run(_ args: [String]) throws -> (status: Int32, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: sprof)
        p.arguments = args
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: e, as: UTF8.self))
    }

    func testReportOutputsReplacePlantedSymlinks() throws {
        guard FileManager.default.isExecutableFile(atPath: sprof) else { throw XCTSkip("\(sprof) not built") }
        let dir = NSTemporaryDirectory() + "sprof-cli-outputs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(mkdir(dir, 0o755), 0)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // As /tmp: sticky and world-writable.
        XCTAssertEqual(chmod(dir, 0o1777), 0)

        var b = ProfileBuilder(sampleTypes: [.init("samples", "count")])
        b.setTime(startNanos: 1_700_000_000_000_000_000, durationNanos: 1_000_000_000)
        let mapping = b.mapping(start: 0x400000, limit: 0x500000, fileOffset: 0, file: "/usr/bin/app", buildID: "abcd")
        let main = b.function(name: "main", systemName: "main", file: "app.c")
        let leaf = b.function(name: "leaf", systemName: "leaf", file: "app.c")
        let l1 = b.location(mappingID: mapping, address: 0x401000, lines: [.init(functionID: main, line: 1)])
        let l2 = b.location(mappingID: mapping, address: 0x401010, lines: [.init(functionID: leaf, line: 2)])
        b.addSample(locationIDs: [l2, l1], values: [5], labels: [])
        let input = dir + "/in.pb.gz"
        XCTAssertTrue(FileManager.default.createFile(atPath: input, contents: Data(try Pprof.encode(b.profile))))
        let folded = dir + "/in.folded"
        XCTAssertTrue(FileManager.default.createFile(atPath: folded, contents: Data("main;leaf 5\n".utf8)))

        let victim = dir + "/victim"
        XCTAssertTrue(FileManager.default.createFile(atPath: victim, contents: Data("precious".utf8)))
        let outputs = ["--flamegraph": dir + "/out.svg", "--pprof": dir + "/out.pb.gz", "--speedscope": dir + "/out.json"]
        for (_, path) in outputs {
            XCTAssertEqual(symlink(victim, path), 0)
            // Another user's link, where root can make one.
            if geteuid() == 0 { XCTAssertEqual(lchown(path, 65534, 65534), 0) }
        }
        let svg2 = dir + "/fg.svg"
        XCTAssertEqual(symlink(victim, svg2), 0)

        for (flag, path) in outputs.sorted(by: { $0.key < $1.key }) {
            let r = try run(["report", input, flag, path])
            XCTAssertEqual(r.status, 0, "\(flag): \(r.stderr)")
        }
        let r = try run(["flamegraph", folded, "-o", svg2])
        XCTAssertEqual(r.status, 0, r.stderr)

        XCTAssertEqual(FileManager.default.contents(atPath: victim), Data("precious".utf8), "nothing written through a link")
        for path in Array(outputs.values) + [svg2] {
            var st = stat()
            XCTAssertEqual(lstat(path, &st), 0, path)
            XCTAssertEqual(st.st_mode & S_IFMT, S_IFREG, "\(path): the link was replaced by the output")
            XCTAssertEqual(st.st_mode & 0o777, 0o600, path)
            XCTAssertGreaterThan(st.st_size, 8, path)
        }
        XCTAssertTrue(String(decoding: FileManager.default.contents(atPath: dir + "/out.svg") ?? Data(), as: UTF8.self).contains("<svg"))
    }
}
