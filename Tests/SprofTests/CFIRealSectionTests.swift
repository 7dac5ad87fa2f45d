import Foundation
import SprofBase
import SprofELF
@testable import SprofUnwind
import XCTest

/// The CFI reader on real sections, checked against binutils' `readelf`:
/// every FDE of libc's `.eh_frame` (offset, address range, and every row
/// of `readelf --debug-dump=frames-interp`), the `.eh_frame` and
/// `.debug_frame` of programs compiled here by GCC and by clang (whose
/// `.debug_frame` CIEs are version 4), and `.eh_frame_hdr` lookups against
/// a linear scan.
final class CFIRealSectionTests: XCTestCase {
    typealias X = DWARFRegister.X86_64
    static let libc = "/lib/x86_64-linux-gnu/libc.so.6"

    // MARK: - libc

    func testEveryLibcFDEMatchesReadelf() throws {
        let path = try Self.require(Self.libc)
        let elf = try ELFFile(path: path)
        let section = try XCTUnwrap(try CallFrameSection.ehFrame(of: elf))
        let dump = try XCTUnwrap(try Self.readelfFrames(path)[".eh_frame"])
        try compare(section, with: dump, name: "libc .eh_frame")
        XCTAssertGreaterThan(dump.count, 1000, "libc has thousands of FDEs")
    }

    /// More binaries on demand: `SPROF_CFI_BINARIES=/path/a:/path/b swift test --filter CFIRealSectionTests`
    /// (libswiftCore.so's 15 562 FDEs match too).
    func testBinariesFromTheEnvironmentMatchReadelf() throws {
        guard let list = ProcessInfo.processInfo.environment["SPROF_CFI_BINARIES"] else {
            throw XCTSkip("set SPROF_CFI_BINARIES to compare more binaries with readelf")
        }
        for path in list.split(separator: ":").map(String.init) {
            let elf = try ELFFile(path: path)
            let dumps = try Self.readelfFrames(path)
            if let s = try CallFrameSection.ehFrame(of: elf), let d = dumps[".eh_frame"] {
                try compare(s, with: d, name: "\(path) .eh_frame")
            }
            if let s = try CallFrameSection.debugFrame(of: elf), let d = dumps[".debug_frame"] {
                try compare(s, with: d, name: "\(path) .debug_frame")
            }
        }
    }

    func testLibcEHFrameHeaderFindsTheSameFDEAsALinearScan() throws {
        let elf = try ELFFile(path: try Self.require(Self.libc))
        let ehFrame = try XCTUnwrap(try CallFrameSection.ehFrame(of: elf))
        let hdr = try XCTUnwrap(try EHFrameHeader.of(elf))
        XCTAssertEqual(hdr.ehFrameAddress, ehFrame.address, "eh_frame_ptr points at .eh_frame")
        XCTAssertEqual(hdr.tableEncoding.rawValue, 0x3b, "ld writes datarel|sdata4")
        let fdes = try ehFrame.allFDEs()
        XCTAssertEqual(hdr.fdeCount, fdes.count)
        // The table is sorted and every entry names a real FDE.
        var previous: StatedAddress? = nil
        for i in 0..<hdr.fdeCount {
            let e = try hdr.entry(at: i)
            if let p = previous { XCTAssertLessThanOrEqual(p, e.initialLocation) }
            previous = e.initialLocation
            let fde = try ehFrame.fde(at: Int(e.fdeAddress.rawValue - ehFrame.address.rawValue))
            XCTAssertEqual(fde.initialLocation, e.initialLocation)
        }
        // Each FDE's first, middle and last byte, the byte after it, and
        // random addresses over the whole text: the hdr answer must be the
        // first FDE in section order that covers the address.
        let ranges = fdes.map { (start: $0.initialLocation.rawValue, end: $0.endAddress.rawValue, offset: $0.offset) }
        func linear(_ a: StatedAddress) -> Int? {
            ranges.withUnsafeBufferPointer { rs in
                for r in rs where r.start <= a.rawValue && a.rawValue < r.end { return r.offset }
                return nil
            }
        }
        var addresses: [StatedAddress] = []
        for (i, f) in fdes.enumerated() {
            addresses += [f.initialLocation, f.endAddress]
            if i % 5 == 0 {
                addresses += [StatedAddress(f.initialLocation.rawValue + f.addressRange / 2),
                              StatedAddress(f.endAddress.rawValue - 1)]
            }
        }
        let low = ranges.map(\.start).min()!, high = ranges.map(\.end).max()!
        var rng = CFIRandom(seed: 0xeb_f4a3)
        for _ in 0..<2000 { addresses.append(StatedAddress(low - 0x100 + rng.next() % (high - low + 0x200))) }
        var found = 0
        for a in addresses {
            let mine = try hdr.fde(for: a, in: ehFrame)
            XCTAssertEqual(mine?.offset, linear(a), "\(a)")
            if mine != nil { found += 1 }
        }
        XCTAssertGreaterThan(found, addresses.count / 2)
        // A real scan of the section, for a sample.
        for a in addresses.prefix(200) {
            XCTAssertEqual(try ehFrame.fdeByScanning(for: a)?.offset, try hdr.fde(for: a, in: ehFrame)?.offset)
        }
    }

    /// libc's `.plt` FDE (GCC/ld's standard one) ends in the PLT CFA
    /// expression; evaluated on each byte of a PLT entry it must give
    /// rsp+8 before the entry's `push` and rsp+16 after.
    func testLibcPLTRows() throws {
        let elf = try ELFFile(path: try Self.require(Self.libc))
        let ehFrame = try XCTUnwrap(try CallFrameSection.ehFrame(of: elf))
        let hdr = try XCTUnwrap(try EHFrameHeader.of(elf))
        let plt = try XCTUnwrap(try elf.section(named: ".plt"), "libc has a .plt")
        guard plt.size >= 0x30 else { throw XCTSkip(".plt has no entries") }
        let entry = StatedAddress(plt.address.rawValue + 0x20)  // PLT1 (PLT0 is the resolver stub)
        let fde = try XCTUnwrap(try hdr.fde(for: entry, in: ehFrame), "an FDE covers .plt")
        let row = try ehFrame.row(for: entry, in: fde)
        guard case .expression(let e) = row.cfa else { return XCTFail("PLT CFA is \(row.cfa)") }
        XCTAssertEqual(Array(ehFrame.expression(e).bytes), CFIExpressionTests.pltCFA)
        let rsp: UInt64 = 0x7ffe_0000
        for k: UInt64 in 0..<16 {
            let rip = entry.rawValue + k
            let cfa = try ehFrame.cfa(of: row, readRegister: { $0 == X.rsp ? rsp : $0 == X.returnAddress ? rip : nil },
                                      readMemory: { _, _ in nil })
            XCTAssertEqual(cfa, ProcessAddress(k >= 11 ? rsp + 16 : rsp + 8), "rip & 15 = \(k)")
        }
    }

    /// glibc's `__restore_rt` is the FDE of the "zRS" CIE: its rows give
    /// every register of columns 0–16 an expression rule reading the
    /// ucontext on the stack.
    func testLibcSignalTrampoline() throws {
        let elf = try ELFFile(path: try Self.require(Self.libc))
        let ehFrame = try XCTUnwrap(try CallFrameSection.ehFrame(of: elf))
        let fde = try XCTUnwrap(try ehFrame.allFDEs().first { $0.cie.augmentation.isSignalFrame },
                                "libc has a signal-frame FDE (__restore_rt)")
        let row = try ehFrame.row(for: fde.initialLocation, in: fde)
        XCTAssertEqual(row.registers.count, 17)
        let rsp: UInt64 = 0x7ffc_0000
        let read: (ProcessAddress, Int) -> UInt64? = { a, size in
            guard size == 8, a.rawValue >= rsp, a.rawValue < rsp + 0x400 else { return nil }
            return 0xaa00 + (a.rawValue - rsp)
        }
        let regs: (DWARFRegister) -> UInt64? = { $0 == X.rsp ? rsp : nil }
        let cfa = try ehFrame.cfa(of: row, readRegister: regs, readMemory: read)
        XCTAssertEqual(cfa, ProcessAddress(0xaa00 + 160), "CFA = *(rsp + 160), the saved rsp in uc_mcontext")
        // uc_mcontext.gregs[] from offset 40, in REG_R8 … REG_RIP order (<sys/ucontext.h>).
        let order: [DWARFRegister] = [X.r8, X.r9, X.r10, X.r11, X.r12, X.r13, X.r14, X.r15, X.rdi, X.rsi, X.rbp, X.rbx,
                                      X.rdx, X.rax, X.rcx, X.rsp, X.returnAddress]
        for (i, reg) in order.enumerated() {
            XCTAssertEqual(try ehFrame.recover(reg, rule: row.rule(for: reg), cfa: cfa, readRegister: regs, readMemory: read),
                           0xaa00 + UInt64(40 + 8 * i), "\(reg)")
        }
    }

    // MARK: - Compiled programs

    /// Functions chosen for their CFI: a leaf with no frame, an rbp frame
    /// (alloca), many callee-saved registers, an early return in the middle
    /// (remember/restore_state), and a variadic function.
    static let program = """
        #include <alloca.h>
        #include <stdarg.h>
        #include <string.h>
        int sink(int);
        __attribute__((noinline)) int leaf(int x) { return x * 3 + 1; }
        __attribute__((noinline)) int framed(int n) { char *p = alloca(n); memset(p, 1, n); return p[n / 2] + sink(n); }
        __attribute__((noinline)) long saver(long a, long b, long c, long d, long e, long f) {
            long x = sink(a), y = sink(b), z = sink(c), w = sink(d), v = sink(e), u = sink(f);
            return x * a + y * b + z * c + w * d + v * e + u * f + sink(x + y + z + w + v + u);
        }
        __attribute__((noinline)) int early(int n) {
            if (n < 0) return sink(-n);
            char buf[256]; memset(buf, n, sizeof buf); return sink(buf[n & 255]) + sink(n);
        }
        __attribute__((noinline)) int sum(int n, ...) {
            va_list ap; va_start(ap, n); int s = 0; for (int i = 0; i < n; i++) s += va_arg(ap, int); va_end(ap); return s;
        }
        __attribute__((noinline)) int sink(int x) { return x ^ 0x5a; }
        int main(int argc, char **argv) {
            return leaf(argc) + framed(argc + 10) + (int)saver(1, 2, 3, 4, 5, argc) + early(argc - 2) + sum(3, 1, 2, argc);
        }
        """

    func testGCCProgramEHFrameAndHeader() throws {
        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        try ELFTestTools.write(Self.program, to: "\(dir)/p.c")
        let exe = "\(dir)/p-eh"
        try ELFTestTools.gcc(["-O2", "-o", exe, "\(dir)/p.c"])
        let elf = try ELFFile(path: exe)
        let section = try XCTUnwrap(try CallFrameSection.ehFrame(of: elf))
        let dump = try XCTUnwrap(try Self.readelfFrames(exe)[".eh_frame"])
        try compare(section, with: dump, name: "gcc -O2 .eh_frame")
        let hdr = try XCTUnwrap(try EHFrameHeader.of(elf))
        for fde in try section.allFDEs() {
            for a in stride(from: fde.initialLocation.rawValue, to: fde.endAddress.rawValue, by: 1) {
                XCTAssertEqual(try hdr.fde(for: StatedAddress(a), in: section)?.offset, fde.offset)
            }
        }
    }

    func testGCCProgramDebugFrame() throws {
        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        try ELFTestTools.write(Self.program, to: "\(dir)/p.c")
        let exe = "\(dir)/p-debug"
        // No asynchronous unwind tables: GCC writes the program's CFI to
        // .debug_frame (the C runtime's objects still bring an .eh_frame).
        try ELFTestTools.gcc(["-O2", "-g", "-fno-asynchronous-unwind-tables", "-o", exe, "\(dir)/p.c"])
        let elf = try ELFFile(path: exe)
        let section = try XCTUnwrap(try CallFrameSection.debugFrame(of: elf), "gcc wrote a .debug_frame")
        let dumps = try Self.readelfFrames(exe)
        let dump = try XCTUnwrap(dumps[".debug_frame"])
        XCTAssertGreaterThanOrEqual(dump.count, 6, "one FDE per function")
        try compare(section, with: dump, name: "gcc .debug_frame")
        if let eh = try CallFrameSection.ehFrame(of: elf), let ehDump = dumps[".eh_frame"] {
            try compare(eh, with: ehDump, name: "gcc .eh_frame next to .debug_frame")
        }
    }

    func testClangProgramDebugFrameVersion4() throws {
        let clang = "/opt/swift/usr/bin/clang"
        guard FileManager.default.isExecutableFile(atPath: clang) else { throw XCTSkip("needs clang at \(clang)") }
        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        try ELFTestTools.write(Self.program, to: "\(dir)/p.c")
        let exe = "\(dir)/p-clang"
        try ELFTestTools.run(clang, ["-O2", "-g", "-gdwarf-5", "-fno-asynchronous-unwind-tables", "-o", exe, "\(dir)/p.c"])
        let elf = try ELFFile(path: exe)
        let section = try XCTUnwrap(try CallFrameSection.debugFrame(of: elf), "clang wrote a .debug_frame")
        let fdes = try section.allFDEs()
        XCTAssertFalse(fdes.isEmpty)
        XCTAssertTrue(fdes.allSatisfy { $0.cie.version == 4 && $0.cie.addressSize == 8 && $0.cie.segmentSelectorSize == 0 },
                      "LLVM writes DWARF 4+ .debug_frame CIEs as version 4")
        try compare(section, with: try XCTUnwrap(try Self.readelfFrames(exe)[".debug_frame"]), name: "clang .debug_frame")
    }

    // MARK: - Comparison with readelf

    /// Checks the section's FDEs (offsets, ranges) and each FDE's rows
    /// (CFA and every register column) against `readelf` frames-interp.
    func compare(_ section: CallFrameSection, with dump: [ReadelfFDE], name: String,
                 file: StaticString = #filePath, line: UInt = #line) throws {
        let fdes = try section.allFDEs()
        XCTAssertEqual(fdes.map(\.offset), dump.map(\.offset), "\(name): FDE offsets", file: file, line: line)
        let context = CFIContext()
        var rowsCompared = 0
        for (fde, theirs) in zip(fdes, dump) {
            let what = "\(name) FDE at \(cfiHex(fde.offset))"
            XCTAssertEqual(fde.initialLocation.rawValue, theirs.start, what, file: file, line: line)
            XCTAssertEqual(fde.endAddress.rawValue, theirs.end, what, file: file, line: line)
            let rows = try section.rows(of: fde, context: context)
            // readelf prints a row at every location change (the last one
            // printed for an address wins) and none for an FDE of nops.
            var expected: [(loc: UInt64, cells: [String])] = []
            for r in theirs.rows where r.loc < theirs.end {
                if expected.last?.loc == r.loc { expected.removeLast() }
                expected.append(r)
            }
            if expected.isEmpty {
                XCTAssertEqual(rows.count, 1, what, file: file, line: line)
                continue
            }
            XCTAssertEqual(rows.map(\.start.rawValue), expected.map(\.loc), what, file: file, line: line)
            let columns = theirs.columns.map { $0 == "ra" ? fde.cie.returnAddressRegister : Self.register(named: $0) }
            for (row, r) in zip(rows, expected) {
                XCTAssertEqual(readelfCFA(row.cfa), r.cells.first, "\(what) row \(cfiHex(r.loc))", file: file, line: line)
                for (column, cell) in zip(columns, r.cells.dropFirst()) {
                    guard let reg = column else { continue }
                    XCTAssertEqual(readelfCell(row.rule(for: reg)), cell, "\(what) row \(cfiHex(r.loc)) \(reg)",
                                   file: file, line: line)
                }
                // No rule for a register readelf does not list.
                for e in row.registers where !columns.contains(e.register) {
                    XCTFail("\(what) row \(cfiHex(r.loc)): rule \(e.rule) for \(e.register), not a readelf column",
                            file: file, line: line)
                }
                rowsCompared += 1
            }
            // row(for:) agrees with rows(of:) on every row's first and last byte.
            for row in rows {
                XCTAssertEqual(try section.row(for: row.start, in: fde, context: context), row, what, file: file, line: line)
                XCTAssertEqual(try section.row(for: StatedAddress(row.end.rawValue - 1), in: fde, context: context), row,
                               what, file: file, line: line)
            }
        }
        XCTAssertGreaterThan(rowsCompared, 0, name, file: file, line: line)
    }

    /// readelf's notation (binutils dwarf.c, frame_display_row).
    func readelfCFA(_ rule: CFARule) -> String {
        switch rule {
        case .registerOffset(let r, let o): return "\(Self.name(of: r))\(o < 0 ? "" : "+")\(o)"
        case .expression: return "exp"
        case .undefined: return "u"
        }
    }

    func readelfCell(_ rule: RegisterRule?) -> String {
        switch rule {
        case nil, .undefined?: return "u"  // readelf shows "u" for both
        case .register(let r)?: return "r\(r.rawValue) (\(Self.name(of: r)))"
        case let r?: return r.description
        }
    }

    static func name(of r: DWARFRegister) -> String { X.name(of: r) ?? "r\(r.rawValue)" }

    static func register(named name: String) -> DWARFRegister? {
        X.names.firstIndex(of: name).map { DWARFRegister(UInt16($0)) }
    }

    // MARK: - readelf output

    struct ReadelfFDE {
        var offset: Int
        var start: UInt64
        var end: UInt64
        /// Register column names after LOC and CFA ("rbx", …, "ra").
        var columns: [String] = []
        var rows: [(loc: UInt64, cells: [String])] = []
    }

    /// `readelf --debug-dump=frames-interp`, per section (".eh_frame", ".debug_frame").
    ///
    ///     Contents of the .eh_frame section (loaded from ...):
    ///     00000018 0000000000000024 0000001c FDE cie=00000000 pc=0000000000026000..0000000000026360
    ///        LOC           CFA      ra
    ///     0000000000026000 rsp+16   c-8
    ///     00000000000d43b1 rsp+0    r5 (rdi)
    static func readelfFrames(_ path: String) throws -> [String: [ReadelfFDE]] {
        var out: [String: [ReadelfFDE]] = [:]
        var section: String? = nil
        var current: ReadelfFDE? = nil
        func flush() {
            if let c = current, let s = section { out[s, default: []].append(c) }
            current = nil
        }
        for line in try readelfOutput(["--debug-dump=frames-interp", "-W", path]).split(separator: "\n") {
            if line.hasPrefix("Contents of the ") {
                flush()
                section = line.split(separator: " ")[3].description
                continue
            }
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 6, f[3] == "FDE", let offset = Int(f[0], radix: 16), f[5].hasPrefix("pc=") {
                flush()
                let range = f[5].dropFirst(3).components(separatedBy: "..")
                guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16)
                else { continue }
                current = ReadelfFDE(offset: offset, start: start, end: end)
            } else if f.contains("ZERO") || (f.count >= 4 && f[3] == "CIE") {
                flush()
            } else if f.first == "LOC", f.count >= 2, current != nil {
                current!.columns = f.dropFirst(2).map(String.init)
            } else if current != nil, f.count >= 2, f[0].count >= 16, let loc = UInt64(f[0], radix: 16) {
                // A register cell is "r9 (r9)": glue "(name)" to its number.
                var cells: [String] = []
                for t in f.dropFirst() {
                    if t.hasPrefix("("), let last = cells.popLast() { cells.append(last + " " + t) } else { cells.append(String(t)) }
                }
                current!.rows.append((loc, cells))
            }
        }
        flush()
        return out
    }

    /// readelf's stdout. It exits 1 after a complete dump when it also
    /// followed a debug link to a stripped file ("section '.eh_frame' has the
    /// NOBITS type"), so a dump that reached its end counts.
    static func readelfOutput(_ args: [String]) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/readelf") else { throw XCTSkip("needs readelf (binutils)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/readelf")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        p.environment = ["LC_ALL": "C", "PATH": "/usr/bin:/bin"]
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 || text.contains("Contents of the ") else {
            throw ELFTestTools.CommandFailed(description: "readelf \(args.joined(separator: " ")) exited \(p.terminationStatus)")
        }
        return text
    }

    static func require(_ path: String) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("needs \(path)") }
        return path
    }
}
