// The only C calls in SprofELF: open, fstat, mmap, munmap, close (after
// swift-system's Internals/Syscalls.swift). Each returns a value or the errno,
// and open retries EINTR.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum Syscalls {
    /// open(2) read-only, close-on-exec; the fd or `-errno`.
    static func openReadOnly(_ path: String) -> Int32 {
        while true {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd >= 0 { return fd }
            if errno != EINTR { return -errno }
        }
    }

    static func close(_ fd: Int32) { _ = unistd_close(fd) }

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
        return (UnsafeRawPointer(p), 0)
    }

    static func unmap(_ base: UnsafeRawPointer, size: Int) {
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
