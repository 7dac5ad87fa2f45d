#if canImport(Glibc)
import Glibc
#endif
import SprofBase
import SprofProfile

/// Everything that can go wrong with the local store; each message names the
/// directory or file and says what to do.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The store directory does not exist (reading never creates it).
    case missingDirectory(String)
    /// The path exists and is not a directory.
    case notADirectory(String)
    /// The directory (or a parent) could not be created.
    case cannotCreate(directory: String, errno: Int32)
    /// No space (ENOSPC) or quota (EDQUOT) left: the window is not stored,
    /// and nothing of it is left behind.
    case diskFull(directory: String, bytes: Int)
    /// Any other failed file operation.
    case io(operation: String, path: String, errno: Int32)
    /// A window the store cannot name: no start time, a negative or too long duration.
    case badWindow(String)
    /// A window of the same host, start and end is already stored.
    case windowExists(path: String)
    /// Nothing stored in the range asked for.
    case noWindows(since: String, until: String, directory: String)
    /// `--since`/`--until` that is neither a duration, an RFC 3339 time nor unix seconds.
    case badTime(String)
    /// `--where` that is not `key=value`.
    case badLabelFilter(String)
    /// The window could not be encoded (out of memory in zlib).
    case encoding(ProfileError)
    /// The store's directory, or the way to it, is not safe to write to: a
    /// symlink, another user's, writable by others (Sources/Base/SafeWrite.swift).
    case unsafe(SafeWriteError)

    public var description: String {
        switch self {
        case .missingDirectory(let d):
            return "\(d): no such store directory (`sprof agent` creates it when it writes its first window; check the path)"
        case .notADirectory(let d):
            return "\(d): not a directory; a store is a directory of windows"
        case .cannotCreate(let d, let e):
            return "cannot create the store directory \(d): \(Self.text(e))"
                + (e == EACCES || e == EPERM || e == EROFS ? " (run as root, or choose a writable directory)" : "")
        case .diskFull(let d, let n):
            return "no space left in \(d) for a window of \(n) bytes; it was not stored. Free space there or lower the store's size limit; the next window is written when space returns"
        case .io(let op, let p, let e):
            return "\(op) \(p): \(Self.text(e))"
        case .badWindow(let r):
            return "cannot store this window: \(r)"
        case .windowExists(let p):
            return "\(p) already exists: a window of this host, start and end is stored; it was not replaced"
        case .noWindows(let since, let until, let d):
            return "no windows between \(since) and \(until) in \(d)"
        case .badTime(let r):
            return r
        case .badLabelFilter(let r):
            return r
        case .encoding(let e):
            return "\(e)"
        case .unsafe(let e):
            return "the store: \(e)"
        }
    }

    static func text(_ e: Int32) -> String { String(cString: strerror(e)) }
}
