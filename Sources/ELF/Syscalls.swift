// The only C calls in SprofELF: open, openat2 (CSprofFiles), fstat, mmap,
// munmap, close, and the SIGBUS guard (after swift-system's
// Internals/Syscalls.swift). Each returns a value or the errno, and open
// retries EINTR.

import CSprofFiles
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum Syscalls {
    static func close(_ fd: Int32) { _ = unistd_close(fd) }

    /// What ``openFile(_:)`` found.
    enum Opened {
        case file(fd: Int32, identity: FileIdentity)
        case failed(errno: Int32)
        /// A directory, device, FIFO or socket: not opened for reading.
        case notRegular
    }

    /// `RESOLVE_NO_MAGICLINKS` and `RESOLVE_IN_ROOT` (include/uapi/linux/openat2.h).
    static let resolveNoMagicLinks: UInt64 = 0x02
    static let resolveInRoot: UInt64 = 0x10
    static let oPath = sprof_o_path()
    /// Tests turn openat2 off to take the path of a kernel without it (< 5.6).
    nonisolated(unsafe) static var openat2Disabled = false

    /// Opens `path` read-only the way a root profiler must open the files of
    /// other processes:
    ///
    /// - A path under `/proc/PID/root/` is resolved *inside* that process's
    ///   root: `openat2(2)` with `RESOLVE_IN_ROOT` relative to the root
    ///   directory, so an absolute symlink or `..` in a container cannot lead
    ///   to a host file, and `RESOLVE_NO_MAGICLINKS`, so the container's own
    ///   `/proc/*/root` or `/proc/*/fd/*` cannot either. Without openat2 (Linux
    ///   < 5.6) such a path is refused with `ENOSYS`: the caller falls back to
    ///   `/proc/PID/map_files/`, which names the mapped inode itself.
    /// - It is opened `oPath` first and `fstat`ed: only a regular file is then
    ///   opened for reading (through `/proc/self/fd/N`, proc(5)), so a device
    ///   or FIFO planted at a mapped path is never opened (opening a tape or
    ///   watchdog device has effects; a FIFO blocks).
    static func openFile(_ path: String) -> Opened {
        let pathFD: Int32
        if let (root, rest) = splitProcessRoot(path) {
            if openat2Disabled { return .failed(errno: ENOSYS) }
            let rootFD = retryingOpen(root, oPath | O_DIRECTORY | O_CLOEXEC)
            guard rootFD >= 0 else { return .failed(errno: -rootFD) }
            defer { close(rootFD) }
            pathFD = sprof_openat2(rootFD, rest, UInt64(oPath | O_CLOEXEC), resolveInRoot | resolveNoMagicLinks)
        } else {
            pathFD = retryingOpen(path, oPath | O_CLOEXEC)
        }
        guard pathFD >= 0 else { return .failed(errno: -pathFD) }
        defer { close(pathFD) }
        var st = stat()
        guard fstat(pathFD, &st) == 0 else { return .failed(errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return .notRegular }
        let fd = retryingOpen("/proc/self/fd/\(pathFD)", O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return .failed(errno: -fd) }
        return .file(fd: fd, identity: FileIdentity(st))
    }

    /// Whether openat2(2) exists: it opens `/` (O_PATH) or says ENOSYS.
    static func probeOpenat2() -> Bool {
        let fd = sprof_openat2(AT_FDCWD, "/", UInt64(oPath | O_CLOEXEC), 0)
        if fd >= 0 { close(fd) }
        return fd != -ENOSYS
    }

    /// `("/proc/PID/root", "rest")` for a path inside a process's root.
    static func splitProcessRoot(_ path: String) -> (root: String, rest: String)? {
        guard path.hasPrefix("/proc/") else { return nil }
        let parts = path.utf8.split(separator: UInt8(ascii: "/"), maxSplits: 3, omittingEmptySubsequences: false)
        // "", "proc", PID, "root/rest"
        guard parts.count == 4, !parts[2].isEmpty, parts[2].allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        let tail = parts[3]
        guard tail.starts(with: "root/".utf8) else { return nil }
        let rest = String(decoding: tail.dropFirst(5), as: UTF8.self)
        guard !rest.isEmpty else { return nil }
        return ("/proc/\(String(decoding: parts[2], as: UTF8.self))/root", rest)
    }

    private static func retryingOpen(_ path: String, _ flags: Int32) -> Int32 {
        while true {
            let fd = open(path, flags)
            if fd >= 0 { return fd }
            if errno != EINTR { return -errno }
        }
    }

    /// The device and inode `stat(2)` gives for the file at `path` (following symlinks), or nil.
    static func identity(of path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(st)
    }

    /// Guards `[base, base + size)` against SIGBUS (see `sprof_guard_add`).
    static func guardMapping(_ base: UnsafeRawPointer, size: Int) {
        if sprof_guard_install() == 0 { _ = sprof_guard_add(base, size) }
    }

    static func unguardMapping(_ base: UnsafeRawPointer) { sprof_guard_remove(base) }

    static var guardHits: UInt64 { sprof_guard_hits() }

    /// fstat(2): (is a regular file, size) or `-errno` in `size`.
    static func regularFileSize(_ fd: Int32) -> (isRegular: Bool, size: Int, errno: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return (false, 0, errno) }
        return ((st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size), 0)
    }

    /// mmap(2) of the whole file, `PROT_READ`, `MAP_PRIVATE`.
    static func mapReadOnly(_ fd: Int32, size: Int) -> (UnsafeRawPointer?, Int32) {
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0),
              p != UnsafeMutableRawPointer(bitPattern: -1) // MAP_FAILED
        else { return (nil, errno) }
        // The file's owner (maybe a hostile process) can truncate it while
        // we read: the vanished pages then read as zeros instead of SIGBUS.
        guardMapping(UnsafeRawPointer(p), size: size)
        return (UnsafeRawPointer(p), 0)
    }

    /// munmap(2), after the range stops being guarded.
    static func unmap(_ base: UnsafeRawPointer, size: Int) {
        unguardMapping(base)
        _ = munmap(UnsafeMutableRawPointer(mutating: base), size)
    }

    static func describe(errno code: Int32) -> String {
        guard let s = strerror(code) else { return "errno \(code)" }
        return String(cString: s)
    }
}

// `close` is shadowed by `Syscalls.close` inside the enum.
@inline(__always) private func unistd_close(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.close(fd)
    #else
    return Musl.close(fd)
    #endif
}
