import Foundation
import SprofBase
import SprofELF
@testable import SprofSymbols
import XCTest

/// `DebuginfodClient` against a real debuginfod server (elfutils' own,
/// Debian package `debuginfod`) that each test starts on loopback, serving
/// the debug file split off a program gcc builds here:
///
///     gcc -g -O2 -Wl,--build-id -o prog prog.c
///     objcopy --only-keep-debug prog served/prog.debug
///     objcopy --strip-debug prog
///     debuginfod -p PORT -F -d db.sqlite served
///
/// Only `served/` is scanned, so the server has the debug file and not the
/// program. A missing gcc, objcopy, debuginfod or libdebuginfod skips the
/// tests, loudly; with CI=true it fails them instead (never silently skip).
final class DebuginfodTests: XCTestCase {
    /// The library variables saved before a test and put back after it: a
    /// client made from another environment exports its settings to the
    /// process (see `DebuginfodClient`).
    static let variables = DebuginfodClient.variableNames
    var savedEnvironment: [String: String?] = [:]
    var directory: String?
    var server: Process?

    override func setUpWithError() throws {
        for name in Self.variables { savedEnvironment[name] = getenv(name).map { String(cString: $0) } }
    }

    override func tearDownWithError() throws {
        if let server { Self.stop(server) }
        server = nil
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
        directory = nil
        for (name, value) in savedEnvironment {
            if let value { setenv(name, value, 1) } else { unsetenv(name) }
        }
    }

    // MARK: - Tests

    func testFetchesDebugFileByBuildIDOfStrippedProgram() throws {
        let s = try startServer()
        let stripped = try ELFFile(path: s.program)
        let id = try XCTUnwrap(try stripped.buildID(), "gcc -Wl,--build-id wrote no build-id")
        XCTAssertNil(try stripped.section(named: ".debug_info"), "objcopy --strip-debug left .debug_info in the program")

        let client = try XCTUnwrap(DebuginfodClient.fromEnvironment(s.environment))
        XCTAssertEqual(client.urls, s.url)
        let path = try XCTUnwrap(try client.debugInfoPath(for: id), "the server did not give the debug file of \(id)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), path)
        XCTAssertTrue(path.hasPrefix(s.cache + "/"), "\(path) is not in DEBUGINFOD_CACHE_PATH \(s.cache)")
        let debug = try ELFFile(path: path)
        XCTAssertEqual(try debug.buildID(), id)
        XCTAssertNotNil(try debug.section(named: ".debug_info"), "\(path) has no .debug_info")

        // Asked again: the library's disk cache answers, with the same file.
        XCTAssertEqual(try client.debugInfoPath(for: id), path)
    }

    /// Through the symbolizer: a stripped program with no debug file
    /// installed gets its source files and lines (and inline frames) from
    /// the debug file debuginfod serves.
    func testSymbolizerNamesStrippedProgramThroughDebuginfod() throws {
        let s = try startServer()
        var options = Symbolizer.Options()
        options.debugRoot = s.cache + "/no-debug-root"
        let bare = try Symbolizer(options: options).module(path: s.program)
        XCTAssertNil(bare.debugFile, "no debug file without debuginfod")
        XCTAssertFalse(bare.hasDWARF, "objcopy --strip-debug removed the program's DWARF")
        options.debuginfod = try XCTUnwrap(DebuginfodClient.fromEnvironment(s.environment))
        let module = try Symbolizer(options: options).module(path: s.program)
        let debug = try XCTUnwrap(module.debugFile, "the symbolizer asked debuginfod")
        XCTAssertTrue(debug.path.hasPrefix(s.cache + "/"), debug.path)
        XCTAssertTrue(module.hasDWARF)
        let symbols = try XCTUnwrap(module.symbols)
        let index = try XCTUnwrap(symbols.indices.first { symbols[$0].name == "work" }, "work is in the program's .symtab")
        let frames = module.frames(at: symbols[index].address)
        XCTAssertEqual(frames.last?.function, "work")
        XCTAssertEqual(frames.last.flatMap(\.file).map { ($0 as NSString).lastPathComponent }, "prog.c")
        XCTAssertGreaterThan(frames.last?.line ?? 0, 0)
    }

    func testUnknownBuildIDIsNil() throws {
        let s = try startServer()
        let client = try XCTUnwrap(DebuginfodClient.fromEnvironment(s.environment))
        let madeUp = try XCTUnwrap(BuildID(hex: "0123456789abcdef0123456789abcdef01234567"))
        XCTAssertNil(try client.debugInfoPath(for: madeUp))
        XCTAssertNil(try client.debugInfoPath(for: madeUp), "a miss is remembered, and stays a miss")
        XCTAssertNil(try client.debugInfoPath(for: BuildID([])), "an empty build-id is never asked for")
    }

    /// A server that is not there is an error naming it, not a miss.
    func testUnreachableServerThrowsNamingTheURL() throws {
        try requireLibrary()
        let dir = try makeDirectory()
        let url = "http://127.0.0.1:\(try Self.freePort())"  // nothing listens there
        let client = try XCTUnwrap(DebuginfodClient.fromEnvironment([
            "DEBUGINFOD_URLS": url, "DEBUGINFOD_CACHE_PATH": dir + "/cache", "DEBUGINFOD_RETRY_LIMIT": "0",
        ]))
        let id = BuildID([0xde, 0xad, 0xbe, 0xef])
        XCTAssertThrowsError(try client.debugInfoPath(for: id)) { error in
            guard case .debuginfodFailed(let failedID, let urls, let code) = error as? SymbolError else {
                return XCTFail("unexpected error \(error)")
            }
            XCTAssertEqual(failedID, id)
            XCTAssertEqual(urls, url)
            XCTAssertEqual(code, ECONNREFUSED)
            let message = "\(error)"
            XCTAssertTrue(message.contains(url), message)
            XCTAssertTrue(message.contains(String(cString: strerror(ECONNREFUSED))), message)
        }
    }

    func testFromEnvironmentNeedsURLs() {
        XCTAssertNil(DebuginfodClient.fromEnvironment([:]))
        XCTAssertNil(DebuginfodClient.fromEnvironment(["DEBUGINFOD_URLS": ""]))
        XCTAssertNil(DebuginfodClient.fromEnvironment(["DEBUGINFOD_URLS": " \t\n"]))
        XCTAssertNil(DebuginfodClient.fromEnvironment(["DEBUGINFOD_CACHE_PATH": "/tmp"]))
        let client = DebuginfodClient.fromEnvironment(["DEBUGINFOD_URLS": " https://a.example  https://b.example "])
        XCTAssertEqual(client?.urls, "https://a.example https://b.example")
        // The timeout is ours when unset, the user's when set.
        XCTAssertEqual(client?.settings.first { $0.name == "DEBUGINFOD_TIMEOUT" }?.value,
                       String(DebuginfodClient.defaultTimeoutSeconds))
        let set = DebuginfodClient.fromEnvironment(["DEBUGINFOD_URLS": "https://a.example", "DEBUGINFOD_TIMEOUT": "5"])
        XCTAssertEqual(set?.settings.first { $0.name == "DEBUGINFOD_TIMEOUT" }?.value, "5")
    }

    func testMissingLibrarySaysWhatToInstall() {
        guard case .failure(let error) = DebuginfodClient.loadLibrary("libdebuginfod-sprof-absent.so.1") else {
            return XCTFail("dlopen of a library that does not exist succeeded")
        }
        XCTAssertTrue(error.description.contains("install libdebuginfod1"), error.description)
        XCTAssertTrue(error.description.contains("libdebuginfod-sprof-absent.so.1"), error.description)
    }

    // MARK: - The server

    struct Served {
        /// The stripped program (its debug file is only on the server).
        var program: String
        var url: String
        var cache: String
        /// What the client is made from.
        var environment: [String: String] { ["DEBUGINFOD_URLS": url, "DEBUGINFOD_CACHE_PATH": cache] }
    }

    /// Builds and splits the program, starts debuginfod on it, and waits
    /// until it serves the debug file.
    func startServer() throws -> Served {
        try requireTool("/usr/bin/gcc", package: "gcc")
        try requireTool("/usr/bin/objcopy", package: "binutils")
        try requireTool("/usr/bin/debuginfod", package: "debuginfod")
        try requireLibrary()
        let dir = try makeDirectory()
        let served = dir + "/served"
        try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
        let source = dir + "/prog.c", program = dir + "/prog"
        try Data(Self.programSource.utf8).write(to: URL(fileURLWithPath: source))
        try Self.run("/usr/bin/gcc", ["-g", "-O2", "-Wl,--build-id", "-o", program, source])
        try Self.run("/usr/bin/objcopy", ["--only-keep-debug", program, served + "/prog.debug"])
        try Self.run("/usr/bin/objcopy", ["--strip-debug", program])
        let id = try XCTUnwrap(try ELFFile(path: program).buildID())

        let port = try Self.freePort()
        let log = dir + "/debuginfod.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/debuginfod")
        // -F: index ELF/DWARF files under the paths; -d: a database of our own
        // (the default is ~/.debuginfod.sqlite); -t 0: no periodic rescan.
        p.arguments = ["-p", String(port), "-F", "-d", dir + "/debuginfod.sqlite", "-t", "0", served]
        p.standardOutput = FileHandle(forWritingAtPath: log)
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        server = p

        // The first scan starts after the server is up (and after a database
        // groom): it answers 404 until then, about a second on this machine.
        // Polled over plain HTTP, not through libdebuginfod, whose cache
        // would remember the 404s as misses for 10 minutes.
        let deadline = Date().addingTimeInterval(30)
        var status: Int?
        while Date() < deadline {
            guard p.isRunning else {
                throw Failure("debuginfod exited \(p.terminationStatus): \(Self.contents(log))")
            }
            status = Self.httpStatus(port: port, path: "/buildid/\(id)/debuginfo")
            if status == 200 { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        guard status == 200 else {
            throw Failure("debuginfod did not serve \(id) within 30 s (last status \(status.map(String.init) ?? "none")): \(Self.contents(log))")
        }
        return Served(program: program, url: "http://127.0.0.1:\(port)", cache: dir + "/cache")
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    static func stop(_ p: Process) {
        guard p.isRunning else { return }
        p.terminate()
        let deadline = Date().addingTimeInterval(5)
        while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    static let programSource = """
        #include <stdio.h>
        __attribute__((noinline)) int work(int n) { int s = 0; for (int i = 0; i < n; i++) s += i * i; return s; }
        int main(int argc, char **argv) { printf("%d\\n", work(argc * 1000)); return 0; }

        """

    // MARK: - Helpers

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// Skips when `path` is missing, but fails under CI=true (as
    /// `requireKernelAccess` in KernelTests does).
    func requireTool(_ path: String, package: String, file: StaticString = #filePath, line: UInt = #line) throws {
        guard !FileManager.default.isExecutableFile(atPath: path) else { return }
        throw skipOrFailInCI("needs \(path) (Debian: apt-get install \(package))", file: file, line: line)
    }

    func requireLibrary(file: StaticString = #filePath, line: UInt = #line) throws {
        guard case .failure(let error) = DebuginfodClient.library else { return }
        throw skipOrFailInCI("\(error)", file: file, line: line)
    }

    func makeDirectory() throws -> String {
        let d = NSTemporaryDirectory() + "sprof-debuginfod-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        directory = d
        return d
    }

    static func run(_ tool: String, _ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        try p.run()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw Failure("\(tool) \(args.joined(separator: " ")) exited \(p.terminationStatus): \(String(decoding: errData, as: UTF8.self))")
        }
    }

    static func contents(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no log)"
    }

    /// A loopback TCP port free right now (bound to port 0, then released;
    /// another process could take it before debuginfod does, which is as
    /// unlikely as a test can hope for).
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = loopback(port: 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw Failure("bind 127.0.0.1:0: \(String(cString: strerror(errno)))") }
        return UInt16(bigEndian: addr.sin_port)
    }

    static func loopback(port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return addr
    }

    /// The status code of `GET path` on 127.0.0.1:`port` (HTTP/1.0, so the
    /// server closes the connection; the body is not read); nil when it
    /// cannot connect or does not answer within 2 s.
    static func httpStatus(port: UInt16, path: String) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = loopback(port: port)
        let connected = withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else { return nil }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else { return nil }
        // "HTTP/1.x NNN ...": the first 12 bytes hold the code.
        var head = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 64)
        while head.count < 12 {
            let n = recv(fd, &buf, buf.count, 0)
            guard n > 0 else { break }
            head += buf[0..<n]
        }
        let line = String(decoding: head, as: UTF8.self).split(separator: " ")
        guard line.count >= 2, line[0].hasPrefix("HTTP/") else { return nil }
        return Int(line[1].prefix(3))
    }
}
