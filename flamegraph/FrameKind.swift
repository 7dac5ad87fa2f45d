/// What a frame is, decided from its text alone, as stackcollapse-perf.pl
/// annotates names and as sprof's `--folded` output writes them.
public enum FrameKind: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// Anything else: a symbol in user code.
    case user
    /// Ends in `_[k]`.
    case kernel
    /// Ends in `_[i]`: a function inlined into its caller.
    case inlined
    /// Ends in `_[j]`: JIT code named by a perf map.
    case jit
    /// No symbol: `module+0x1f00`, a bare `0x7f…` address, or a
    /// bracketed placeholder such as `[unknown]` or `[truncated: …]`.
    case unknown
    /// Begins with `[off-cpu` (`offCPUPrefix`): the synthetic frame that
    /// heads an off-CPU stack. Not an unknown frame, though bracketed.
    case offCPU

    public var description: String {
        switch self {
        case .user: return "user"
        case .kernel: return "kernel"
        case .inlined: return "inlined"
        case .jit: return "JIT"
        case .unknown: return "unknown"
        case .offCPU: return "off-CPU"
        }
    }

    /// How a folded stack says it is off-CPU: a synthetic frame whose name
    /// begins with these bytes (case-sensitive; anything may follow, such as
    /// the thread state), so `[off-cpu]`, `[off-cpu: runnable]` and
    /// `[off-cpu: uninterruptible]` all qualify. sprof puts it at the root end
    /// of the stack, right after the process name:
    ///
    ///     myproc;[off-cpu];main;worker;read;__x64_sys_read_[k];schedule_[k] 5000000
    ///     myproc;[off-cpu: runnable];main;spin 120000
    ///     myproc;main;compute 300
    ///
    /// Any producer of folded stacks may use it. Such a frame classifies as
    /// `.offCPU`, and the flame graph draws it and its whole subtree (every
    /// frame above it, wherever it stands in the stack) in off-CPU violet
    /// (hues 255–290°, clear of every on-CPU band) instead of their kinds'
    /// colours: the marker, user, inlined and JIT frames light violet,
    /// kernel frames a deeper violet, unresolved ones a violet grey (the
    /// exact bands are documented in Palette.swift). Time spent waiting
    /// never looks like time spent running, even where the same functions
    /// appear in both; within the off-CPU part a function keeps one shade.
    /// The legend gets its off-CPU entries only when such frames are drawn;
    /// graphs without them are drawn exactly as before. A differential graph
    /// keeps its red and blue.
    public static let offCPUPrefix = "[off-cpu"

    /// The kind of `name` and the length of the name shown in a frame's
    /// label: the `_[k]`/`_[i]`/`_[j]` suffix is cut for display (it stays in
    /// the tooltip and in the text searched). An unresolved address is
    /// `.unknown` even with a suffix (`[unknown]_[k]`). A name beginning with
    /// `offCPUPrefix` is `.offCPU` and shown whole, suffix or not.
    public static func classify(_ name: some StringProtocol) -> (kind: FrameKind, displayLength: Int) {
        var name = String(name)
        return name.withUTF8 { classify(UnsafeRawBufferPointer($0)) }
    }

    /// `classify` over UTF-8 bytes; `displayLength` counts bytes.
    static func classify(_ b: UnsafeRawBufferPointer) -> (kind: FrameKind, displayLength: Int) {
        let n = b.count
        if n >= offCPUPrefixBytes.count && zip(b, offCPUPrefixBytes).allSatisfy({ $0 == $1 }) { return (.offCPU, n) }
        var kind = FrameKind.user
        var length = n
        // "_[k]": four bytes, '_' '[' letter ']'.
        if n > 4 && b[n - 4] == UInt8(ascii: "_") && b[n - 3] == UInt8(ascii: "[") && b[n - 1] == UInt8(ascii: "]") {
            switch b[n - 2] {
            case UInt8(ascii: "k"): kind = .kernel; length = n - 4
            case UInt8(ascii: "i"): kind = .inlined; length = n - 4
            case UInt8(ascii: "j"): kind = .jit; length = n - 4
            default: break
            }
        }
        if looksUnresolved(UnsafeRawBufferPointer(rebasing: b[0..<length])) { kind = .unknown }
        return (kind, length)
    }

    private static let offCPUPrefixBytes = Array(offCPUPrefix.utf8)

    /// `[…`, `0xHEX`, or `anything+0xHEX`.
    private static func looksUnresolved(_ b: UnsafeRawBufferPointer) -> Bool {
        guard let first = b.first else { return true }
        if first == UInt8(ascii: "[") { return true }
        // Walk back over hex digits; then expect "0x", preceded by '+' or nothing.
        var i = b.count
        while i > 0 && isHexDigit(b[i - 1]) { i -= 1 }
        guard i < b.count, i >= 2, b[i - 1] == UInt8(ascii: "x"), b[i - 2] == UInt8(ascii: "0") else { return false }
        return i == 2 || (i >= 4 && b[i - 3] == UInt8(ascii: "+"))
    }

    private static func isHexDigit(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c | 0x20 >= UInt8(ascii: "a") && c | 0x20 <= UInt8(ascii: "f"))
    }
}
