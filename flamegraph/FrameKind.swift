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

    public var description: String {
        switch self {
        case .user: return "user"
        case .kernel: return "kernel"
        case .inlined: return "inlined"
        case .jit: return "JIT"
        case .unknown: return "unknown"
        }
    }

    /// The kind of `name` and the length of the name shown in a frame's
    /// label: the `_[k]`/`_[i]`/`_[j]` suffix is cut for display (it stays in
    /// the tooltip and in the text searched). An unresolved address is
    /// `.unknown` even with a suffix (`[unknown]_[k]`).
    public static func classify(_ name: some StringProtocol) -> (kind: FrameKind, displayLength: Int) {
        var name = String(name)
        return name.withUTF8 { classify(UnsafeRawBufferPointer($0)) }
    }

    /// `classify` over UTF-8 bytes; `displayLength` counts bytes.
    static func classify(_ b: UnsafeRawBufferPointer) -> (kind: FrameKind, displayLength: Int) {
        let n = b.count
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
