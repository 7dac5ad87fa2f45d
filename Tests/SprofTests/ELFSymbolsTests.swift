import Foundation
import SprofBase
import SprofCapture
import SprofELF
import SprofSymbols
import XCTest

/// `ELFSymbols` against binutils (`readelf -sW`, `nm -S`) on a program gcc
/// builds here and on the system's libc, lookups in live processes, and
/// corrupt tables (an error every time, never a trap).
final class ELFSymbolsTests: XCTestCase {
    override class func tearDown() {
        lock.lock()
        defer { lock.unlock() }
        for p in programs.values { ELFTestTools.remove(p.dir) }
        programs = [:]
        super.tearDown()
    }

    // MARK: - The table vs readelf and nm

    func testProgramSymbolsMatchReadelf() throws {
        let prog = try Self.program()
        let symbols = try ELFSymbols(try ELFFile(path: prog.path))
        XCTAssertEqual(symbols.table, .symtab)
        let expected = try ELFSymbolsTestTools.readelfFunctions(prog.path, table: ".symtab")
        XCTAssertGreaterThan(expected.count, 10)
        Self.assertSameRows(Self.rows(symbols), expected)
        // The kinds the program was written to have.
        func only(_ name: String) throws -> ELFSymbols.Symbol {
            let all = symbols.filter { $0.name == name }
            XCTAssertEqual(all.count, 1, name)
            return try XCTUnwrap(all.first, name)
        }
        XCTAssertEqual(try only("local_fn").binding, .local)
        XCTAssertEqual(try only("weak_fn").binding, .weak)
        XCTAssertEqual(try only("ifunc_fn").kind, .indirectFunction)
        XCTAssertEqual(try only("nosize_fn").size, 0)
        XCTAssertEqual(try only("alias_fn").address, try only("global_fn").address)
        XCTAssertFalse(symbols.contains { $0.name == "printf" }, "an undefined symbol (SHN_UNDEF) is not kept")
        XCTAssertFalse(symbols.contains { $0.name == "data_object" }, "an STT_OBJECT is not kept")
        XCTAssertTrue(zip(symbols, symbols.dropFirst()).allSatisfy { $0.address <= $1.address }, "sorted")
    }

    /// Every defined text symbol `nm` names that is a function is looked up
    /// at its first and last byte; the one past its end is not it.
    func testLookupMatchesNm() throws {
        let prog = try Self.program()
        let symbols = try ELFSymbols(try ELFFile(path: prog.path))
        let names = Set(symbols.map(\.name))
        let nm = try ELFSymbolsTestTools.nm(prog.path).filter { names.contains($0.name) }
        XCTAssertEqual(Set(nm.map(\.name)), names, "nm lists every function")
        for s in nm {
            let first = try XCTUnwrap(symbols.lookup(StatedAddress(s.address)), s.name)
            XCTAssertEqual(first.symbol.address.rawValue, s.address, s.name)
            XCTAssertEqual(first.offset, 0, s.name)
            XCTAssertTrue(symbols.filter { $0.address.rawValue == s.address }.contains { $0.name == s.name })
            guard let size = s.size, size > 0 else { continue }
            let last = try XCTUnwrap(symbols.lookup(StatedAddress(s.address + size - 1)), s.name)
            XCTAssertEqual(last.symbol.address.rawValue, s.address, "\(s.name): last byte")
            XCTAssertEqual(last.offset, size - 1)
            if let past = symbols.lookup(StatedAddress(s.address + size)) {
                XCTAssertNotEqual(past.symbol.address.rawValue, s.address, "\(s.name): one past the end")
            }
        }
        // One of several aliases is returned, by the documented preference:
        // alias_fn and global_fn are both GLOBAL, same size: the first in the table.
        let g = try XCTUnwrap(symbols.first { $0.name == "global_fn" })
        let name = try XCTUnwrap(symbols.lookup(g.address)).symbol.name
        XCTAssertTrue(["global_fn", "alias_fn"].contains(name))
        XCTAssertNil(symbols.lookup(StatedAddress(0)), "below every symbol")
        XCTAssertNil(symbols.lookup(StatedAddress(UInt64.max)), "above every symbol")
    }

    /// A symbol of size 0 (an assembly label without `.size`) covers up to
    /// the next symbol: the nearest preceding one wins.
    func testSizeZeroSymbolReachesTheNextSymbol() throws {
        let prog = try Self.program()
        let symbols = try ELFSymbols(try ELFFile(path: prog.path))
        let i = try XCTUnwrap(symbols.firstIndex { $0.name == "nosize_fn" })
        let s = symbols[i]
        let next = try XCTUnwrap(symbols[(i + 1)...].first { $0.address > s.address })
        XCTAssertEqual(s.end, next.address)
        // nosize_fn is followed by 64 bytes of int3 padding in the source.
        for offset: UInt64 in [0, 1, 40, 64] {
            let hit = try XCTUnwrap(symbols.lookup(StatedAddress(s.address.rawValue + offset)))
            XCTAssertEqual(hit.symbol.name, "nosize_fn")
            XCTAssertEqual(hit.offset, offset)
        }
        XCTAssertNotEqual(symbols.lookup(next.address)?.symbol.name, "nosize_fn")
    }

    func testLibcSymbolsMatchReadelf() throws {
        let libc = try ELFSymbolsTestTools.libcMapping().path
        let symbols = try ELFSymbols(try ELFFile(path: libc))
        let table = try XCTUnwrap(symbols.table)
        let expected = try ELFSymbolsTestTools.readelfFunctions(libc, table: table.rawValue)
        XCTAssertGreaterThan(expected.count, 1000, "\(libc) \(table.rawValue)")
        Self.assertSameRows(Self.rows(symbols), expected)
        let qsort = try XCTUnwrap(symbols.first { $0.name == "qsort" })
        XCTAssertEqual(symbols.lookup(qsort.address)?.symbol.name, "qsort")
    }

    /// libc's separate debug file (Debian: libc6-dbg, found by build-id) has
    /// the full .symtab, with its .text emptied (SHT_NOBITS): locals such as
    /// start_thread and the size-0 __restore_rt, and aliases.
    func testLibcDebugFileSymtab() throws {
        let libc = try ELFSymbolsTestTools.libcMapping().path
        let id = try XCTUnwrap(try ELFFile(path: libc).buildID()).description
        let debug = "/usr/lib/debug/.build-id/\(id.prefix(2))/\(id.dropFirst(2)).debug"
        guard FileManager.default.fileExists(atPath: debug) else {
            throw XCTSkip("libc's debug file \(debug) is not installed (Debian: apt-get install libc6-dbg)")
        }
        let symbols = try ELFSymbols(try ELFFile(path: debug))
        XCTAssertEqual(symbols.table, .symtab)
        Self.assertSameRows(Self.rows(symbols), try ELFSymbolsTestTools.readelfFunctions(debug, table: ".symtab"))
        let startThread = try XCTUnwrap(symbols.first { $0.name == "start_thread" })
        XCTAssertEqual(startThread.binding, .local)
        XCTAssertEqual(symbols.lookup(StatedAddress(startThread.address.rawValue + 10))?.symbol.name, "start_thread")
        #if arch(x86_64)
        // glibc's sa_restorer: an assembly label of size 0, then padding to the next function.
        let restore = try XCTUnwrap(symbols.first { $0.name == "__restore_rt" })
        XCTAssertEqual(restore.size, 0)
        XCTAssertEqual(symbols.lookup(restore.address)?.symbol.name, "__restore_rt")
        XCTAssertEqual(symbols.lookup(StatedAddress(restore.address.rawValue + 9))?.symbol.name, "__restore_rt")
        #endif
        // qsort_r (WEAK) and __qsort_r (LOCAL) share an address: the weak one is preferred.
        if let q = symbols.first(where: { $0.name == "__qsort_r" }),
           symbols.contains(where: { $0.name == "qsort_r" && $0.address == q.address && $0.size == q.size }) {
            XCTAssertEqual(symbols.lookup(q.address)?.symbol.name, "qsort_r")
        }
    }

    // MARK: - Process addresses

    /// `qsort` as this process sees it (dlsym), translated through its
    /// mapping of libc and looked up.
    func testLookupOfLibcFunctionInThisProcess() throws {
        let handle = try XCTUnwrap(dlopen(nil, RTLD_NOW))
        let raw = try XCTUnwrap(dlsym(handle, "qsort"))
        let address = ProcessAddress(UInt64(UInt(bitPattern: raw)))
        let mapping = try XCTUnwrap(try ProcMaps.read(pid: getpid()).first { $0.contains(address) })
        let symbols = try ELFSymbols(try ELFFile(path: mapping.path))
        let hit = try XCTUnwrap(symbols.lookup(address, in: mapping))
        XCTAssertEqual(hit.symbol.name, "qsort")
        XCTAssertEqual(hit.offset, 0)
        XCTAssertEqual(symbols.lookup(address.advanced(by: 3), in: mapping)?.offset, 3)
    }

    /// The program prints the addresses of its functions, as a PIE (loaded
    /// at a random bias) and as a non-PIE executable (stated = process).
    func testLookupInRunningProgram() throws {
        for pie in [true, false] {
            let prog = try Self.program(pie: pie)
            let child = try ELFSymbolsTestTools.Child(prog.path)
            defer { child.stop() }
            let printed = try child.readValues(until: "ready")
            let maps = try ProcMaps.read(pid: child.pid)
            let elf = try ELFFile(path: prog.path)
            XCTAssertEqual(elf.header.type, pie ? .sharedObject : .executable)
            let symbols = try ELFSymbols(elf)
            for name in ["global_fn", "local_fn", "weak_fn", "main", "nosize_fn"] {
                let value = try XCTUnwrap(printed[name], name)
                let address = ProcessAddress(try XCTUnwrap(UInt64(value.dropFirst(2), radix: 16), value))
                let mapping = try XCTUnwrap(maps.first { $0.contains(address) }, "\(name) \(address) mapped")
                XCTAssertTrue(mapping.isExecutable)
                let stated = try XCTUnwrap(elf.statedAddress(of: address, in: mapping))
                if !pie { XCTAssertEqual(stated.rawValue, address.rawValue, "ET_EXEC: no load bias") }
                let expected = try XCTUnwrap(symbols.first { $0.name == name })
                XCTAssertEqual(stated, expected.address, name)
                XCTAssertEqual(symbols.lookup(address, in: mapping)?.symbol.address, expected.address, name)
                XCTAssertEqual(symbols.lookup(address.advanced(by: 1), in: mapping)?.offset, 1, name)
            }
        }
    }

    /// The formula on made-up segments: a data segment whose mapping starts
    /// (page-aligned) below its p_offset, page padding that is in no segment,
    /// and two segments holding one offset.
    func testStatedAddressFormula() throws {
        let elf = try ELFFile(copying: ELFSymbolsTestTools.elfImage(segments: [
            (offset: 0x1000, vaddr: 0x40_1000, filesz: 0x1f5, flags: 5),     // R X
            (offset: 0x2df0, vaddr: 0x40_3df0, filesz: 0x228, flags: 6),     // RW
        ]))
        let text = Mapping(start: ProcessAddress(0x5555_0000_1000), end: ProcessAddress(0x5555_0000_2000),
                           fileOffset: FileOffset(0x1000), permissions: [.read, .execute], path: "x")
        let data = Mapping(start: ProcessAddress(0x5555_0000_3000), end: ProcessAddress(0x5555_0000_4000),
                           fileOffset: FileOffset(0x2000), permissions: [.read, .write], path: "x")
        // stated = address - start + fileOffset - p_offset + p_vaddr
        XCTAssertEqual(elf.statedAddress(of: ProcessAddress(0x5555_0000_1010), in: text), StatedAddress(0x40_1010))
        XCTAssertEqual(elf.statedAddress(of: ProcessAddress(0x5555_0000_11f4), in: text), StatedAddress(0x40_11f4))
        XCTAssertNil(elf.statedAddress(of: ProcessAddress(0x5555_0000_11f5), in: text), "page padding after p_filesz")
        XCTAssertNil(elf.statedAddress(of: ProcessAddress(0x5555_0000_0fff), in: text), "outside the mapping")
        XCTAssertEqual(elf.statedAddress(of: ProcessAddress(0x5555_0000_3df8), in: data), StatedAddress(0x40_3df8))
        XCTAssertNil(elf.statedAddress(of: ProcessAddress(0x5555_0000_3010), in: data),
                     "mapped (page rounding) but before the segment's p_offset")

        // Two segments hold offset 0x1800: the mapping's x permission picks.
        let overlap = try ELFFile(copying: ELFSymbolsTestTools.elfImage(segments: [
            (offset: 0, vaddr: 0x10_0000, filesz: 0x2000, flags: 4),          // R
            (offset: 0x1000, vaddr: 0x20_1000, filesz: 0x1000, flags: 5),     // R X
        ]))
        var m = Mapping(start: ProcessAddress(0x7000_0000), end: ProcessAddress(0x7000_1000),
                        fileOffset: FileOffset(0x1000), permissions: [.read, .execute], path: "y")
        XCTAssertEqual(overlap.statedAddress(of: ProcessAddress(0x7000_0800), in: m), StatedAddress(0x20_1800))
        m.permissions = [.read]
        XCTAssertEqual(overlap.statedAddress(of: ProcessAddress(0x7000_0800), in: m), StatedAddress(0x10_1800))

        // lld's packed layout (rust_chain's, from `readelf -lW`): the R E
        // segment starts mid-page, so its mapping begins with the R segment's
        // last bytes; those are not code and have no stated address here.
        let packed = try ELFFile(copying: ELFSymbolsTestTools.elfImage(segments: [
            (offset: 0, vaddr: 0, filesz: 0x1_716c, flags: 4),                // R
            (offset: 0x1_7170, vaddr: 0x1_8170, filesz: 0x3_feb0, flags: 5),  // R X
        ], fileSize: 0x6_0000))
        let code = Mapping(start: ProcessAddress(0x5555_0001_8000), end: ProcessAddress(0x5555_0005_8000),
                           fileOffset: FileOffset(0x1_7000), permissions: [.read, .execute], path: "r")
        let rodata = Mapping(start: ProcessAddress(0x5555_0000_0000), end: ProcessAddress(0x5555_0001_8000),
                             fileOffset: FileOffset(0), permissions: [.read], path: "r")
        XCTAssertEqual(packed.statedAddress(of: ProcessAddress(0x5555_0001_8170), in: code), StatedAddress(0x1_8170))
        XCTAssertEqual(packed.statedAddress(of: ProcessAddress(0x5555_0002_0000), in: code), StatedAddress(0x2_0000))
        XCTAssertNil(packed.statedAddress(of: ProcessAddress(0x5555_0001_8010), in: code), "the R segment's tail")
        XCTAssertEqual(packed.statedAddress(of: ProcessAddress(0x5555_0001_7010), in: rodata), StatedAddress(0x1_7010))
        XCTAssertNil(packed.statedAddress(of: ProcessAddress(0x5555_0001_7170), in: rodata), "the R E segment's head")

        // A file without PT_LOAD, and a mapping whose numbers wrap: nil, no trap.
        let none = try ELFFile(copying: ELFSymbolsTestTools.elfImage(segments: []))
        XCTAssertNil(none.statedAddress(of: ProcessAddress(0x7000_0800), in: m))
        let wrapping = Mapping(start: ProcessAddress(0x1000), end: ProcessAddress(UInt64.max),
                               fileOffset: FileOffset(UInt64.max - 10), permissions: [.read], path: "z")
        _ = overlap.statedAddress(of: ProcessAddress(UInt64.max - 1), in: wrapping)
    }

    // MARK: - Files without symbols, corrupt tables

    func testFileWithoutSymbolTablesHasNoSymbols() throws {
        let symbols = try ELFSymbols(try ELFFile(copying: ELFSymbolsTestTools.elfImage(segments: [])))
        XCTAssertNil(symbols.table)
        XCTAssertTrue(symbols.isEmpty)
        XCTAssertNil(symbols.lookup(StatedAddress(0x1000)))
    }

    /// A stripped program (no .symtab) falls back to .dynsym.
    func testStrippedProgramUsesDynsym() throws {
        let prog = try Self.program()
        let stripped = prog.dir + "/stripped"
        try ELFTestTools.run("/usr/bin/strip", ["-o", stripped, prog.path])
        let symbols = try ELFSymbols(try ELFFile(path: stripped))
        XCTAssertEqual(symbols.table, .dynsym)
        Self.assertSameRows(Self.rows(symbols), try ELFSymbolsTestTools.readelfFunctions(stripped, table: ".dynsym"))
        XCTAssertTrue(symbols.contains { $0.name == "global_fn" }, "exported with -rdynamic")
        XCTAssertFalse(symbols.contains { $0.name == "local_fn" })
    }

    func testCorruptTablesGiveErrors() throws {
        let prog = try Self.program()
        let good = try Array(Data(contentsOf: URL(fileURLWithPath: prog.path)))
        let elf = try ELFFile(copying: good, path: "p")
        let index = try XCTUnwrap(elf.sectionHeaders.firstIndex { $0.type == .symbolTable })
        let header = elf.sectionHeaders[index]
        let sh = Int(elf.header.sectionHeaderOffset.rawValue) + index * 64
        let textIndex = try XCTUnwrap(elf.sectionIndex(named: ".text"))
        let section = "\(index) (.symtab)"

        func expectError(_ patch: (inout [UInt8]) -> Void, _ expected: SymbolError,
                         file: StaticString = #filePath, line: UInt = #line) {
            var bytes = good
            patch(&bytes)
            XCTAssertThrowsError(try ELFSymbols(try ELFFile(copying: bytes, path: "p")), file: file, line: line) {
                XCTAssertEqual($0 as? SymbolError, expected, file: file, line: line)
                XCTAssertTrue("\($0)".hasPrefix("p: "), "\($0)", file: file, line: line)
            }
        }
        // Elf64_Shdr: sh_offset@24, sh_size@32, sh_link@40 u32, sh_entsize@56.
        expectError({ ELFSymbolsTestTools.put(UInt64(16), at: sh + 56, in: &$0) },
                    .badSymbolTable(path: "p", section: section,
                                    problem: "entries are 16 bytes (sh_entsize), not the 24 of Elf64_Sym"))
        expectError({ ELFSymbolsTestTools.put(header.size - 1, at: sh + 32, in: &$0) },
                    .badSymbolTable(path: "p", section: section,
                                    problem: "its size, \(header.size - 1) bytes, is not a multiple of the 24-byte Elf64_Sym"))
        expectError({ ELFSymbolsTestTools.put(UInt32(9999), at: sh + 40, in: &$0) },
                    .badSymbolTable(path: "p", section: section,
                                    problem: "its string table index (sh_link) 9999 names no section (the file has \(elf.sectionHeaders.count))"))
        expectError({ ELFSymbolsTestTools.put(UInt32(textIndex), at: sh + 40, in: &$0) },
                    .badSymbolTable(path: "p", section: section,
                                    problem: "its string table index (sh_link) \(textIndex) names a section of type 1, not SHT_STRTAB (3)"))
        let farOffset = UInt64(good.count - 24)
        expectError({ ELFSymbolsTestTools.put(farOffset, at: sh + 24, in: &$0) },
                    .elf(.outOfBounds(path: "p", what: "section \(section)", offset: farOffset,
                                      size: header.size, fileSize: good.count)))
        // The first function symbol's st_name past the end of .strtab.
        let symbols = Int(header.offset.rawValue)
        let firstFunction = try XCTUnwrap(stride(from: symbols + 24, to: symbols + Int(header.size), by: 24).first {
            good[$0 + 4] & 0xf == 2 && (good[$0 + 6] != 0 || good[$0 + 7] != 0)
        })
        let strtabSize = elf.sectionHeaders[Int(header.link)].size
        expectError({ ELFSymbolsTestTools.put(UInt32(0xffff_fff0), at: firstFunction, in: &$0) },
                    .badSymbolTable(path: "p", section: section,
                                    problem: "symbol \((firstFunction - symbols) / 24) has its name at offset 0xfffffff0 (st_name), past the end of the \(strtabSize)-byte string table"))
    }

    /// Seeded random bytes in the symbol table, its string table and its
    /// section header: every result is a table or an error, and lookups on
    /// a table that was read never trap.
    func testRandomCorruptionNeverTraps() throws {
        let prog = try Self.program()
        let good = try Array(Data(contentsOf: URL(fileURLWithPath: prog.path)))
        let elf = try ELFFile(copying: good)
        let index = try XCTUnwrap(elf.sectionHeaders.firstIndex { $0.type == .symbolTable })
        let h = elf.sectionHeaders[index], strtab = elf.sectionHeaders[Int(h.link)]
        let sh = Int(elf.header.sectionHeaderOffset.rawValue) + index * 64
        let regions: [Range<Int>] = [
            Int(h.offset.rawValue)..<Int(h.offset.rawValue + h.size),
            Int(strtab.offset.rawValue)..<Int(strtab.offset.rawValue + strtab.size),
            sh..<sh + 64,
        ]
        var rng = SplitMix64(seed: 0x5359_4D42)
        var read = 0, refused = 0
        for _ in 0..<2000 {
            var bad = good
            for _ in 0..<Int(rng.next() % 8 + 1) {
                let r = regions[Int(rng.next() % UInt64(regions.count))]
                bad[r.lowerBound + Int(rng.next() % UInt64(r.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            guard let file = try? ELFFile(copying: bad) else { refused += 1; continue }
            do {
                let symbols = try ELFSymbols(file)
                read += 1
                for s in symbols.prefix(64) { _ = symbols.lookup(StatedAddress(s.address.rawValue &+ 1)) }
                for _ in 0..<64 { _ = symbols.lookup(StatedAddress(rng.next() % 0x10000)) }
            } catch {
                refused += 1
                _ = "\(error)"
            }
        }
        XCTAssertEqual(read + refused, 2000)
        XCTAssertGreaterThan(read, 0)
        XCTAssertGreaterThan(refused, 0)
    }

    // MARK: - Helpers

    /// Equal as multisets; a failure lists the first differences only (libc has thousands of rows).
    static func assertSameRows(_ ours: [ELFSymbolsTestTools.Row], _ readelf: [ELFSymbolsTestTools.Row],
                               file: StaticString = #filePath, line: UInt = #line) {
        let a = ours.sorted(), b = readelf.sorted()
        guard a != b else { return }
        var onlyOurs = a, onlyReadelf: [ELFSymbolsTestTools.Row] = []
        for r in b {
            if let i = onlyOurs.firstIndex(of: r) { onlyOurs.remove(at: i) } else { onlyReadelf.append(r) }
        }
        XCTFail("\(a.count) symbols vs readelf's \(b.count); only ours: \(onlyOurs.prefix(10)); only readelf's: \(onlyReadelf.prefix(10))",
                file: file, line: line)
    }

    /// (name, address, size, kind, binding) rows, the shape readelf's are parsed into.
    static func rows(_ symbols: ELFSymbols) -> [ELFSymbolsTestTools.Row] {
        symbols.map {
            .init(name: $0.name, address: $0.address.rawValue, size: $0.size,
                  type: $0.kind == .function ? "FUNC" : "IFUNC", binding: $0.binding.description)
        }.sorted()
    }

    /// The test program: a global, a static, a weak and an ifunc function, an
    /// alias, an assembly function without a size, an object; it prints the
    /// functions' addresses and "ready", then waits for stdin to close.
    static let programSource = #"""
        #include <stdio.h>
        #include <unistd.h>
        #define NOINL __attribute__((noinline, used))
        int data_object = 42;
        NOINL int global_fn(int x) { return x * 3 + 1; }
        static NOINL int local_fn(int x) { return x ^ 5; }
        __attribute__((weak, noinline)) int weak_fn(int x) { return x - 2; }
        int alias_fn(int) __attribute__((alias("global_fn")));
        static int impl(int x) { return x + 10; }
        static int (*resolve_ifunc(void))(int) { return impl; }
        int ifunc_fn(int) __attribute__((ifunc("resolve_ifunc")));
        /* A function without .size: st_size 0. Then 64 bytes of int3. */
        __asm__(".text\n.globl nosize_fn\n.type nosize_fn,@function\nnosize_fn:\n ret\n .skip 64, 0xcc\n");
        void nosize_fn(void);
        int main(void) {
            printf("global_fn=%p\nlocal_fn=%p\nweak_fn=%p\nmain=%p\nnosize_fn=%p\n", (void *)global_fn,
                   (void *)local_fn, (void *)weak_fn, (void *)main, (void *)nosize_fn);
            printf("ready\n");
            fflush(stdout);
            char c;
            while (read(0, &c, 1) > 0) {}
            return global_fn(1) + local_fn(2) + weak_fn(3) + ifunc_fn(4) + alias_fn(5) + data_object;
        }
        """#

    struct Program { var dir: String; var path: String }
    nonisolated(unsafe) private static var programs: [Bool: Program] = [:]
    private static let lock = NSLock()

    /// Builds the test program once per test run (PIE or not); -rdynamic
    /// puts the global functions in .dynsym too.
    static func program(pie: Bool = true) throws -> Program {
        lock.lock()
        defer { lock.unlock() }
        if let p = programs[pie] { return p }
        let dir = try ELFTestTools.temporaryDirectory()
        try ELFTestTools.write(programSource, to: dir + "/prog.c")
        let path = dir + "/prog"
        try ELFTestTools.gcc(["-O1", "-g", "-rdynamic", pie ? "-pie" : "-no-pie", "-fomit-frame-pointer",
                              "-o", path, dir + "/prog.c"])
        let p = Program(dir: dir, path: path)
        programs[pie] = p
        return p
    }
}

// MARK: - Test tools

enum ELFSymbolsTestTools {
    struct Row: Hashable, Comparable, CustomStringConvertible {
        var name: String
        var address: UInt64
        var size: UInt64
        var type: String
        var binding: String
        static func < (a: Row, b: Row) -> Bool {
            (a.address, a.name, a.size, a.type, a.binding) < (b.address, b.name, b.size, b.type, b.binding)
        }
        var description: String { "\(name)@0x\(String(address, radix: 16))+\(size) \(type) \(binding)" }
    }

    /// The defined FUNC/IFUNC rows of one table of `readelf -sW`:
    /// `Num: Value Size Type Bind Vis Ndx Name`, a .dynsym name without the
    /// `@VERSION`/`@@VERSION` readelf adds; Size is decimal, or hex with 0x when large.
    static func readelfFunctions(_ path: String, table: String) throws -> [Row] {
        var rows: [Row] = []
        var inTable = false
        for line in try ELFTestTools.readelf(["-sW", path]).split(separator: "\n") {
            if line.hasPrefix("Symbol table ") { inTable = line.contains("'\(table)'"); continue }
            guard inTable else { continue }
            let f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard f.count >= 8, f[0].hasSuffix(":"), f[3] == "FUNC" || f[3] == "IFUNC", f[6] != "UND",
                  let value = UInt64(f[1], radix: 16) else { continue }
            let size = f[2].hasPrefix("0x") ? UInt64(f[2].dropFirst(2), radix: 16) : UInt64(f[2])
            var name = f[7]
            // readelf appends the .gnu.version of a .dynsym entry; in .symtab
            // an "@" is part of the name itself (`.symver`: "memcpy@GLIBC_2.2.5").
            if table == ".dynsym", let at = name.firstIndex(of: "@") { name = String(name[..<at]) }
            rows.append(Row(name: name, address: value, size: size ?? .max, type: f[3], binding: f[4]))
        }
        return rows
    }

    struct NmSymbol { var name: String; var address: UInt64; var size: UInt64? }

    /// `nm --defined-only -S`: "address [size] type name", text symbols (t, T, w, W, i).
    static func nm(_ path: String) throws -> [NmSymbol] {
        try ELFTestTools.run("/usr/bin/nm", ["--defined-only", "-S", path]).split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            let (a, s, t, n): (String, String?, String, String)
            switch f.count {
            case 4: (a, s, t, n) = (f[0], f[1], f[2], f[3])
            case 3: (a, s, t, n) = (f[0], nil, f[1], f[2])
            default: return nil
            }
            guard ["t", "T", "w", "W", "i"].contains(t), let address = UInt64(a, radix: 16) else { return nil }
            return NmSymbol(name: n, address: address, size: s.flatMap { UInt64($0, radix: 16) })
        }
    }

    /// This process's mapping of libc's code.
    static func libcMapping() throws -> Mapping {
        let maps = try ProcMaps.read(pid: getpid())
        guard let m = maps.first(where: { $0.isExecutable && ($0.path as NSString).lastPathComponent.hasPrefix("libc.so") })
        else { throw XCTSkip("this process has no libc.so mapping") }
        return m
    }

    static func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
    }

    /// A minimal ELF64 LE file: the header, then `PT_LOAD` program headers,
    /// no sections, padded to `fileSize` bytes so every segment is in the file.
    static func elfImage(segments: [(offset: UInt64, vaddr: UInt64, filesz: UInt64, flags: UInt32)],
                         fileSize: Int = 0x4000) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: fileSize)
        b[0] = 0x7f; b[1] = 0x45; b[2] = 0x4c; b[3] = 0x46     // e_ident: magic
        b[4] = 2; b[5] = 1; b[6] = 1                            // ELFCLASS64, ELFDATA2LSB, EV_CURRENT
        put(UInt16(3), at: 16, in: &b)                          // e_type ET_DYN
        put(UInt16(62), at: 18, in: &b)                         // e_machine EM_X86_64
        put(UInt32(1), at: 20, in: &b)                          // e_version
        put(UInt64(segments.isEmpty ? 0 : 64), at: 32, in: &b) // e_phoff
        put(UInt16(64), at: 52, in: &b)                         // e_ehsize
        put(UInt16(56), at: 54, in: &b)                         // e_phentsize
        put(UInt16(segments.count), at: 56, in: &b)             // e_phnum
        put(UInt16(64), at: 58, in: &b)                         // e_shentsize
        for (i, s) in segments.enumerated() {
            let o = 64 + 56 * i
            put(UInt32(1), at: o, in: &b)                       // PT_LOAD
            put(s.flags, at: o + 4, in: &b)
            put(s.offset, at: o + 8, in: &b)
            put(s.vaddr, at: o + 16, in: &b)
            put(s.vaddr, at: o + 24, in: &b)
            put(s.filesz, at: o + 32, in: &b)
            put(s.filesz, at: o + 40, in: &b)
            put(UInt64(0x1000), at: o + 48, in: &b)
        }
        return b
    }

    /// A child process whose stdout `key=value` lines are read until a line
    /// `marker`; it exits when `stop()` closes its stdin.
    final class Child {
        let process = Process()
        private let input = Pipe(), output = Pipe()
        init(_ path: String) throws {
            process.executableURL = URL(fileURLWithPath: path)
            process.standardInput = input
            process.standardOutput = output
            try process.run()
        }
        var pid: Int32 { process.processIdentifier }
        func readValues(until marker: String) throws -> [String: String] {
            var values: [String: String] = [:]
            var text = ""
            let handle = output.fileHandleForReading
            while !text.split(separator: "\n").contains(Substring(marker)) {
                let data = handle.availableData
                guard !data.isEmpty else { throw ELFTestTools.CommandFailed(description: "child exited before \(marker)") }
                text += String(decoding: data, as: UTF8.self)
            }
            for line in text.split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                values[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
            return values
        }
        func stop() {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }
    }

}
