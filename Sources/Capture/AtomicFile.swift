#if canImport(Glibc)
import Glibc
#endif
import SprofBase

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

    private enum State { case open, committed, abandoned, failed(CaptureError) }
    private var state: State = .open
    private var fd: Int32
    /// The destination's directory, open: the temporary file is created,
    /// renamed and removed relative to it.
    private let target: SafeFile.Destination
    private let temporaryName: String
    private let buffer: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0

    /// 1 MiB: large enough that a 64 KiB user stack is one of many records
    /// per `write(2)` (amortizing the syscall), small enough to be
    /// irrelevant next to the BPF ring buffer.
    public static let defaultBufferCapacity = 1 << 20

    /// Creates the temporary file in the destination's directory, through
    /// SprofBase's ``SafeFile`` (Sources/Base/SafeWrite.swift): the directory
    /// opened once, refusing a symlink another user owns on the way; the file
    /// `O_CREAT|O_EXCL|O_NOFOLLOW` under an unpredictable name; the
    /// destination, when committed, replaced by rename(2), never opened or
    /// truncated (a symlink planted there is replaced, not followed).
    ///
    /// `mode` (before umask; the destination ends up with it, since it *is*
    /// this file): 0600 by default, as perf writes perf.data: profiles and
    /// recordings name every process, command and function they saw.
    public init(destination: String, mode: mode_t = SafeFile.privateFileMode,
                bufferCapacity: Int = AtomicFile.defaultBufferCapacity) throws(CaptureError) {
        precondition(bufferCapacity > 0)
        self.destination = destination
        let target: SafeFile.Destination
        do { target = try SafeFile.Destination(destination) } catch { throw AtomicFile.captureError(error, destination) }
        directory = target.directory
        let created: (fd: Int32, name: String)
        do { created = try target.createTemporary(mode: mode) } catch {
            target.close()
            throw AtomicFile.captureError(error, destination)
        }
        self.target = target
        temporaryName = created.name
        temporaryPath = target.pathOf(created.name)
        fd = created.fd
        capacity = bufferCapacity
        buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferCapacity, alignment: 16)
    }

    /// SprofBase's ``SafeWriteError`` as this module's error: the errno
    /// cases the user can act on keep their own messages.
    static func captureError(_ e: SafeWriteError, _ destination: String) -> CaptureError {
        let dir = SafeFile.split(destination).0
        switch e {
        case .destinationIsDirectory: return .destinationIsDirectory(path: destination)
        case .notADirectory: return .directoryMissing(directory: dir)
        case .system(let op, let path, let code):
            switch code {
            case EACCES, EPERM, EROFS: return .directoryNotWritable(directory: dir, errno: code)
            case ENOENT, ENOTDIR: return .directoryMissing(directory: dir)
            case ENOSPC, EDQUOT: return .diskFull(path: destination, bytesWritten: 0)
            default: return .io(operation: op, path: path, errno: code)
            }
        default: return .unsafeOutput(e)
        }
    }

    deinit {
        abandon()
        target.close()
        buffer.deallocate()
    }

    /// Appends bytes. Copies into the buffer; writes through when the buffer
    /// fills. After a failure every call throws the same error.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(CaptureError) {
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

    public func write(_ bytes: [UInt8]) throws(CaptureError) {
        // `withUnsafeBytes` is `rethrows`, which erases typed throws; carry
        // the error out by hand.
        var failure: CaptureError?
        bytes.withUnsafeBytes { raw in
            do throws(CaptureError) { try self.write(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Hands `body` `count` contiguous bytes of buffer to fill in place (it
    /// must initialize all of them), flushing first if they do not fit. This
    /// is how the raw-file writer encodes a sample without an intermediate
    /// copy or allocation.
    func withWriteSpace(_ count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) throws(CaptureError) {
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
    public func flush() throws(CaptureError) {
        try checkOpen()
        try flushBuffer()
    }

    /// Flush, fsync, rename over the destination, fsync the directory. After
    /// this the destination holds exactly the bytes written.
    public func commit() throws(CaptureError) {
        try checkOpen()
        try flushBuffer()
        do { try Syscalls.fsync(fd) } catch { try fail(error.code, "fsync") }
        let closing = fd
        fd = -1
        // close(2) can report a deferred write error (NFS); treat it as one.
        do { try Syscalls.close(closing) } catch { try fail(error.code, "close") }
        do { try target.install(temporaryName) } catch {
            if case .system(let op, _, let code) = error, op.hasPrefix("renaming") {
                try fail(code, "renaming \(temporaryPath) to")
            }
            // The rename is done; only the directory fsync failed.
            state = .committed
            throw AtomicFile.captureError(error, destination)
        }
        state = .committed
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

    private func checkOpen() throws(CaptureError) {
        switch state {
        case .open: return
        case .failed(let e): throw e
        case .committed, .abandoned: throw .closed(path: destination)
        }
    }

    private func flushBuffer() throws(CaptureError) {
        guard used > 0 else { return }
        let n = used
        used = 0
        try writeAll(buffer, n)
    }

    /// `write(2)` until all `n` bytes are out: a short write (signal, nearly
    /// full device) is continued, not treated as the end.
    private func writeAll(_ p: UnsafeRawPointer, _ n: Int) throws(CaptureError) {
        var done = 0
        while done < n {
            let r: Int
            do { r = try Syscalls.write(fd, p + done, n - done) } catch { try fail(error.code, "write") }
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
    private func fail(_ code: Int32, _ operation: String) throws(CaptureError) -> Never {
        let renaming = operation.hasPrefix("renaming")
        let error: CaptureError
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
        if fd >= 0 { try? Syscalls.close(fd); fd = -1 }
        target.remove(temporaryName)
    }

    /// ("dir", "base") of a path; "." for a bare name, "/" for "/name".
    static func split(_ path: String) -> (String, String) { SafeFile.split(path) }
}
