/// Everything that can go wrong reading or writing a profile; each message
/// names the file and says what to do.
public enum ProfileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a gzip stream, or a damaged or truncated one.
    case badGzip(path: String, reason: String)
    /// The bytes are not a pprof `Profile` message.
    case notPprof(path: String, reason: String)
    /// The profile refers to a location, function or mapping it does not have.
    case inconsistent(path: String, reason: String)
    /// zlib itself failed (out of memory).
    case compression(String)
    /// Nothing to show (no samples, or none left after filtering).
    case empty(String)
    /// Profiles that cannot be merged: the same sample type in two units.
    case incompatible(String)

    public var description: String {
        switch self {
        case .badGzip(let p, let r): return "\(p): not a readable gzip file: \(r)"
        case .notPprof(let p, let r): return "\(p): not a pprof profile: \(r)"
        case .inconsistent(let p, let r): return "\(p): damaged pprof profile: \(r)"
        case .compression(let r): return "compression failed: \(r)"
        case .empty(let r): return r
        case .incompatible(let r): return "cannot merge: \(r)"
        }
    }
}
