#if canImport(Glibc)
import Glibc
#endif

// The C library calls of the capture layer's file and /proc code, one
// wrapper per call, after swift-system's `Internals/Syscalls.swift`:
//
// - EINTR is retried here and nowhere else (except by `close`, see there);
// - a failure comes back as a typed ``Errno``, never through the global
//   `errno` a later call could overwrite;
// - arguments and results are Swift values (`String` paths, ``FileStatus``).
//
// libbpf and perf-event calls are not here: they live with the BPF code
// (BPFObject.swift, Sampler.swift, Doctor.swift), which turns their negative
// return codes into ``CaptureError`` itself.

/// The errno of a failed system call.
struct Errno: Error, Hashable, Sendable {
    var code: Int32
    init(_ code: Int32) { self.code = code }
    /// The calling thread's `errno`, read right after a failed call.
    static var current: Errno { Errno(errno) }
}

/// What `stat(2)` says about a file, the fields the capture layer uses.
struct FileStatus: Hashable, Sendable {
    var mode: mode_t
    var size: Int
    var device: UInt64
    var inode: UInt64

    var isDirectory: Bool { mode & S_IFMT == S_IFDIR }
    var isRegularFile: Bool { mode & S_IFMT == S_IFREG }

    init(_ st: Glibc.stat) {
        mode = st.st_mode
        size = Int(st.st_size)
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
    }
}

enum Syscalls {
    /// open(2).
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws(Errno) -> Int32 {
        while true {
            let fd = c_open(path, flags, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw .current }
        }
    }

    /// One read(2); may be short, 0 at end of file.
    static func read(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) throws(Errno) -> Int {
        while true {
            let r = c_read(fd, p, n)
            if r >= 0 { return r }
            if errno != EINTR { throw .current }
        }
    }

    /// One write(2); may be short.
    static func write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) throws(Errno) -> Int {
        while true {
            let r = c_write(fd, p, n)
            if r >= 0 { return r }
            if errno != EINTR { throw .current }
        }
    }

    /// fsync(2).
    static func fsync(_ fd: Int32) throws(Errno) {
        while c_fsync(fd) != 0 {
            if errno != EINTR { throw .current }
        }
    }

    /// close(2). EINTR is not retried: on Linux the descriptor is released
    /// even then (close(2), "Dealing with error returns"), and retrying could
    /// close a descriptor another thread just opened.
    static func close(_ fd: Int32) throws(Errno) {
        if c_close(fd) != 0, errno != EINTR { throw .current }
    }

    /// rename(2).
    static func rename(_ from: String, _ to: String) throws(Errno) {
        while c_rename(from, to) != 0 {
            if errno != EINTR { throw .current }
        }
    }

    /// unlink(2).
    static func unlink(_ path: String) throws(Errno) {
        while c_unlink(path) != 0 {
            if errno != EINTR { throw .current }
        }
    }

    /// stat(2), following symbolic links (so `/proc/PID/exe` gives the
    /// executable, not the link).
    static func stat(_ path: String) throws(Errno) -> FileStatus {
        var st = Glibc.stat()
        while c_stat(path, &st) != 0 {
            if errno != EINTR { throw .current }
        }
        return FileStatus(st)
    }

    /// fstat(2).
    static func fstat(_ fd: Int32) throws(Errno) -> FileStatus {
        var st = Glibc.stat()
        while c_fstat(fd, &st) != 0 {
            if errno != EINTR { throw .current }
        }
        return FileStatus(st)
    }

    /// readlink(2): the target of a symbolic link (`/proc/PID/exe`,
    /// `/proc/PID/map_files/...`), decoded as UTF-8.
    static func readlink(_ path: String) throws(Errno) -> String {
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
    static func mmapReadOnly(_ fd: Int32, _ size: Int) throws(Errno) -> UnsafeRawPointer {
        guard let p = c_mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw .current
        }
        return UnsafeRawPointer(p)
    }

    /// munmap(2). Fails only for arguments no mapping made by
    /// ``mmapReadOnly(_:_:)`` can have; the result is ignored.
    static func munmap(_ p: UnsafeRawPointer, _ size: Int) {
        _ = c_munmap(UnsafeMutableRawPointer(mutating: p), size)
    }

    /// getpid(2); cannot fail.
    static func getpid() -> Int32 { c_getpid() }

    /// clock_gettime(2) of CLOCK_MONOTONIC in nanoseconds: the clock of
    /// `bpf_ktime_get_ns`, so of every sample time. Cannot fail for this clock.
    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        _ = c_clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
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
// Unqualified: `Glibc.stat` names the struct.
private func c_stat(_ p: String, _ st: inout Glibc.stat) -> Int32 { stat(p, &st) }
private func c_fstat(_ fd: Int32, _ st: inout Glibc.stat) -> Int32 { fstat(fd, &st) }
private func c_readlink(_ p: String, _ buf: UnsafeMutablePointer<CChar>, _ n: Int) -> Int { Glibc.readlink(p, buf, n) }
private func c_mmap(_ a: UnsafeMutableRawPointer?, _ n: Int, _ prot: Int32, _ flags: Int32, _ fd: Int32,
                    _ off: off_t) -> UnsafeMutableRawPointer? {
    Glibc.mmap(a, n, prot, flags, fd, off)
}
private func c_munmap(_ p: UnsafeMutableRawPointer, _ n: Int) -> Int32 { Glibc.munmap(p, n) }
private func c_getpid() -> Int32 { Glibc.getpid() }
private func c_clock_gettime(_ clock: clockid_t, _ ts: inout timespec) -> Int32 { Glibc.clock_gettime(clock, &ts) }
#endif
