import Foundation
import SprofBase
import SprofELF
import XCTest

/// SprofELF against real binaries (checked with binutils' `readelf`) and
/// against corrupt ones (every corruption must give an `ELFError`, never a
/// trap).
final class ELFTests: XCTestCase {
    static let ls = "/bin/ls"

    // MARK: - Real binaries vs readelf

    func testBuildIDOfBinLsMatchesReadelf() throws {
        let expected = try XCTUnwrap(ELFTestTools.readelfBuildID(Self.ls), "readelf found no build-id in /bin/ls")
        let elf = try ELFFile(path: Self.ls)
        XCTAssertEqual(try elf.buildID()?.description, expected)
    }

    func testBuildIDOfCompiledProgramMatchesReadelf() throws {
        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        try ELFTestTools.write("int main(void) { return 0; }\n", to: "\(dir)/main.c")
        // sha1 (20 bytes, ld's default), md5 (16 bytes), and a given value.
        for (style, name) in [("sha1", "p-sha1"), ("md5", "p-md5"), ("0x0123456789abcdeffedcba98", "p-hex")] {
            let exe = "\(dir)/\(name)"
            try ELFTestTools.gcc(["-O1", "-Wl,--build-id=\(style)", "-o", exe, "\(dir)/main.c"])
            let expected = try XCTUnwrap(ELFTestTools.readelfBuildID(exe))
            let id = try XCTUnwrap(try ELFFile(path: exe).buildID())
            XCTAssertEqual(id.description, expected, style)
            if style.hasPrefix("0x") { XCTAssertEqual(id.description, "0123456789abcdeffedcba98") }
        }
        // No build-id at all: nil, not an error.
        let none = "\(dir)/p-none"
        try ELFTestTools.gcc(["-Wl,--build-id=none", "-o", none, "\(dir)/main.c"])
        XCTAssertNil(try ELFFile(path: none).buildID())
    }

    func testSectionsMatchReadelf() throws {
        let elf = try ELFFile(path: Self.ls)
        let table = try ELFTestTools.readelfSections(Self.ls)
        XCTAssertEqual(elf.sectionHeaders.count, table.count)
        let fileBytes = try Array(Data(contentsOf: URL(fileURLWithPath: Self.ls)))
        for name in [".eh_frame_hdr", ".text", ".eh_frame", ".bss", ".note.gnu.build-id", ".shstrtab"] {
            let expected = try XCTUnwrap(table.first { $0.name == name }, "readelf lists no \(name)")
            let s = try XCTUnwrap(try elf.section(named: name), name)
            XCTAssertEqual(s.address, StatedAddress(expected.address), name)
            XCTAssertEqual(s.offset, FileOffset(expected.offset), name)
            XCTAssertEqual(s.size, expected.size, name)
            XCTAssertEqual(elf.name(of: s.header), name)
            if expected.type == "NOBITS" {
                XCTAssertEqual(s.bytes.count, 0, "\(name) occupies no file bytes")
            } else {
                let o = Int(expected.offset)
                XCTAssertTrue(s.bytes.elementsEqual(fileBytes[o..<o + Int(expected.size)]), "\(name) bytes")
            }
        }
        XCTAssertNil(try elf.section(named: ".no-such-section"))
        XCTAssertNil(try elf.section(named: ".tex"), "a prefix is not a match")
    }

    func testSectionKeepsItsFileAlive() throws {
        // The ELFFile is not held by anyone but the section.
        let s = try XCTUnwrap(try ELFFile(path: Self.ls).section(named: ".eh_frame_hdr"))
        // .eh_frame_hdr starts with version 1 (LSB "Exception Frames", .eh_frame_hdr).
        XCTAssertEqual(s.bytes.first, 1)
    }

    func testFileTypeAndLoadSegmentsMatchReadelf() throws {
        let elf = try ELFFile(path: Self.ls)
        XCTAssertEqual(elf.header.type, .sharedObject, "Debian builds /bin/ls as PIE")
        XCTAssertEqual(elf.header.type.description, "DYN")
        let loads = try ELFTestTools.readelfLoadSegments(Self.ls)
        XCTAssertFalse(loads.isEmpty)
        XCTAssertEqual(elf.loadSegments.count, loads.count)
        for (mine, theirs) in zip(elf.loadSegments, loads) {
            XCTAssertEqual(mine.offset, FileOffset(theirs.offset))
            XCTAssertEqual(mine.virtualAddress, StatedAddress(theirs.vaddr))
            XCTAssertEqual(mine.fileSize, theirs.filesz)
            XCTAssertEqual(mine.memorySize, theirs.memsz)
            XCTAssertEqual(mine.flags.contains(.execute), theirs.flags.contains("E"))
        }

        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        try ELFTestTools.write("int main(void) { return 0; }\n", to: "\(dir)/main.c")
        try ELFTestTools.gcc(["-no-pie", "-fno-pie", "-o", "\(dir)/nopie", "\(dir)/main.c"])
        let nopie = try ELFFile(path: "\(dir)/nopie")
        XCTAssertEqual(nopie.header.type, .executable)
        XCTAssertEqual(nopie.header.type.description, "EXEC")
        XCTAssertEqual(nopie.header.machine, .x86_64)
    }

    func testNotesMatchReadelf() throws {
        let elf = try ELFFile(path: Self.ls)
        let notes = try elf.notes()
        let expected = try ELFTestTools.readelfNotes(Self.ls)
        XCTAssertEqual(notes.map(\.owner), expected.map(\.owner))
        XCTAssertEqual(notes.map { $0.descriptor.count }, expected.map(\.size))
        // .note.gnu.property is 8-byte aligned; a reader using 4 would misread it.
        XCTAssertTrue(notes.contains { $0.isOwned(by: "GNU") && $0.type == 5 }, "NT_GNU_PROPERTY_TYPE_0")
    }

    func testNotesFallBackToProgramHeadersWithoutSections() throws {
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: Self.ls)))
        let expected = try ELFFile(path: Self.ls).buildID()
        // e_shoff = 0, e_shnum = 0, e_shstrndx = 0: a file without section headers.
        ELFTestTools.put64(&bytes, 40, 0)
        ELFTestTools.put16(&bytes, 60, 0)
        ELFTestTools.put16(&bytes, 62, 0)
        let elf = try ELFFile(copying: bytes, path: "ls-without-sections")
        XCTAssertTrue(elf.sectionHeaders.isEmpty)
        XCTAssertEqual(try elf.buildID(), expected)
        XCTAssertNil(try elf.section(named: ".text"))
        XCTAssertNil(try elf.debugLink())
    }

    func testDebugLinkMatchesReadelf() throws {
        // /bin/ls on Debian carries a .gnu_debuglink to its dbgsym file.
        if let expected = try ELFTestTools.readelfDebugLink(Self.ls) {
            let link = try XCTUnwrap(try ELFFile(path: Self.ls).debugLink())
            XCTAssertEqual(link.fileName, expected.name)
            XCTAssertEqual(link.crc32, expected.crc)
        }
        // A link made here, with the CRC checked against our own CRC-32 of the file.
        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        try ELFTestTools.write("int main(void) { return 0; }\n", to: "\(dir)/main.c")
        try ELFTestTools.gcc(["-g", "-o", "\(dir)/prog", "\(dir)/main.c"])
        try ELFTestTools.run("/usr/bin/objcopy", ["--only-keep-debug", "\(dir)/prog", "\(dir)/prog.debug"])
        try ELFTestTools.run("/usr/bin/objcopy", ["--strip-debug", "--add-gnu-debuglink=\(dir)/prog.debug", "\(dir)/prog"])
        let link = try XCTUnwrap(try ELFFile(path: "\(dir)/prog").debugLink())
        XCTAssertEqual(link.fileName, "prog.debug")
        let debugBytes = try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/prog.debug")))
        XCTAssertEqual(link.crc32, ELFTestTools.crc32(debugBytes))
        XCTAssertEqual(try ELFTestTools.readelfDebugLink("\(dir)/prog")?.crc, link.crc32)
        // The debug file keeps the build-id of the program (objcopy copies the note).
        XCTAssertEqual(try ELFFile(path: "\(dir)/prog.debug").buildID(), try ELFFile(path: "\(dir)/prog").buildID())
        XCTAssertNil(try ELFFile(path: "\(dir)/prog.debug").debugLink())
    }

    func testCopyingInitMatchesMappedFile() throws {
        let mapped = try ELFFile(path: Self.ls)
        let copied = try ELFFile(copying: Data(contentsOf: URL(fileURLWithPath: Self.ls)), path: Self.ls)
        XCTAssertEqual(mapped.header, copied.header)
        XCTAssertEqual(mapped.sectionHeaders, copied.sectionHeaders)
        XCTAssertEqual(mapped.programHeaders, copied.programHeaders)
        XCTAssertEqual(try mapped.buildID(), try copied.buildID())
    }

    func testExtendedSectionNumberingAndAlignedNotes() throws {
        // A hand-built file: e_shnum = 0 and e_shstrndx = SHN_XINDEX, the
        // real values in section 0 (gABI "Extended Section Header Table
        // Indices"); one 8-aligned note area and one 4-aligned.
        var b = MiniELF()
        b.addNoteSection(".note.eight", alignment: 8, notes: [("GNU", 5, [1, 2, 3, 4, 5, 6, 7, 8]), ("XY", 9, [0xaa])])
        b.addNoteSection(".note.gnu.build-id", alignment: 4, notes: [("GNU", 3, [0xde, 0xad, 0xbe, 0xef])])
        b.extendedNumbering = true
        let elf = try ELFFile(copying: b.build(), path: "mini")
        XCTAssertEqual(elf.header.sectionHeaderCount, 4)
        XCTAssertEqual(elf.header.sectionNameTableIndex, 3)
        let notes = try elf.notes()
        XCTAssertEqual(notes.map(\.owner), ["GNU", "XY", "GNU"])
        XCTAssertEqual(notes.map(\.type), [5, 9, 3])
        XCTAssertEqual(Array(notes[1].descriptor), [0xaa])
        XCTAssertEqual(try elf.buildID(), BuildID([0xde, 0xad, 0xbe, 0xef]))
        XCTAssertNotNil(try elf.section(named: ".note.gnu.build-id"))
    }

    // MARK: - Corrupt input: errors, never traps

    func testEmptyAndMissingFiles() throws {
        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        try ELFTestTools.write("", to: "\(dir)/empty")
        XCTAssertThrowsError(try ELFFile(path: "\(dir)/empty")) { e in
            XCTAssertEqual(e as? ELFError, .truncatedHeader(path: "\(dir)/empty", fileSize: 0))
            XCTAssertEqual("\(e)", "\(dir)/empty: not an ELF file (the file is empty)")
        }
        XCTAssertThrowsError(try ELFFile(path: "\(dir)/missing")) { e in
            XCTAssertEqual(e as? ELFError, .cannotOpen(path: "\(dir)/missing", errno: ENOENT))
            XCTAssertEqual("\(e)", "\(dir)/missing: cannot open: No such file or directory")
        }
        XCTAssertThrowsError(try ELFFile(path: dir)) { e in
            XCTAssertEqual(e as? ELFError, .notRegularFile(path: dir))
        }
        XCTAssertThrowsError(try ELFFile(path: "/proc/self/status")) { e in
            // procfs files report size 0.
            XCTAssertEqual(e as? ELFError, .truncatedHeader(path: "/proc/self/status", fileSize: 0))
        }
    }

    func testBadIdentification() throws {
        let good = try Array(Data(contentsOf: URL(fileURLWithPath: Self.ls)))
        var bad = good
        bad[1] = UInt8(ascii: "X")
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "x")) { e in
            XCTAssertEqual(e as? ELFError, .badMagic(path: "x"))
            XCTAssertEqual("\(e)", "x: not an ELF file (bad magic)")
        }
        XCTAssertThrowsError(try ELFFile(copying: Array("#!/bin/sh\necho hello, this is not an ELF file at all, no no no\n".utf8),
                                         path: "script")) { e in
            XCTAssertEqual(e as? ELFError, .badMagic(path: "script"))
        }
        bad = good; bad[4] = 1
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "x")) { e in
            XCTAssertEqual(e as? ELFError, .unsupportedClass(path: "x", elfClass: 1))
            XCTAssertTrue("\(e)".contains("32-bit"))
        }
        bad = good; bad[5] = 2
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "x")) { e in
            XCTAssertEqual(e as? ELFError, .unsupportedByteOrder(path: "x", encoding: 2))
            XCTAssertTrue("\(e)".contains("big-endian"))
        }
        bad = good; bad[6] = 7
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "x")) { e in
            XCTAssertEqual(e as? ELFError, .unsupportedVersion(path: "x", version: 7))
        }
    }

    func testTablesOutsideTheFile() throws {
        let good = try Array(Data(contentsOf: URL(fileURLWithPath: Self.ls)))
        let size = good.count
        var bad = good
        ELFTestTools.put64(&bad, 40, UInt64(size) + 0x1000)  // e_shoff
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "ls")) { e in
            guard case .outOfBounds(_, let what, let offset, _, let fileSize)? = e as? ELFError else {
                return XCTFail("\(e)")
            }
            XCTAssertEqual(what, "section header table")
            XCTAssertEqual(offset, UInt64(size) + 0x1000)
            XCTAssertEqual(fileSize, size)
            XCTAssertTrue("\(e)".hasPrefix("ls: section header table at offset 0x"), "\(e)")
            XCTAssertTrue("\(e)".contains("runs past the end of the \(size)-byte file"), "\(e)")
        }
        bad = good
        ELFTestTools.put64(&bad, 40, UInt64.max - 8)  // offset + size overflows
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "ls"))
        bad = good
        ELFTestTools.put16(&bad, 60, 0xfff0)  // e_shnum
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "ls")) { e in
            guard case .outOfBounds(_, "section header table", _, _, _)? = e as? ELFError else { return XCTFail("\(e)") }
        }
        bad = good
        ELFTestTools.put64(&bad, 32, UInt64(size) - 10)  // e_phoff
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "ls")) { e in
            guard case .outOfBounds(_, "program header table", _, _, _)? = e as? ELFError else { return XCTFail("\(e)") }
        }
        bad = good
        ELFTestTools.put16(&bad, 58, 20)  // e_shentsize
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "ls")) { e in
            XCTAssertEqual(e as? ELFError, .badEntrySize(path: "ls", table: "section header table", entrySize: 20, minimum: 64))
        }
        bad = good
        ELFTestTools.put16(&bad, 62, 200)  // e_shstrndx
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "ls")) { e in
            guard case .badIndex(_, _, 200, _)? = e as? ELFError else { return XCTFail("\(e)") }
        }
    }

    func testSectionOutsideTheFile() throws {
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: Self.ls)))
        let elf = try ELFFile(path: Self.ls)
        let index = try XCTUnwrap(elf.sectionIndex(named: ".text"))
        let at = Int(elf.header.sectionHeaderOffset.rawValue) + index * elf.header.sectionHeaderEntrySize
        ELFTestTools.put64(&bytes, at + 32, UInt64(bytes.count))  // sh_size
        let bad = try ELFFile(copying: bytes, path: "ls")
        XCTAssertThrowsError(try bad.section(named: ".text")) { e in
            guard case .outOfBounds(_, let what, _, _, _)? = e as? ELFError else { return XCTFail("\(e)") }
            XCTAssertEqual(what, "section \(index) (.text)")
        }
        XCTAssertNotNil(try bad.section(named: ".eh_frame_hdr"), "other sections are still readable")
    }

    func testHugeNoteSizes() throws {
        let good = try Array(Data(contentsOf: URL(fileURLWithPath: Self.ls)))
        let elf = try ELFFile(path: Self.ls)
        let note = try XCTUnwrap(try elf.section(named: ".note.gnu.build-id"))
        let at = Int(note.offset.rawValue)
        for (field, value) in [(4, UInt32.max), (4, 0xFFFF_FFF0), (0, UInt32.max), (0, 0x7FFF_FFFF), (4, 21)] {
            var bad = good
            ELFTestTools.put32(&bad, at + field, value)
            let f = try ELFFile(copying: bad, path: "ls")
            XCTAssertThrowsError(try f.buildID(), "field \(field) = \(value)") { e in
                guard case .badNote(_, let offset, let problem)? = e as? ELFError else { return XCTFail("\(e)") }
                XCTAssertEqual(offset, UInt64(at))
                XCTAssertTrue(problem.contains(field == 0 ? "owner name" : "descriptor"), problem)
                XCTAssertTrue("\(e)".contains("runs past the end of its note area"), "\(e)")
            }
        }
        // A note section that itself lies outside the file.
        var bad = good
        let index = try XCTUnwrap(elf.sectionIndex(named: ".note.gnu.build-id"))
        let sh = Int(elf.header.sectionHeaderOffset.rawValue) + index * elf.header.sectionHeaderEntrySize
        ELFTestTools.put64(&bad, sh + 24, UInt64(good.count) - 4)  // sh_offset
        XCTAssertThrowsError(try ELFFile(copying: bad, path: "ls").buildID()) { e in
            guard case .outOfBounds(_, let what, _, _, _)? = e as? ELFError else { return XCTFail("\(e)") }
            XCTAssertTrue(what.hasPrefix("note section"), what)
        }
    }

    func testBadDebugLink() throws {
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: Self.ls)))
        let elf = try ELFFile(path: Self.ls)
        guard let link = try elf.section(named: ".gnu_debuglink") else { throw XCTSkip("/bin/ls has no .gnu_debuglink") }
        let o = Int(link.offset.rawValue)
        for i in o..<o + Int(link.size) { bytes[i] = UInt8(ascii: "a") }
        XCTAssertThrowsError(try ELFFile(copying: bytes, path: "ls").debugLink()) { e in
            XCTAssertEqual(e as? ELFError, .badDebugLink(path: "ls", problem: "the file name has no terminating NUL"))
        }
    }

    /// Every prefix length of a real binary at interesting places: each must
    /// give an error or a result, never a crash.
    func testTruncatedAtManyLengths() throws {
        let dir = try ELFTestTools.temporaryDirectory()
        defer { ELFTestTools.remove(dir) }
        try ELFTestTools.write("int main(void) { return 0; }\n", to: "\(dir)/main.c")
        try ELFTestTools.gcc(["-g", "-Wl,--build-id", "-o", "\(dir)/prog", "\(dir)/main.c"])
        let good = try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/prog")))
        let full = try ELFFile(copying: good)
        var lengths = Set([0, 1, 4, 16, 63, 64, 65, 100, 119, 120, 200, 0x300, 0x340, 0x380, 0x3a0, 0x1000])
        lengths.formUnion(stride(from: 0, to: good.count, by: max(1, good.count / 97)))
        lengths.insert(good.count - 1)
        lengths.insert(Int(full.header.sectionHeaderOffset.rawValue))
        lengths.insert(Int(full.header.sectionHeaderOffset.rawValue) + 64)
        var failures = 0
        for n in lengths.sorted() where n < good.count {
            failures += ELFTestTools.exercise(Array(good[..<n]), path: "prog[..<\(n)]") ? 0 : 1
        }
        XCTAssertEqual(failures, lengths.filter { $0 < good.count }.count, "every truncation is detected somewhere")
        XCTAssertThrowsError(try ELFFile(copying: Array(good[..<63]), path: "p")) { e in
            XCTAssertEqual("\(e)", "p: not an ELF file (63 bytes long, shorter than the 64-byte ELF64 header)")
        }
    }

    /// Seeded random corruption of the headers, tables and notes.
    func testRandomCorruptionNeverTraps() throws {
        let good = try Array(Data(contentsOf: URL(fileURLWithPath: Self.ls)))
        let elf = try ELFFile(path: Self.ls)
        let sht = Int(elf.header.sectionHeaderOffset.rawValue)
        let hot: [Range<Int>] = [0..<0x400, sht..<good.count]  // headers, notes; section headers
        var rng = SplitMix64(seed: 0x5EED)
        for _ in 0..<4000 {
            var bad = good
            for _ in 0..<Int(rng.next() % 6 + 1) {
                let r = hot[Int(rng.next() % 2)]
                let i = r.lowerBound + Int(rng.next() % UInt64(r.count))
                bad[i] = UInt8(truncatingIfNeeded: rng.next())
            }
            _ = ELFTestTools.exercise(bad, path: "fuzz")
        }
    }
}

// MARK: - Test tools

/// Commands, readelf parsing and byte patching for the ELF and ProcessTable tests.
enum ELFTestTools {
    struct CommandFailed: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs a command; returns stdout; throws with stderr on failure.
    @discardableResult
    static func run(_ tool: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.environment = ["LC_ALL": "C", "PATH": "/usr/bin:/bin"]
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw CommandFailed(description: "\(tool) \(args.joined(separator: " ")) exited \(p.terminationStatus): "
                                + String(decoding: errData, as: UTF8.self))
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func gcc(_ args: [String]) throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc") else { throw XCTSkip("needs gcc") }
        try run("/usr/bin/gcc", args)
    }

    static func readelf(_ args: [String]) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/readelf") else { throw XCTSkip("needs readelf (binutils)") }
        return try run("/usr/bin/readelf", args)
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "sprof-elf-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// "Build ID: <hex>" from `readelf -n`.
    static func readelfBuildID(_ path: String) throws -> String? {
        for line in try readelf(["-n", path]).split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("Build ID: ") { return String(t.dropFirst("Build ID: ".count)) }
        }
        return nil
    }

    struct SectionRow { var name: String; var type: String; var address: UInt64; var offset: UInt64; var size: UInt64 }

    /// `readelf -SW`: `[Nr] Name Type Address Off Size ES Flg Lk Inf Al`.
    static func readelfSections(_ path: String) throws -> [SectionRow] {
        var rows: [SectionRow] = []
        for line in try readelf(["-SW", path]).split(separator: "\n") {
            guard let open = line.firstIndex(of: "["), let close = line.firstIndex(of: "]"),
                  Int(line[line.index(after: open)..<close].trimmingCharacters(in: .whitespaces)) != nil
            else { continue }
            var fields = line[line.index(after: close)...].split(separator: " ").map(String.init)
            if fields.first == "NULL" { fields.insert("", at: 0) }  // section 0 has no name
            guard fields.count >= 5, let a = UInt64(fields[2], radix: 16), let o = UInt64(fields[3], radix: 16),
                  let s = UInt64(fields[4], radix: 16) else { continue }
            rows.append(SectionRow(name: fields[0], type: fields[1], address: a, offset: o, size: s))
        }
        return rows
    }

    struct LoadRow { var offset: UInt64; var vaddr: UInt64; var filesz: UInt64; var memsz: UInt64; var flags: String }

    /// `readelf -lW`: `LOAD Offset VirtAddr PhysAddr FileSiz MemSiz Flg Align`.
    static func readelfLoadSegments(_ path: String) throws -> [LoadRow] {
        try readelf(["-lW", path]).split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ").map(String.init)
            guard f.first == "LOAD", f.count >= 8 else { return nil }
            func h(_ s: String) -> UInt64? { UInt64(s.dropFirst(2), radix: 16) }
            guard let o = h(f[1]), let v = h(f[2]), let fs = h(f[4]), let ms = h(f[5]) else { return nil }
            return LoadRow(offset: o, vaddr: v, filesz: fs, memsz: ms, flags: f[6..<(f.count - 1)].joined())
        }
    }

    /// (owner, descriptor size) per note from `readelf -n`.
    static func readelfNotes(_ path: String) throws -> [(owner: String, size: Int)] {
        try readelf(["-n", path]).split(separator: "\n").compactMap { line in
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard f.count >= 3, f[1].hasPrefix("0x"), let n = Int(f[1].dropFirst(2), radix: 16) else { return nil }
            return (f[0], n)
        }
    }

    /// "Separate debug info file: NAME" and "CRC value: 0xHEX" from
    /// `readelf --debug-dump=links` (its .gnu_debuglink part).
    static func readelfDebugLink(_ path: String) throws -> (name: String, crc: UInt32)? {
        // "Contents of the .gnu_debuglink section:" or, when readelf found
        // the debug file, "... section (loaded from PATH):".
        let text = try readelf(["--debug-dump=links", path])
        guard let part = text.components(separatedBy: "Contents of the .gnu_debuglink section").dropFirst().first
        else { return nil }
        var name: String?, crc: UInt32?
        for line in part.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("Separate debug info file: "), name == nil { name = String(t.dropFirst(26)) }
            if t.hasPrefix("CRC value: 0x") { crc = UInt32(t.dropFirst(13), radix: 16) }
        }
        guard let name, let crc else { return nil }
        return (name, crc)
    }

    /// CRC-32, IEEE 802.3 polynomial (reflected 0xEDB88320), as zlib and
    /// `objcopy --add-gnu-debuglink` compute it.
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var table = [UInt32](repeating: 0, count: 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            table[i] = c
        }
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xff)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    static func put16(_ b: inout [UInt8], _ at: Int, _ v: UInt16) { for i in 0..<2 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
    static func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) { for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
    static func put64(_ b: inout [UInt8], _ at: Int, _ v: UInt64) { for i in 0..<8 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }

    /// Runs every reader entry point over `bytes`; true if all succeeded.
    /// The point is that none of them traps.
    @discardableResult
    static func exercise(_ bytes: [UInt8], path: String) -> Bool {
        guard let elf = try? ELFFile(copying: bytes, path: path) else { return false }
        var ok = true
        do { _ = try elf.buildID() } catch { ok = false; _ = "\(error)" }
        do { _ = try elf.notes() } catch { ok = false }
        do { _ = try elf.debugLink() } catch { ok = false }
        for name in [".text", ".eh_frame_hdr", ".eh_frame", ".debug_info", ".symtab"] {
            do { _ = try elf.section(named: name) } catch { ok = false }
        }
        for i in elf.sectionHeaders.indices {
            _ = elf.name(of: elf.sectionHeaders[i])
            do { _ = try elf.section(at: i) } catch { ok = false }
        }
        for p in elf.programHeaders {
            do { _ = try elf.withContents(of: p) { $0.count } } catch { ok = false }
        }
        _ = elf.loadSegments
        return ok
    }
}

/// Builds a minimal ELF64 relocatable file: header, note sections, a
/// `.shstrtab`, and the section header table (null section first).
private struct MiniELF {
    private var sections: [(name: String, type: UInt32, align: UInt64, data: [UInt8])] = []
    /// Store e_shnum/e_shstrndx in section 0 (gABI extended numbering).
    var extendedNumbering = false

    mutating func addNoteSection(_ name: String, alignment: UInt64, notes: [(String, UInt32, [UInt8])]) {
        var data: [UInt8] = []
        func pad() { while UInt64(data.count) % alignment != 0 { data.append(0) } }
        for (owner, type, desc) in notes {
            let name = Array(owner.utf8) + [0]
            for v in [UInt32(name.count), UInt32(desc.count), type] { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
            data += name; pad()
            data += desc; pad()
        }
        sections.append((name, 7, alignment, data))  // SHT_NOTE
    }

    func build() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        var names: [UInt8] = [0]
        var nameOffsets: [UInt32] = []
        for s in sections { nameOffsets.append(UInt32(names.count)); names += Array(s.name.utf8) + [0] }
        let shstrtabName = UInt32(names.count)
        names += Array(".shstrtab".utf8) + [0]
        var offsets: [UInt64] = []
        for s in sections {
            while UInt64(out.count) % s.align != 0 { out.append(0) }
            offsets.append(UInt64(out.count))
            out += s.data
        }
        let shstrtabOffset = UInt64(out.count)
        out += names
        while out.count % 8 != 0 { out.append(0) }
        let shoff = out.count
        let count = sections.count + 2
        func shdr(_ name: UInt32, _ type: UInt32, _ offset: UInt64, _ size: UInt64, _ link: UInt32, _ align: UInt64) {
            var h = [UInt8](repeating: 0, count: 64)
            ELFTestTools.put32(&h, 0, name); ELFTestTools.put32(&h, 4, type)
            ELFTestTools.put64(&h, 24, offset); ELFTestTools.put64(&h, 32, size)
            ELFTestTools.put32(&h, 40, link); ELFTestTools.put64(&h, 48, align)
            out += h
        }
        // Section 0: all zero, or the extended counts (sh_size = shnum, sh_link = shstrndx).
        shdr(0, 0, 0, extendedNumbering ? UInt64(count) : 0, extendedNumbering ? UInt32(count - 1) : 0, 0)
        for (i, s) in sections.enumerated() { shdr(nameOffsets[i], s.type, offsets[i], UInt64(s.data.count), 0, s.align) }
        shdr(shstrtabName, 3, shstrtabOffset, UInt64(names.count), 0, 1)
        // e_ident: ELFMAG, ELFCLASS64, ELFDATA2LSB, EV_CURRENT.
        out.replaceSubrange(0..<7, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1])
        ELFTestTools.put16(&out, 16, 1)           // ET_REL
        ELFTestTools.put16(&out, 18, 62)          // EM_X86_64
        ELFTestTools.put32(&out, 20, 1)           // EV_CURRENT
        ELFTestTools.put64(&out, 40, UInt64(shoff))
        ELFTestTools.put16(&out, 52, 64)          // e_ehsize
        ELFTestTools.put16(&out, 58, 64)          // e_shentsize
        ELFTestTools.put16(&out, 60, extendedNumbering ? 0 : UInt16(count))
        ELFTestTools.put16(&out, 62, extendedNumbering ? 0xffff : UInt16(count - 1))
        return out
    }
}
