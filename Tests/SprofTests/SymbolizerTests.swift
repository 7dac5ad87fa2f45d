import Foundation
import SprofBase
import SprofELF
import XCTest
@testable import SprofSymbols

/// The symbolizer against real tools as oracles, on the fixtures of
/// Tests/Fixtures/symbols (C, C++, Rust legacy and v0, Swift; built by its
/// build.sh once per run): every function symbol's name against `nm -C`
/// (`swift demangle --simplified` for Swift), inline frames, files and lines
/// against `addr2line -f -i -C`, PLT stubs against `objdump -d`, separate
/// debug files found by `.gnu_debuglink` and by build-id, a stripped binary.
final class SymbolizerTests: XCTestCase {
    // MARK: - Fixtures

    struct Fixtures {
        var dir: String
        var skipped: [String: String]
        func path(_ name: String) throws -> String {
            if let why = skipped[name] { throw skipOrFailInCI("symbol fixture \(name) was not built: \(why)") }
            return dir + "/" + name
        }
    }

    nonisolated(unsafe) static var built: Result<Fixtures, Error>?

    /// Builds the fixtures once per test run.
    static func fixtures() throws -> Fixtures {
        if let built { return try built.get() }
        let result = Result<Fixtures, Error> {
            let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("../Fixtures/symbols").standardized.path
            let out = NSTemporaryDirectory() + "sprof-symbol-fixtures-\(getpid())"
            let (status, output) = try runTool(["/bin/sh", source + "/build.sh", out])
            guard status == 0 else { throw FixtureError(description: "build.sh failed (\(status)):\n\(output)") }
            var skipped: [String: String] = [:]
            for line in output.split(separator: "\n") where line.hasPrefix("skip ") {
                let rest = line.dropFirst(5)
                if let colon = rest.firstIndex(of: ":") { skipped[String(rest[..<colon])] = String(rest[rest.index(after: colon)...]) }
            }
            return Fixtures(dir: out, skipped: skipped)
        }
        built = result
        return try result.get()
    }

    // MARK: - Names against nm -C

    /// Every defined function symbol: the name our symbolizer gives its
    /// first byte (outermost frame) is one of the names `nm -C` prints for
    /// that address (aliases share an address).
    func testFunctionNamesMatchNm() throws {
        let f = try Self.fixtures()
        for name in ["c_inline", "cpp_names", "rust_legacy", "rust_v0"] {
            try checkNames(of: try f.path(name), expected: { raw, _ in raw }, demangledByNm: true)
        }
    }

    /// Swift: `nm -C` does not know Swift mangling, so the oracle is
    /// `swift demangle --simplified` on the raw names `nm` prints.
    func testSwiftNamesMatchSwiftDemangle() throws {
        let f = try Self.fixtures()
        let path = try f.path("swift_names")
        let swiftNames = try nmSymbols(path, demangle: false).map(\.name).filter { $0.hasPrefix("$s") }
        XCTAssertGreaterThan(swiftNames.count, 5, "the Swift fixture has Swift functions")
        let oracle = try swiftDemangle(swiftNames)
        for (raw, expected) in zip(swiftNames, oracle) {
            XCTAssertEqual(Demangler.demangle(raw), expected, "demangling \(raw)")
        }
        // And through the symbolizer, for the fixture's own functions.
        let module = try Symbolizer().module(path: path)
        let average = try XCTUnwrap(try nmSymbols(path, demangle: false).first { $0.name == "$s13symbols_swift5MeterV7averageSdyF" })
        let frames = module.frames(at: StatedAddress(average.address))
        XCTAssertEqual(frames.last?.function, "Meter.average()")
        XCTAssertEqual(frames.last?.systemName, "$s13symbols_swift5MeterV7averageSdyF")
    }

    /// The Swift runtime's own exported symbols: thousands of real names,
    /// each demangled as `swift demangle --simplified` does.
    func testSwiftRuntimeNamesMatchSwiftDemangle() throws {
        let core = "/opt/swift/usr/lib/swift/linux/libswiftCore.so"
        guard FileManager.default.fileExists(atPath: core) else { throw skipOrFailInCI("no \(core)") }
        let (status, out) = try runTool(["/usr/bin/nm", "-D", "--defined-only", core])
        XCTAssertEqual(status, 0)
        let names = out.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
            .filter { $0.hasPrefix("$s") }
        XCTAssertGreaterThan(names.count, 1000)
        // Every 7th name: a few thousand, spread over the table.
        let sample = stride(from: 0, to: names.count, by: 7).map { names[$0] }
        let oracle = try swiftDemangle(sample)
        var mismatches: [String] = []
        for (raw, expected) in zip(sample, oracle) where Demangler.demangle(raw) != expected {
            mismatches.append("\(raw): ours \(Demangler.demangle(raw)), swift demangle \(expected)")
        }
        XCTAssertEqual(mismatches, [], "\(mismatches.count) of \(sample.count) differ")
    }

    func testDemanglerSchemes() {
        XCTAssertEqual(Demangler.demangle("_ZN3app6Runner3runEv"), "app::Runner::run()")
        XCTAssertEqual(Demangler.demangle("_ZN10rust_chain8leaf_hot17h0123456789abcdefE"), "rust_chain::leaf_hot")
        XCTAssertEqual(Demangler.demangle("_RNvCs15kBYyAo9fc_7mycrate7example"), "mycrate::example")
        XCTAssertEqual(Demangler.demangle("$s12unwind_swift7leafHotyS2dF"), "leafHot(_:)")
        XCTAssertEqual(Demangler.demangle("main"), "main")
        XCTAssertEqual(Demangler.demangle("_Znot_mangled_really"), "_Znot_mangled_really", "rejected names stay as they are")
        XCTAssertEqual(SymbolizedModule.withoutVersion("memcpy@@GLIBC_2.14"), "memcpy")
        XCTAssertEqual(SymbolizedModule.withoutVersion("memcpy@GLIBC_2.2.5"), "memcpy")
        XCTAssertEqual(SymbolizedModule.withoutVersion("plain"), "plain")
    }

    // MARK: - Inline frames and lines against addr2line -i

    /// Addresses spread through every function of each fixture: the frames
    /// (functions, innermost first, and file:line of each) equal what
    /// `addr2line -f -i -C` prints. Swift names are compared mangled
    /// (addr2line cannot demangle Swift).
    func testInlineFramesAndLinesMatchAddr2line() throws {
        let f = try Self.fixtures()
        var checkedInline = 0
        for name in ["c_inline", "cpp_names", "rust_legacy", "rust_v0", "swift_names"] {
            let path = try f.path(name)
            checkedInline += try compareWithAddr2line(path, swift: name.hasPrefix("swift"))
        }
        XCTAssertGreaterThan(checkedInline, 10, "some addresses are in inlined code")
    }

    /// The C fixture's hot loop is three inlined levels deep inside hot_function.
    func testInlineChainOfCFixture() throws {
        let path = try Self.fixtures().path("c_inline")
        let module = try Symbolizer().module(path: path)
        XCTAssertTrue(module.hasDWARF)
        let hot = try XCTUnwrap(try nmSymbols(path, demangle: false).first { $0.name == "hot_function" })
        var deepest: [SymbolizedFrame] = []
        for a in hot.address..<(hot.address + max(hot.size, 1)) {
            let frames = module.frames(at: StatedAddress(a))
            if frames.count > deepest.count { deepest = frames }
        }
        XCTAssertEqual(deepest.map(\.function), ["mix", "inner_inline", "outer_inline", "hot_function"])
        XCTAssertEqual(deepest.map(\.isInlined), [true, true, true, false])
        XCTAssertTrue(deepest.allSatisfy { $0.file?.hasSuffix("c_inline.c") == true && $0.line > 0 })
    }

    // MARK: - PLT, debug files, stripped binaries

    func testPLTStubsAreNamed() throws {
        let path = try Self.fixtures().path("c_inline")
        let (status, disassembly) = try runTool(["/usr/bin/objdump", "-d", path])
        XCTAssertEqual(status, 0)
        let module = try Symbolizer().module(path: path)
        var checked = 0
        // "0000000000001030 <qsort@plt>:"
        for line in disassembly.split(separator: "\n") where line.hasSuffix("@plt>:") {
            let parts = line.split(separator: " ")
            let address = try XCTUnwrap(UInt64(parts[0], radix: 16))
            let name = String(parts[1].dropFirst().dropLast(2))
            XCTAssertEqual(module.frames(at: StatedAddress(address + 4)).first?.function, name)
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 2, "qsort@plt and printf@plt at least")
    }

    /// A binary stripped of everything, its debug information in a
    /// separate file found through `.gnu_debuglink` beside it: the same
    /// names and inline frames as the unstripped build.
    func testDebugFileThroughDebugLink() throws {
        let f = try Self.fixtures()
        try compareSplit(binary: try f.path("c_inline_split"), options: Symbolizer.Options(), reference: try f.path("c_inline"))
    }

    /// DWARF in zlib-compressed sections (`gcc -gz=zlib`, as distributions
    /// ship debug files): the first open inflates it and leaves an
    /// uncompressed copy in the cache, named by build-id; the next reads the
    /// copy. Both give, for every address, the frames of the uncompressed
    /// build. A cached copy libdw refuses (truncated here) is not used, and is
    /// made again.
    func testCompressedDWARFIsCachedByBuildID() throws {
        let f = try Self.fixtures()
        let path = try f.path("c_inline_gz")
        let elf = try ELFFile(path: path)
        let info = try XCTUnwrap(elf.sectionIndex(named: ".debug_info").map { elf.sectionHeaders[$0] })
        XCTAssertNotEqual(info.flags.rawValue & 0x800, 0, "gcc -gz=zlib made .debug_info SHF_COMPRESSED")
        let id = try XCTUnwrap(try elf.buildID())
        let dir = f.dir + "/dwarf-cache-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = Symbolizer.Options()
        options.dwarfCache = DWARFCache(directory: dir)
        let copy = dir + "/\(id).debug"

        let reference = try Symbolizer(options: Symbolizer.Options()).module(path: try f.path("c_inline"))
        func check(expectingReadFrom expected: String, _ what: String) throws {
            let module = try Symbolizer(options: options).module(path: path)
            XCTAssertEqual(module.dwarfPath, expected, what)
            var checked = 0, inlined = 0
            for s in try nmSymbols(path, demangle: false) where s.size > 0 {
                for a in stride(from: s.address, to: s.address + s.size, by: 2) {
                    let frames = module.frames(at: StatedAddress(a))
                    XCTAssertEqual(frames, reference.frames(at: StatedAddress(a)), "\(what): 0x\(String(a, radix: 16))")
                    checked += 1
                    if frames.contains(where: \.isInlined) { inlined += 1 }
                }
            }
            XCTAssertGreaterThan(checked, 50, what)
            XCTAssertGreaterThan(inlined, 3, "\(what): inline frames come from the DWARF")
        }
        try check(expectingReadFrom: path, "first open, from the compressed file")
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: copy)[.size] as? Int)
        XCTAssertGreaterThan(size, 1000, "the uncompressed copy was written")
        try check(expectingReadFrom: copy, "second open, from the cached copy")
        // A damaged copy: refused, the original read, the copy made again.
        let fd = open(copy, O_WRONLY | O_TRUNC)
        XCTAssertGreaterThanOrEqual(fd, 0)
        _ = write(fd, "ELF?", 4)
        close(fd)
        try check(expectingReadFrom: path, "damaged copy")
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: copy)[.size] as? Int, size, "made again")
        // No cache: read from the original every time.
        options.dwarfCache = nil
        try check(expectingReadFrom: path, "no cache")
    }

    /// The same debug file found only by build-id, under a debug root laid
    /// out as /usr/lib/debug is (`.build-id/xx/rest.debug`).
    func testDebugFileThroughBuildID() throws {
        let f = try Self.fixtures()
        let dir = f.dir + "/by-build-id"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        // A copy without its debug file beside it: only the build-id can find it.
        let binary = dir + "/bin/c_inline_split"
        try FileManager.default.copyItem(atPath: try f.path("c_inline_split"), toPath: binary)
        let id = try XCTUnwrap(try ELFFile(path: binary).buildID()).description
        let debugDir = dir + "/debug/.build-id/" + id.prefix(2)
        try FileManager.default.createDirectory(atPath: debugDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try f.path("c_inline_split.debug"), toPath: debugDir + "/" + id.dropFirst(2) + ".debug")
        var options = Symbolizer.Options()
        options.debugRoot = dir + "/debug"
        try compareSplit(binary: binary, options: options, reference: try f.path("c_inline"))
        // Without the debug root: nothing names the functions.
        var none = Symbolizer.Options()
        none.debugRoot = dir + "/nowhere"
        let bare = try Symbolizer(options: none).module(path: binary)
        XCTAssertNil(bare.debugFile)
        let hot = try XCTUnwrap(try nmSymbols(try f.path("c_inline"), demangle: false).first { $0.name == "hot_function" })
        XCTAssertEqual(bare.frames(at: StatedAddress(hot.address)), [])
    }

    /// A stripped executable (no .symtab, no DWARF, no debug file): every
    /// address gets `module+0xOFFSET`, never a blank or a wrong name, while
    /// PLT stubs are still named from the dynamic relocations.
    func testStrippedBinaryGivesModuleAndOffset() throws {
        let f = try Self.fixtures()
        let path = try f.path("c_inline_stripped")
        let elf = try ELFFile(path: path)
        let text = try XCTUnwrap(elf.loadSegments.first { $0.flags.contains(.execute) })
        // The process maps the text segment at a page-aligned address.
        let bias: UInt64 = 0x5555_5555_0000
        let mapping = Mapping(start: ProcessAddress(bias + (text.virtualAddress.rawValue & ~0xfff)),
                              end: ProcessAddress(bias + ((text.virtualAddress.rawValue + text.memorySize + 0xfff) & ~0xfff)),
                              fileOffset: FileOffset(text.offset.rawValue & ~0xfff), permissions: [.read, .execute],
                              deviceMajor: 8, deviceMinor: 1, inode: 1, path: path, buildID: try elf.buildID())
        let symbolizer = Symbolizer()
        let hot = try XCTUnwrap(try nmSymbols(try f.path("c_inline"), demangle: false).first { $0.name == "hot_function" })
        let address = ProcessAddress(bias + hot.address + 3)
        let location = symbolizer.symbolize(address, isReturnAddress: false, pid: getpid(), mapping: mapping, live: false)
        let offset = mapping.fileOffset.rawValue + (address.rawValue - mapping.start.rawValue)
        XCTAssertEqual(location.frames.map(\.function), ["c_inline_stripped+0x\(String(offset, radix: 16))"])
        XCTAssertFalse(location.isNamed)
        XCTAssertEqual(location.moduleOffset, offset)
        // A PLT stub still has its name.
        let plt = try XCTUnwrap(PLTStubs(elf).stubs.first { $0.target == "qsort" })
        let stub = symbolizer.symbolize(ProcessAddress(bias + plt.start.rawValue + 2), isReturnAddress: false,
                                        pid: getpid(), mapping: mapping, live: false)
        XCTAssertEqual(stub.frames.map(\.function), ["qsort@plt"])
    }

    /// A long-running symbolizer (the agent's) stays within a memory bound:
    /// `trim` drops the least recently used module first, and a dropped
    /// module is read again, with the same answer, when next needed.
    func testTrimDropsLeastRecentlyUsedModulesAndTheyComeBack() throws {
        let f = try Self.fixtures()
        let bias: UInt64 = 0x5555_5555_0000
        // c_inline_stripped is c_inline stripped: the same addresses.
        let hot = try XCTUnwrap(try nmSymbols(try f.path("c_inline"), demangle: false).first { $0.name == "hot_function" })
        func mapping(_ name: String) throws -> (Mapping, UInt64) {
            let path = try f.path(name)
            let elf = try ELFFile(path: path)
            let text = try XCTUnwrap(elf.loadSegments.first { $0.flags.contains(.execute) })
            let m = Mapping(start: ProcessAddress(bias + (text.virtualAddress.rawValue & ~0xfff)),
                            end: ProcessAddress(bias + ((text.virtualAddress.rawValue + text.memorySize + 0xfff) & ~0xfff)),
                            fileOffset: FileOffset(text.offset.rawValue & ~0xfff), permissions: [.read, .execute],
                            deviceMajor: 8, deviceMinor: 1, inode: UInt64(name.count), path: path, buildID: try elf.buildID())
            return (m, bias + hot.address + 3)
        }
        let (inline, inlineHot) = try mapping("c_inline")
        let (stripped, strippedHot) = try mapping("c_inline_stripped")
        let s = Symbolizer()
        let first = s.symbolize(ProcessAddress(inlineHot), isReturnAddress: false, pid: getpid(), mapping: inline, live: false)
        XCTAssertTrue(first.isNamed)
        let afterOne = s.memoryBytes
        XCTAssertGreaterThan(afterOne, 0)
        _ = s.symbolize(ProcessAddress(strippedHot), isReturnAddress: false, pid: getpid(), mapping: stripped, live: false)
        let afterTwo = s.memoryBytes
        XCTAssertGreaterThanOrEqual(afterTwo, afterOne)
        XCTAssertEqual(s.trim(toBytes: afterTwo), 0, "within the bound: nothing dropped")
        // Over the bound by the newer module: the older (c_inline) goes first.
        XCTAssertEqual(s.trim(toBytes: afterTwo - afterOne), 1)
        XCTAssertLessThanOrEqual(s.memoryBytes, afterTwo - afterOne)
        s.trim(toBytes: 0)
        XCTAssertEqual(s.memoryBytes, 0)
        let again = s.symbolize(ProcessAddress(inlineHot), isReturnAddress: false, pid: getpid(), mapping: inline, live: false)
        XCTAssertEqual(again, first)
    }

    /// glibc's debug file (libc6-dbg) keeps `.symver` versions in its
    /// `.symtab` names (`memcpy@GLIBC_2.2.5`); they are not shown.
    func testSymbolVersionsAreStripped() throws {
        let libc = "/lib/x86_64-linux-gnu/libc.so.6"
        let symbolizer = Symbolizer()
        let module = try symbolizer.module(path: libc)
        guard module.debugFile != nil else { throw skipOrFailInCI("no debug file for \(libc) (install libc6-dbg)") }
        let symbols = try XCTUnwrap(module.symbols)
        let versioned = (0..<symbols.count).filter { symbols[$0].name.contains("@") }
        XCTAssertGreaterThan(versioned.count, 0, "libc's debug .symtab has versioned names")
        for i in versioned.prefix(50) {
            let s = symbols[i]
            let frames = module.frames(at: s.address)
            XCTAssertFalse(frames.contains { $0.function.contains("@") || $0.systemName.contains("@") }, "\(s.name): \(frames)")
        }
    }

    /// A corrupt symbol table (sh_entsize 7) is reported in words, and
    /// names still come from DWARF, which is intact: nothing wrong, nothing blank.
    func testCorruptSymbolTableIsReportedAndDWARFStillNames() throws {
        let f = try Self.fixtures()
        let path = f.dir + "/c_inline_corrupt_symtab"
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: try f.path("c_inline"), toPath: path)
        let elf = try ELFFile(path: path)
        let index = try XCTUnwrap(elf.sectionHeaders.firstIndex { $0.type == .symbolTable })
        let entsizeOffset = Int(elf.header.sectionHeaderOffset.rawValue) + index * 64 + 56  // Elf64_Shdr.sh_entsize
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(entsizeOffset))
        try handle.write(contentsOf: withUnsafeBytes(of: UInt64(7).littleEndian) { Data($0) })
        try handle.close()

        let module = try Symbolizer().module(path: path)
        XCTAssertTrue(module.problems.contains { $0.contains("corrupt symbol table") && $0.contains(path) }, "\(module.problems)")
        let hot = try XCTUnwrap(try nmSymbols(try f.path("c_inline"), demangle: false).first { $0.name == "hot_function" })
        XCTAssertEqual(module.frames(at: StatedAddress(hot.address)).last?.function, "hot_function")
    }

    /// A truncated binary: a clear error naming the file, and through a
    /// mapping, `module+0xOFFSET` and the reason among the unavailable files.
    func testTruncatedBinaryIsAClearError() throws {
        let f = try Self.fixtures()
        let path = f.dir + "/c_inline_truncated"
        let whole = try XCTUnwrap(FileManager.default.contents(atPath: try f.path("c_inline")))
        try whole.prefix(3000).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Symbolizer().module(path: path)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
        let mapping = Mapping(start: ProcessAddress(0x5555_0000_1000), end: ProcessAddress(0x5555_0000_2000),
                              fileOffset: FileOffset(0x1000), permissions: [.read, .execute],
                              deviceMajor: 8, deviceMinor: 1, inode: 77, path: path, buildID: nil)
        let s = Symbolizer()
        let l = s.symbolize(ProcessAddress(0x5555_0000_1010), isReturnAddress: false, pid: getpid(), mapping: mapping, live: false)
        XCTAssertEqual(l.frames.map(\.function), ["c_inline_truncated+0x1010"])
        XCTAssertEqual(s.unavailable.count, 1)
        XCTAssertTrue(s.unavailable.first?.hasPrefix(path + ": ") == true, "\(s.unavailable)")
    }

    func testKernelSymbolsWithModules() throws {
        let text = """
            ffffffff81000000 T _stext
            ffffffff81001000 t do_one_initcall
            ffffffffc0a01000 t nft_do_chain\t[nf_tables]
            ffffffffc0a02000 d some_data\t[nf_tables]
            """
        var options = Symbolizer.Options()
        options.kernelSymbols = KernelSymbols(kallsyms: text)
        let s = Symbolizer(options: options)
        let hit = s.symbolize(kernel: KernelAddress(0xffffffffc0a01010), isReturnAddress: true)
        XCTAssertEqual(hit.frames.map(\.function), ["nft_do_chain"])
        XCTAssertEqual(hit.module, "[nf_tables]")
        XCTAssertEqual(hit.kind, .kernel)
        XCTAssertEqual(s.symbolize(kernel: KernelAddress(0xffffffff81001005), isReturnAddress: false).module, "[kernel.kallsyms]")
        let below = s.symbolize(kernel: KernelAddress(0xffffffff80000000), isReturnAddress: false)
        XCTAssertEqual(below.frames.map(\.function), ["[kernel.kallsyms]+0xffffffff80000000"])
    }

    // MARK: - Helpers

    struct NMSymbol { var address: UInt64; var size: UInt64; var type: Character; var name: String }

    /// `nm --defined-only -S` function symbols (types t, T, w, W, i).
    func nmSymbols(_ path: String, demangle: Bool) throws -> [NMSymbol] {
        let (status, out) = try runTool(["/usr/bin/nm", "--defined-only", "-S"] + (demangle ? ["-C"] : []) + [path])
        XCTAssertEqual(status, 0, out)
        var symbols: [NMSymbol] = []
        for line in out.split(separator: "\n") {
            // "addr [size] type name" (name may have spaces when demangled)
            let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
            guard parts.count >= 3, let address = UInt64(parts[0], radix: 16) else { continue }
            var size: UInt64 = 0
            var typeField = parts[1], rest = parts.dropFirst(2).joined(separator: " ")
            if parts.count == 4, parts[1].count > 1, let s = UInt64(parts[1], radix: 16) {
                size = s
                typeField = parts[2]
                rest = String(parts[3])
            }
            guard let t = typeField.first, "tTwWi".contains(t) else { continue }
            symbols.append(NMSymbol(address: address, size: size, type: t, name: rest))
        }
        return symbols
    }

    func checkNames(of path: String, expected: (String, String) -> String, demangledByNm: Bool) throws {
        let raw = try nmSymbols(path, demangle: false)
        let demangled = try nmSymbols(path, demangle: true)
        XCTAssertEqual(raw.count, demangled.count)
        var namesAt: [UInt64: Set<String>] = [:]
        for s in demangled { namesAt[s.address, default: []].insert(s.name) }
        let module = try Symbolizer().module(path: path)
        var checked = 0
        var mismatches: [String] = []
        // nm's W/w are weak symbols of any kind: only code addresses count.
        let elf = try ELFFile(path: path)
        let code = elf.sectionHeaders.filter { $0.flags.contains(.executable) }
        for (address, names) in namesAt
        where code.contains(where: { address >= $0.address.rawValue && address < $0.address.rawValue + $0.size }) {
            let frames = module.frames(at: StatedAddress(address))
            guard let outer = frames.last else { mismatches.append("0x\(String(address, radix: 16)) \(names): no frames"); continue }
            if !names.contains(outer.function) {
                mismatches.append("0x\(String(address, radix: 16)): ours \(outer.function), nm -C \(names.sorted())")
            }
            checked += 1
        }
        XCTAssertEqual(mismatches, [], "\(path): \(mismatches.count) of \(checked) differ")
        XCTAssertGreaterThan(checked, 5, path)
    }

    /// Runs addr2line on addresses spread over each function and compares.
    /// Returns how many addresses had inline frames.
    func compareWithAddr2line(_ path: String, swift: Bool) throws -> Int {
        let all = try nmSymbols(path, demangle: false).filter { $0.size > 0 }
        // At most ~1,200 functions, spread over the table (Rust's std has many).
        let symbols = stride(from: 0, to: all.count, by: max(1, all.count / 1200)).map { all[$0] }
        var addresses: [UInt64] = []
        for s in symbols {
            for k in 0..<4 { addresses.append(s.address + s.size * UInt64(k) / 4) }
        }
        addresses = Array(Set(addresses)).sorted()
        let args = ["/usr/bin/addr2line", "-a", "-f", "-i"] + (swift ? [] : ["-C"]) + ["-e", path]
            + addresses.map { "0x" + String($0, radix: 16) }
        let (status, out) = try runTool(args)
        XCTAssertEqual(status, 0)
        // Output: "0x<address>" then, per frame, "function" and "file:line".
        var expected: [UInt64: [(function: String, place: String)]] = [:]
        var current: UInt64 = 0
        var lines = out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        var i = 0
        while i < lines.count {
            if lines[i].hasPrefix("0x") { current = UInt64(lines[i].dropFirst(2), radix: 16) ?? 0; i += 1; continue }
            expected[current, default: []].append((lines[i], i + 1 < lines.count ? lines[i + 1] : ""))
            i += 2
        }
        let module = try Symbolizer().module(path: path)
        var mismatches: [String] = []
        var inline = 0
        // Names sharing an address (identical code folded by the linker, as
        // Rust's DebugList::entry and DebugSet::entry are): each is right.
        var byAddress: [UInt64: Set<String>] = [:]
        for s in try nmSymbols(path, demangle: !swift) { byAddress[s.address, default: []].insert(s.name) }
        var aliases: [String: Set<String>] = [:]
        for names in byAddress.values where names.count > 1 { for n in names { aliases[n, default: []].formUnion(names) } }
        for a in addresses {
            guard let oracle = expected[a] else { continue }
            if oracle.allSatisfy({ $0.function == "??" }) { continue }
            let ours = module.frames(at: StatedAddress(a))
            if ours.count > 1 { inline += 1 }
            let oursNames = ours.map { swift ? $0.systemName : $0.function }
            let oracleNames = oracle.map(\.function)
            // A line of 0 means "no line" (DWARF 5 §6.2.5.1): its file is not compared.
            let oursPlaces = ours.map { f in f.line == 0 ? "??:0" : "\(f.file.map { ($0 as NSString).lastPathComponent } ?? "??"):\(f.line)" }
            let oraclePlaces = oracle.map { o -> String in
                // "dir/file.c:12 (discriminator 3)" -> "file.c:12"; "??:0" and "file:?" unknown
                let place = o.place.split(separator: " ").first.map(String.init) ?? o.place
                let file = place.split(separator: ":").first.map { ($0 as NSString).lastPathComponent } ?? "??"
                let line = place.split(separator: ":").last.flatMap { Int($0) } ?? 0
                return line == 0 ? "??:0" : "\(file):\(line)"
            }
            // The outermost frame is named from the symbol table, which names
            // a compiler's partial copies (`main.cold`, `f.constprop.0`,
            // `g.part.0`) that DWARF calls by the original's name: perf
            // shows the same.
            var sameNames = oursNames.count == oracleNames.count
            for (o, e) in zip(oursNames, oracleNames) where o != e && !o.hasPrefix(e + ".") && aliases[o]?.contains(e) != true {
                sameNames = false
            }
            if !sameNames || oursPlaces != oraclePlaces {
                mismatches.append("0x\(String(a, radix: 16)): ours \(zip(oursNames, oursPlaces).map { "\($0) \($1)" }), addr2line \(zip(oracleNames, oraclePlaces).map { "\($0) \($1)" })")
            }
        }
        XCTAssertEqual(mismatches, [], "\(path): \(mismatches.count) of \(addresses.count) addresses differ from addr2line")
        return inline
    }

    func compareSplit(binary: String, options: Symbolizer.Options, reference: String) throws {
        let split = try Symbolizer(options: options).module(path: binary)
        XCTAssertNotNil(split.debugFile, "the debug file was found")
        XCTAssertTrue(split.hasDWARF)
        let whole = try Symbolizer().module(path: reference)
        var checked = 0
        for s in try nmSymbols(reference, demangle: false) where s.size > 0 {
            for a in stride(from: s.address, to: s.address + s.size, by: 3) {
                XCTAssertEqual(split.frames(at: StatedAddress(a)), whole.frames(at: StatedAddress(a)), "0x\(String(a, radix: 16))")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 20)
    }

    func swiftDemangle(_ names: [String]) throws -> [String] {
        let swift = FileManager.default.isExecutableFile(atPath: "/opt/swift/usr/bin/swift-demangle")
            ? "/opt/swift/usr/bin/swift-demangle" : "/usr/bin/swift-demangle"
        guard FileManager.default.isExecutableFile(atPath: swift) else { throw skipOrFailInCI("swift-demangle not found") }
        let (status, out) = try runTool([swift, "--simplified", "--compact"], input: names.joined(separator: "\n") + "\n")
        XCTAssertEqual(status, 0)
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return Array(lines.prefix(names.count))
    }
}

struct FixtureError: Error, CustomStringConvertible { var description: String }

/// Runs a command, returning its exit status and stdout+stderr.
func runTool(_ argv: [String], input: String? = nil) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    let inPipe = Pipe()
    if input != nil { p.standardInput = inPipe }
    try p.run()
    if let input {
        inPipe.fileHandleForWriting.write(input.data(using: .utf8)!)
        try inPipe.fileHandleForWriting.close()
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}
