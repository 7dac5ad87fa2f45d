import Foundation
import XCTest
@testable import SprofAgent
@testable import SprofCapture
@testable import SprofFlameGraph
@testable import SprofProfile

/// The regression corpus of the data-format fuzz targets (bench/fuzz.sh
/// `pprof`, `raw`, `folded`, `toml`; Tests/Fixtures/fuzz/README.md, "Data
/// formats"): every file goes through what its harness
/// (bench/fuzz/*FuzzTarget.swift) does and must come back as a value or a
/// typed error. A trap fails the whole test run, which is the point. The
/// files that stand for a fix are also checked for the exact outcome.
final class DataFuzzCorpusTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz")

    /// The harness's inflate cap (PprofFuzzTarget.swift): the 8 MiB bomb in
    /// the corpus is over it.
    static let fuzzInflateLimit = 4 << 20

    func corpus(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        let dir = Self.root.appendingPathComponent(target)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        let files = try names.map { ($0, [UInt8](try Data(contentsOf: dir.appendingPathComponent($0)))) }
        XCTAssertFalse(files.isEmpty, "\(dir.path) is empty")
        for (name, bytes) in files { XCTAssertLessThan(bytes.count, 8192, "\(target)/\(name): corpus files stay under 8 KB") }
        return files
    }

    func file(_ target: String, _ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Self.root.appendingPathComponent(target).appendingPathComponent(name)))
    }

    // MARK: pprof

    /// PprofFuzzTarget.swift's path: decode, then every report output.
    @discardableResult
    func reportPath(_ bytes: [UInt8], _ name: String) -> Result<Profile, ProfileError> {
        let p: Profile
        do { p = try Pprof.decode(bytes, path: name, inflateLimit: Self.fuzzInflateLimit) } catch { return .failure(error) }
        for i in 0..<max(p.sampleTypes.count, 1) {
            _ = Profile.renderFolded(p.foldedStacks(valueIndex: i).filter { $0.value != 0 })
            let (rows, total) = p.top(valueIndex: i)
            _ = Profile.renderTop(rows, total: total, limit: 30, unit: "count")
        }
        _ = try? p.speedscope(name: name)
        _ = p.addingSum(of: [0, 1], as: .init("wall", "nanoseconds")).foldedStacks(valueIndex: p.sampleTypes.count)
        _ = try? Profile.merging([p, p])
        if let once = try? Pprof.encodeUncompressed(p) {
            let q = try? Pprof.decode(once, path: "round 1")
            XCTAssertNotNil(q, "\(name): a re-exported profile does not read back")
            if let q { XCTAssertEqual(try? Pprof.decode(try Pprof.encodeUncompressed(q), path: "round 2"), q, name) }
        }
        return .success(p)
    }

    func testPprofCorpusReadsOrFailsWithAnError() throws {
        var decoded = 0
        for (name, bytes) in try corpus("pprof") {
            if case .success = reportPath(bytes, name) { decoded += 1 }
        }
        XCTAssertGreaterThan(decoded, 3, "the corpus should hold readable profiles too")
    }

    func testPprofValuesNearInt64MaxSaturate() throws {
        let p = try Pprof.decode(try file("pprof", "values-sum-overflow.pb"), path: "v")
        // Two samples of Int64.max on one stack: summed, they used to trap.
        XCTAssertEqual(p.foldedStacks()[["?", "main", "work"]], .max)
        let (rows, total) = p.top()
        XCTAssertEqual(total, .max)
        XCTAssertEqual(rows.first { $0.name == "main" }?.cumulative, .max)
        XCTAssertTrue(Profile.renderTop(rows, total: total, limit: 5, unit: "count").contains("100.00%"))
        let negative = try Pprof.decode(try file("pprof", "values-negative-overflow.pb"), path: "n")
        XCTAssertEqual(negative.top().total, .min)
        // v * 10000 overflows for v = 10^15: the percentage is computed in floating point.
        let big = try Pprof.decode(try file("pprof", "percent-overflow.pb"), path: "b")
        let (bigRows, bigTotal) = big.top()
        XCTAssertTrue(Profile.renderTop(bigRows, total: bigTotal, limit: 5, unit: "count").contains(" 100.00% "))
    }

    func testPprofMergedDurationSaturates() throws {
        let early = try Pprof.decode(try file("pprof", "time-overflow.pb"), path: "t")
        XCTAssertEqual(early.timeNanos, .min + 1)
        var late = early
        late.timeNanos = 100
        late.durationNanos = .max
        // min + 1 to max: more than Int64 holds, which used to trap.
        let merged = try Profile.merging([early, late])
        XCTAssertEqual(merged.timeNanos, .min + 1)
        XCTAssertEqual(merged.durationNanos, .max)
    }

    func testPprofBrokenReferencesAreNamed() throws {
        let cases: [(String, String)] = [
            ("string-index-out-of-range.pb", "function 1's name refers to string 99; the table has 8"),
            ("string-index-negative.pb", "function 1's name refers to string -1; the table has 8"),
            ("label-string-out-of-range.pb", "label comm refers to string 1099511627776; the table has 8"),
            ("sample-type-string-out-of-range.pb", "a sample unit refers to string 4611686018427387904; the table has 8"),
            ("missing-location.pb", "a sample refers to location 7, which is not there"),
            ("missing-function.pb", "location 1 refers to function 9, which is not there"),
            ("missing-mapping.pb", "location 1 refers to mapping 3, which is not there"),
            ("value-count-mismatch.pb", "a sample has 3 values for 1 sample types"),
            ("string-table-not-empty-first.pb", "the string table does not start with \"\" (profile.proto requires it)"),
        ]
        for (name, reason) in cases {
            XCTAssertThrowsError(try Pprof.decode(try file("pprof", name), path: name), name) {
                XCTAssertEqual($0 as? ProfileError, .inconsistent(path: name, reason: reason), name)
            }
        }
    }

    func testPprofGzipBombIsRefusedAtTheCap() throws {
        let bomb = try file("pprof", "gzip-bomb-8MiB.pb.gz")
        XCTAssertThrowsError(try Pprof.decode(bomb, path: "bomb", inflateLimit: Self.fuzzInflateLimit)) {
            guard case .badGzip("bomb", let reason)? = $0 as? ProfileError else { return XCTFail("\($0)") }
            XCTAssertTrue(reason.contains("more than 4 MiB") && reason.contains("gzip bomb"), reason)
        }
        // Under the default cap (1 GiB) the same file inflates, and is then
        // found not to be a profile (8 MiB of zeros): the cap decides.
        XCTAssertThrowsError(try Pprof.decode(bomb, path: "bomb")) {
            guard case .notPprof? = $0 as? ProfileError else { return XCTFail("\($0)") }
        }
        for name in ["gzip-truncated.pb.gz", "gzip-bad-crc.pb.gz", "gzip-header-only.pb.gz"] {
            XCTAssertThrowsError(try Pprof.decode(try file("pprof", name), path: name), name) {
                guard case .badGzip? = $0 as? ProfileError else { return XCTFail("\(name): \($0)") }
            }
        }
    }

    // MARK: raw

    /// RawFileFuzzTarget.swift's path: open, every sample, a verbose dump.
    @discardableResult
    func dumpPath(_ bytes: [UInt8], _ name: String) -> Result<RawFileReader, CaptureError> {
        let reader: RawFileReader
        do { reader = try RawFileReader(bytes: bytes, name: name) } catch { return .failure(error) }
        var cursor = reader.makeSampleCursor()
        var n = 0
        var tgids: [Int32: Int] = [:]
        while let (s, snapshot) = cursor.next() {
            n += 1
            tgids[s.tgid, default: 0] += 1
            _ = s.kernelStack
            for a in s.userFrames { _ = snapshot?.mapping(containing: a) }
            _ = s.userStack.count + s.capturedUserStackCount
        }
        XCTAssertEqual(n, reader.sampleCount, name)
        XCTAssertEqual(tgids, reader.sampleCounts, name)
        _ = RawDump.render(reader, options: .init(limit: 50, verbose: true))
        return .success(reader)
    }

    func testRawCorpusReadsOrFailsWithAnError() throws {
        var read = 0
        for (name, bytes) in try corpus("raw") {
            if case .success = dumpPath(bytes, name) { read += 1 }
        }
        XCTAssertGreaterThan(read, 3)
    }

    func testRawValidFileReadsWhole() throws {
        guard case .success(let r) = dumpPath(try file("raw", "valid-small.raw"), "v") else { return XCTFail("valid-small.raw") }
        XCTAssertEqual(r.sampleCount, 3)
        XCTAssertEqual(r.unwoundSampleCount, 1)
        XCTAssertEqual(r.locations.count, 1)
        XCTAssertTrue(r.isComplete)
        XCTAssertEqual(r.warnings, [])
    }

    func testRawTruncatedRecordKeepsWhatCameBefore() throws {
        let bytes = try file("raw", "truncated-sample.raw")
        guard case .success(let r) = dumpPath(bytes, "t") else { return XCTFail("truncated-sample.raw") }
        // Header (48), metadata, process and mappings records are whole; the sample is cut.
        XCTAssertTrue(r.isTruncated)
        XCTAssertEqual(r.processes.map(\.pid), [42])
        XCTAssertEqual(r.snapshots.count, 1)
        XCTAssertEqual(r.sampleCount, 0)
        let at = try XCTUnwrap(r.truncatedAtOffset)
        XCTAssertEqual(at, bytes.count - 40)
        XCTAssertTrue(r.warnings.contains { $0.contains("sample record at byte \(at)") }, "\(r.warnings)")
    }

    func testRawHugeCountsAreErrorsNamingTheRecord() throws {
        let cases: [(String, String)] = [
            ("huge-mapping-count.raw", "mappings"),
            ("huge-kernel-frames.raw", "sample"),
            ("huge-user-stack-length.raw", "sample"),
            ("huge-user-frame-count.raw", "unwound sample"),
            ("huge-location-count.raw", "locations"),
            ("huge-frame-count.raw", "locations"),
            ("huge-stats-counters.raw", "stats"),
        ]
        for (name, record) in cases {
            guard case .failure(let e) = dumpPath(try file("raw", name), name) else { XCTFail("\(name) was read"); continue }
            guard case .malformedRecord(name, let offset, record, _) = e else { XCTFail("\(name): \(e)"); continue }
            XCTAssertGreaterThanOrEqual(offset, RawHeader.size, name)
            XCTAssertTrue(e.description.contains("\(offset)"), "\(name): the message names the offset: \(e)")
        }
    }

    // MARK: folded

    /// FoldedFuzzTarget.swift's path: parse, read back, every kind of graph.
    @discardableResult
    func flameGraphPath(_ bytes: [UInt8], _ name: String) -> Result<FoldedStacks, FoldedStacks.ParseError> {
        let stacks: FoldedStacks
        do { stacks = try FoldedStacks(parsingUTF8: bytes) } catch { return .failure(error) }
        if String(validating: bytes, as: UTF8.self) != nil {
            let once = try? FoldedStacks(parsing: stacks.rendered())
            XCTAssertEqual(once?.total, stacks.total, "\(name): rendered() reads back with the same total")
            if let once { XCTAssertEqual(try? FoldedStacks(parsing: once.rendered()), once, "\(name): rendered() reads back") }
        }
        _ = try? renderFlameGraph(stacks)
        _ = try? renderFlameGraph(stacks, options: FlameGraphOptions(width: 300, minWidth: 0, inverted: true))
        let half = (try? FoldedStacks(parsingUTF8: bytes.prefix(bytes.count / 2))) ?? FoldedStacks()
        _ = try? renderDifferentialFlameGraph(base: half, new: stacks)
        _ = try? renderDifferentialFlameGraph(base: stacks, new: half, options: FlameGraphOptions(differentialWidths: .base))
        var doubled = stacks
        doubled.merge(stacks)
        XCTAssertGreaterThanOrEqual(doubled.total, stacks.total, name)
        return .success(stacks)
    }

    func testFoldedCorpusParsesOrFailsWithAnError() throws {
        var parsed = 0
        for (name, bytes) in try corpus("folded") {
            if case .success = flameGraphPath(bytes, name) { parsed += 1 }
        }
        XCTAssertGreaterThan(parsed, 3)
        guard case .failure(let e) = flameGraphPath(try file("folded", "count-overflow-total.folded"), "o") else { return XCTFail() }
        XCTAssertEqual(e, .totalOverflow(line: 2))
        // Found by libFuzzer: the frame " 3" (after two empty ones) is the
        // first of its stack, so rendered it is a line's leading blank.
        guard case .success(let blank) = flameGraphPath(try file("folded", "leading-blank-frame.folded"), "b") else { return XCTFail() }
        XCTAssertEqual(blank.counts, [[" 3"]: 3])
        XCTAssertEqual(try FoldedStacks(parsing: blank.rendered()).counts, [["3"]: 3])
        // Found by libFuzzer: a frame of blanks only was kept as a name, and
        // written out (`  3`) it could not be read back. Now it is no frame.
        guard case .failure(let none) = flameGraphPath(try file("folded", "blank-frame.folded"), "n") else { return XCTFail() }
        XCTAssertEqual(none, .noFrames(line: 1))
        XCTAssertEqual(try FoldedStacks(parsing: "a; \t;b 1\n"), try FoldedStacks(parsing: "a;b 1\n"))
    }

    func testFoldedDepthIsCapped() throws {
        let deepest = Array(repeating: "f", count: FoldedStacks.maxDepth).joined(separator: ";") + " 1\n"
        XCTAssertEqual(try FoldedStacks(parsing: "a 1\n" + deepest).stackCount, 2)
        let deeper = Array(repeating: "f", count: FoldedStacks.maxDepth + 1).joined(separator: ";") + " 1\n"
        XCTAssertThrowsError(try FoldedStacks(parsing: "a 1\n" + deeper)) {
            XCTAssertEqual($0 as? FoldedStacks.ParseError, .tooDeep(line: 2, limit: FoldedStacks.maxDepth))
            XCTAssertTrue("\($0)".hasPrefix("folded stacks line 2: more than 100000 frames"), "\($0)")
        }
    }

    func testFoldedAddAndMergeClampTheTotal() throws {
        // What `sprof report --flamegraph` does with a profile's stacks: values
        // up to Int64.max each, three of them past UInt64.max together.
        var stacks = FoldedStacks()
        for leaf in ["a", "b", "c"] { stacks.add(["p", leaf], count: UInt64(Int64.max)) }
        XCTAssertEqual(stacks.total, .max)
        // 3 (2^63 - 1) - (2^64 - 1) = 2^63 - 2 samples left out.
        XCTAssertEqual(stacks.clampedSamples, UInt64(Int64.max) - 1)
        XCTAssertEqual(stacks.counts.values.reduce(0, +), .max, "the kept counts add up to the total exactly")
        var doubled = stacks
        doubled.merge(stacks)
        XCTAssertEqual(doubled.total, .max)
        XCTAssertEqual(doubled.clampedSamples, .max, "the count of left-out samples saturates too")
        let svg = try renderFlameGraph(doubled, options: FlameGraphOptions(minWidth: 0))
        XCTAssertTrue(svg.contains("fg:w=\"18446744073709551615\""), "the root spans every kept sample")
    }

    // MARK: toml

    /// TOMLFuzzTarget.swift's path: the document, the configuration, and
    /// the configuration written and read back.
    @discardableResult
    func configPath(_ bytes: [UInt8], _ name: String) -> Result<AgentConfig, AgentError>? {
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        if let doc = try? TOMLDocument(parsing: text) {
            for (_, keys) in doc.tables {
                for (key, entry) in keys {
                    let line = TOMLValue.key(key) + " = " + entry.value.tomlText
                    XCTAssertNoThrow(try TOMLDocument(parsing: line), "\(name): \(line)")
                }
            }
        }
        let config: AgentConfig
        do { config = try AgentConfig.parse(text, source: name) } catch { return .failure(error) }
        XCTAssertEqual(try? AgentConfig.parse(config.rendered(), source: "rendered"), config, name)
        return .success(config)
    }

    func testTOMLCorpusParsesOrFailsWithAnError() throws {
        var parsed = 0
        for (name, bytes) in try corpus("toml") {
            if case .success? = configPath(bytes, name) { parsed += 1 }
        }
        XCTAssertGreaterThanOrEqual(parsed, 1)
        guard case .success(let valid)? = configPath(try file("toml", "valid.toml"), "valid.toml") else { return XCTFail() }
        XCTAssertEqual(valid.frequency, 49)
        XCTAssertEqual(valid.labels, ["team": "infra"])
    }

    func testConfigFileSizeIsBounded() throws {
        // An endless file (or a huge one given by mistake) is refused after 1 MiB + 1 byte.
        XCTAssertThrowsError(try AgentConfig.load(path: "/dev/zero")) {
            guard case .config("/dev/zero", nil, nil, let message)? = $0 as? AgentError else { return XCTFail("\($0)") }
            XCTAssertTrue(message.hasPrefix("larger than 1 MiB"), message)
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sprof-config-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // Exactly 1 MiB (comments) still reads.
        let line = "#" + String(repeating: "x", count: 1022) + "\n"
        let full = "frequency = 49\n" + String(repeating: line, count: 1023) + String(repeating: "#", count: 1024 - 15 - 1) + "\n"
        XCTAssertEqual(full.utf8.count, AgentConfig.maxFileSize)
        let path = dir.appendingPathComponent("agent.toml").path
        try full.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try AgentConfig.load(path: path).frequency, 49)
        try (full + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try AgentConfig.load(path: path))
    }

    func testTOMLNestingIsBounded() throws {
        let text = { (name: String) throws -> String in String(decoding: try self.file("toml", name), as: UTF8.self) }
        XCTAssertNoThrow(try TOMLDocument(parsing: try text("nested-arrays-64.toml")))
        for name in ["nested-arrays-65.toml", "nested-arrays.toml"] {
            XCTAssertThrowsError(try TOMLDocument(parsing: try text(name)), name) {
                let e = $0 as? TOMLError
                XCTAssertEqual(e?.message, "arrays nested deeper than 64 are not supported", name)
                XCTAssertEqual(e?.unsupported, true, name)
            }
        }
    }
}
