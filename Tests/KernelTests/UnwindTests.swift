import Foundation
import SprofBase
import SprofELF
import SprofSymbols
import XCTest
@testable import SprofCapture
@testable import SprofUnwind

/// Names user frames with sprof's own symbolizer as the binaries state
/// them (mangled, as expected.json has them): the outermost function at
/// each address (inline frames are not part of the expected chains).
final class TestSymbolizer {
    private let symbolizer = Symbolizer()

    func name(_ address: UInt64, innermost: Bool, pid: Int32 = 0, mappings: [Mapping]) -> String {
        let a = ProcessAddress(address)
        let l = symbolizer.symbolize(a, isReturnAddress: !innermost, pid: pid, mapping: mappings.first { $0.contains(a) }, live: false)
        return l.isNamed ? l.frames.last!.systemName : "?"
    }

    /// Root → leaf names of an unwound sample.
    func chain(_ sample: RawSample, mappings: [Mapping]) -> [String] {
        guard let n = sample.userFrameCount else { return [] }
        return (0..<n).reversed().map { name(sample.userFrame($0).rawValue, innermost: $0 == 0, mappings: mappings) }
    }
}

/// Real fixtures without frame pointers, sampled by the real BPF program and
/// unwound online; each hot leaf's chain must be exact in ≥ 99.5% of its
/// samples, and a stack that is not exact must be marked truncated (never a
/// complete stack with a wrong frame).
final class UnwindTests: XCTestCase {
    static let fixtureSeconds = 1.5

    func built() throws -> UnwindFixtures.Built {
        try requireKernelAccess()
        return try UnwindFixtures.build()
    }

    func recordFixture(_ fixture: UnwindFixture, path: String, raw: Bool = false,
                       stackSize: Int = 32768) throws -> RawFileReader {
        var s = RecordSettings(target: .command([path] + fixture.arguments(seconds: Self.fixtureSeconds)),
                               output: tempPath("\(fixture.name).sprof"))
        s.userStackSize = stackSize
        if !raw { s.makeUnwinder = { SampleUnwinder(source: .live) } }
        let summary = try Recorder(settings: s).run()
        XCTAssertEqual(summary.commandExitStatus, 0, "\(fixture.name) exited with \(summary.commandExitStatus ?? -1)")
        defer { unlink(s.output) }
        return try RawFileReader(path: s.output)
    }

    func checkFixture(_ name: String) throws {
        let built = try built()
        let fixture = try XCTUnwrap(try UnwindFixtures.expected().first { $0.name == name })
        let bin = try built.path(name)
        let reader = try recordFixture(fixture, path: bin)
        let symbols = TestSymbolizer()
        for expected in fixture.chains {
            var atLeaf = 0, exact = 0, truncated = 0
            var wrong: [[String]] = []
            reader.forEachSample { sample, snap in
                guard let n = sample.userFrameCount, n > 0 else { return }
                let mappings = snap?.mappings ?? []
                let leaf = symbols.name(sample.userFrame(0).rawValue, innermost: true, mappings: mappings)
                guard leaf == expected.leaf else { return }
                atLeaf += 1
                let names = symbols.chain(sample, mappings: mappings)
                if sample.unwindStop != 0 {
                    truncated += 1
                } else if chainMatches(expected: expected.frames, actual: names) {
                    exact += 1
                } else {
                    wrong.append(names)
                }
            }
            XCTAssertGreaterThan(atLeaf, 100, "\(name): too few samples in \(expected.leaf)")
            XCTAssertEqual(wrong.count, 0, "\(name): complete stacks with a wrong chain, e.g. \(wrong.first ?? [])")
            let pct = 100 * Double(exact) / Double(max(atLeaf, 1))
            XCTAssertGreaterThanOrEqual(pct, 99.5, "\(name) \(expected.leaf): \(exact)/\(atLeaf) exact, \(truncated) truncated")
            print("unwind fidelity \(name) \(expected.leaf): \(exact)/\(atLeaf) exact (\(String(format: "%.2f", pct))%), \(truncated) truncated")
        }
    }

    func testCChainWithDebugInfo() throws { try checkFixture("c_chain_g") }
    func testCChainEhFrameOnly() throws { try checkFixture("c_chain_nog") }
    func testCChainDebugFrameOnly() throws { try checkFixture("c_chain_debugframe") }
    func testCpp() throws { try checkFixture("cpp_chain") }
    func testRustRelease() throws { try checkFixture("rust_chain") }
    func testSwiftOptimized() throws { try checkFixture("swift_chain") }
    func testDlopenAfterRecordingStarts() throws { try checkFixture("c_dlopen") }
    func testQsortComparatorThroughLibc() throws { try checkFixture("c_qsort") }
    func testSignalHandlerThroughRestoreRT() throws { try checkFixture("c_signal") }
    func testRecursion200() throws { try checkFixture("c_recursion") }
    func testTwentyKiBFrame() throws { try checkFixture("c_bigframe") }
    func testThreads() throws { try checkFixture("c_threads") }

    /// Stacks deeper than the copy are marked truncated, never wrong: the
    /// 20 KiB frame with an 8 KiB copy (perf's default) cannot be unwound.
    func testShortCopyIsTruncatedNotWrong() throws {
        let built = try built()
        let fixture = try XCTUnwrap(try UnwindFixtures.expected().first { $0.name == "c_bigframe" })
        let reader = try recordFixture(fixture, path: try built.path("c_bigframe"), stackSize: 8192)
        let symbols = TestSymbolizer()
        var atLeaf = 0, truncated = 0
        reader.forEachSample { sample, snap in
            guard let n = sample.userFrameCount, n > 0 else { return }
            let mappings = snap?.mappings ?? []
            guard symbols.name(sample.userFrame(0).rawValue, innermost: true, mappings: mappings) == "big_leaf" else { return }
            atLeaf += 1
            if sample.unwindStop != 0 { truncated += 1 }
            // Whatever frames it has are right: a prefix (leaf side) of the true chain.
            let names = Array(symbols.chain(sample, mappings: mappings).suffix(2))
            XCTAssertTrue(names == ["big_leaf"] || names == ["bigframe", "big_leaf"], "\(names)")
        }
        XCTAssertGreaterThan(atLeaf, 100)
        XCTAssertEqual(truncated, atLeaf, "every big_leaf stack needs more than 8 KiB and must be marked truncated")
    }

    /// sprof's unwinder against libunwind's remote unwinder (what perf uses)
    /// on the same raw samples: the same return addresses on ≥ 99.9% of the
    /// samples both can unwind. Debian's libunwind is built without
    /// .debug_frame support, so c_chain_debugframe is not compared.
    func testAgreesWithLibunwind() throws {
        let built = try built()
        var same = 0, compared = 0, libunwindCannot = 0
        var differences: [String] = []
        for fixture in try UnwindFixtures.expected() where fixture.cfiSection == ".eh_frame" && fixture.name != "swift_chain" {
            let reader = try recordFixture(fixture, path: try built.path(fixture.name), raw: true)
            let ours = SampleUnwinder(source: .recordedPaths)
            let oracle = LibunwindUnwinder()
            reader.forEachSample { sample, snap in
                guard sample.flags.contains(.userRegisters), let snap else { return }
                let theirs = oracle.unwind(sample: sample, mappings: snap.mappings)
                let (mine, stop): ([UInt64], UnwindStop) = ours.unwind(sample, pid: sample.tgid, generation: snap.generation,
                                                                      mappings: snap.mappings) { f, o in (Array(f), o.stop) }
                guard theirs.stop.isComplete else {
                    libunwindCannot += 1
                    return
                }
                compared += 1
                if mine == theirs.frames.map(\.rawValue) && stop == .complete {
                    same += 1
                } else if differences.count < 20 {
                    differences.append("\(fixture.name): sprof \(stop) \(mine.map { String($0, radix: 16) }) vs libunwind \(theirs.frames.map(\.description))")
                }
            }
        }
        XCTAssertGreaterThan(compared, 5000)
        let pct = 100 * Double(same) / Double(max(compared, 1))
        print("differential vs libunwind: \(same)/\(compared) identical (\(String(format: "%.3f", pct))%), libunwind could not finish \(libunwindCannot)")
        for d in differences { print("difference: \(d)") }
        XCTAssertGreaterThanOrEqual(pct, 99.9, differences.joined(separator: "\n"))
    }
}
