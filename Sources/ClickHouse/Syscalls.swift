#if canImport(Glibc)
import Glibc
#endif

/// The only C calls of this module: the spool directory's files. Each
/// wrapper retries EINTR and throws ``ClickHouseError/spool(path:operation:errno:)``.
enum ClickHouseSyscalls {
    static func errorString(_ e: Int32) -> String { String(cString: strerror(e)) }

    /// `mkdir -p` with mode 0700: spooled batches hold command lines' names
    /// and cgroup paths of every process, which other users need not read.
    static func makeDirectories(_ path: String) throws(ClickHouseError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST {
                throw .spool(path: prefix, operation: "creating the directory", errno: errno)
            }
        }
        var st = stat()
        guard stat(path, &st) == 0 else { throw .spool(path: path, operation: "stat", errno: errno) }
        guard (st.st_mode & mode_t(S_IFMT)) == mode_t(S_IFDIR) else { throw .spool(path: path, operation: "using it as a directory", errno: ENOTDIR) }
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

    /// Writes `bytes` to `path` atomically: a hidden temporary file in the
    /// same directory (so rename(2) cannot cross file systems), fsync'ed,
    /// renamed over `path`, then the directory fsync'ed so the rename itself
    /// survives a crash (fsync(2), NOTES). The file appears whole or not at all.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(ClickHouseError) {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let tmp = (dir.isEmpty ? "" : dir + "/") + "." + base + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .spool(path: tmp, operation: "creating", errno: errno) }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                throw .spool(path: tmp, operation: "writing", errno: e)
            }
            off += n
        }
        if fsync(fd) != 0 { let e = errno; close(fd); throw .spool(path: tmp, operation: "fsync", errno: e) }
        close(fd)
        guard Glibc.rename(tmp, path) == 0 else { throw .spool(path: path, operation: "renaming \(tmp) to it", errno: errno) }
        ok = true
        let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    static func rename(_ from: String, _ to: String) throws(ClickHouseError) {
        guard Glibc.rename(from, to) == 0 else { throw .spool(path: from, operation: "moving it to \(to)", errno: errno) }
    }

    static func remove(_ path: String) { unlink(path) }
}
