import SprofBase
import SprofFlameGraph
import SprofSymbols
import XCTest

final class KernelSymbolsTests: XCTestCase {
    func testParseAndLookup() throws {
        let text = """
            ffffffff81000000 T _stext
            ffffffff81000100 t helper
            ffffffff81000200 D some_data
            ffffffff81000300 T schedule
            ffffffffc0000000 t mod_func\t[ext4]
            0000000000000000 T hidden
            """
        let k = KernelSymbols(kallsyms: text)
        XCTAssertEqual(k.map(\.name), ["_stext", "helper", "schedule", "mod_func"])
        XCTAssertEqual(k.lookup(KernelAddress(0xffff_ffff_8100_0150))?.symbol.name, "helper")
        XCTAssertEqual(k.lookup(KernelAddress(0xffff_ffff_8100_0150))?.offset, 0x50)
        XCTAssertEqual(k.lookup(KernelAddress(0xffff_ffff_8100_0250))?.symbol.name, "helper", "data symbols are not functions")
        XCTAssertEqual(k.lookup(KernelAddress(0xffff_ffff_c000_0010))?.symbol.module, "ext4")
        XCTAssertNil(k.lookup(KernelAddress(0x1000)))
    }

    /// Against the running kernel: every text symbol looks itself up.
    func testRealKallsyms() throws {
        guard let k = KernelSymbols.load() else { throw XCTSkip("/proc/kallsyms addresses hidden (needs CAP_SYSLOG)") }
        XCTAssertTrue(zip(k.dropFirst(), k).allSatisfy { $0.address >= $1.address }, "sorted by address")
        XCTAssertGreaterThan(k.count, 10_000)
        let sched = try XCTUnwrap(k.first { $0.name == "schedule" })
        XCTAssertEqual(k.lookup(sched.address.advancedForTest(4))?.symbol.name, "schedule")
    }
}

extension KernelAddress {
    func advancedForTest(_ n: UInt64) -> KernelAddress { KernelAddress(rawValue + n) }
}

final class FoldedStacksTests: XCTestCase {
    func testParseMergeRender() throws {
        let f = try FoldedStacks(parsing: "main;run;leaf 3\nmain;run 1\n\nmain;run;leaf 2\n")
        XCTAssertEqual(f.counts[["main", "run", "leaf"]], 5)
        XCTAssertEqual(f.total, 6)
        XCTAssertEqual(f.rendered(), "main;run 1\nmain;run;leaf 5\n")
        XCTAssertThrowsError(try FoldedStacks(parsing: "main;run\n")) {
            XCTAssertEqual($0 as? FoldedStacks.ParseError, .missingCount(line: 1))
        }
    }
}
