import Foundation
import SprofBase
import SprofCapture
import SprofELF
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `/proc/PID/maps` parsing on hand-written text, and the ProcessTable on
/// this test process and on child processes that `dlopen`, `exec` and exit.
/// No BPF needed.
final class ProcessTableTests: XCTestCase {

    // MARK: - ProcMaps: every path form proc(5) describes

    func testProcMapsParsesEveryPathForm() throws {
        // Column layout as fs/proc/task_mmu.c prints it; the anonymous line
        // with a trailing space is how the kernel ends a line without a path.
        let text = """
        55d0c8a00000-55d0c8a02000 r--p 00000000 fe:00 253911                     /usr/bin/cat
        55d0c8a02000-55d0c8a07000 r-xp 00002000 fe:00 253911                     /usr/bin/cat
        55d0c9e4d000-55d0c9e6e000 rw-p 00000000 00:00 0                          [heap]
        7f7f874a4000-7f7f874c6000 rw-p 00000000 00:00 0\u{20}
        7f7f874c6000-7f7f874c7000 rw-p 00000000 00:00 0
        7f7f87500000-7f7f87501000 r-xp 00001000 103:1a 1048577                   /home/me/My Programs/lib with  spaces.so
        7f7f87501000-7f7f87502000 r-xp 00000000 fe:01 77                         /tmp/old lib.so (deleted)
        7f7f87502000-7f7f87503000 r-xs 00000000 00:01 1025                       /memfd:jit-code (deleted)
        7f7f87503000-7f7f87504000 rw-p 00000000 00:00 0                          [anon:libc_malloc]
        7f7f87504000-7f7f87505000 r--p 00000000 fe:01 78                         /tmp/trailing\u{20}
        7f7f87716000-7f7f8771a000 r--p 00000000 00:00 0                          [vvar]
        7f7f8771a000-7f7f8771c000 r-xp 00000000 00:00 0                          [vdso]
        7ffc4a0c1000-7ffc4a0e2000 rw-p 00000000 00:00 0                          [stack]
        ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]

        """
        let maps = try ProcMaps.parse(text)
        XCTAssertEqual(maps.count, 14)
        XCTAssertEqual(maps.map(\.path), [
            "/usr/bin/cat", "/usr/bin/cat", "[heap]", "", "", "/home/me/My Programs/lib with  spaces.so",
            "/tmp/old lib.so (deleted)", "/memfd:jit-code (deleted)", "[anon:libc_malloc]", "/tmp/trailing ",
            "[vvar]", "[vdso]", "[stack]", "[vsyscall]",
        ])
        let cat = maps[1]
        XCTAssertEqual(cat.start, ProcessAddress(0x55d0_c8a0_2000))
        XCTAssertEqual(cat.end, ProcessAddress(0x55d0_c8a0_7000))
        XCTAssertEqual(cat.fileOffset, FileOffset(0x2000))
        XCTAssertEqual(cat.permissions, [.read, .execute])
        XCTAssertEqual(cat.permissions.description, "r-xp")
        XCTAssertEqual(cat.deviceMajor, 0xfe)
        XCTAssertEqual(cat.deviceMinor, 0)
        XCTAssertEqual(cat.inode, 253_911)
        XCTAssertTrue(cat.isFile && cat.isExecutable && !cat.isDeletedFile)
        XCTAssertEqual(maps[5].deviceMajor, 0x103)
        XCTAssertEqual(maps[5].deviceMinor, 0x1a)
        XCTAssertEqual(maps[5].fileOffset, FileOffset(0x1000))
        XCTAssertTrue(maps[6].isDeletedFile)
        XCTAssertTrue(maps[7].isDeletedFile)
        XCTAssertEqual(maps[7].permissions, [.read, .execute, .shared])
        XCTAssertFalse(maps[2].isFile, "[heap]")
        XCTAssertFalse(maps[3].isFile, "anonymous")
        XCTAssertFalse(maps[8].isFile, "[anon:name]")
        XCTAssertEqual(maps[13].start, ProcessAddress(0xffff_ffff_ff60_0000))
        XCTAssertEqual(maps[13].permissions, [.execute])
        XCTAssertNil(maps[0].buildID)
    }

    func testProcMapsMalformedLinesNameTheLine() {
        let good = "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon"
        let cases: [(String, String)] = [
            ("garbage", "start address has a non-hex character 'g'"),
            ("00400000", "line ends after the start address"),
            ("-00452000 r-xp 00000000 08:02 173521", "start address is missing"),
            ("00400000-00452000", "line ends after the end address"),
            ("00400000-00452000 r-x", "permissions are not four characters"),
            ("00400000-00452000 rwzp 00000000 08:02 1 /x", "bad permissions 'rwzp'"),
            ("00400000-00452000 r-xq 00000000 08:02 1 /x", "bad permissions 'r-xq'"),
            ("00500000-00452000 r-xp 00000000 08:02 1 /x", "start address 0x500000 is above end address 0x452000"),
            ("00000000400000000-00452000 r-xp 00000000 08:02 1 /x", "start address has more than 16 hex digits"),
            ("00400000-00452000 r-xp 0000g000 08:02 1 /x", "offset has a non-hex character 'g'"),
            ("00400000-00452000 r-xp 00000000 0802 1 /x", "device major has a non-hex character ' '"),
            ("00400000-00452000 r-xp 00000000 08:02", "line ends after the device minor"),
            ("00400000-00452000 r-xp 00000000 08:02 ", "inode is missing"),
            ("00400000-00452000 r-xp 00000000 08:02 12a /x", "inode has a non-digit character 'a'"),
            ("00400000-00452000 r-xp 00000000 08:02 99999999999999999999 /x", "inode does not fit in 64 bits"),
            ("00400000-00452000 r-xp 00000000 :02 1 /x", "device major is missing"),
        ]
        for (line, problem) in cases {
            let text = good + "\n" + good + "\n" + line + "\n" + good + "\n"
            XCTAssertThrowsError(try ProcMaps.parse(text, pid: 42), line) { e in
                guard case .malformedLine(let pid, let n, let shown, let p)? = e as? CaptureError else {
                    return XCTFail("\(e)")
                }
                XCTAssertEqual(pid, 42)
                XCTAssertEqual(n, 3, line)
                XCTAssertEqual(shown, line)
                XCTAssertTrue(p.contains(problem), "\(line): got '\(p)', wanted '\(problem)'")
                XCTAssertTrue("\(e)".hasPrefix("/proc/42/maps line 3: "), "\(e)")
            }
        }
        // Blank lines are not mappings but not errors either.
        XCTAssertEqual(try ProcMaps.parse("\n" + good + "\n\n" + good).count, 2)
        XCTAssertEqual(try ProcMaps.parse("").count, 0)
    }

    func testProcMapsReadsThisProcess() throws {
        let maps = try ProcMaps.read(pid: getpid())
        XCTAssertTrue(maps.contains { $0.path == "[stack]" })
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        XCTAssertTrue(maps.contains { $0.path == exe && $0.isExecutable }, "the test binary \(exe) is mapped")
        XCTAssertTrue(zip(maps, maps.dropFirst()).allSatisfy { $0.end <= $1.start }, "sorted, disjoint")
    }

    func testProcMapsErrorsForMissingProcesses() {
        for pid: Int32 in [Int32.max, 0, -5] {
            XCTAssertThrowsError(try ProcMaps.read(pid: pid)) { e in
                XCTAssertEqual(e as? CaptureError, .processNotFound(pid: pid))
                XCTAssertEqual("\(e)", "process \(pid) does not exist or has exited")
            }
        }
        XCTAssertTrue("\(CaptureError.permissionDenied(pid: 1))".contains("root or CAP_SYS_PTRACE"))
    }

    // MARK: - ProcessTable on this process

    func testOwnMappingsAndBuildIDsMatchReadelf() throws {
        let table = ProcessTable()
        let pid = getpid()
        XCTAssertNil(table.state(of: pid))
        XCTAssertEqual(table.generation(of: pid), 0)
        XCTAssertEqual(table.refresh(pid: pid), .running)
        XCTAssertGreaterThan(table.generation(of: pid), 0)
        XCTAssertEqual(table.trackedPIDs, [pid])

        // Code of this test binary: a C function pointer to a closure defined here.
        let probe: @convention(c) () -> Int32 = { 7 }
        let here = ProcessAddress(UInt64(UInt(bitPattern: unsafeBitCast(probe, to: UnsafeRawPointer.self))))
        let refreshes = table.statistics.refreshes
        XCTAssertTrue(table.noteAddress(here, pid: pid))
        XCTAssertEqual(table.statistics.refreshes, refreshes, "a hit does not refresh")
        let mine = try XCTUnwrap(table.mapping(containing: here, pid: pid))
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        XCTAssertEqual(mine.path, exe)
        XCTAssertTrue(mine.isExecutable)
        XCTAssertEqual(mine.buildID?.description, try ELFTestTools.readelfBuildID(exe))

        // libc, found through a symbol of it.
        let handle = try XCTUnwrap(dlopen(nil, RTLD_NOW))
        defer { dlclose(handle) }
        let getpidAddress = try XCTUnwrap(dlsym(handle, "getpid"))
        let libc = try XCTUnwrap(table.mapping(containing: ProcessAddress(UInt64(UInt(bitPattern: getpidAddress))), pid: pid))
        XCTAssertTrue(libc.path.contains("libc.so"), libc.path)
        let libcID = try XCTUnwrap(libc.buildID, "libc has a build-id on Debian")
        XCTAssertEqual(libcID.description, try ELFTestTools.readelfBuildID(libc.path))

        // Every mapping of a file whose build-id is known carries it (the r--p ones too).
        for m in table.mappings(of: pid) where m.isFile && m.inode == libc.inode && m.deviceMinor == libc.deviceMinor {
            XCTAssertEqual(m.buildID, libcID, "\(m.permissions) \(m.path)")
        }
        for m in table.mappings(of: pid) where !m.isFile { XCTAssertNil(m.buildID, m.path) }

        XCTAssertNil(table.mapping(containing: ProcessAddress(0x10), pid: pid))
        XCTAssertNil(table.mapping(containing: here, pid: pid &+ 1_000_000))

        let info = table.processInfo(pid: pid, comm: "xctest")
        XCTAssertEqual(info.executablePath, exe)
        XCTAssertFalse(info.exited)

        table.forget(pid: pid)
        XCTAssertNil(table.state(of: pid))
        XCTAssertTrue(table.mappings(of: pid).isEmpty)
        XCTAssertEqual(table.generation(of: pid), 0)
    }

    // MARK: - ProcessTable on child processes

    func testDlopenedLibraryIsFoundByRefreshOnMiss() throws {
        let fixture = try ProbeFixture.build()
        defer { fixture.remove() }
        let child = try fixture.start()
        defer { child.finish() }
        // 300 ms, not the default 50, so a slow machine cannot outrun the rate limit below.
        let table = ProcessTable(minimumRefreshInterval: .milliseconds(300))
        XCTAssertEqual(table.refresh(pid: child.pid), .running)
        let before = table.generation(of: child.pid)
        XCTAssertFalse(table.mappings(of: child.pid).contains { $0.path.hasSuffix("libprobe.so") })
        // The child's main() is in its executable, already known.
        XCTAssertEqual(table.mapping(containing: child.mainAddress, pid: child.pid)?.path, fixture.program)

        let symbol = try child.dlopen(fixture.library)
        // A miss right after a refresh is rate-limited: no storm of re-reads.
        let refreshes = table.statistics.refreshes
        XCTAssertFalse(table.noteAddress(symbol, pid: child.pid))
        XCTAssertFalse(table.noteAddress(ProcessAddress(0x1000), pid: child.pid))
        XCTAssertEqual(table.statistics.refreshes, refreshes)
        XCTAssertEqual(table.statistics.rateLimitedMisses, 2)

        usleep(320_000)  // past minimumRefreshInterval
        XCTAssertTrue(table.noteAddress(symbol, pid: child.pid), "the refresh finds the dlopened library")
        XCTAssertEqual(table.statistics.refreshes, refreshes + 1)
        XCTAssertGreaterThan(table.generation(of: child.pid), before)
        let lib = try XCTUnwrap(table.mapping(containing: symbol, pid: child.pid))
        XCTAssertEqual(lib.path, fixture.library)
        XCTAssertTrue(lib.isExecutable)
        XCTAssertNotNil(lib.buildID)
        XCTAssertEqual(lib.buildID?.description, try ELFTestTools.readelfBuildID(fixture.library))

        // A garbage address: one more refresh at most per interval, never more.
        let afterLib = table.statistics.refreshes
        for _ in 0..<200 { table.noteAddress(ProcessAddress(0x10), pid: child.pid) }
        XCTAssertLessThanOrEqual(table.statistics.refreshes, afterLib + 1)
    }

    func testExitedChildKeepsItsMappingsAndIsReportedGone() throws {
        let fixture = try ProbeFixture.build()
        defer { fixture.remove() }
        let child = try fixture.start()
        let table = ProcessTable()
        XCTAssertEqual(table.refresh(pid: child.pid), .running)
        let mappings = table.mappings(of: child.pid)
        let generation = table.generation(of: child.pid)
        XCTAssertFalse(mappings.isEmpty)

        child.finish()  // exits and is reaped
        usleep(60_000)
        XCTAssertFalse(table.noteAddress(ProcessAddress(0x10), pid: child.pid))
        XCTAssertEqual(table.state(of: child.pid), .exited)
        XCTAssertEqual(table.mappings(of: child.pid), mappings, "kept for samples still queued")
        XCTAssertEqual(table.generation(of: child.pid), generation)
        XCTAssertTrue(table.noteAddress(child.mainAddress, pid: child.pid), "old samples still resolve")
        let refreshes = table.statistics.refreshes
        usleep(60_000)
        XCTAssertFalse(table.noteAddress(ProcessAddress(0x10), pid: child.pid))
        XCTAssertEqual(table.statistics.refreshes, refreshes, "an exited process is not re-read")
        XCTAssertEqual(table.refresh(pid: child.pid), .exited)
        XCTAssertTrue(table.processInfo(pid: child.pid, comm: "probe").exited)

        // A pid that never existed: gone, nothing thrown, nothing known.
        XCTAssertFalse(table.noteAddress(ProcessAddress(0x1000), pid: Int32.max))
        XCTAssertEqual(table.state(of: Int32.max), .exited)
        XCTAssertTrue(table.mappings(of: Int32.max).isEmpty)
    }

    func testZombieIsReportedGone() throws {
        // posix_spawn without waiting: the child stays a zombie, whose maps are empty.
        var pid: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { for p in argv { free(p) } }
        XCTAssertEqual(posix_spawn(&pid, "/bin/true", nil, nil, &argv, nil), 0)
        defer { var st: Int32 = 0; waitpid(pid, &st, 0) }
        for _ in 0..<500 {
            if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
               let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "Z" { break }
            usleep(10_000)
        }
        let table = ProcessTable()
        XCTAssertEqual(table.refresh(pid: pid), .exited)
        XCTAssertFalse(table.noteAddress(ProcessAddress(0x1000), pid: pid))
    }

    func testExecIsDetected() throws {
        let fixture = try ProbeFixture.build()
        defer { fixture.remove() }
        let child = try fixture.start()
        defer { kill(child.pid, SIGKILL); child.finish() }
        let table = ProcessTable(execCheckInterval: .milliseconds(1))
        XCTAssertEqual(table.refresh(pid: child.pid), .running)
        XCTAssertTrue(table.noteAddress(child.mainAddress, pid: child.pid))
        let before = table.generation(of: child.pid)
        XCTAssertEqual(table.statistics.execsDetected, 0)

        try child.send("exec /bin/sleep")
        var exe = ""
        for _ in 0..<500 {
            exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(child.pid)/exe")) ?? ""
            if exe.hasSuffix("/sleep") { break }
            usleep(10_000)
        }
        XCTAssertTrue(exe.hasSuffix("/sleep"), "the child did not exec: \(exe)")
        usleep(5_000)
        // Whatever the address hits in the stale mappings, the exe check sees the new program.
        table.noteAddress(child.mainAddress, pid: child.pid)
        XCTAssertEqual(table.statistics.execsDetected, 1)
        XCTAssertGreaterThan(table.generation(of: child.pid), before)
        let paths = Set(table.mappings(of: child.pid).map(\.path))
        XCTAssertTrue(paths.contains(exe), "\(paths)")
        XCTAssertFalse(paths.contains(fixture.program))
        XCTAssertEqual(table.mappings(of: child.pid).first { $0.path == exe && $0.isExecutable }?.buildID?.description,
                       try ELFTestTools.readelfBuildID(exe))
    }

    func testNoteExecForcesARefresh() throws {
        let table = ProcessTable()
        let pid = getpid()
        table.refresh(pid: pid)
        let refreshes = table.statistics.refreshes
        let probe: @convention(c) () -> Int32 = { 7 }
        let here = ProcessAddress(UInt64(UInt(bitPattern: unsafeBitCast(probe, to: UnsafeRawPointer.self))))
        table.noteExec(pid: pid)
        XCTAssertTrue(table.noteAddress(here, pid: pid))
        XCTAssertEqual(table.statistics.refreshes, refreshes + 1)
        XCTAssertTrue(table.noteAddress(here, pid: pid))
        XCTAssertEqual(table.statistics.refreshes, refreshes + 1)
    }

    func testBuildIDsAreReadOncePerFile() throws {
        let fixture = try ProbeFixture.build()
        defer { fixture.remove() }
        let a = try fixture.start()
        defer { a.finish() }
        let b = try fixture.start()
        defer { b.finish() }
        let table = ProcessTable()
        table.refresh(pid: a.pid)
        let reads = table.statistics.buildIDFileReads
        XCTAssertGreaterThanOrEqual(reads, 3, "program, libc, ld.so")
        let hits = table.statistics.buildIDCacheHits
        table.refresh(pid: b.pid)
        XCTAssertEqual(table.statistics.buildIDFileReads, reads, "same files: no new reads")
        XCTAssertGreaterThanOrEqual(table.statistics.buildIDCacheHits, hits + 3)
        let idA = table.mappings(of: a.pid).first { $0.path == fixture.program && $0.isExecutable }?.buildID
        let idB = table.mappings(of: b.pid).first { $0.path == fixture.program && $0.isExecutable }?.buildID
        XCTAssertNotNil(idA)
        XCTAssertEqual(idA, idB)
    }

    func testDeletedFileIsReadThroughMapFiles() throws {
        let fixture = try ProbeFixture.build()
        defer { fixture.remove() }
        let child = try fixture.start()
        defer { child.finish() }
        let expected = try ELFTestTools.readelfBuildID(fixture.program)
        // Unlink the running program: maps now says "... (deleted)".
        try FileManager.default.removeItem(atPath: fixture.program)
        let table = ProcessTable()
        XCTAssertEqual(table.refresh(pid: child.pid), .running)
        let main = try XCTUnwrap(table.mapping(containing: child.mainAddress, pid: child.pid))
        XCTAssertEqual(main.path, fixture.program + " (deleted)")
        XCTAssertTrue(main.isDeletedFile)
        XCTAssertEqual(main.buildID?.description, expected, "read through /proc/PID/map_files")
    }
}

// MARK: - The child-process fixture

/// A C program that reports its `main`, then on stdin commands `dlopen PATH`
/// (prints the address of `probe_function`), `exec PATH` (execs PATH 30) or
/// `exit`; and a shared library with `probe_function`. Built with gcc in a
/// temporary directory.
private struct ProbeFixture {
    let directory: String
    var program: String { directory + "/probe" }
    var library: String { directory + "/libprobe.so" }

    static let programSource = #"""
    #include <dlfcn.h>
    #include <stdio.h>
    #include <string.h>
    #include <unistd.h>

    int main(void) {
        char line[512];
        setvbuf(stdout, NULL, _IONBF, 0);
        printf("ready %p\n", (void *)&main);
        while (fgets(line, sizeof line, stdin)) {
            line[strcspn(line, "\n")] = 0;
            if (strncmp(line, "dlopen ", 7) == 0) {
                void *h = dlopen(line + 7, RTLD_NOW);
                if (!h) { printf("error %s\n", dlerror()); continue; }
                printf("symbol %p\n", dlsym(h, "probe_function"));
            } else if (strncmp(line, "exec ", 5) == 0) {
                execl(line + 5, line + 5, "30", (char *)NULL);
                printf("error exec\n");
            } else if (strcmp(line, "exit") == 0) {
                return 0;
            }
        }
        return 0;
    }
    """#

    static let librarySource = "int probe_function(void) { return 42; }\n"

    static func build() throws -> ProbeFixture {
        let dir = try ELFTestTools.temporaryDirectory()
        let f = ProbeFixture(directory: dir)
        try ELFTestTools.write(programSource, to: dir + "/probe.c")
        try ELFTestTools.write(librarySource, to: dir + "/libprobe.c")
        try ELFTestTools.gcc(["-O1", "-Wl,--build-id", "-o", f.program, dir + "/probe.c", "-ldl"])
        try ELFTestTools.gcc(["-O1", "-shared", "-fPIC", "-Wl,--build-id", "-o", f.library, dir + "/libprobe.c"])
        return f
    }

    func remove() { ELFTestTools.remove(directory) }

    func start() throws -> ProbeChild { try ProbeChild(program: program) }
}

private final class ProbeChild {
    let process = Process()
    let input = Pipe()
    let output = Pipe()
    var pid: Int32 { process.processIdentifier }
    private(set) var mainAddress = ProcessAddress(0)

    struct ProtocolError: Error, CustomStringConvertible { var description: String }

    init(program: String) throws {
        // `finish()` may write "exit" to a child that was just SIGKILLed and
        // is not reaped yet: that must be EPIPE, not a SIGPIPE that kills
        // the whole test process.
        signal(SIGPIPE, SIG_IGN)
        process.executableURL = URL(fileURLWithPath: program)
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let ready = try readLine()
        guard ready.hasPrefix("ready 0x"), let a = UInt64(ready.dropFirst(8), radix: 16) else {
            throw ProtocolError(description: "probe said '\(ready)'")
        }
        mainAddress = ProcessAddress(a)
    }

    func send(_ line: String) throws {
        try input.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8))
    }

    /// Sends `dlopen PATH`; returns the address of `probe_function`.
    func dlopen(_ path: String) throws -> ProcessAddress {
        try send("dlopen " + path)
        let reply = try readLine()
        guard reply.hasPrefix("symbol 0x"), let a = UInt64(reply.dropFirst(9), radix: 16) else {
            throw ProtocolError(description: "probe said '\(reply)'")
        }
        return ProcessAddress(a)
    }

    /// One line of the child's stdout (blocking; the child flushes each line).
    func readLine() throws -> String {
        var bytes: [UInt8] = []
        let fd = output.fileHandleForReading.fileDescriptor
        var c: UInt8 = 0
        while true {
            let n = read(fd, &c, 1)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { throw ProtocolError(description: "probe closed its output after '\(bytes)'") }
            if c == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(c)
        }
    }

    /// Ends the child (politely, then by SIGKILL) and reaps it.
    func finish() {
        guard process.isRunning else { return }
        try? send("exit")
        try? input.fileHandleForWriting.close()
        for _ in 0..<100 where process.isRunning { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}
