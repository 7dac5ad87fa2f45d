#if canImport(Glibc)
import Glibc
#endif
import SprofBase

/// The only C calls of this module: the spool directory's files. Each
/// wrapper retries EINTR and throws ``ClickHouseError/spool(path:operation:errno:)``.
enum ClickHouseSyscalls {
    static func errorString(_ e: Int32) -> String { String(cString: strerror(e)) }

    /// `mkdir -p` with mode 0700: spooled batches hold command lines' names
    /// and cgroup paths of every process, which other users need not read.
    /// An existing directory must be a real one (not a symlink), this
    /// user's, not writable by others (SprofBase's SafeFile).
    static func makeDirectories(_ path: String) throws(ClickHouseError) {
        do { try SafeFile.makePrivateDirectory(path) } catch { throw spoolError(error) }
    }

    static func spoolError(_ e: SafeWriteError) -> ClickHouseError {
        if case .system(let op, let p, let code) = e { return .spool(path: p, operation: op, errno: code) }
        return .unsafeSpool(e)
    }

    /// Names in `directory` (not `.` and `..`).
    static func list(_ directory: String) throws(ClickHouseError) -> [String] {
        guard let dir = opendir(directory) else { throw .spool(path: directory, operation: "listing", errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { p in
                p.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func size(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : nil
    }

    static func read(_ path: String) throws(ClickHouseError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .spool(path: path, operation: "opening", errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw .spool(path: path, operation: "reading", errno: errno) }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
        }
    }

    /// Writes `bytes` to `path` atomically, mode 0600, through SprofBase's
    /// SafeFile (Sources/Base/SafeWrite.swift): a new temporary file in the
    /// same directory (`O_CREAT|O_EXCL|O_NOFOLLOW`, unpredictable name),
    /// fsync'ed, renamed over `path`, the directory fsync'ed. The file
    /// appears whole or not at all; an existing one is replaced, never
    /// truncated or written through.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(ClickHouseError) {
        do { try SafeFile.write(bytes, to: path) } catch { throw spoolError(error) }
    }

    static func rename(_ from: String, _ to: String) throws(ClickHouseError) {
        guard Glibc.rename(from, to) == 0 else { throw .spool(path: from, operation: "moving it to \(to)", errno: errno) }
    }

    static func remove(_ path: String) { unlink(path) }
}
