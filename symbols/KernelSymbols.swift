import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// Kernel symbols from `/proc/kallsyms` (one "address type name [module]"
/// line per symbol; addresses read as 0 without CAP_SYSLOG, see
/// kernel/kallsyms.c `kallsyms_show_value`). Looks up the function that
/// contains a kernel address by binary search.
public struct KernelSymbols: Sendable {
    public struct Symbol: Hashable, Sendable {
        public var address: KernelAddress
        public var name: String
        /// The module in brackets, nil for the core kernel.
        public var module: String?
    }

    /// Sorted by address; text symbols only (types t/T, w/W).
    public let symbols: [Symbol]

    public init(kallsyms text: String) {
        var out: [Symbol] = []
        for line in text.split(separator: "\n") {
            // "ffffffffc0a01000 t name\t[module]": the module follows a tab
            let f = line.split(maxSplits: 3, omittingEmptySubsequences: true) { $0 == " " || $0 == "\t" }
            guard f.count >= 3, let addr = UInt64(f[0], radix: 16), addr != 0 else { continue }
            guard let t = f[1].first, "tTwW".contains(t) else { continue }
            var module: String?
            if f.count == 4 {
                let m = f[3]
                if m.hasPrefix("[") && m.hasSuffix("]") { module = String(m.dropFirst().dropLast()) }
            }
            out.append(Symbol(address: KernelAddress(addr), name: String(f[2]), module: module))
        }
        out.sort { $0.address < $1.address }
        symbols = out
    }

    /// Reads /proc/kallsyms; nil when it cannot be read or every address is hidden.
    public static func load(path: String = "/proc/kallsyms") -> KernelSymbols? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            bytes.append(contentsOf: buf[0..<n])
        }
        let table = KernelSymbols(kallsyms: String(decoding: bytes, as: UTF8.self))
        return table.symbols.isEmpty ? nil : table
    }

    /// The symbol whose address is the greatest one not above `address`, and the offset into it.
    public func lookup(_ address: KernelAddress) -> (symbol: Symbol, offset: UInt64)? {
        var lo = 0, hi = symbols.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if symbols[mid].address <= address { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let s = symbols[lo - 1]
        return (s, address.rawValue - s.address.rawValue)
    }
}
