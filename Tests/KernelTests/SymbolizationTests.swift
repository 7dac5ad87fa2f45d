import Foundation
import SprofBase
import SprofELF
import XCTest
@testable import SprofCapture
import SprofProfile

/// `sprof record` names every address at the end of the recording, into the
/// file; `sprof report` prints those names. Real fixtures sampled by the real
/// BPF program, names checked against real tools (`nm -C`,
/// `swift demangle --simplified`) and /proc/kallsyms.
final class SymbolizationTests: XCTestCase {
    var sprof: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
    }

    @discardableResult
    func sprof(_ args: [String]) throws -> String {
        let out = try UnwindFixtures.run(sprof, args)
        return out
    }

    /// Folded stacks: (frames root → leaf without the comm frame, count).
    func folded(_ text: String) -> [(frames: [String], count: Int)] {
        text.split(separator: "\n").compactMap { line in
            guard let space = line.lastIndex(of: " "), let n = Int(line[line.index(after: space)...]) else { return nil }
            return (Array(line[..<space].split(separator: ";").dropFirst().map(String.init)), n)
        }
    }

    func privateFixtures() throws -> UnwindFixtures.Built {
        try requireKernelAccess()
        return try UnwindFixtures.build(outDir: NSTemporaryDirectory() + "sprof-symbolization-fixtures-\(getpid())")
    }

    /// Demangled names as the languages' tools print them: `nm -C` (C, C++,
    /// Rust), `swift demangle --simplified` (Swift).
    func oracleNames(_ raw: [String], binary: String, swift: Bool) throws -> [String: String] {
        if swift {
            let tool = "/opt/swift/usr/bin/swift-demangle"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = ["--simplified", "--compact"]
            let input = Pipe(), output = Pipe()
            p.standardInput = input
            p.standardOutput = output
            try p.run()
            input.fileHandleForWriting.write(raw.joined(separator: "\n").data(using: .utf8)! + Data([10]))
            try input.fileHandleForWriting.close()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            return Dictionary(zip(raw, text.split(separator: "\n").map(String.init)), uniquingKeysWith: { a, _ in a })
        }
        let plain = try UnwindFixtures.run("/usr/bin/nm", ["--defined-only", binary]).split(separator: "\n")
        let demangled = try UnwindFixtures.run("/usr/bin/nm", ["--defined-only", "-C", binary]).split(separator: "\n")
        XCTAssertEqual(plain.count, demangled.count)
        var map: [String: String] = [:]
        for (a, b) in zip(plain, demangled) {
            let ra = a.split(separator: " ", maxSplits: 2), rb = b.split(separator: " ", maxSplits: 2)
            if ra.count == 3, rb.count == 3 { map[String(ra[2])] = String(rb[2]) }
        }
        return map
    }

    /// C, C++, Rust and Swift fixtures: the hottest stack, demangled, is the
    /// expected chain demangled by the languages' own tools; with
    /// `--no-demangle` it is the chain as the symbol tables state it. The
    /// recording is self-contained: with the binary gone afterwards (and the
    /// process long exited: names come from the file, read at the end), the
    /// report is the same.
    func testRecordedNamesInEveryLanguageNeedNoBinaries() throws {
        let built = try privateFixtures()
        for name in ["c_chain_g", "cpp_chain", "rust_chain", "swift_chain"] {
            let bin = try built.path(name)
            let fixture = try XCTUnwrap(try UnwindFixtures.expected().first { $0.name == name })
            let chain = try XCTUnwrap(fixture.chains.first).frames
            let file = tempPath("\(name)-symbols.sprof")
            defer { unlink(file) }
            try sprof(["record", "-o", file, "--", bin] + fixture.arguments(seconds: 1))

            let profile = try Pprof.read(path: file)
            XCTAssertGreaterThan(profile.functions.count, 5, "\(name): the file names its addresses")
            let demangled = try sprof(["report", file])
            let raw = try sprof(["report", file, "--no-demangle"])

            // The binary goes away: the report must not change.
            let moved = bin + ".moved"
            try FileManager.default.moveItem(atPath: bin, toPath: moved)
            defer { try? FileManager.default.moveItem(atPath: moved, toPath: bin) }
            XCTAssertEqual(try sprof(["report", file]), demangled, "\(name): the report needed the binary")

            let physical = { (frames: [String]) in frames.filter { !$0.hasSuffix("_[i]") } }
            let hottestRaw = try XCTUnwrap(folded(raw).max { $0.count < $1.count })
            XCTAssertTrue(chainMatches(expected: chain, actual: physical(hottestRaw.frames)),
                          "\(name) --no-demangle: \(hottestRaw.frames) does not end in \(chain)")
            let oracle = try oracleNames(chain.filter { $0 != "*" }, binary: moved, swift: name.hasPrefix("swift"))
            let expectedDemangled = chain.map { $0 == "*" ? "*" : (oracle[$0] ?? $0) }
            let hottest = try XCTUnwrap(folded(demangled).max { $0.count < $1.count })
            XCTAssertTrue(chainMatches(expected: expectedDemangled, actual: physical(hottest.frames)),
                          "\(name): \(hottest.frames) does not end in \(expectedDemangled)")
            XCTAssertFalse(hottest.frames.contains { $0.isEmpty }, "\(name): a blank frame")
        }
    }

    /// Inlined functions are frames of their own, marked `_[i]`, inside the
    /// function they were inlined into (three levels in c_inline).
    func testInlinedFramesInRecordedStacks() throws {
        try requireKernelAccess()
        let source = UnwindFixtures.sourceDirectory.appendingPathComponent("../symbols/c_inline.c").standardized.path
        let bin = NSTemporaryDirectory() + "sprof-c-inline-\(getpid())"
        defer { unlink(bin) }
        _ = try UnwindFixtures.run("/usr/bin/gcc", ["-O2", "-g", "-fomit-frame-pointer", "-o", bin, source])
        let file = tempPath("inline.sprof")
        defer { unlink(file) }
        try sprof(["record", "-o", file, "--", bin, "1"])
        let stacks = folded(try sprof(["report", file]))
        let total = stacks.reduce(0) { $0 + $1.count }
        let inHot = stacks.filter { $0.frames.contains("hot_function") }
        let inlined = inHot.filter {
            guard let h = $0.frames.firstIndex(of: "hot_function") else { return false }
            return Array($0.frames[h...].prefix(3)) == ["hot_function", "outer_inline_[i]", "inner_inline_[i]"]
        }
        let n = inlined.reduce(0) { $0 + $1.count }
        XCTAssertGreaterThan(Double(n), 0.8 * Double(total), "most samples are in the inlined loop: \(stacks.prefix(5))")
        XCTAssertTrue(inlined.contains { $0.frames.last == "mix_[i]" }, "the innermost inlined function appears")
    }

    /// A sample in a system call has the kernel's frames after the user
    /// ones, each named from /proc/kallsyms and marked `_[k]`.
    func testKernelFramesOfASystemCall() throws {
        try requireKernelAccess()
        let bin = try Fixtures.build("syscalls")
        let file = tempPath("syscalls-symbols.sprof")
        defer { unlink(file) }
        try sprof(["record", "-o", file, "--", bin, "1"])
        let stacks = folded(try sprof(["report", file]))
        // (cat: a /proc file reports size 0, which some readers take at its word.)
        let kallsyms = try UnwindFixtures.run("/bin/cat", ["/proc/kallsyms"])
        var names = Set<Substring>()
        for line in kallsyms.split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 2)
            if f.count == 3 { names.insert(f[2].split(separator: "\t").first ?? f[2]) }
        }
        let inKernel = stacks.filter { $0.frames.contains("in_kernel") && $0.frames.last?.hasSuffix("_[k]") == true }
        let total = stacks.reduce(0) { $0 + $1.count }
        XCTAssertGreaterThan(inKernel.reduce(0) { $0 + $1.count }, total / 3, "the fixture is mostly in the kernel")
        var viaSyscall = 0, inKernelCount = 0
        for s in inKernel {
            let kernel = s.frames.drop { !$0.hasSuffix("_[k]") }
            XCTAssertTrue(kernel.allSatisfy { $0.hasSuffix("_[k]") }, "kernel frames come last: \(s.frames)")
            for k in kernel { XCTAssertTrue(names.contains(k.dropLast(4)), "\(k) is not in /proc/kallsyms") }
            // The kernel is entered by the syscall entry, or by an interrupt or
            // exception entry (asm_sysvec_*, asm_exc_*) that hit the user code
            // (seen: a timer interrupt in getppid's user part).
            let first = kernel.first ?? ""
            XCTAssertTrue(first.hasPrefix("entry_SYSCALL_64") || first.hasPrefix("asm_"), "kernel entry: \(s.frames)")
            if first.hasPrefix("entry_SYSCALL_64") { viaSyscall += s.count }
            inKernelCount += s.count
        }
        XCTAssertGreaterThan(viaSyscall, inKernelCount * 8 / 10, "most kernel time is in system calls")
    }

    /// A stripped executable: stacks are still complete (its .eh_frame
    /// survives strip) and its frames are `module+0xOFFSET`.
    func testStrippedBinaryHasCompleteStacksNamedByOffset() throws {
        let built = try privateFixtures()
        let bin = NSTemporaryDirectory() + "c_chain_stripped-\(getpid())"
        defer { unlink(bin) }
        try FileManager.default.copyItem(atPath: try built.path("c_chain_nog"), toPath: bin)
        _ = try UnwindFixtures.run("/usr/bin/strip", ["--strip-all", bin])
        let file = tempPath("stripped.sprof")
        defer { unlink(file) }
        try sprof(["record", "-o", file, "--", bin, "1"])
        let hottest = try XCTUnwrap(folded(try sprof(["report", file])).max { $0.count < $1.count })
        let base = (bin as NSString).lastPathComponent
        XCTAssertFalse(hottest.frames.contains { $0.hasPrefix("[truncated") }, "\(hottest.frames)")
        let ours = hottest.frames.drop { $0 != "__libc_start_call_main" }.dropFirst()
        XCTAssertEqual(ours.count, 5, "main, run, level1, level2, leaf_hot: \(hottest.frames)")
        XCTAssertTrue(ours.allSatisfy { $0.hasPrefix(base + "+0x") }, "\(hottest.frames)")
    }

    /// JIT code: an address in anonymous executable memory is named from
    /// the process's perf map (`/tmp/perf-PID.map`), marked `_[j]`.
    func testJITFramesFromPerfMap() throws {
        try requireKernelAccess()
        let bin = try Fixtures.build("jit")
        let fx = try FixtureProcess(bin, ["4"])
        defer { fx.process.terminate() }
        _ = try fx.wait(for: "jit")
        let file = tempPath("jit.sprof")
        defer { unlink(file) }
        try sprof(["record", "-p", "\(fx.pid)", "-d", "1.5", "-o", file])
        let stacks = folded(try sprof(["report", file]))
        let total = stacks.reduce(0) { $0 + $1.count }
        let jit = stacks.filter { $0.frames.contains("jit_hot_loop_[j]") }.reduce(0) { $0 + $1.count }
        XCTAssertGreaterThan(Double(jit), 0.8 * Double(total), "\(stacks.prefix(5))")
    }

    /// A raw recording named later, after its binary was rebuilt: the new
    /// file has another build-id, so its symbols are not used: the frames
    /// are `module+0xOFFSET`, never the new build's names for old addresses.
    func testRebuiltBinaryIsNotUsedForNames() throws {
        let built = try privateFixtures()
        let bin = NSTemporaryDirectory() + "c_chain_rebuilt-\(getpid())"
        defer { unlink(bin) }
        try FileManager.default.copyItem(atPath: try built.path("c_chain_g"), toPath: bin)
        let file = tempPath("rebuilt.sprof")
        defer { unlink(file) }
        try sprof(["record", "--raw", "-o", file, "--", bin, "1"])
        XCTAssertTrue(try sprof(["report", file]).contains("leaf_hot"), "named while the binary is the recorded one")
        // "Rebuild": same path, other contents (and build-id).
        unlink(bin)
        try FileManager.default.copyItem(atPath: try built.path("c_chain_nog"), toPath: bin)
        let after = try sprof(["report", file])
        XCTAssertFalse(after.contains("leaf_hot"), "a rebuilt binary's names were used")
        XCTAssertTrue(after.contains((bin as NSString).lastPathComponent + "+0x"), after)
    }
}
