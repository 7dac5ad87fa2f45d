import Foundation
import SprofELF
import XCTest

/// The unwinding fixtures of Tests/Fixtures/unwind (README.md there): programs
/// without frame pointers whose call chains are known, built by its
/// `build.sh`, and their expected chains from its `expected.json`.
enum UnwindFixtures {
    static let sourceDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/unwind")

    /// What one run of build.sh produced.
    struct Built: Sendable {
        /// The output directory.
        var directory: String
        /// Fixture name → executable, for every fixture that was built.
        var paths: [String: String]
        /// Fixture name → why build.sh skipped it (a missing toolchain).
        var skipped: [String: String]

        /// The executable of `name`; when build.sh skipped it (a missing
        /// toolchain) the test skips, or fails under CI=true.
        func path(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
            if let p = paths[name] { return p }
            if let why = skipped[name] { throw skipOrFailInCI("unwind fixture \(name) was not built: \(why)", file: file, line: line) }
            throw UnwindFixtureError(description: "no unwind fixture named \(name) in expected.json")
        }
    }

    nonisolated(unsafe) private static var cache: [String: Built] = [:]
    private static let lock = NSLock()

    /// Runs build.sh into `outDir` (default: a directory of this test run
    /// under the temporary directory), once per test run and directory, and
    /// returns the fixtures' paths. Every fixture in expected.json must then
    /// exist or have been skipped with a reason.
    static func build(outDir: String? = nil) throws -> Built {
        let dir = outDir ?? NSTemporaryDirectory() + "sprof-unwind-fixtures-\(getpid())"
        lock.lock()
        defer { lock.unlock() }
        if let built = cache[dir] { return built }
        let output = try run("/bin/sh", [sourceDirectory.appendingPathComponent("build.sh").path, dir])
        var skipped: [String: String] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("skip ") {
            // "skip NAME: reason"
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[line.index(line.startIndex, offsetBy: 5)..<colon]
            skipped[String(name)] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var paths: [String: String] = [:]
        for fixture in try expected() {
            let path = dir + "/" + fixture.name
            if FileManager.default.isExecutableFile(atPath: path) {
                paths[fixture.name] = path
            } else if skipped[fixture.name] == nil {
                throw UnwindFixtureError(description: "build.sh neither built nor skipped \(fixture.name):\n\(output)")
            }
        }
        let built = Built(directory: dir, paths: paths, skipped: skipped)
        cache[dir] = built
        return built
    }

    /// The fixtures of expected.json, in its order.
    static func expected() throws -> [UnwindFixture] {
        let url = sourceDirectory.appendingPathComponent("expected.json")
        return try JSONDecoder().decode(ExpectedFile.self, from: Data(contentsOf: url)).fixtures
    }

    private struct ExpectedFile: Decodable { var fixtures: [UnwindFixture] }

    /// Runs a command, returns its stdout; throws with its stderr when it
    /// fails. stderr goes to a file, so neither stream can fill a pipe and
    /// block the child while the other is read.
    static func run(_ tool: String, _ args: [String]) throws -> String {
        let errPath = NSTemporaryDirectory() + "sprof-unwind-stderr-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        let errFile = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = errFile
        try p.run()
        try errFile.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            throw UnwindFixtureError(description: "\(tool) \(args.joined(separator: " ")) exited \(p.terminationStatus): \(err)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}

struct UnwindFixtureError: Error, CustomStringConvertible {
    var description: String
}

/// One fixture of expected.json.
struct UnwindFixture: Decodable, Sendable {
    /// The executable's name in the build directory.
    var name: String
    /// Its source, relative to Tests/Fixtures/unwind.
    var source: String
    var language: String
    /// The toolchain build.sh skips it without ("cargo", "swiftc"); nil for gcc/g++.
    var toolchain: String?
    /// Its arguments; "{seconds}" stands for the hot loop's length.
    var args: [String]
    /// Shared libraries it loads from its own directory.
    var libraries: [String]?
    /// The section holding the CFI of the fixture's own functions.
    var cfiSection: String
    /// Which of .eh_frame, .eh_frame_hdr and .debug_frame the binary has.
    var sections: [String]
    var chains: [ExpectedChain]

    /// `args` with the hot loop's length filled in.
    func arguments(seconds: Double) -> [String] {
        args.map { $0 == "{seconds}" ? String(seconds) : $0 }
    }
}

/// One expected call chain: root → leaf frame patterns (see ``chainMatches(expected:actual:)``).
struct ExpectedChain: Decodable, Sendable {
    var frames: [String]
    /// The stdout key whose value is the tid that runs this chain.
    var thread: String?
    /// The same chain demangled, for people.
    var demangled: [String]?
    /// The hot leaf: the last frame.
    var leaf: String { frames.last ?? "" }
}

/// One element of an expected chain.
enum FramePattern: Equatable {
    /// "*": any run of frames, possibly empty.
    case any
    /// "name" (count 1) or "name*N": exactly `count` frames called `name`.
    case frames(name: String, count: Int)

    init(_ text: String) {
        if text == "*" { self = .any; return }
        if let star = text.lastIndex(of: "*"), star != text.startIndex {
            let digits = text[text.index(after: star)...]
            if !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let n = Int(digits) {
                self = .frames(name: String(text[..<star]), count: n)
                return
            }
        }
        self = .frames(name: text, count: 1)
    }
}

/// Whether a symbolized stack `actual` (root → leaf: outermost frame first,
/// the sampled function last) has the shape `expected` describes.
///
/// `expected` is a list of frame patterns, root → leaf: a name matches one
/// frame of exactly that name; `"name*N"` matches exactly N consecutive
/// frames of that name (`"recurse*200"`); `"*"` matches any run of frames,
/// including none. The match is anchored at the leaf: the last pattern must
/// match the last frame. Frames before the expected root (libc's start-up
/// code below `main`, `clone3` below `start_thread`) are allowed and ignored,
/// as if the pattern began with `"*"`; a stack that stops short of the root
/// does not match.
func chainMatches(expected: [String], actual: [String]) -> Bool {
    let patterns = [FramePattern.any] + expected.map(FramePattern.init)
    // matches[i][j]: patterns[i...] match actual[j...] exactly. Filled from the end.
    let p = patterns.count, a = actual.count
    var matches = [[Bool]](repeating: [Bool](repeating: false, count: a + 1), count: p + 1)
    matches[p][a] = true
    for i in stride(from: p - 1, through: 0, by: -1) {
        for j in stride(from: a, through: 0, by: -1) {
            switch patterns[i] {
            case .any:
                matches[i][j] = matches[i + 1][j] || (j < a && matches[i][j + 1])
            case .frames(let name, let count):
                guard count <= a - j else { continue }
                matches[i][j] = actual[j..<j + count].allSatisfy { $0 == name } && matches[i + 1][j + count]
            }
        }
    }
    return matches[0][0]
}

// MARK: - Tests

/// The matcher (pure), expected.json's consistency, and every fixture built
/// and run for half a second. None of these needs root.
final class UnwindFixturesTests: XCTestCase {
    func testFramePatterns() {
        XCTAssertEqual(FramePattern("*"), .any)
        XCTAssertEqual(FramePattern("main"), .frames(name: "main", count: 1))
        XCTAssertEqual(FramePattern("recurse*200"), .frames(name: "recurse", count: 200))
        XCTAssertEqual(FramePattern("a*0"), .frames(name: "a", count: 0))
        // Not a count: the whole text is the name.
        XCTAssertEqual(FramePattern("operator*"), .frames(name: "operator*", count: 1))
        XCTAssertEqual(FramePattern("*3"), .frames(name: "*3", count: 1))
        XCTAssertEqual(FramePattern("f*x"), .frames(name: "f*x", count: 1))
    }

    func testChainMatcher() {
        let chain = ["main", "run", "level1", "level2", "leaf_hot"]
        XCTAssertTrue(chainMatches(expected: chain, actual: chain))
        XCTAssertTrue(chainMatches(expected: chain, actual: ["_start", "__libc_start_main", "__libc_start_call_main"] + chain),
                      "frames below the root are ignored")
        XCTAssertFalse(chainMatches(expected: chain, actual: Array(chain.dropFirst())), "truncated before the root")
        XCTAssertFalse(chainMatches(expected: chain, actual: chain + ["memcpy"]), "anchored at the leaf")
        XCTAssertFalse(chainMatches(expected: chain, actual: ["main", "run", "level2", "leaf_hot"]), "a frame missing")
        XCTAssertFalse(chainMatches(expected: chain, actual: ["main", "run", "level1", "level1", "level2", "leaf_hot"]))
        XCTAssertFalse(chainMatches(expected: chain, actual: []))
        XCTAssertFalse(chainMatches(expected: ["main"], actual: ["Main"]), "names are compared exactly")
        XCTAssertTrue(chainMatches(expected: [], actual: []))
        XCTAssertTrue(chainMatches(expected: [], actual: ["x"]), "an empty chain is all leading frames")

        // name*N: exactly N.
        let deep = ["main", "run_deep", "recurse*200", "rec_leaf"]
        let recurse = { (n: Int) in ["main", "run_deep"] + Array(repeating: "recurse", count: n) + ["rec_leaf"] }
        XCTAssertTrue(chainMatches(expected: deep, actual: recurse(200)))
        XCTAssertFalse(chainMatches(expected: deep, actual: recurse(199)))
        XCTAssertFalse(chainMatches(expected: deep, actual: recurse(201)))
        XCTAssertTrue(chainMatches(expected: ["a", "b*0", "c"], actual: ["a", "c"]))

        // "*": any run, including none.
        let sort = ["main", "sort_run", "*", "compare_slow"]
        XCTAssertTrue(chainMatches(expected: sort, actual: ["main", "sort_run", "compare_slow"]))
        XCTAssertTrue(chainMatches(expected: sort, actual: ["main", "sort_run", "qsort_r"]
                                   + Array(repeating: "msort_with_tmp.part.0", count: 10) + ["compare_slow"]))
        XCTAssertFalse(chainMatches(expected: sort, actual: ["main", "qsort_r", "compare_slow"]))
        XCTAssertTrue(chainMatches(expected: ["*"], actual: ["anything", "at", "all"]))
        XCTAssertTrue(chainMatches(expected: ["a", "*", "b", "*", "c"], actual: ["a", "b", "b", "x", "c"]))
        XCTAssertTrue(chainMatches(expected: ["*", "b*2"], actual: ["b", "b", "b"]))
        XCTAssertFalse(chainMatches(expected: ["a", "*", "b*2"], actual: ["a", "b"]))
    }

    func testExpectedChainsAreWellFormed() throws {
        let fixtures = try UnwindFixtures.expected()
        XCTAssertEqual(Set(fixtures.map(\.name)).count, fixtures.count, "unique names")
        for f in fixtures {
            let source = UnwindFixtures.sourceDirectory.appendingPathComponent(f.source).path
            XCTAssertTrue(FileManager.default.fileExists(atPath: source), "\(f.name): \(source)")
            XCTAssertTrue(f.args.contains("{seconds}"), f.name)
            XCTAssertTrue(f.sections.contains(f.cfiSection), f.name)
            XCTAssertFalse(f.chains.isEmpty, f.name)
            for c in f.chains {
                XCTAssertFalse(c.frames.isEmpty, f.name)
                XCTAssertNotEqual(c.frames.last, "*", "\(f.name): a chain ends at its leaf")
                if let d = c.demangled { XCTAssertEqual(d.count, c.frames.count, "\(f.name): demangled") }
                // A chain matches itself written out (name*N expanded, "*" as nothing).
                let written = c.frames.flatMap { text -> [String] in
                    switch FramePattern(text) {
                    case .any: return []
                    case .frames(let name, let count): return Array(repeating: name, count: count)
                    }
                }
                XCTAssertTrue(chainMatches(expected: c.frames, actual: written), "\(f.name): \(c.frames)")
            }
        }
    }

    /// Every fixture builds, has the sections expected.json says, defines the
    /// functions its chains name, and runs: prints pid= (and its other keys),
    /// exits 0 after about half a second. The runs are concurrent.
    func testFixturesBuildAndRun() throws {
        let built = try UnwindFixtures.build()
        for (name, why) in built.skipped { print("unwind fixture \(name) skipped: \(why)") }
        let fixtures = try UnwindFixtures.expected().filter { built.paths[$0.name] != nil }
        XCTAssertFalse(fixtures.isEmpty)
        for fixture in fixtures {
            let path = try built.path(fixture.name)
            let elf = try ELFFile(path: path)
            let present = [".eh_frame", ".eh_frame_hdr", ".debug_frame"].filter { elf.sectionIndex(named: $0) != nil }
            XCTAssertEqual(present, fixture.sections, "\(fixture.name): unwind sections")

            // The chains' names are defined in the binary or its libraries;
            // the rest are libc's (named by its separate debug file).
            var defined = Set(try Self.definedFunctions(path))
            for lib in fixture.libraries ?? [] {
                let libPath = built.directory + "/" + lib
                XCTAssertTrue(FileManager.default.fileExists(atPath: libPath), "\(fixture.name): \(lib)")
                defined.formUnion(try Self.definedFunctions(libPath))
            }
            let libc: Set<String> = ["__restore_rt", "start_thread"]
            for chain in fixture.chains {
                for text in chain.frames {
                    guard case .frames(let name, _) = FramePattern(text) else { continue }
                    XCTAssertTrue(defined.contains(name) || libc.contains(name), "\(fixture.name): \(name) is defined nowhere")
                }
            }
        }

        // Run them all at once for 0.5 s each; check the results afterwards, on this thread.
        let results = RunResults(count: fixtures.count)
        DispatchQueue.concurrentPerform(iterations: fixtures.count) { i in
            let start = Date()
            let output = Result { try UnwindFixtures.run(built.paths[fixtures[i].name]!, fixtures[i].arguments(seconds: 0.5)) }
            results.set(i, output, Date().timeIntervalSince(start))
        }
        for (i, fixture) in fixtures.enumerated() {
            let (result, elapsed) = results.get(i)
            let output: String
            do { output = try result.get() } catch { XCTFail("\(fixture.name): \(error)"); continue }
            var keys: [String: String] = [:]
            for line in output.split(separator: "\n") {
                if let eq = line.firstIndex(of: "=") { keys[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
            }
            XCTAssertTrue(output.hasPrefix("pid="), "\(fixture.name): \(output)")
            XCTAssertNotNil(keys["pid"].flatMap { Int32($0) }, fixture.name)
            for chain in fixture.chains { if let key = chain.thread { XCTAssertNotNil(keys[key], "\(fixture.name): \(key)") } }
            if fixture.libraries != nil { XCTAssertNotNil(keys["loaded"], "\(fixture.name): loaded=") }
            XCTAssertGreaterThanOrEqual(elapsed, 0.45, fixture.name)
            XCTAssertLessThan(elapsed, 10, fixture.name)
        }
    }

    private final class RunResults: @unchecked Sendable {
        private let lock = NSLock()
        private var slots: [(Result<String, any Error>, TimeInterval)]
        init(count: Int) { slots = Array(repeating: (.success(""), 0), count: count) }
        func set(_ i: Int, _ r: Result<String, any Error>, _ t: TimeInterval) { lock.lock(); slots[i] = (r, t); lock.unlock() }
        func get(_ i: Int) -> (Result<String, any Error>, TimeInterval) { lock.lock(); defer { lock.unlock() }; return slots[i] }
    }

    /// Defined text symbols (`nm --defined-only`: t, T, w, W, i), raw names.
    static func definedFunctions(_ path: String) throws -> [String] {
        try UnwindFixtures.run("/usr/bin/nm", ["--defined-only", path]).split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count == 3, ["t", "T", "w", "W", "i"].contains(f[1]) else { return nil }
            return String(f[2])
        }
    }
}
