import Foundation
import XCTest
import SprofBase
import SprofELF
@testable import SprofCapture
@testable import SprofSymbols

/// Replays the fuzz regression corpus, Tests/Fixtures/fuzz/<target>/ (see
/// the README there), through the same steps as the libFuzzer harnesses of
/// bench/fuzz/ (elf, symtab, dwarf, procmaps, perfmap; the drivers below
/// repeat them, since a test cannot import bench/): every input must end in
/// a value or the module's error. A trap, an overflow or a runaway
/// recursion fails the whole test run, which is the point. Each target's
/// folder must hold inputs, so an emptied or moved corpus fails instead of
/// passing vacuously; a few inputs whose answer is known are checked for it.
final class FuzzCorpusTests: XCTestCase {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/fuzz").standardizedFileURL

    /// The files of one target's folder, sorted; fails when there are none.
    func inputs(_ target: String, file: StaticString = #filePath, line: UInt = #line) throws -> [(String, [UInt8])] {
        let dir = Self.corpus.appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        let files = names.filter { !$0.hasPrefix(".") && !$0.hasSuffix(".md") }.sorted()
        XCTAssertFalse(files.isEmpty, "no corpus in \(dir.path)", file: file, line: line)
        return try files.map { name in
            let bytes = try [UInt8](Data(contentsOf: dir.appendingPathComponent(name)))
            XCTAssertLessThan(bytes.count, 8192, "\(target)/\(name): corpus files stay small", file: file, line: line)
            return (name, bytes)
        }
    }

    // MARK: - elf (bench/fuzz/ELFFuzzTarget.swift)

    func testELFCorpus() throws {
        var opened = 0
        for (_, bytes) in try inputs("elf") {
            guard let elf = try? ELFFile(copying: bytes) else { continue }
            opened += 1
            readLikeAModuleLoad(elf)
        }
        XCTAssertGreaterThan(opened, 10, "most crafted files get past the header and fail later, where the test looks")
    }

    func readLikeAModuleLoad(_ elf: ELFFile) {
        for i in elf.sectionHeaders.indices.prefix(4096) {
            _ = elf.name(of: elf.sectionHeaders[i])
            do { _ = try elf.section(at: i).bytes.count } catch { _ = error.description }
        }
        for name in [".text", ".eh_frame", ".eh_frame_hdr", ".debug_frame", ".debug_info", ".symtab", ".dynsym",
                     ".gnu_debuglink", ".note.gnu.build-id", ".plt"] {
            do { _ = try elf.section(named: name) } catch { _ = error.description }
        }
        var notes = elf.makeNoteIterator()
        for _ in 0..<100_000 {
            do {
                guard let note = try notes.next() else { break }
                _ = (note.owner, note.isOwned(by: "GNU"), note.descriptor.count)
            } catch {
                _ = error.description
                break
            }
        }
        do { _ = try elf.buildID()?.description } catch { _ = error.description }
        do { _ = try elf.debugLink() } catch { _ = error.description }
        for segment in elf.loadSegments.prefix(256) {
            do { _ = try elf.withContents(of: segment) { $0.count } } catch { _ = error.description }
            for delta: UInt64 in [0, 1, 0xfff, 0x1000] {
                let offset = FileOffset(segment.offset.rawValue &+ delta)
                _ = elf.statedAddress(forFileOffset: offset)
                _ = elf.loadBias(mappingStart: ProcessAddress(0x5555_5555_0000 &+ segment.offset.rawValue & ~0xfff),
                                 mappingOffset: FileOffset(offset.rawValue & ~0xfff))
            }
        }
    }

    func testCraftedELFAnswers() throws {
        let dir = Self.corpus.appendingPathComponent("elf")
        func open(_ name: String) throws -> ELFFile {
            try ELFFile(copying: [UInt8](Data(contentsOf: dir.appendingPathComponent(name))), path: name)
        }
        XCTAssertEqual(try open("crafted-valid-minimal").buildID(), BuildID(Array(0..<20)))
        XCTAssertThrowsError(try open("crafted-shnum-extended-huge"))
        XCTAssertThrowsError(try open("crafted-shoff-wraps"))
        XCTAssertThrowsError(try open("crafted-note-namesz-huge").buildID())
        XCTAssertThrowsError(try open("crafted-note-area-past-eof").notes())
        XCTAssertEqual(try open("crafted-notes-many-empty").notes().count, 600)
        XCTAssertThrowsError(try open("crafted-debuglink-short-crc").debugLink())
        // 100 note sections over the same 1 KB: refused once past the file's size, not read 100 times.
        XCTAssertThrowsError(try open("crafted-notes-overlapping").notes()) { error in
            guard case .badNote(_, _, let problem) = error as? ELFError else { return XCTFail("\(error)") }
            XCTAssertTrue(problem.contains("more bytes than the file"), problem)
        }
    }

    // MARK: - symtab (bench/fuzz/SymtabFuzzTarget.swift)

    func testSymtabCorpus() throws {
        for (_, bytes) in try inputs("symtab") {
            guard let elf = try? ELFFile(copying: bytes) else { continue }
            lookUpEverything(elf)
        }
    }

    func lookUpEverything(_ elf: ELFFile) {
        do {
            let symbols = try ELFSymbols(elf)
            for i in symbols.indices.prefix(512) {
                let s = symbols[i]
                for a in [s.address.rawValue, s.address.rawValue &- 1, s.address.rawValue &+ s.size / 2,
                          s.end.rawValue, s.end.rawValue &- 1] {
                    _ = symbols.lookup(StatedAddress(a))?.symbol.name
                }
            }
            for segment in elf.loadSegments.prefix(64) {
                let start = 0x5555_0000_0000 &+ (segment.offset.rawValue & ~0xfff)
                let mapping = Mapping(start: ProcessAddress(start), end: ProcessAddress(start &+ max(segment.fileSize, 1)),
                                      fileOffset: FileOffset(segment.offset.rawValue & ~0xfff),
                                      permissions: segment.flags.contains(.execute) ? [.read, .execute] : [.read],
                                      inode: 1, path: "/fuzz")
                for k: UInt64 in [0, 1, 0x40, 0xfff, segment.fileSize / 2, segment.fileSize &- 1] {
                    _ = symbols.lookup(ProcessAddress(start &+ k), in: mapping)
                }
            }
        } catch {
            _ = error.description
        }
        let plt = PLTStubs(elf)
        for stub in plt.stubs.prefix(512) {
            _ = plt.lookup(stub.start)
            _ = plt.lookup(StatedAddress(stub.end.rawValue &- 1))
        }
    }

    /// One symbol covering the whole address space, 150 one-byte symbols
    /// inside it, then 150 aliases at 0x2000 (make-corpus.py): the lookup
    /// must still give the innermost symbol, and the enclosing one in the
    /// gaps. (It used to walk back symbol by symbol to find it.)
    func testEnclosingSymbolIsFoundPastManySmallOnes() throws {
        let bytes = try [UInt8](Data(contentsOf: Self.corpus.appendingPathComponent("symtab/crafted-enclosing-many")))
        let symbols = try ELFSymbols(ELFFile(copying: bytes))
        XCTAssertEqual(symbols.count, 301)
        XCTAssertEqual(symbols.lookup(StatedAddress(0x1004))?.symbol.address, StatedAddress(0x1004))
        XCTAssertEqual(symbols.lookup(StatedAddress(0x1004))?.symbol.name, "helper")
        let gap = symbols.lookup(StatedAddress(0x1006))
        XCTAssertEqual(gap?.symbol.name, "main", "in the gap after a small symbol: the enclosing one")
        XCTAssertEqual(gap?.offset, 0x1006)
        // At 0x2000: aliases of sizes 0, 1 and 2, the biggest preferred. The
        // size-0 ones lie past .text and before no other symbol: they reach
        // the top of the address space.
        let alias = symbols.lookup(StatedAddress(0x2000))
        XCTAssertEqual(alias?.symbol.address, StatedAddress(0x2000))
        XCTAssertEqual(alias?.symbol.size, 2)
        XCTAssertEqual(symbols.lookup(StatedAddress(0x2005))?.symbol.address, StatedAddress(0x2000),
                       "past the sized aliases, a size-0 alias at 0x2000 still holds the address")
        XCTAssertEqual(symbols.lookup(StatedAddress(0x2005))?.symbol.size, 0)
    }

    /// 41 `.plt` and 41 `.rela.plt` headers over the same bytes: the stubs
    /// read stop once the PLT sections add up to the file's size, so there
    /// are never more than one per 16 bytes of file (without the bound: 656).
    func testOverlappingPLTSectionsAreReadAtMostAFileSizeOver() throws {
        let bytes = try [UInt8](Data(contentsOf: Self.corpus.appendingPathComponent("symtab/crafted-plt-overlapping")))
        let plt = PLTStubs(try ELFFile(copying: bytes))
        XCTAssertGreaterThan(plt.stubs.count, 0)
        XCTAssertLessThanOrEqual(plt.stubs.count, bytes.count / 16)
        XCTAssertEqual(plt.lookup(StatedAddress(0x2004))?.target, "puts")
    }

    // MARK: - dwarf (bench/fuzz/DWARFFuzzTarget.swift)

    func testDWARFCorpus() throws {
        let path = NSTemporaryDirectory() + "sprof-fuzz-corpus-\(getpid()).elf"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var opened = 0
        for (_, bytes) in try inputs("dwarf") {
            guard let frames = try framesEverywhere(bytes, path: path) else { continue }
            opened += 1
            _ = frames
        }
        XCTAssertGreaterThan(opened, 3, "libdw opens most of the crafted files")
    }

    /// The harness's steps: nil when the file is not ELF, has no
    /// .debug_info or libdw refuses it; else every frame asked for.
    func framesEverywhere(_ bytes: [UInt8], path: String) throws -> [[DWARFSource.Frame]]? {
        guard let elf = try? ELFFile(copying: bytes), let info = elf.sectionIndex(named: ".debug_info") else { return nil }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let compressed = elf.sectionHeaders[info].flags.contains(.compressed)
        guard let dwarf = DWARFSource(path: path, compressed: compressed) else { return nil }
        var addresses: [UInt64] = []
        if let symbols = try? ELFSymbols(elf) {
            for s in symbols.prefix(64) { addresses += [s.address.rawValue, s.address.rawValue &+ s.size / 2] }
        }
        for h in elf.sectionHeaders.prefix(64) where h.flags.contains(.executable) {
            for k: UInt64 in 0..<4 { addresses.append(h.address.rawValue &+ h.size / 4 &* k) }
        }
        return addresses.prefix(256).map { dwarf.frames(at: StatedAddress($0)) }
    }

    func testCraftedDWARFAnswers() throws {
        let dir = Self.corpus.appendingPathComponent("dwarf")
        let path = NSTemporaryDirectory() + "sprof-fuzz-corpus-\(getpid())-answers.elf"
        defer { try? FileManager.default.removeItem(atPath: path) }
        func frames(_ name: String, at address: UInt64) throws -> [DWARFSource.Frame]? {
            try Data(contentsOf: dir.appendingPathComponent(name)).write(to: URL(fileURLWithPath: path))
            return DWARFSource(path: path)?.frames(at: StatedAddress(address))
        }
        // No unit libdw accepts: no source (it once freed libdw's handle twice).
        XCTAssertNil(try frames("crafted-no-units", at: 0x1000))
        XCTAssertNil(try frames("crafted-no-units-garbage", at: 0x1000))
        // DW_AT_call_line 2^64-1 (it once trapped converting to Int): no line.
        let inlined = try XCTUnwrap(frames("crafted-call-file-line-huge", at: 0x1000))
        XCTAssertEqual(inlined.map(\.isInlined), [true, false])
        XCTAssertEqual(inlined.last?.name, "f")
        XCTAssertEqual(inlined.last?.line, 0)
        XCTAssertNil(inlined.last?.file, "a call file index past the file table names no file")
        // 3000 nested namespaces: the walk stops at DWARFSource.maximumDepth
        // rather than overflowing the stack, so the function is not found.
        XCTAssertEqual(try frames("crafted-nesting-3000", at: 0x1000)?.compactMap(\.name), [])
        // 500 nested inlined subroutines: as many frames as the depth allowed.
        let deep = try XCTUnwrap(frames("crafted-inline-nesting-500", at: 0x1000))
        XCTAssertEqual(deep.count, DWARFSource.maximumDepth + 1, "the function and maximumDepth inlined frames")
        XCTAssertEqual(deep.last?.name, "f")
    }

    // MARK: - procmaps (bench/fuzz/ProcMapsFuzzTarget.swift)

    func testProcMapsCorpus() throws {
        var parsed = 0
        for (_, bytes) in try inputs("procmaps") {
            do {
                let mappings = try bytes.withUnsafeBytes { try ProcMaps.parse(bytes: $0, pid: 1) }
                parsed += 1
                for m in mappings { _ = (m.isDeletedFile, m.isFile, m.size, m.contains(m.start)) }
            } catch {
                XCTAssertFalse("\(error)".isEmpty)
            }
        }
        XCTAssertGreaterThan(parsed, 0, "some of the corpus is well formed")
    }

    // MARK: - perfmap (bench/fuzz/PerfMapFuzzTarget.swift)

    func testPerfMapCorpus() throws {
        for (name, bytes) in try inputs("perfmap") {
            let map = bytes.withUnsafeBufferPointer { PerfMap(utf8: $0) }
            for s in map.symbols.prefix(4096) {
                for a in [s.start.rawValue, s.start.rawValue &+ s.size / 2, s.end.rawValue &- 1] {
                    XCTAssertNotNil(map.lookup(ProcessAddress(a)), "\(name): 0x\(String(a, radix: 16)) of \(s.name) has no owner")
                }
            }
        }
    }
}
