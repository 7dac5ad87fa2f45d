/// Errors of SprofUnwind outside the CFI bytes themselves (those are
/// `CFIError`, wrapped here as `.cfi`): binaries that cannot be found or read.
public enum UnwindError: Error, CustomStringConvertible {
    /// The binary behind a mapping could not be opened or did not match.
    case moduleUnavailable(path: String, reason: String)
    /// The binary's call-frame information is unusable.
    case cfi(path: String, CFIError)
    /// The binary has neither `.eh_frame` nor `.debug_frame`.
    case noCallFrameInformation(path: String)

    public var description: String {
        switch self {
        case .moduleUnavailable(let path, let reason):
            return "cannot read \(path) to unwind through it: \(reason)"
        case .cfi(let path, let e):
            return "\(path): \(e)"
        case .noCallFrameInformation(let path):
            return "\(path) has no .eh_frame or .debug_frame: frames in it are found only by heuristics"
        }
    }
}
