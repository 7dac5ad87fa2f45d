#if canImport(Glibc)
import Glibc
#endif

// Creating sprof's files safely. sprof runs as root and writes into
// directories other users can write to (`/tmp`, a user's home, `/run`), and
// what it writes names every process and function of the machine. So every
// file sprof writes (profiles, raw recordings, store windows, spooled
// batches, caches, flame graphs) is made the same way, here:
//
// 1. The destination's directory is opened once, walking the path one
//    component at a time (`openat(2)` with `O_NOFOLLOW`): a component that
//    is a symbolic link is followed only when root or this user owns it
//    (`fs.protected_symlinks` does the same for links in sticky directories,
//    Documentation/admin-guide/sysctl/fs.rst); one another user owns could
//    point anywhere, and is refused. Everything after uses that descriptor
//    (`openat`, `renameat`), so swapping a directory afterwards redirects
//    nothing.
// 2. The bytes go to a new temporary file in that directory, created with
//    `O_CREAT|O_EXCL|O_NOFOLLOW` (open(2): with O_EXCL "symbolic links are
//    not followed", the call fails if anything has the name) under an
//    unpredictable name, mode 0600 unless the caller says otherwise.
// 3. It is fsync'ed and renamed over the destination (`renameat(2)`), and the
//    directory fsync'ed. An existing destination is never opened for
//    writing, never truncated: it is replaced, and a hard link to it keeps
//    the old bytes. A symbolic link planted at the destination is replaced
//    too, not followed (rename(2): "If newpath is a symbolic link, the link
//    will be overwritten").
//
// Directories sprof keeps for itself (/run/sprof, the caches, the store, the
// ClickHouse spool) go through ``SafeFile/makePrivateDirectory(_:mode:)``:
// created 0700, and a pre-existing one that is a symbolic link, is not
// owned by this user or is writable by others is refused.

/// Why a file could not be written safely. Each module turns this into its
/// own error enum's case; the description is written to be shown as it is.
public enum SafeWriteError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A directory on the way to `destination` is a symbolic link owned by
    /// a user other than root and this one.
    case untrustedSymlink(destination: String, directory: String, owner: UInt32, target: String)
    /// A directory sprof keeps for itself is a symbolic link (whoever owns it).
    case privateDirectoryIsSymlink(directory: String, owner: UInt32, target: String)
    /// A directory sprof keeps for itself belongs to another user.
    case privateDirectoryForeign(directory: String, owner: UInt32, user: UInt32)
    /// A directory sprof keeps for itself is writable by group or others.
    case privateDirectoryOpen(directory: String, mode: UInt32)
    /// A path component that should be a directory is not one.
    case notADirectory(String)
    /// The destination names an existing directory.
    case destinationIsDirectory(String)
    /// A failed system call: `operation` on `path`.
    case system(operation: String, path: String, errno: Int32)

    public var errno: Int32? { if case .system(_, _, let e) = self { return e } else { return nil } }

    public var description: String {
        func octal(_ m: UInt32) -> String { "0" + String(m & 0o7777, radix: 8) }
        switch self {
        case .untrustedSymlink(let dest, let dir, let owner, let target):
            return "cannot write \(dest): the directory \(dir) is a symlink (to \(target)) owned by uid \(owner); refusing, "
                + "since that user could point it anywhere. Write to the directory it points to, if it is the one you mean"
        case .privateDirectoryIsSymlink(let dir, let owner, let target):
            return "\(dir) is a symlink (to \(target), owned by uid \(owner)); refusing to keep sprof's files there. "
                + "Remove it (sprof creates the directory, mode 0700) or choose another directory"
        case .privateDirectoryForeign(let dir, let owner, let user):
            return "\(dir) is owned by uid \(owner), not by uid \(user) (this process); refusing to keep sprof's files in a "
                + "directory another user controls. Remove it (sprof creates it, mode 0700) or chown it to uid \(user)"
        case .privateDirectoryOpen(let dir, let mode):
            return "\(dir) is writable by other users (mode \(octal(mode))); refusing to keep sprof's files there. "
                + "chmod go-w \(dir), or remove it (sprof creates it, mode 0700)"
        case .notADirectory(let p):
            return "\(p) is not a directory"
        case .destinationIsDirectory(let p):
            return "\(p) is a directory; give a file name to write to"
        case .system(let op, let p, let e):
            return "\(op) \(p): \(String(cString: strerror(e)))"
        }
    }
}

/// Safe creation of files and directories; see the comment at the top of
/// this file.
public enum SafeFile {
    /// Mode of every file sprof writes unless a caller documents otherwise:
    /// profiles hold command lines and function names (perf writes
    /// perf.data 0600 too).
    public static let privateFileMode: mode_t = 0o600
    /// Mode of the directories sprof creates.
    public static let privateDirectoryMode: mode_t = 0o700

    /// A destination whose directory is open: writes go through the
    /// descriptor, not the path. ``close()`` it when done.
    public struct Destination: Sendable {
        /// The destination as given.
        public let path: String
        /// Its directory as given ("." for a bare name).
        public let directory: String
        /// Its last component.
        public let name: String
        /// The directory, opened (O_DIRECTORY).
        public let directoryFD: Int32

        /// Opens the directory of `path` (refusing symlinks another user
        /// owns on the way) and checks `path` is not a directory.
        public init(_ path: String) throws(SafeWriteError) {
            self.path = path
            let (dir, base) = SafeFile.split(path)
            guard !base.isEmpty, base != ".", base != ".." else { throw .destinationIsDirectory(path) }
            directory = dir
            name = base
            directoryFD = try SafeFile.openDirectory(dir, destination: path)
            if let st = try? SafeFile.fstatat(directoryFD, base, followLinks: false), st.st_mode & S_IFMT == S_IFDIR {
                try? POSIX.close(directoryFD)
                throw .destinationIsDirectory(path)
            }
        }

        /// The path of `name` in the destination's directory, for messages.
        public func pathOf(_ name: String) -> String { (directory == "/" ? "" : directory) + "/" + name }

        /// A new file in the directory, `O_CREAT|O_EXCL|O_NOFOLLOW`, named
        /// `.<name>.tmp-<pid>-<random>` (or `name` when given: tests plant
        /// links at known names). Returns the descriptor and the name.
        public func createTemporary(mode: mode_t = SafeFile.privateFileMode,
                                    name given: String? = nil) throws(SafeWriteError) -> (fd: Int32, name: String) {
            var attempt = 0
            while true {
                // 64 random bits: nobody guesses the name ahead of us, and
                // O_EXCL turns a collision into EEXIST, retried, never into a
                // file we write through.
                let tag = String(UInt64.random(in: 0...UInt64.max), radix: 36)
                let tmp = given ?? ".\(name).tmp-\(POSIX.getpid())-\(tag)"
                do {
                    let fd = try SafeFile.openat(directoryFD, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
                    return (fd, tmp)
                } catch {
                    if error.code == EEXIST && given == nil && attempt < 16 { attempt += 1; continue }
                    throw .system(operation: "creating the temporary file", path: pathOf(tmp), errno: error.code)
                }
            }
        }

        /// Renames the temporary file over the destination (replacing
        /// whatever has the name, a symbolic link included, never writing
        /// through it) and fsyncs the directory so the rename survives a
        /// crash (fsync(2) "NOTES"). File systems that cannot fsync a
        /// directory say EINVAL, which leaves nothing to do.
        public func install(_ temporary: String) throws(SafeWriteError) {
            do { try SafeFile.renameat(directoryFD, temporary, directoryFD, name) } catch {
                throw .system(operation: "renaming \(pathOf(temporary)) to", path: path, errno: error.code)
            }
            do { try POSIX.fsync(directoryFD) } catch {
                if error.code != EINVAL {
                    throw .system(operation: "fsync of the directory (the file is in place but may not survive a crash)",
                                  path: directory, errno: error.code)
                }
            }
        }

        /// Removes a temporary file (after a failure); errors are ignored.
        public func remove(_ temporary: String) { try? SafeFile.unlinkat(directoryFD, temporary) }

        public func close() { try? POSIX.close(directoryFD) }
    }

    /// Writes `bytes` to `path`: a new temporary file in its directory,
    /// fsync'ed, renamed over `path`. The file appears whole or not at all.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = privateFileMode) throws(SafeWriteError) {
        let d = try Destination(path)
        defer { d.close() }
        let (fd, tmp) = try d.createTemporary(mode: mode)
        do {
            try POSIX.writeAll(fd, bytes)
            try POSIX.fsync(fd)
        } catch {
            try? POSIX.close(fd)
            d.remove(tmp)
            throw .system(operation: "writing", path: d.pathOf(tmp), errno: error.code)
        }
        // close(2) can report a deferred write error (NFS): the file may be incomplete.
        do { try POSIX.close(fd) } catch {
            d.remove(tmp)
            throw .system(operation: "closing", path: d.pathOf(tmp), errno: error.code)
        }
        do { try d.install(tmp) } catch {
            if case .system(let op, _, _) = error, op.hasPrefix("renaming") { d.remove(tmp) }
            throw error
        }
    }

    /// Creates `path` and its missing parents with `mode` (0700), for files
    /// sprof keeps for itself; an existing `path` must be a real directory
    /// (not a symbolic link), owned by this user and not writable by group
    /// or others. Its parents must belong to root or this user and not be
    /// world-writable unless sticky (`/tmp` is fine); they may be symlinks
    /// owned by root or this user (`/var/run` → `/run`). Returns true if it
    /// created `path`.
    @discardableResult
    public static func makePrivateDirectory(_ path: String, mode: mode_t = privateDirectoryMode) throws(SafeWriteError) -> Bool {
        let fd: Int32
        let created: Bool
        (fd, created) = try walk(path, destination: nil, create: mode)
        try? POSIX.close(fd)
        return created
    }

    // MARK: - Walking a path

    /// Opens directory `path` with `O_DIRECTORY`, refusing symbolic links
    /// another user owns on the way.
    static func openDirectory(_ path: String, destination: String) throws(SafeWriteError) -> Int32 {
        try walk(path, destination: destination, create: nil).fd
    }

    /// One component at a time from `/` (or the working directory): each
    /// opened `O_NOFOLLOW|O_DIRECTORY` relative to the one before; a
    /// symbolic link is followed only if root or this user owns it.
    /// `create`: make missing components with this mode, and check the last
    /// as a private directory (see ``makePrivateDirectory(_:mode:)``).
    private static func walk(_ path: String, destination: String?, create: mode_t?) throws(SafeWriteError) -> (fd: Int32, created: Bool) {
        let me = POSIX.geteuid()
        let parts = path.split(separator: "/").map(String.init).filter { $0 != "." }
        var shown = path.hasPrefix("/") ? "" : "."
        var fd: Int32
        do { fd = try POSIX.open(path.hasPrefix("/") ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) } catch {
            throw .system(operation: "opening", path: path.hasPrefix("/") ? "/" : ".", errno: error.code)
        }
        var created = false
        for (i, part) in parts.enumerated() {
            let last = i == parts.count - 1
            shown += "/" + part
            var next: Int32
            do {
                next = try openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if last { created = false }
            } catch {
                switch error.code {
                case ENOENT where create != nil:
                    do { try mkdirat(fd, part, create!) } catch {
                        if error.code != EEXIST {
                            try? POSIX.close(fd)
                            throw .system(operation: "creating the directory", path: shown, errno: error.code)
                        }
                    }
                    do { next = try openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) } catch {
                        try? POSIX.close(fd)
                        throw .system(operation: "opening the directory it just created", path: shown, errno: error.code)
                    }
                    if last { created = true }
                case ELOOP, ENOTDIR:
                    // ELOOP: the last component is a symlink (O_NOFOLLOW);
                    // ENOTDIR: a file, or a symlink O_DIRECTORY saw first.
                    guard let st = try? fstatat(fd, part, followLinks: false), st.st_mode & S_IFMT == S_IFLNK else {
                        try? POSIX.close(fd)
                        throw .notADirectory(shown)
                    }
                    let target = (try? readlinkat(fd, part)) ?? "?"
                    if create != nil && last {
                        try? POSIX.close(fd)
                        throw .privateDirectoryIsSymlink(directory: shown, owner: st.st_uid, target: target)
                    }
                    guard st.st_uid == 0 || st.st_uid == me else {
                        try? POSIX.close(fd)
                        if let destination {
                            throw .untrustedSymlink(destination: destination, directory: shown, owner: st.st_uid, target: target)
                        }
                        throw .privateDirectoryIsSymlink(directory: shown, owner: st.st_uid, target: target)
                    }
                    do { next = try openat(fd, part, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } catch {
                        try? POSIX.close(fd)
                        if error.code == ENOTDIR { throw .notADirectory(shown) }
                        throw .system(operation: "opening", path: shown, errno: error.code)
                    }
                default:
                    try? POSIX.close(fd)
                    throw .system(operation: "opening the directory", path: shown, errno: error.code)
                }
            }
            try? POSIX.close(fd)
            fd = next
            if create != nil && !last {
                // An ancestor of a private directory: another user who owns
                // it, or anyone when it is world-writable without the sticky
                // bit, could move ours away and put theirs in its place.
                var st = Glibc.stat()
                guard fstat(fd, &st) == 0 else { let e = Glibc.errno; try? POSIX.close(fd); throw .system(operation: "fstat", path: shown, errno: e) }
                if st.st_uid != 0 && st.st_uid != me {
                    try? POSIX.close(fd)
                    throw .privateDirectoryForeign(directory: shown, owner: st.st_uid, user: me)
                }
                if st.st_mode & 0o002 != 0 && st.st_mode & S_ISVTX == 0 {
                    try? POSIX.close(fd)
                    throw .privateDirectoryOpen(directory: shown, mode: UInt32(st.st_mode))
                }
            }
        }
        if create != nil {
            // The directory opened, not the name: what was checked is what is used.
            var st = Glibc.stat()
            guard fstat(fd, &st) == 0 else { let e = Glibc.errno; try? POSIX.close(fd); throw .system(operation: "fstat", path: path, errno: e) }
            if st.st_uid != me {
                try? POSIX.close(fd)
                throw .privateDirectoryForeign(directory: path, owner: st.st_uid, user: me)
            }
            if st.st_mode & 0o022 != 0 {
                try? POSIX.close(fd)
                throw .privateDirectoryOpen(directory: path, mode: UInt32(st.st_mode))
            }
        }
        return (fd, created)
    }

    /// ("dir", "base") of a path; "." for a bare name, "/" for "/name".
    public static func split(_ path: String) -> (String, String) {
        let u = Array(path.utf8)
        guard let slash = u.lastIndex(of: UInt8(ascii: "/")) else { return (".", path) }
        let dir = slash == 0 ? "/" : String(decoding: u[..<slash], as: UTF8.self)
        return (dir, String(decoding: u[(slash + 1)...], as: UTF8.self))
    }

    // MARK: - The *at calls (EINTR retried, errors as POSIX.Errno)

    /// openat(2).
    static func openat(_ dir: Int32, _ name: String, _ flags: Int32, _ mode: mode_t = 0) throws(POSIX.Errno) -> Int32 {
        while true {
            let fd = c_openat(dir, name, flags, mode)
            if fd >= 0 { return fd }
            if Glibc.errno != EINTR { throw .current }
        }
    }

    /// mkdirat(2).
    static func mkdirat(_ dir: Int32, _ name: String, _ mode: mode_t) throws(POSIX.Errno) {
        while c_mkdirat(dir, name, mode) != 0 { if Glibc.errno != EINTR { throw .current } }
    }

    /// renameat(2).
    static func renameat(_ a: Int32, _ from: String, _ b: Int32, _ to: String) throws(POSIX.Errno) {
        while c_renameat(a, from, b, to) != 0 { if Glibc.errno != EINTR { throw .current } }
    }

    /// unlinkat(2) of a file.
    static func unlinkat(_ dir: Int32, _ name: String) throws(POSIX.Errno) {
        while c_unlinkat(dir, name, 0) != 0 { if Glibc.errno != EINTR { throw .current } }
    }

    /// fstatat(2); `followLinks: false` is AT_SYMLINK_NOFOLLOW (lstat).
    static func fstatat(_ dir: Int32, _ name: String, followLinks: Bool) throws(POSIX.Errno) -> Glibc.stat {
        var st = Glibc.stat()
        while c_fstatat(dir, name, &st, followLinks ? 0 : AT_SYMLINK_NOFOLLOW) != 0 {
            if Glibc.errno != EINTR { throw .current }
        }
        return st
    }

    /// readlinkat(2).
    static func readlinkat(_ dir: Int32, _ name: String) throws(POSIX.Errno) -> String {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = c_readlinkat(dir, name, &buf, 4096)
        guard n >= 0 else { throw .current }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// lstat(2): what a path names, without following a final symbolic link.
    public static func lstat(_ path: String) throws(POSIX.Errno) -> Glibc.stat {
        try fstatat(AT_FDCWD, path, followLinks: false)
    }
}

#if canImport(Glibc)
private func c_openat(_ d: Int32, _ p: String, _ f: Int32, _ m: mode_t) -> Int32 { Glibc.openat(d, p, f, m) }
private func c_mkdirat(_ d: Int32, _ p: String, _ m: mode_t) -> Int32 { Glibc.mkdirat(d, p, m) }
private func c_renameat(_ a: Int32, _ f: String, _ b: Int32, _ t: String) -> Int32 { Glibc.renameat(a, f, b, t) }
private func c_unlinkat(_ d: Int32, _ p: String, _ flags: Int32) -> Int32 { Glibc.unlinkat(d, p, flags) }
private func c_fstatat(_ d: Int32, _ p: String, _ st: inout Glibc.stat, _ flags: Int32) -> Int32 { fstatat(d, p, &st, flags) }
private func c_readlinkat(_ d: Int32, _ p: String, _ buf: UnsafeMutablePointer<CChar>, _ n: Int) -> Int { Glibc.readlinkat(d, p, buf, n) }
#endif
