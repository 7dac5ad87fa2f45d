import Foundation
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

extension KernelSymbolsTests {
    /// The core kernel's symbols kept for the boot: the first load reads
    /// kallsyms and writes the file (mode 0600), the second reads the file;
    /// both name every core text symbol the same, the kept table holds no
    /// module symbol, and a damaged or foreign file is not used.
    func testCoreSymbolsKeptForTheBoot() throws {
        let text = """
            ffffffff81000000 T _stext
            ffffffff81000100 t helper
            ffffffff81000200 D some_data
            ffffffff81000300 T schedule
            ffffffff81100000 T _etext
            ffffffffc0000000 t mod_func\t[ext4]
            ffffffffc0001000 t bpf_prog_6deef7357e7b4530_sd_fw_ingress\t[bpf]
            """
        let dir = NSTemporaryDirectory() + "sprof-kallsyms-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = dir + "-kallsyms"
        try text.write(toFile: source, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: source) }

        let first = try XCTUnwrap(KernelSymbols.loadCore(keptIn: dir, kallsyms: source, bootID: "boot-a"))
        XCTAssertFalse(first.kept, "first load reads kallsyms")
        XCTAssertEqual(first.symbols.map(\.name), ["_stext", "helper", "schedule", "_etext", "mod_func", "bpf_prog_6deef7357e7b4530_sd_fw_ingress"])
        let file = dir + "/kallsyms-boot-a.bin"
        let mode = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int)
        XCTAssertEqual(mode, 0o600, "kernel addresses are not for everyone")

        let second = try XCTUnwrap(KernelSymbols.loadCore(keptIn: dir, kallsyms: "/nonexistent", bootID: "boot-a"))
        XCTAssertTrue(second.kept, "second load reads the kept file, not kallsyms")
        XCTAssertEqual(second.symbols.map(\.name), ["_stext", "helper", "schedule"], "core text only: _etext is its end")
        XCTAssertEqual(second.symbols.coreText, 0xffff_ffff_8100_0000..<0xffff_ffff_8110_0000)
        for a: UInt64 in [0xffff_ffff_8100_0000, 0xffff_ffff_8100_0150, 0xffff_ffff_8100_0250, 0xffff_ffff_810f_ffff] {
            XCTAssertEqual(second.symbols.lookup(KernelAddress(a))?.symbol, first.symbols.lookup(KernelAddress(a))?.symbol)
        }
        XCTAssertFalse(second.symbols.isCoreText(KernelAddress(0xffff_ffff_c000_0010)), "module addresses need kallsyms")

        XCTAssertNil(KernelSymbols.loadCore(keptIn: dir, kallsyms: "/nonexistent", bootID: "boot-b"), "another boot's file is not used")
        try Data("SPROFKS1garbage".utf8).write(to: URL(fileURLWithPath: file))
        let damaged = try XCTUnwrap(KernelSymbols.loadCore(keptIn: dir, kallsyms: source, bootID: "boot-a"))
        XCTAssertFalse(damaged.kept, "a damaged file is read as no file")
        XCTAssertTrue(try XCTUnwrap(KernelSymbols.loadCore(keptIn: dir, kallsyms: "/nonexistent", bootID: "boot-a")).kept, "and written again")
    }

    /// A symbolizer with the kept table names a core address from it and a
    /// module address from kallsyms: the same names as from kallsyms alone.
    func testSymbolizerWithKeptCoreSymbolsMatchesKallsyms() throws {
        guard let all = KernelSymbols.load(), let core = all.coreText else { throw XCTSkip("/proc/kallsyms addresses hidden (needs CAP_SYSLOG)") }
        let dir = NSTemporaryDirectory() + "sprof-kallsyms-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = KernelSymbols.loadCore(keptIn: dir)
        var options = Symbolizer.Options()
        options.kernelSymbolDirectory = dir
        let kept = Symbolizer(options: options)
        var reference = Symbolizer.Options()
        reference.kernelSymbols = all
        let direct = Symbolizer(options: reference)
        var checked = 0
        for s in all.filter({ $0.name == "schedule" || $0.name == "do_nanosleep" || $0.name == "finish_task_switch" || $0.module != nil }).prefix(50) {
            let a = KernelAddress(s.address.rawValue + 1)
            XCTAssertEqual(kept.symbolize(kernel: a, isReturnAddress: false), direct.symbolize(kernel: a, isReturnAddress: false), s.name)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 1)
        XCTAssertGreaterThan(core.count, 0)
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
