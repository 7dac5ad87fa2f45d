import Foundation
import XCTest
@testable import SprofCapture
#if canImport(Glibc)
import Glibc
#endif

/// The capture layer's C-call wrappers: results as Swift values, failures as
/// typed errno values.
final class SyscallsTests: XCTestCase {
    func testFailuresComeBackAsTheirErrno() {
        XCTAssertThrowsError(try Syscalls.open("/nonexistent-sprof-dir/x", O_RDONLY)) {
            XCTAssertEqual($0 as? Errno, Errno(ENOENT))
        }
        XCTAssertThrowsError(try Syscalls.stat("/nonexistent-sprof-dir")) { XCTAssertEqual($0 as? Errno, Errno(ENOENT)) }
        XCTAssertThrowsError(try Syscalls.readlink("/")) { XCTAssertEqual($0 as? Errno, Errno(EINVAL)) }
        XCTAssertThrowsError(try Syscalls.fstat(-1)) { XCTAssertEqual($0 as? Errno, Errno(EBADF)) }
        XCTAssertThrowsError(try Syscalls.close(-1)) { XCTAssertEqual($0 as? Errno, Errno(EBADF)) }
    }

    func testFileRoundTrip() throws {
        let dir = NSTemporaryDirectory() + "SyscallsTests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(mkdir(dir, 0o755), 0)
        defer { rmdir(dir) }
        XCTAssertTrue(try Syscalls.stat(dir).isDirectory)
        let a = dir + "/a", b = dir + "/b"
        let fd = try Syscalls.open(a, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        let bytes: [UInt8] = Array("hello, sprof".utf8)
        XCTAssertEqual(try bytes.withUnsafeBytes { b throws(Errno) in try Syscalls.write(fd, b.baseAddress!, b.count) }, bytes.count)
        try Syscalls.fsync(fd)
        let st = try Syscalls.fstat(fd)
        XCTAssertTrue(st.isRegularFile)
        XCTAssertFalse(st.isDirectory)
        XCTAssertEqual(st.size, bytes.count)
        try Syscalls.close(fd)
        try Syscalls.rename(a, b)
        XCTAssertThrowsError(try Syscalls.stat(a))
        XCTAssertEqual(try Syscalls.stat(b).inode, st.inode)

        let rfd = try Syscalls.open(b, O_RDONLY | O_CLOEXEC)
        let p = try Syscalls.mmapReadOnly(rfd, st.size)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: p, count: st.size)), bytes)
        Syscalls.munmap(p, st.size)
        var back = [UInt8](repeating: 0, count: 64)
        let n = try back.withUnsafeMutableBytes { b throws(Errno) in try Syscalls.read(rfd, b.baseAddress!, b.count) }
        XCTAssertEqual(Array(back[..<n]), bytes)
        try Syscalls.close(rfd)
        try Syscalls.unlink(b)
        XCTAssertThrowsError(try Syscalls.unlink(b)) { XCTAssertEqual($0 as? Errno, Errno(ENOENT)) }
    }

    func testProcLinksAndClock() throws {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        XCTAssertEqual(try Syscalls.readlink("/proc/self/exe"), exe)
        XCTAssertEqual(try Syscalls.stat("/proc/self/exe").inode, try Syscalls.stat(exe).inode)
        XCTAssertEqual(Syscalls.getpid(), getpid())
        let t0 = Syscalls.monotonicNanoseconds()
        usleep(2_000)
        XCTAssertGreaterThanOrEqual(Syscalls.monotonicNanoseconds() - t0, 2_000_000)
        XCTAssertEqual(KernelInfo.readFile("/proc/self/stat")?.hasPrefix("\(getpid()) ("), true)
        XCTAssertNil(KernelInfo.readFile("/nonexistent-sprof-file"))
    }
}
