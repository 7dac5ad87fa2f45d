#if canImport(Glibc)
import Glibc
#endif

// MARK: - Errors

/// Everything that can go wrong writing or reading one of sprof's own files
/// (the raw recording, and anything else written through ``AtomicFile``).
/// Each case carries what the user needs to act: which path, which errno,
/// how far writing got.
public enum CaptureFileError: Error, Equatable, Sendable, CustomStringConvertible {
    // Writing.
    /// Creating the temporary file in `directory` was refused
    /// (EACCES, EPERM, EROFS).
    case directoryNotWritable(directory: String, errno: Int32)
    /// `directory` does not exist, or a component of it is not a directory.
    case directoryMissing(directory: String)
    /// The destination names an existing directory.
    case destinationIsDirectory(path: String)
    /// The device ran out of space (ENOSPC) or quota (EDQUOT) after
    /// `bytesWritten` bytes reached the temporary file. The destination was
    /// not touched and the temporary file was removed.
    case diskFull(path: String, bytesWritten: UInt64)
    /// Any other failed system call.
    case io(operation: String, path: String, errno: Int32)
    /// The file was already committed, abandoned or failed.
    case closed(path: String)

    // Reading.
    case cannotOpen(path: String, errno: Int32)
    /// The file does not start with the magic bytes "SPROFRAW".
    case notARawFile(path: String)
    /// The file ends inside its fixed header or its metadata record, so
    /// nothing in it can be interpreted.
    case truncatedHeader(path: String, size: Int)
    /// A major format version this build cannot read; `writer` is the sprof
    /// version that wrote it (from the header).
    case unsupportedVersion(path: String, found: RawFormatVersion, writer: String)
    /// The first record is not the metadata record.
    case missingMetadata(path: String)
    /// A record of a known type whose contents contradict its length.
    case malformedRecord(path: String, offset: Int, record: String, detail: String)

    public var description: String {
        switch self {
        case .directoryNotWritable(let dir, let e):
            return "cannot create a file in \(dir): \(errnoText(e)). "
                + "Write the recording somewhere else (-o PATH) or make \(dir) writable."
        case .directoryMissing(let dir):
            return "\(dir) does not exist or is not a directory. Create it first or choose another output path (-o PATH)."
        case .destinationIsDirectory(let path):
            return "\(path) is a directory; give a file name to write to (e.g. \(path.hasSuffix("/") ? path : path + "/")sprof.raw)."
        case .diskFull(let path, let n):
            return "no space left on the device holding \(path) after writing \(n) bytes; "
                + "\(path) was left untouched and the partial temporary file removed. "
                + "Free some space, record for a shorter time, at a lower frequency or with a smaller user stack, "
                + "or write to another file system."
        case .io(let op, let path, let e):
            return "\(op) failed for \(path): \(errnoText(e))"
        case .closed(let path):
            return "\(path) was already committed or abandoned; nothing more can be written to it"
        case .cannotOpen(let path, let e):
            return "cannot open \(path): \(errnoText(e))"
        case .notARawFile(let path):
            return "\(path) is not a sprof raw recording (it does not start with \"SPROFRAW\")"
        case .truncatedHeader(let path, let size):
            return "\(path) is cut short (\(size) bytes): it ends before its header and metadata record are complete, "
                + "so there is nothing to read. The recording was probably killed before it wrote anything."
        case .unsupportedVersion(let path, let v, let writer):
            let who = writer.isEmpty ? "a newer sprof" : "sprof \(writer)"
            return "\(path) is raw format \(v), written by \(who); this sprof reads raw format "
                + "\(RawFormatVersion.current.major).x only. Read it with \(who) or newer."
        case .missingMetadata(let path):
            return "\(path) has no metadata record where the format requires it (right after the header); the file is damaged"
        case .malformedRecord(let path, let off, let rec, let detail):
            return "\(path): \(rec) record at byte \(off) is malformed: \(detail)"
        }
    }
}

/// `strerror(e)` with the symbolic name for the common cases, so a user can
/// search for it.
func errnoText(_ e: Int32) -> String {
    String(cString: strerror(e)) + " (" + errnoSymbol(e) + ")"
}

// MARK: - System calls

/// The C calls of the raw-file code, one wrapper per call, after
/// swift-system's `Internals/Syscalls.swift`: EINTR is retried here and
/// nowhere else, failures come back as the errno value.
enum FileSyscalls {
    struct Errno: Error { var code: Int32 }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws(Errno) -> Int32 {
        while true {
            let fd = Glibc_open(path, flags, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw Errno(code: errno) }
        }
    }

    /// One `write(2)`; may be short. Retries EINTR.
    static func write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) throws(Errno) -> Int {
        while true {
            let r = Glibc_write(fd, p, n)
            if r >= 0 { return r }
            if errno != EINTR { throw Errno(code: errno) }
        }
    }

    static func fsync(_ fd: Int32) throws(Errno) {
        while Glibc_fsync(fd) != 0 {
            if errno != EINTR { throw Errno(code: errno) }
        }
    }

    /// `close(2)`. EINTR is not retried: on Linux the descriptor is released
    /// even then (close(2), "Dealing with error returns"), and retrying could
    /// close a descriptor another thread just opened.
    static func close(_ fd: Int32) throws(Errno) {
        if Glibc_close(fd) != 0, errno != EINTR { throw Errno(code: errno) }
    }

    static func rename(_ from: String, _ to: String) throws(Errno) {
        while Glibc_rename(from, to) != 0 {
            if errno != EINTR { throw Errno(code: errno) }
        }
    }

    static func unlink(_ path: String) throws(Errno) {
        while Glibc_unlink(path) != 0 {
            if errno != EINTR { throw Errno(code: errno) }
        }
    }

    /// `st_mode` and `st_size` of a path or descriptor.
    static func stat(path: String) throws(Errno) -> (mode: mode_t, size: Int) {
        var st = Glibc_stat_t()
        if Glibc_stat(path, &st) != 0 { throw Errno(code: errno) }
        return (st.st_mode, Int(st.st_size))
    }

    static func fstat(_ fd: Int32) throws(Errno) -> (mode: mode_t, size: Int) {
        var st = Glibc_stat_t()
        if Glibc_fstat(fd, &st) != 0 { throw Errno(code: errno) }
        return (st.st_mode, Int(st.st_size))
    }

    static func isDirectory(_ mode: mode_t) -> Bool { mode & S_IFMT == S_IFDIR }

    /// A private read-only mapping of a whole file.
    static func mmapReadOnly(_ fd: Int32, _ size: Int) throws(Errno) -> UnsafeRawPointer {
        guard let p = Glibc_mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw Errno(code: errno)
        }
        return UnsafeRawPointer(p)
    }

    static func munmap(_ p: UnsafeRawPointer, _ size: Int) {
        _ = Glibc_munmap(UnsafeMutableRawPointer(mutating: p), size)
    }

    static func read(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) throws(Errno) -> Int {
        while true {
            let r = Glibc_read(fd, p, n)
            if r >= 0 { return r }
            if errno != EINTR { throw Errno(code: errno) }
        }
    }

    static func getpid() -> Int32 { Glibc_getpid() }
}

// Module-qualified names, so the wrappers above (and methods named `write`,
// `close`) cannot call themselves by accident.
#if canImport(Glibc)
private typealias Glibc_stat_t = Glibc.stat
private func Glibc_open(_ p: String, _ f: Int32, _ m: mode_t) -> Int32 { Glibc.open(p, f, m) }
private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { Glibc.write(fd, p, n) }
private func Glibc_read(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int { Glibc.read(fd, p, n) }
private func Glibc_fsync(_ fd: Int32) -> Int32 { Glibc.fsync(fd) }
private func Glibc_close(_ fd: Int32) -> Int32 { Glibc.close(fd) }
private func Glibc_rename(_ a: String, _ b: String) -> Int32 { Glibc.rename(a, b) }
private func Glibc_unlink(_ p: String) -> Int32 { Glibc.unlink(p) }
private func Glibc_stat(_ p: String, _ st: inout Glibc.stat) -> Int32 { stat(p, &st) }
private func Glibc_fstat(_ fd: Int32, _ st: inout Glibc.stat) -> Int32 { fstat(fd, &st) }
private func Glibc_mmap(_ a: UnsafeMutableRawPointer?, _ n: Int, _ prot: Int32, _ flags: Int32, _ fd: Int32, _ off: off_t) -> UnsafeMutableRawPointer? {
    Glibc.mmap(a, n, prot, flags, fd, off)
}
private func Glibc_munmap(_ p: UnsafeMutableRawPointer, _ n: Int) -> Int32 { Glibc.munmap(p, n) }
private func Glibc_getpid() -> Int32 { Glibc.getpid() }
#endif

// MARK: - AtomicFile

/// A file that appears at its destination complete or not at all.
///
/// Bytes go to a temporary file created next to the destination (same
/// directory, so the final `rename(2)` cannot cross file systems), through an
/// in-memory buffer of fixed size: a recording can be hundreds of MB and is
/// never held in memory. ``commit()`` flushes, `fsync`s the file, renames it
/// over the destination and `fsync`s the directory so the rename itself is
/// durable (rename(2) is atomic; the directory fsync is what makes it survive
/// a crash, see fsync(2) "NOTES"). ``abandon()``, or dropping the object
/// without committing, removes the temporary file and leaves the destination
/// as it was.
///
/// Not thread-safe: one writer owns it.
public final class AtomicFile {
    public let destination: String
    /// The directory the temporary file (and the destination) live in.
    public let directory: String
    public let temporaryPath: String
    /// Bytes accepted so far (on disk or still in the buffer).
    public private(set) var bytesWritten: UInt64 = 0
    /// Bytes that reached the temporary file.
    public private(set) var bytesOnDisk: UInt64 = 0

    private enum State { case open, committed, abandoned, failed(CaptureFileError) }
    private var state: State = .open
    private var fd: Int32
    private let buffer: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0

    /// 1 MiB: large enough that a 64 KiB user stack is one of many records
    /// per `write(2)` (amortizing the syscall), small enough to be
    /// irrelevant next to the BPF ring buffer.
    public static let defaultBufferCapacity = 1 << 20

    /// Creates the temporary file (`O_CREAT|O_EXCL`, `mode` before umask;
    /// the destination ends up with the same mode, since it *is* this file).
    public init(destination: String, mode: mode_t = 0o644,
                bufferCapacity: Int = AtomicFile.defaultBufferCapacity) throws(CaptureFileError) {
        precondition(bufferCapacity > 0)
        self.destination = destination
        let (dir, base) = AtomicFile.split(destination)
        directory = dir
        guard !base.isEmpty, base != ".", base != ".." else { throw .destinationIsDirectory(path: destination) }
        if let st = try? FileSyscalls.stat(path: destination), FileSyscalls.isDirectory(st.mode) {
            throw .destinationIsDirectory(path: destination)
        }
        var attempt = 0
        var tmp = ""
        var opened: Int32 = -1
        while opened < 0 {
            // A hidden name with our pid and a random tag: O_EXCL makes a
            // collision an error we retry rather than a file we clobber.
            let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
            tmp = (dir == "/" ? "" : dir) + "/." + base + ".tmp-\(FileSyscalls.getpid())-" + tag
            do {
                opened = try FileSyscalls.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
            } catch {
                switch error.code {
                case EEXIST where attempt < 16: attempt += 1
                case EACCES, EPERM, EROFS: throw .directoryNotWritable(directory: dir, errno: error.code)
                case ENOENT, ENOTDIR: throw .directoryMissing(directory: dir)
                case ENOSPC, EDQUOT: throw .diskFull(path: destination, bytesWritten: 0)
                default: throw .io(operation: "creating a temporary file", path: tmp, errno: error.code)
                }
            }
        }
        temporaryPath = tmp
        fd = opened
        capacity = bufferCapacity
        buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferCapacity, alignment: 16)
    }

    deinit {
        abandon()
        buffer.deallocate()
    }

    /// Appends bytes. Copies into the buffer; writes through when the buffer
    /// fills. After a failure every call throws the same error.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(CaptureFileError) {
        try checkOpen()
        guard let src = bytes.baseAddress, bytes.count > 0 else { return }
        if bytes.count <= capacity - used {
            (buffer + used).copyMemory(from: src, byteCount: bytes.count)
            used += bytes.count
        } else {
            try flushBuffer()
            if bytes.count < capacity {
                buffer.copyMemory(from: src, byteCount: bytes.count)
                used = bytes.count
            } else {
                try writeAll(src, bytes.count)
            }
        }
        bytesWritten += UInt64(bytes.count)
    }

    public func write(_ bytes: [UInt8]) throws(CaptureFileError) {
        // `withUnsafeBytes` is `rethrows`, which erases typed throws; carry
        // the error out by hand.
        var failure: CaptureFileError?
        bytes.withUnsafeBytes { raw in
            do throws(CaptureFileError) { try self.write(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Hands `body` `count` contiguous bytes of buffer to fill in place (it
    /// must initialize all of them), flushing first if they do not fit. This
    /// is how the raw-file writer encodes a sample without an intermediate
    /// copy or allocation.
    func withWriteSpace(_ count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) throws(CaptureFileError) {
        try checkOpen()
        if count > capacity - used { try flushBuffer() }
        if count <= capacity {
            body(UnsafeMutableRawBufferPointer(start: buffer + used, count: count))
            used += count
        } else {
            // Larger than the whole buffer: a one-off allocation (never the
            // case for samples, whose maximum is far below the capacity).
            let tmp = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
            defer { tmp.deallocate() }
            body(tmp)
            try writeAll(tmp.baseAddress!, count)
        }
        bytesWritten += UInt64(count)
    }

    /// Writes the buffer to the temporary file (no fsync).
    public func flush() throws(CaptureFileError) {
        try checkOpen()
        try flushBuffer()
    }

    /// Flush, fsync, rename over the destination, fsync the directory. After
    /// this the destination holds exactly the bytes written.
    public func commit() throws(CaptureFileError) {
        try checkOpen()
        try flushBuffer()
        do { try FileSyscalls.fsync(fd) } catch { try fail(error.code, "fsync") }
        let closing = fd
        fd = -1
        // close(2) can report a deferred write error (NFS); treat it as one.
        do { try FileSyscalls.close(closing) } catch { try fail(error.code, "close") }
        do { try FileSyscalls.rename(temporaryPath, destination) } catch {
            try fail(error.code, "renaming \(temporaryPath) to")
        }
        state = .committed
        // The rename is done; make it durable. File systems that cannot fsync
        // a directory say EINVAL: nothing more to do there.
        let dirfd: Int32
        do { dirfd = try FileSyscalls.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } catch { return }
        defer { try? FileSyscalls.close(dirfd) }
        do { try FileSyscalls.fsync(dirfd) } catch {
            if error.code != EINVAL {
                throw .io(operation: "fsync of the directory (the file is in place but may not survive a crash)",
                          path: directory, errno: error.code)
            }
        }
    }

    /// Closes and removes the temporary file; the destination is untouched.
    /// Does nothing after ``commit()`` or a previous abandon.
    public func abandon() {
        switch state {
        case .open:
            state = .abandoned
            removeTemporary()
        case .failed, .committed, .abandoned:
            return
        }
    }

    public var isCommitted: Bool { if case .committed = state { return true } else { return false } }

    // MARK: Internals

    private func checkOpen() throws(CaptureFileError) {
        switch state {
        case .open: return
        case .failed(let e): throw e
        case .committed, .abandoned: throw .closed(path: destination)
        }
    }

    private func flushBuffer() throws(CaptureFileError) {
        guard used > 0 else { return }
        let n = used
        used = 0
        try writeAll(buffer, n)
    }

    /// `write(2)` until all `n` bytes are out: a short write (signal, nearly
    /// full device) is continued, not treated as the end.
    private func writeAll(_ p: UnsafeRawPointer, _ n: Int) throws(CaptureFileError) {
        var done = 0
        while done < n {
            let r: Int
            do { r = try FileSyscalls.write(fd, p + done, n - done) } catch { try fail(error.code, "write") }
            // write(2) returning 0 for a regular file with n > 0 does not
            // happen on Linux; treat it as the device being full rather than
            // spinning.
            if r == 0 { try fail(ENOSPC, "write") }
            done += r
            bytesOnDisk += UInt64(r)
        }
    }

    /// Records the failure, removes the temporary file (freeing the space
    /// matters when the disk is full), and throws the user-facing error.
    private func fail(_ code: Int32, _ operation: String) throws(CaptureFileError) -> Never {
        let renaming = operation.hasPrefix("renaming")
        let error: CaptureFileError
        if code == ENOSPC || code == EDQUOT {
            error = .diskFull(path: destination, bytesWritten: bytesOnDisk)
        } else if renaming && (code == EACCES || code == EPERM || code == EROFS) {
            error = .directoryNotWritable(directory: directory, errno: code)
        } else {
            error = .io(operation: operation, path: renaming ? destination : temporaryPath, errno: code)
        }
        state = .failed(error)
        removeTemporary()
        throw error
    }

    private func removeTemporary() {
        used = 0
        if fd >= 0 { try? FileSyscalls.close(fd); fd = -1 }
        try? FileSyscalls.unlink(temporaryPath)
    }

    /// ("dir", "base") of a path; "." for a bare name, "/" for "/name".
    static func split(_ path: String) -> (String, String) {
        let u = Array(path.utf8)
        guard let slash = u.lastIndex(of: UInt8(ascii: "/")) else { return (".", path) }
        let dir = slash == 0 ? "/" : String(decoding: u[..<slash], as: UTF8.self)
        return (dir, String(decoding: u[(slash + 1)...], as: UTF8.self))
    }
}
