import Foundation
import XCTest
import SprofBase
import SprofCapture
@testable import SprofELF
import SprofSymbols

/// Opening the files of a process in a "container" (its own mount namespace
/// and root, made by Tests/Fixtures/container.c) that turns a mapped path
/// into a trap: the profiler, which reads them as root, must not be led to
/// host files, nor take another file for the mapped one, nor read a perf map
/// someone else planted. Needs root (unshare, chroot); real processes and files.
final class ContainerFileTests: XCTestCase {
    private var dir = ""
    private var children: [FixtureProcess] = []
    /// Build-ids of the three shared objects: the container's mapped file,
    /// another file in the container, and the host file a symlink points at.
    private var ownID: BuildID?
    private var otherID: BuildID?
    private var hostID: BuildID?

    override func setUpWithError() throws {
        guard geteuid() == 0 else { throw skipOrFailInCI("needs root: the fixture container unshares and chroots") }
        dir = tempPath("container")
        for sub in ["root/tmp", "host"] {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true)
        }
        ownID = try sharedObject(function: "container_own_function", at: "\(dir)/root/lib.so")
        otherID = try sharedObject(function: "container_other_function", at: "\(dir)/root/other.so")
        hostID = try sharedObject(function: "host_secret_function", at: "\(dir)/host/victim.so")
        XCTAssertEqual(Set([ownID, otherID, hostID]).count, 3, "three different files")
    }

    override func tearDown() {
        for child in children where child.process.isRunning {
            kill(child.pid, SIGKILL)
            child.waitForExit()
        }
        children = []
        Syscalls.openat2Disabled = false
        if !dir.isEmpty { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// A one-function shared object with a build-id, compiled here.
    private func sharedObject(function: String, at path: String) throws -> BuildID {
        let source = path + ".c"
        try "int \(function)(int x) { return x * 3 + 1; }\n".write(toFile: source, atomically: true, encoding: .utf8)
        let cc = try runProcess("/usr/bin/env", ["gcc", "-shared", "-fPIC", "-O2", "-Wl,--build-id", "-o", path, source])
        guard cc.status == 0 else { throw skipOrFailInCI("gcc failed: \(cc.stderr)") }
        return try XCTUnwrap(try ELFFile(path: path).buildID())
    }

    /// Starts the container fixture and returns it with its mapping of /lib.so.
    private func container(_ mode: String, _ extra: [String] = []) throws -> (FixtureProcess, Mapping) {
        let child = try FixtureProcess(try Fixtures.build("container"), ["\(dir)/root", mode] + extra)
        children.append(child)
        _ = try child.wait(for: "ready")
        let range = try XCTUnwrap(child.wait(for: "mapped").first).split(separator: "-")
        let start = try XCTUnwrap(UInt64(range[0], radix: 16))
        let mapping = try XCTUnwrap(try ProcMaps.read(pid: child.pid).first { $0.start.rawValue == start },
                                    "the fixture's mapping at \(String(start, radix: 16))")
        XCTAssertTrue(mapping.path.hasPrefix("/lib.so"), mapping.path)
        XCTAssertNotEqual(mapping.inode, 0)
        return (child, mapping)
    }

    func testSymlinkOutOfTheContainerIsNotFollowed() throws {
        let (child, mapping) = try container("symlink", ["\(dir)/host/victim.so"])
        let pid = child.pid
        let inRoot = "/proc/\(pid)/root/lib.so"

        // The trap is real: open(2) of the path as the process sees it,
        // through /proc/PID/root, follows the absolute symlink from *our*
        // root, to the host file.
        let naive = open(inRoot, O_RDONLY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(naive, 0, "open(2) follows the container's symlink to the host")
        if naive >= 0 {
            var st = stat(), victim = stat()
            XCTAssertEqual(fstat(naive, &st), 0)
            XCTAssertEqual(stat("\(dir)/host/victim.so", &victim), 0)
            XCTAssertEqual(st.st_ino, victim.st_ino, "open(2) lands on the host's victim.so")
            close(naive)
        }

        // Resolved inside the container's root, the link names nothing.
        XCTAssertThrowsError(try ELFFile(path: inRoot)) { error in
            XCTAssertTrue("\(error)".contains(inRoot), "\(error)")
        }
        let candidates = ModuleFiles.candidates(for: mapping, pid: pid, includePlainPath: true)
        XCTAssertEqual(candidates.count, 2, "no plain path: the process has its own root and no build-id is known: \(candidates)")
        let elf = try ModuleFiles.open(candidates, expecting: nil, mapping: mapping).get()
        XCTAssertTrue(elf.path.hasPrefix("/proc/\(pid)/map_files/"), elf.path)
        XCTAssertEqual(try elf.buildID(), ownID, "the mapped file, not the host's victim.so")

        // The symbolizer names the container's function, never the host's.
        let symbolizer = Symbolizer()
        let module = try XCTUnwrap(symbolizer.module(for: mapping, pid: pid, live: true))
        XCTAssertEqual(try module.file.buildID(), ownID)

        // A kernel without openat2 (< 5.6): the in-root path is refused, map_files serves.
        Syscalls.openat2Disabled = true
        XCTAssertThrowsError(try ELFFile(path: inRoot))
        let fallback = try ModuleFiles.open(candidates, expecting: nil, mapping: mapping).get()
        XCTAssertTrue(fallback.path.hasPrefix("/proc/\(pid)/map_files/"), fallback.path)
        XCTAssertEqual(try fallback.buildID(), ownID)
    }

    func testReplacedFileIsNotTakenForTheMappedOne() throws {
        let (child, mapping) = try container("swap")
        let pid = child.pid
        let inRoot = "/proc/\(pid)/root/lib.so"
        // The path now names other.so's copy: a valid ELF inside the container.
        XCTAssertEqual(try ELFFile(path: inRoot).buildID(), otherID)
        switch ModuleFiles.open([inRoot], expecting: nil, mapping: mapping) {
        case .success(let elf): XCTFail("took \(elf.path) (build-id \(String(describing: try? elf.buildID()))) for the mapped file")
        case .failure(let why): XCTAssertTrue(why.reason.contains("is not the mapped file"), why.reason)
        }
        let elf = try ModuleFiles.open(ModuleFiles.candidates(for: mapping, pid: pid, includePlainPath: true),
                                       expecting: nil, mapping: mapping).get()
        XCTAssertEqual(try elf.buildID(), ownID)
    }

    func testFIFOAndDeviceAtAMappedPathAreNotOpened() throws {
        let fifo = "\(dir)/root/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        // open(2) of a FIFO for reading blocks until a writer comes: this returns at once.
        XCTAssertThrowsError(try ELFFile(path: fifo)) { error in
            XCTAssertEqual("\(error)", "\(ELFError.notRegularFile(path: fifo))")
        }
        XCTAssertThrowsError(try ELFFile(path: "/dev/null")) { error in
            XCTAssertEqual("\(error)", "\(ELFError.notRegularFile(path: "/dev/null"))")
        }
    }

    func testPerfMapOwnedByAnotherUserIsIgnored() throws {
        // The process runs as nobody (65534) in its container.
        let (child, _) = try container("keep", ["-", "65534"])
        let pid = child.pid
        let map = "\(dir)/root/tmp/perf-\(pid).map"
        let jit = ProcessAddress(0x7f00_0000_1000)
        try "7f0000001000 40 jit_named_by_its_owner\n".write(toFile: map, atomically: false, encoding: .utf8)

        XCTAssertEqual(chown(map, 65534, 65534), 0)
        let owned = PerfMap.read(pid: pid)
        XCTAssertNil(owned.refusal)
        XCTAssertEqual(owned.map?.lookup(jit)?.name, "jit_named_by_its_owner")

        XCTAssertEqual(chown(map, 0, 0), 0)
        XCTAssertEqual(PerfMap.read(pid: pid).map?.lookup(jit)?.name, "jit_named_by_its_owner", "root's is read too")

        XCTAssertEqual(chown(map, 1234, 1234), 0)
        let foreign = PerfMap.read(pid: pid)
        XCTAssertNil(foreign.map)
        let refusal = try XCTUnwrap(foreign.refusal)
        XCTAssertTrue(refusal.contains("uid 1234") && refusal.contains("uid 65534"), refusal)

        // The symbolizer leaves the address unnamed, counts the refusal and says it once.
        let symbolizer = Symbolizer()
        for _ in 0..<3 {
            let location = symbolizer.symbolize(jit, isReturnAddress: false, pid: pid, mapping: nil)
            XCTAssertNotEqual(location.frames.first?.function, "jit_named_by_its_owner")
        }
        XCTAssertEqual(symbolizer.perfMapsRefused, 1, "read once, refused once (re-read at most once a second)")
        XCTAssertEqual(symbolizer.unavailable.filter { $0.contains("perf-\(pid).map") }.count, 1, "\(symbolizer.unavailable)")
    }

    func testPerfMapSymlinkOutOfTheContainerIsNotFollowed() throws {
        let (child, _) = try container("keep")
        let pid = child.pid
        // A root-owned perf map on the host, and a symlink to it in the container's /tmp.
        let host = "\(dir)/host/perf-planted.map"
        try "7f0000001000 40 host_names_planted\n".write(toFile: host, atomically: false, encoding: .utf8)
        XCTAssertEqual(symlink(host, "\(dir)/root/tmp/perf-\(pid).map"), 0)
        // Through /proc/PID/root with open(2) it would be read (root owns it).
        XCTAssertEqual(access("/proc/\(pid)/root/tmp/perf-\(pid).map", R_OK), 0, "the trap is real")
        let read = PerfMap.read(pid: pid)
        XCTAssertNil(read.map?.lookup(ProcessAddress(0x7f00_0000_1000)), "the host file was read through the container's symlink")
    }

    func testPerfMapOverTheLimitKeepsItsNewestLines() throws {
        let (child, _) = try container("keep")
        let pid = child.pid
        let map = "\(dir)/root/tmp/perf-\(pid).map"
        // 200,000 lines (about 6 MB); read with a 1 MiB limit.
        var text = ""
        text.reserveCapacity(7_000_000)
        for i in 0..<200_000 {
            text += String(0x7f00_0000_0000 + i * 0x40, radix: 16) + " 40 jit_fn_\(i)\n"
        }
        try text.write(toFile: map, atomically: false, encoding: .utf8)
        let read = PerfMap.read(pid: pid, maxBytes: 1 << 20)
        let parsed = try XCTUnwrap(read.map)
        XCTAssertGreaterThan(read.skippedBytes, 0)
        XCTAssertEqual(read.size, text.utf8.count)
        XCTAssertLessThan(parsed.symbols.count, 200_000)
        XCTAssertGreaterThan(parsed.symbols.count, 10_000)
        XCTAssertEqual(parsed.skippedLines, 0, "the cut first line is dropped, not parsed")
        XCTAssertEqual(parsed.lookup(ProcessAddress(UInt64(0x7f00_0000_0000 + 199_999 * 0x40)))?.name, "jit_fn_199999", "the newest line")
        XCTAssertNil(parsed.lookup(ProcessAddress(0x7f00_0000_0000)), "the oldest line is beyond the limit")
    }

    func testFileTruncatedUnderItsMappingReadsAsZeros() throws {
        // A process can truncate a file it owns while the profiler has it
        // mapped: touching the vanished pages raises SIGBUS (mmap(2)), which
        // would kill the profiler. They read as zeros instead.
        let path = "\(dir)/host/truncated.so"
        let id = try sharedObject(function: "soon_truncated", at: path)
        let elf = try ELFFile(path: path)
        XCTAssertEqual(try elf.buildID(), id)
        let before = ModuleFiles.truncatedPagesRead
        XCTAssertEqual(truncate(path, 0), 0)
        var sum = 0
        for i in stride(from: 0, to: elf.bytes.count, by: 512) { sum &+= Int(elf.bytes[i]) }
        XCTAssertEqual(sum, 0, "every page reads as zeros")
        XCTAssertGreaterThan(ModuleFiles.truncatedPagesRead, before)
        _ = try? elf.buildID()  // the parser meets zeros: an answer or an error, never a crash
    }
}
