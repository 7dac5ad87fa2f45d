import Foundation
import SprofBase
import SprofCapture
import SprofUnwind
import XCTest

/// The libunwind oracle against a program compiled here: `main -> a -> b -> c`
/// built with `-O2 -fomit-frame-pointer`, where `c` records its own ip, sp
/// and bp with inline assembly, copies the stack from sp to the end of the
/// `[stack]` mapping and saves `/proc/self/maps`: a sample as the BPF
/// program would take it, minus the interrupt. The expected functions come
/// from `nm -S`.
///
/// The fixture's code, as gcc 12 compiles it (no frame pointer, so only the
/// CFI can find the callers; the captured rbp is whatever `main` left there):
///
///     c:  sub $0x38,%rsp              CFA = rsp + 0x40
///         ...
///         lea 0x0(%rip),%rdi          <- captured ip; sp = rsp here
///         mov %rsp,%rsi
///         mov %rbp,%rdx
///         call dump
///     b:  sub $0x8,%rsp               CFA = rsp + 0x10
///         add $0x1,%edi
///         call c                      <- return address in b
///
/// Kernel-independent: no BPF, no root.
final class LibunwindOracleTests: XCTestCase {

    // MARK: - A real stack

    func testUnwindsTheCompiledChainThroughLibcToTheEndOfTheStack() throws {
        let f = try OracleFixture.standard()
        let result = LibunwindUnwinder().unwind(sample: f.sample(), mappings: f.mappings)

        XCTAssertNil(result.error, "\(result.stop)")
        XCTAssertEqual(result.stop, .endOfStack)
        XCTAssertEqual(result.heuristicSteps, 0)
        let names = result.frames.enumerated().map { i, a in f.function(at: a, isReturnAddress: i > 0) }
        // c (the sample's own ip), then the return addresses into b, a, main.
        XCTAssertEqual(Array(names.prefix(4)), ["c", "b", "a", "main"], "frames: \(f.describe(result.frames))")
        XCTAssertEqual(result.frames.first, f.ip)
        // main's callers are libc's __libc_start_call_main and
        // __libc_start_main, then _start, whose CFI marks rip undefined.
        XCTAssertEqual(names.last, "_start", "frames: \(f.describe(result.frames))")
        let libc = result.frames.dropFirst(4).dropLast().map { f.mappingPath(of: $0) ?? "?" }
        XCTAssertFalse(libc.isEmpty)
        for path in libc { XCTAssertTrue(path.contains("libc"), "a frame between main and _start is in \(path)") }
    }

    func testAFileIsMappedOnceAndKeptAcrossSamples() throws {
        let f = try OracleFixture.standard()
        let oracle = LibunwindUnwinder()
        var asked = 0
        let counting = { (m: Mapping) -> String? in asked += 1; return LibunwindUnwinder.filesOnThisMachine(m) }
        let first = oracle.unwind(sample: f.sample(), mappings: f.mappings, openFile: counting)
        let askedForFirst = asked
        let files = oracle.cachedFileCount
        // Only files the walk touched were mapped: the program and libc.
        XCTAssertEqual(files, 2, "mapped \(files) files")

        // The same mappings again, and equal ones in a new array (another
        // sample of the snapshot, another process with the same layout):
        // not reinstalled, so openFile is not asked again.
        let second = oracle.unwind(sample: f.sample(), mappings: f.mappings, openFile: counting)
        _ = oracle.unwind(sample: f.sample(), mappings: f.mappings.map { $0 }, openFile: counting)
        XCTAssertEqual(first, second)
        XCTAssertEqual(asked, askedForFirst, "openFile asked again for unchanged mappings")

        // New mappings (a later snapshot: here, one without the last
        // mapping, [vsyscall] or [stack], which the walk does not need) are
        // reinstalled, but the files stay mapped from the first time.
        let later = Array(f.mappings.dropLast())
        XCTAssertEqual(oracle.unwind(sample: f.sample(), mappings: later, openFile: counting), first)
        XCTAssertGreaterThan(asked, askedForFirst)
        XCTAssertEqual(oracle.cachedFileCount, files)
    }

    func testUnwindsWhenTheSnapshotHasOnlyExecutableMappings() throws {
        // .eh_frame_hdr and .eh_frame live in a read-only segment; without
        // its mapping the oracle reads them through the module's PT_LOADs.
        let f = try OracleFixture.standard()
        let executableOnly = f.mappings.filter { $0.isExecutable || !$0.isFile }
        let result = LibunwindUnwinder().unwind(sample: f.sample(), mappings: executableOnly)
        XCTAssertEqual(result.stop, .endOfStack)
        XCTAssertEqual(result.frames, LibunwindUnwinder().unwind(sample: f.sample(), mappings: f.mappings).frames)
    }

    // MARK: - Why it stops

    func testAStackCopyCutShortSaysWhereItReadOutsideIt() throws {
        let f = try OracleFixture.standard()
        // c's return address is at CFA - 8 = sp + 0x38, past 16 bytes.
        let result = LibunwindUnwinder().unwind(sample: f.sample(stack: Array(f.stack.prefix(16))), mappings: f.mappings)
        XCTAssertEqual(result.frames, [f.ip])
        guard case .readOutsideStack(let address, let captured) = result.stop else {
            return XCTFail("expected a read outside the stack, got \(result.stop)")
        }
        XCTAssertEqual(captured, 16)
        XCTAssertGreaterThanOrEqual(address, f.sp.advanced(by: 16))
        XCTAssertLessThan(address, f.stackEnd)
        XCTAssertNotNil(result.error)
        XCTAssertTrue(result.error!.contains("read outside the captured stack at \(address)"), result.error!)

        // Cut between frames: c's return address (sp + 0x38) is in, b's
        // (c's CFA + 8 = sp + 0x48) is not. The walk gets as far as the bytes go.
        let partial = LibunwindUnwinder().unwind(sample: f.sample(stack: Array(f.stack.prefix(0x48))),
                                                 mappings: f.mappings)
        XCTAssertEqual(partial.frames.count, 2, f.describe(partial.frames))
        XCTAssertEqual(f.function(at: partial.frames[1], isReturnAddress: true), "b")
        XCTAssertEqual(partial.stop, .readOutsideStack(address: f.sp.advanced(by: 0x48), captured: 0x48))
    }

    func testGarbageStackBytesGiveAnErrorNotACrash() throws {
        let f = try OracleFixture.standard()
        let oracle = LibunwindUnwinder()
        var rng = SplitMix64(seed: 0x5eed)
        let n = f.stack.count
        let stackWords = { (k: Int) -> [UInt8] in
            // Every word points somewhere into the stack copy itself.
            var b = [UInt8](); b.reserveCapacity(n)
            while b.count < n {
                let p = f.sp.rawValue &+ UInt64(k * 8 + b.count) % UInt64(n)
                withUnsafeBytes(of: p.littleEndian) { b.append(contentsOf: $0) }
            }
            return Array(b.prefix(n))
        }
        let codeWords: [UInt8] = {
            // Every word is an address inside one of the program's
            // functions, so libunwind keeps finding CFI and walking
            // nonsense frames until it reads past the copy.
            let functions = ["c", "b", "a", "main", "dump"].compactMap { f.symbols[$0] }
            var b = [UInt8](); var r = SplitMix64(seed: 7)
            while b.count < n {
                let fn = functions[Int(r.next() % UInt64(functions.count))]
                let p = f.bias + fn.lowerBound + r.next() % UInt64(fn.count)
                withUnsafeBytes(of: p.littleEndian) { b.append(contentsOf: $0) }
            }
            return Array(b.prefix(n))
        }()
        var patterns: [(String, [UInt8])] = [
            ("all 0xff", [UInt8](repeating: 0xff, count: n)),
            ("pointers into the stack", stackWords(0)),
            ("pointers into the stack, shifted", stackWords(3)),
            ("addresses in the program's functions", codeWords),
        ]
        for i in 0..<8 { patterns.append(("random #\(i)", (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })) }
        for (name, bytes) in patterns {
            let result = oracle.unwind(sample: f.sample(stack: bytes), mappings: f.mappings)
            XCTAssertEqual(result.frames.first, f.ip, name)
            XCTAssertLessThanOrEqual(result.frames.count, LibunwindUnwinder.frameLimit, name)
            XCTAssertNotNil(result.error, "\(name): \(result.stop) after \(result.frames.count) frames")
        }
        // All zeros: c's return address reads as 0, the end-of-stack marker.
        let zeros = oracle.unwind(sample: f.sample(stack: [UInt8](repeating: 0, count: n)), mappings: f.mappings)
        XCTAssertEqual(zeros.frames, [f.ip])
        XCTAssertEqual(zeros.stop, .zeroReturnAddress)
        // Nothing captured at all, and a stack not even 8 bytes long.
        for count in [0, 7] {
            let r = oracle.unwind(sample: f.sample(stack: Array(f.stack.prefix(count))), mappings: f.mappings)
            XCTAssertEqual(r.frames, [f.ip])
            guard case .readOutsideStack = r.stop else { return XCTFail("\(count) bytes: got \(r.stop)") }
        }
        // The same oracle still unwinds a good sample afterwards.
        XCTAssertEqual(oracle.unwind(sample: f.sample(), mappings: f.mappings).stop, .endOfStack)
    }

    func testGarbageRegistersGiveAnErrorNotACrash() throws {
        let f = try OracleFixture.standard()
        let oracle = LibunwindUnwinder()
        // An ip in no mapping.
        let nowhere = oracle.unwind(sample: f.sample(ip: ProcessAddress(0x10)), mappings: f.mappings)
        XCTAssertEqual(nowhere.frames, [ProcessAddress(0x10)])
        XCTAssertEqual(nowhere.stop, .noMapping(ip: ProcessAddress(0x10)))
        XCTAssertEqual(nowhere.error, "no mapping contains ip 0x10")
        // An ip in the stack (anonymous memory: no file, no CFI).
        let onStack = oracle.unwind(sample: f.sample(ip: f.sp), mappings: f.mappings)
        XCTAssertEqual(onStack.stop, .noFile(ip: f.sp, mapping: "[stack]"))
    }

    func testMappingsWithoutFilesStopAtTheFirstLookup() throws {
        let f = try OracleFixture.standard()
        let result = LibunwindUnwinder().unwind(sample: f.sample(), mappings: f.mappings) { _ in nil }
        XCTAssertEqual(result.frames, [f.ip])
        XCTAssertEqual(result.stop, .noFile(ip: f.ip, mapping: f.exe))

        let missing = LibunwindUnwinder().unwind(sample: f.sample(), mappings: f.mappings) { _ in "/nonexistent/sprof-oracle" }
        guard case .unusableFile(let ip, let reason) = missing.stop else { return XCTFail("got \(missing.stop)") }
        XCTAssertEqual(ip, f.ip)
        XCTAssertTrue(reason.contains("No such file"), reason)

        // A file that is not ELF.
        let notELF = LibunwindUnwinder().unwind(sample: f.sample(), mappings: f.mappings) { _ in "\(f.dir)/maps.txt" }
        guard case .unusableFile(_, let why) = notELF.stop else { return XCTFail("got \(notELF.stop)") }
        XCTAssertTrue(why.contains("not an ELF file"), why)

        let noMappings = LibunwindUnwinder().unwind(sample: f.sample(), snapshot: nil)
        XCTAssertEqual(noMappings.stop, .noMapping(ip: f.ip))
    }

    func testCodeWithoutCFIStopsThereUnlessHeuristicsAreAllowed() throws {
        // No .eh_frame for the program's own functions (crt1's FDEs still
        // make a .eh_frame_hdr); -g puts the CFI in .debug_frame instead,
        // which Debian's libunwind cannot search.
        let f = try OracleFixture.make(flags: ["-fno-asynchronous-unwind-tables", "-fno-unwind-tables"])
        let strict = LibunwindUnwinder().unwind(sample: f.sample(), mappings: f.mappings)
        XCTAssertEqual(strict.frames, [f.ip])
        guard case .noUnwindInfo(let ip, let reason) = strict.stop else { return XCTFail("got \(strict.stop)") }
        XCTAssertEqual(ip, f.ip)
        XCTAssertTrue(reason.contains(f.exe), reason)
        XCTAssertTrue(reason.contains(".debug_frame"), reason)

        // As under perf: libunwind guesses. Here rbp is not a frame pointer
        // (gcc used none), so the guess finds nothing, and the walk says so
        // rather than claiming the end of the stack.
        let guessing = LibunwindUnwinder(allowFrameChainHeuristics: true).unwind(sample: f.sample(), mappings: f.mappings)
        XCTAssertEqual(guessing.frames, [f.ip])
        guard case .noUnwindInfo(_, let why) = guessing.stop else { return XCTFail("got \(guessing.stop)") }
        XCTAssertTrue(why.contains("guess"), why)
    }

    func testWithFramePointersLibunwindsGuessFindsTheCallers() throws {
        // No CFI again, but every function keeps rbp as a frame pointer:
        // libunwind's guess (ip, sp, bp) = (*(bp + 8), bp + 16, *bp) finds
        // c's callers, as perf's would, and each guess is counted. Out of
        // main (no CFI either) the guess lands in libc, whose CFI takes
        // over; how far it then gets depends on libc's frame, not asserted.
        let f = try OracleFixture.make(flags: ["-fno-omit-frame-pointer", "-fno-asynchronous-unwind-tables",
                                               "-fno-unwind-tables"])
        let strict = LibunwindUnwinder().unwind(sample: f.sample(), mappings: f.mappings)
        guard case .noUnwindInfo = strict.stop else { return XCTFail("got \(strict.stop)") }

        let guessing = LibunwindUnwinder(allowFrameChainHeuristics: true).unwind(sample: f.sample(), mappings: f.mappings)
        let names = guessing.frames.enumerated().map { i, a in f.function(at: a, isReturnAddress: i > 0) }
        XCTAssertEqual(Array(names.prefix(4)), ["c", "b", "a", "main"], f.describe(guessing.frames))
        XCTAssertEqual(guessing.heuristicSteps, 4, "one guess each out of c, b, a, main")
        XCTAssertGreaterThan(guessing.frames.count, 4)
        if guessing.frames.count > 4 { XCTAssertEqual(f.mappingPath(of: guessing.frames[4])?.contains("libc"), true) }
    }

    func testASampleWithoutUserRegistersHasNoFrames() throws {
        let f = try OracleFixture.standard()
        var sample = f.sample()
        sample.flags = [.kernelMode]
        let result = LibunwindUnwinder().unwind(sample: sample, mappings: f.mappings)
        XCTAssertEqual(result.frames, [])
        XCTAssertEqual(result.stop, .noUserRegisters)
    }

    func testOwnVDSOHasCFI() throws {
        // A sample at the entry of our own vDSO's clock_gettime, whose
        // caller's return address is 0: libunwind must find the vDSO's CFI
        // (CFA = rsp + 8 at a function's first instruction) to read it.
        let maps = try ProcMaps.read(pid: getpid())
        guard let vdso = maps.first(where: { $0.path == "[vdso]" }) else { throw XCTSkip("this process has no [vdso]") }
        let dir = try OracleFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = "\(dir)/vdso.so"
        let bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(vdso.start.rawValue)), count: Int(vdso.size))
        try Data(bytes).write(to: URL(fileURLWithPath: image))
        guard let entry = try OracleFixture.symbols(image, dynamic: true)["__vdso_clock_gettime"] else {
            throw XCTSkip("our vDSO has no __vdso_clock_gettime")
        }
        let ip = vdso.start.advanced(by: Int64(entry.lowerBound))
        let sp = ProcessAddress(0x7ffd_0000_1000)
        let sample = OracleFixture.sample(ip: ip, sp: sp, bp: ProcessAddress(0), stack: [UInt8](repeating: 0, count: 64))
        let result = LibunwindUnwinder().unwind(sample: sample, mappings: maps)
        XCTAssertEqual(result.frames, [ip])
        XCTAssertEqual(result.stop, .zeroReturnAddress)
        // Read from the dumped copy instead: the same.
        let fromFile = LibunwindUnwinder().unwind(sample: sample, mappings: maps) { $0.path == "[vdso]" ? image : nil }
        XCTAssertEqual(fromFile.stop, .zeroReturnAddress)
        // And with no bytes for it at all.
        let none = LibunwindUnwinder().unwind(sample: sample, mappings: maps) { _ in nil }
        XCTAssertEqual(none.stop, .noFile(ip: ip, mapping: "[vdso]"))
    }
}

// MARK: - The fixture

/// A sample taken by the compiled program of itself, with what it needs to be
/// checked: the program's symbols and load bias.
struct OracleFixture: Sendable {
    var dir: String
    var exe: String
    var ip: ProcessAddress
    var sp: ProcessAddress
    var bp: ProcessAddress
    /// End of the `[stack]` mapping; `stack` is `[sp, stackEnd)`.
    var stackEnd: ProcessAddress
    var stack: [UInt8]
    var mappings: [Mapping]
    /// Function name to `[st_value, st_value + st_size)`, stated addresses.
    var symbols: [String: Range<UInt64>]
    /// Process address - stated address for the program.
    var bias: UInt64

    static let source = #"""
    #include <stdint.h>
    #include <stdio.h>
    #include <stdlib.h>

    static const char *outdir;

    static FILE *open_out(const char *name) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", outdir, name);
        FILE *f = fopen(path, "w");
        if (!f) { perror(path); exit(2); }
        return f;
    }

    /* Saves the maps, the registers and the stack from sp to the end of
     * the [stack] mapping. Runs below c's frame, so [sp, end) is intact. */
    __attribute__((noinline, noclone)) void dump(uint64_t ip, uint64_t sp, uint64_t bp) {
        FILE *maps = fopen("/proc/self/maps", "r");
        FILE *copy = open_out("maps.txt");
        char line[8192];
        uint64_t end = 0;
        while (fgets(line, sizeof line, maps)) {
            fputs(line, copy);
            unsigned long lo, hi;
            if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && sp >= lo && sp < hi) end = hi;
        }
        fclose(maps);
        fclose(copy);
        if (!end) { fprintf(stderr, "sp is in no mapping\n"); exit(3); }
        FILE *regs = open_out("regs.txt");
        fprintf(regs, "%lx %lx %lx %lx\n", (unsigned long)ip, (unsigned long)sp, (unsigned long)bp, (unsigned long)end);
        fclose(regs);
        FILE *stack = open_out("stack.bin");
        fwrite((const void *)(uintptr_t)sp, 1, end - sp, stack);
        fclose(stack);
    }

    __attribute__((noinline, noclone)) int c(int x) {
        volatile char pad[40];   /* a frame of its own: CFA = rsp + 0x40 */
        pad[0] = (char)x;
        uint64_t ip, sp, bp;
        /* One asm: nothing moves rsp between reading rip and rsp. */
        __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(ip), "=r"(sp), "=r"(bp));
        dump(ip, sp, bp);
        return pad[0] + 1;
    }

    /* The empty asm after each call keeps it from becoming a tail call. */
    __attribute__((noinline, noclone)) int b(int x) { int r = c(x + 1); __asm__ volatile(""); return r * 3; }
    __attribute__((noinline, noclone)) int a(int x) { int r = b(x + 2); __asm__ volatile(""); return r * 5; }

    int main(int argc, char **argv) {
        if (argc < 2) return 1;
        outdir = argv[1];
        printf("%d\n", a(argc));
        return 0;
    }
    """#

    /// The program as the brief for the oracle has it: `-O2
    /// -fomit-frame-pointer -g`. Built once per test run (the temporary
    /// directory stays until the process exits: the mappings name its files).
    static func standard() throws -> OracleFixture { try standardFixture.get() }

    static func make(flags: [String]) throws -> OracleFixture {
        let dir = try temporaryDirectory()
        let src = "\(dir)/chain.c", exe = "\(dir)/chain"
        try Data(source.utf8).write(to: URL(fileURLWithPath: src))
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc") else { throw XCTSkip("needs gcc") }
        try run("/usr/bin/gcc", ["-O2", "-fomit-frame-pointer", "-g"] + flags + ["-o", exe, src])
        try run(exe, [dir])

        let regs = try String(contentsOfFile: "\(dir)/regs.txt", encoding: .utf8)
            .split(whereSeparator: { $0 == " " || $0 == "\n" }).map { UInt64($0, radix: 16)! }
        let stack = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir)/stack.bin")))
        let mappings = try ProcMaps.parse(try String(contentsOfFile: "\(dir)/maps.txt", encoding: .utf8))
        // gcc on Debian links position-independent executables whose first
        // PT_LOAD is at stated address 0, file offset 0: the bias is where
        // file offset 0 is mapped.
        guard let first = mappings.first(where: { $0.path == exe && $0.fileOffset.rawValue == 0 }) else {
            throw OracleFixtureError(description: "\(exe) is not in its own maps")
        }
        return OracleFixture(dir: dir, exe: exe, ip: ProcessAddress(regs[0]), sp: ProcessAddress(regs[1]),
                             bp: ProcessAddress(regs[2]), stackEnd: ProcessAddress(regs[3]), stack: stack,
                             mappings: mappings, symbols: try symbols(exe, dynamic: false), bias: first.start.rawValue)
    }

    func sample(ip: ProcessAddress? = nil, sp: ProcessAddress? = nil, stack: [UInt8]? = nil) -> RawSample {
        Self.sample(ip: ip ?? self.ip, sp: sp ?? self.sp, bp: bp, stack: stack ?? self.stack, stackEnd: stackEnd)
    }

    static func sample(ip: ProcessAddress, sp: ProcessAddress, bp: ProcessAddress, stack: [UInt8],
                       stackEnd: ProcessAddress? = nil) -> RawSample {
        RawSample(kind: .cpu, flags: [.userRegisters, .userStackToEnd], tgid: 1, tid: 1, timeNanoseconds: 0, cpu: 0,
                  comm: Comm("chain"), ip: ip, sp: sp, bp: bp, weight: 0, stackEnd: stackEnd,
                  userStackRequested: UInt32(stack.count), kernelStack: [KernelAddress(0xffff_ffff_8100_0000)],
                  userStack: stack)
    }

    /// The program's function containing `address` (a return address is
    /// looked up at address - 1, inside the call), or "?" outside it.
    func function(at address: ProcessAddress, isReturnAddress: Bool) -> String {
        guard mappingPath(of: address) == exe else { return "?" }
        let stated = address.rawValue &- bias &- (isReturnAddress ? 1 : 0)
        return symbols.first { $0.value.contains(stated) }?.key ?? "?"
    }

    func mappingPath(of address: ProcessAddress) -> String? {
        mappings.first { $0.contains(address) }?.path
    }

    func describe(_ frames: [ProcessAddress]) -> String {
        frames.enumerated().map { i, a in "\(a) \(function(at: a, isReturnAddress: i > 0)) \(mappingPath(of: a) ?? "-")" }
            .joined(separator: "; ")
    }

    /// Defined functions from `nm -S` (`-D`: the dynamic symbols).
    static func symbols(_ path: String, dynamic: Bool) throws -> [String: Range<UInt64>] {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/nm") else { throw XCTSkip("needs nm (binutils)") }
        var out: [String: Range<UInt64>] = [:]
        for line in try run("/usr/bin/nm", (dynamic ? ["-D"] : []) + ["-S", "--defined-only", path]).split(separator: "\n") {
            // "value size type name"
            let f = line.split(separator: " ")
            guard f.count == 4, "TtWw".contains(f[2]), let v = UInt64(f[0], radix: 16), let s = UInt64(f[1], radix: 16)
            else { continue }
            // Versioned dynamic symbols print as name@@VERSION.
            let name = f[3].split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)[0]
            out[String(name)] = v..<(v + max(s, 1))
        }
        return out
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "sprof-oracle-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs a command; returns stdout; throws with stderr on failure.
    @discardableResult
    static func run(_ tool: String, _ args: [String]) throws -> String {
        try ELFTestTools.run(tool, args)
    }
}

struct OracleFixtureError: Error, CustomStringConvertible { var description: String }

let standardFixture: Result<OracleFixture, any Error> = Result { try OracleFixture.make(flags: []) }

