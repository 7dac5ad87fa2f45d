#if canImport(Glibc)
import Glibc
#endif

// The C library's file, /proc and clock calls for every layer (capture, the
// store, the agent's sinks), one wrapper per call, after swift-system's
// `Internals/Syscalls.swift`:
//
// - EINTR is retried here and nowhere else (except by `close`, see there);
// - a failure comes back as a typed ``Errno``, never through the global
//   `errno` a later call could overwrite;
// - arguments and results are Swift values (`String` paths, ``FileStatus``).

/// System calls as Swift functions: EINTR retried, failures as a typed ``Errno``.
public enum POSIX {
    /// The errno of a failed system call.
    public struct Errno: Error, Hashable, Sendable {
        public var code: Int32
        public init(_ code: Int32) { self.code = code }
        public static var current: Errno { Errno(errno) }
        /// strerror(3)'s text.
        public var text: String { String(cString: strerror(code)) }
    }

    /// What `stat(2)` says about a file.
    public struct FileStatus: Hashable, Sendable {
        public var mode: mode_t
        public var size: Int
        /// Last modification, seconds since the epoch.
        public var modified: Int64
        public var device: UInt64
        public var inode: UInt64

        public var isDirectory: Bool { mode & S_IFMT == S_IFDIR }
        public var isRegularFile: Bool { mode & S_IFMT == S_IFREG }

        public init(_ st: Glibc.stat) {
            mode = st.st_mode
            size = Int(st.st_size)
            modified = Int64(st.st_mtim.tv_sec)
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
        }
    }

}

extension POSIX {
    /// open(2).
    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws(Errno) -> Int32 {
        while true {
            let fd = c_open(path, flags, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw .current }
        }
    }

    /// read(2) until `count` bytes or end of file: the whole file for a
    /// regular file opened at offset 0.
    public static func readAll(_ fd: Int32, size hint: Int) throws(Errno) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(hint, 4096))
        var used = 0
        while true {
            if used == out.count { out += [UInt8](repeating: 0, count: out.count) }
            let r = out.withUnsafeMutableBytes { c_read(fd, $0.baseAddress! + used, $0.count - used) }
            if r == 0 { break }
            if r < 0 {
                if errno == EINTR { continue }
                throw .current
            }
            used += r
        }
        out.removeSubrange(used...)
        return out
    }

    /// write(2) until all of `bytes` is out: a short write (signal, nearly
    /// full device) is continued, not taken for the end.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let r = bytes.withUnsafeBytes { c_write(fd, $0.baseAddress! + done, $0.count - done) }
            if r < 0 {
                if errno == EINTR { continue }
                throw .current
            }
            // write(2) returning 0 for a regular file and a nonzero count does
            // not happen on Linux; take it for a full device rather than spin.
            if r == 0 { throw Errno(ENOSPC) }
            done += r
        }
    }

    /// One read(2); may be short, 0 at end of file.
    public static func read(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) throws(Errno) -> Int {
        while true {
            let r = c_read(fd, p, n)
            if r >= 0 { return r }
            if errno != EINTR { throw .current }
        }
    }

    /// One write(2); may be short.
    public static func write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) throws(Errno) -> Int {
        while true {
            let r = c_write(fd, p, n)
            if r >= 0 { return r }
            if errno != EINTR { throw .current }
        }
    }

    /// readlink(2): the target of a symbolic link (`/proc/PID/exe`,
    /// `/proc/PID/map_files/...`), decoded as UTF-8.
    public static func readlink(_ path: String) throws(Errno) -> String {
        // PATH_MAX (4096, include/uapi/linux/limits.h) bounds what the kernel
        // returns; one more byte tells a full buffer from a cut-off target.
        var buf = [UInt8](repeating: 0, count: 4097)
        while true {
            let n = buf.withUnsafeMutableBufferPointer { b in
                b.withMemoryRebound(to: CChar.self) { c_readlink(path, $0.baseAddress!, 4096) }
            }
            if n >= 0 { return String(decoding: buf[0..<n], as: UTF8.self) }
            if errno != EINTR { throw .current }
        }
    }

    /// mmap(2) of a whole file, private and read-only.
    public static func mmapReadOnly(_ fd: Int32, _ size: Int) throws(Errno) -> UnsafeRawPointer {
        guard let p = c_mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw .current
        }
        return UnsafeRawPointer(p)
    }

    /// munmap(2). Fails only for arguments no mapping made by
    /// ``mmapReadOnly(_:_:)`` can have; the result is ignored.
    public static func munmap(_ p: UnsafeRawPointer, _ size: Int) {
        _ = c_munmap(UnsafeMutableRawPointer(mutating: p), size)
    }

    /// clock_gettime(2) of CLOCK_MONOTONIC in nanoseconds: the clock of
    /// `bpf_ktime_get_ns`, so of every sample time. Cannot fail for this clock.
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        _ = c_clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// fsync(2).
    public static func fsync(_ fd: Int32) throws(Errno) {
        while c_fsync(fd) != 0 {
            if errno != EINTR { throw .current }
        }
    }

    /// close(2). EINTR is not retried: on Linux the descriptor is released
    /// even then (close(2), "Dealing with error returns"), and retrying could
    /// close a descriptor another thread just opened.
    public static func close(_ fd: Int32) throws(Errno) {
        if c_close(fd) != 0, errno != EINTR { throw .current }
    }

    /// rename(2).
    public static func rename(_ from: String, _ to: String) throws(Errno) {
        while c_rename(from, to) != 0 {
            if errno != EINTR { throw .current }
        }
    }

    /// unlink(2).
    public static func unlink(_ path: String) throws(Errno) {
        while c_unlink(path) != 0 {
            if errno != EINTR { throw .current }
        }
    }

    /// mkdir(2).
    public static func mkdir(_ path: String, _ mode: mode_t) throws(Errno) {
        while c_mkdir(path, mode) != 0 {
            if errno != EINTR { throw .current }
        }
    }

    /// rmdir(2).
    public static func rmdir(_ path: String) throws(Errno) {
        while c_rmdir(path) != 0 {
            if errno != EINTR { throw .current }
        }
    }

    /// stat(2), following symbolic links (a store directory may be one).
    public static func stat(_ path: String) throws(Errno) -> FileStatus {
        var st = Glibc.stat()
        while c_stat(path, &st) != 0 {
            if errno != EINTR { throw .current }
        }
        return FileStatus(st)
    }

    /// fstat(2).
    public static func fstat(_ fd: Int32) throws(Errno) -> FileStatus {
        var st = Glibc.stat()
        while c_fstat(fd, &st) != 0 {
            if errno != EINTR { throw .current }
        }
        return FileStatus(st)
    }

    /// The names in a directory, without "." and "..", through
    /// opendir(3)/readdir(3) (readdir's `NULL` with `errno` unchanged is the
    /// end; with it set, an error).
    public static func listDirectory(_ path: String) throws(Errno) -> [String] {
        guard let dir = c_opendir(path) else { throw .current }
        defer { _ = c_closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = c_readdir(dir) else {
                if errno != 0 { throw .current }
                return names
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
    }

    /// gethostname(2); "" when it fails (it cannot, with this buffer:
    /// HOST_NAME_MAX is 64 on Linux, gethostname(2) "NOTES").
    public static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        let size = buf.count - 1   // one NUL kept: a truncated name need not end in one
        guard c_gethostname(&buf, size) == 0 else { return "" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// getpid(2); cannot fail.
    public static func getpid() -> Int32 { c_getpid() }

    /// geteuid(2); cannot fail.
    public static func geteuid() -> UInt32 { c_geteuid() }
}

// Module-qualified names, so the wrappers above (named like the calls they
// wrap) cannot call themselves by accident.
#if canImport(Glibc)
private func c_open(_ p: String, _ f: Int32, _ m: mode_t) -> Int32 { Glibc.open(p, f, m) }
private func c_read(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int { Glibc.read(fd, p, n) }
private func c_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { Glibc.write(fd, p, n) }
private func c_fsync(_ fd: Int32) -> Int32 { Glibc.fsync(fd) }
private func c_close(_ fd: Int32) -> Int32 { Glibc.close(fd) }
private func c_rename(_ a: String, _ b: String) -> Int32 { Glibc.rename(a, b) }
private func c_unlink(_ p: String) -> Int32 { Glibc.unlink(p) }
private func c_mkdir(_ p: String, _ m: mode_t) -> Int32 { Glibc.mkdir(p, m) }
private func c_rmdir(_ p: String) -> Int32 { Glibc.rmdir(p) }
// Unqualified: `Glibc.stat` names the struct.
private func c_stat(_ p: String, _ st: inout Glibc.stat) -> Int32 { stat(p, &st) }
private func c_fstat(_ fd: Int32, _ st: inout Glibc.stat) -> Int32 { fstat(fd, &st) }
private func c_opendir(_ p: String) -> OpaquePointer? { Glibc.opendir(p) }
private func c_readdir(_ d: OpaquePointer) -> UnsafeMutablePointer<dirent>? { Glibc.readdir(d) }
private func c_closedir(_ d: OpaquePointer) -> Int32 { Glibc.closedir(d) }
private func c_gethostname(_ buf: UnsafeMutablePointer<CChar>, _ n: Int) -> Int32 { Glibc.gethostname(buf, n) }
private func c_getpid() -> Int32 { Glibc.getpid() }
private func c_geteuid() -> UInt32 { Glibc.geteuid() }
private func c_readlink(_ p: String, _ buf: UnsafeMutablePointer<CChar>, _ n: Int) -> Int { Glibc.readlink(p, buf, n) }
private func c_mmap(_ a: UnsafeMutableRawPointer?, _ n: Int, _ prot: Int32, _ flags: Int32, _ fd: Int32,
                    _ off: off_t) -> UnsafeMutableRawPointer? { Glibc.mmap(a, n, prot, flags, fd, off) }
private func c_munmap(_ p: UnsafeMutableRawPointer, _ n: Int) -> Int32 { Glibc.munmap(p, n) }
private func c_clock_gettime(_ clock: clockid_t, _ ts: inout timespec) -> Int32 { Glibc.clock_gettime(clock, &ts) }
#endif
