/// Errors of SprofUnwind outside the CFI bytes themselves (those are
/// `CFIError`, wrapped here as `.cfi`): binaries that cannot be found or read.
public enum UnwindError: Error, CustomStringConvertible {
    /// The binary behind a mapping could not be opened or did not match.
    case moduleUnavailable(path: String, reason: String)
    /// The binary's call-frame information is unusable.
    case cfi(path: String, CFIError)
    /// The binary has neither `.eh_frame` nor `.debug_frame`.
    case noCallFrameInformation(path: String)
    /// The binary's CFI would compile to more rows than one module may
    /// take (``ModuleCache/maxModuleBytes``): it is not tabulated, and
    /// stacks stop at its frames (counted as shed).
    case tableTooLarge(path: String, rows: Int, limit: Int)

    public var description: String {
        switch self {
        case .moduleUnavailable(let path, let reason):
            return "cannot read \(path) to unwind through it: \(reason)"
        case .cfi(let path, let e):
            return "\(path): \(e)"
        case .noCallFrameInformation(let path):
            return "\(path) has no .eh_frame or .debug_frame: frames in it are found only by heuristics"
        case .tableTooLarge(let path, let rows, let limit):
            return "\(path): its call-frame information could make \(rows) table rows, over the \(limit) one binary may take: "
                + "it is not tabulated and stacks stop at its frames (a larger unwind-table memory bound raises the limit)"
        }
    }
}
