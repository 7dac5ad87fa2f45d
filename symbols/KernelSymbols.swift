import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// Kernel symbols from `/proc/kallsyms` (one "address type name [module]"
/// line per symbol; addresses read as 0 without CAP_SYSLOG, see
/// kernel/kallsyms.c `kallsyms_show_value`). Looks up the function that
/// contains a kernel address by binary search.
///
/// kallsyms has no sizes: an address belongs to the greatest text symbol
/// at or below it, as perf assumes too. The table is parsed from bytes (a
/// 6.x kernel lists ~120,000 symbols; building a Swift string per line cost
/// most of a second) and keeps names in one buffer, decoded when looked up.
public struct KernelSymbols: RandomAccessCollection, Sendable {
    public struct Symbol: Hashable, Sendable {
        public var address: KernelAddress
        public var name: String
        /// The module in brackets, nil for the core kernel.
        public var module: String?
    }

    struct Entry {
        var address: UInt64
        var nameStart: UInt32
        var nameLength: UInt16
        /// Index into `modules` + 1; 0 for the core kernel.
        var module: UInt16
    }

    /// Sorted by address; text symbols only (types t/T, w/W).
    let entries: [Entry]
    let names: [UInt8]
    let modules: [String]

    public var startIndex: Int { 0 }
    public var endIndex: Int { entries.count }

    public init(kallsyms text: String) {
        self.init(bytes: Array(text.utf8))
    }

    /// Parses kallsyms lines: `ffffffffc0a01000 t name\t[module]`.
    public init(bytes: [UInt8]) {
        var entries: [Entry] = []
        var names: [UInt8] = []
        var modules: [String] = []
        var moduleIndex: [ArraySlice<UInt8>: UInt16] = [:]
        let n = bytes.count
        var i = 0
        while i < n {
            var lineEnd = i
            while lineEnd < n && bytes[lineEnd] != 0x0a { lineEnd += 1 }
            defer { i = lineEnd + 1 }
            // address
            var address: UInt64 = 0
            var j = i
            while j < lineEnd, let d = hexDigit(bytes[j]) { address = address << 4 | UInt64(d); j += 1 }
            guard j > i, address != 0, j + 3 < lineEnd, bytes[j] == 0x20 else { continue }
            let type = bytes[j + 1]
            // t T w W: text (local, global) and weak symbols.
            guard type == 0x74 || type == 0x54 || type == 0x77 || type == 0x57, bytes[j + 2] == 0x20 else { continue }
            let nameStart = j + 3
            var nameEnd = nameStart
            while nameEnd < lineEnd && bytes[nameEnd] != 0x09 && bytes[nameEnd] != 0x20 { nameEnd += 1 }
            guard nameEnd > nameStart else { continue }
            var module: UInt16 = 0
            var m = nameEnd
            while m < lineEnd && (bytes[m] == 0x09 || bytes[m] == 0x20) { m += 1 }
            if m < lineEnd, bytes[m] == 0x5b, bytes[lineEnd - 1] == 0x5d {  // "[module]"
                let slice = bytes[(m + 1)..<(lineEnd - 1)]
                if let known = moduleIndex[slice] {
                    module = known
                } else {
                    modules.append(String(decoding: slice, as: UTF8.self))
                    module = UInt16(truncatingIfNeeded: modules.count)
                    moduleIndex[slice] = module
                }
            }
            let length = Swift.min(nameEnd - nameStart, Int(UInt16.max))
            entries.append(Entry(address: address, nameStart: UInt32(names.count), nameLength: UInt16(length), module: module))
            names.append(contentsOf: bytes[nameStart..<(nameStart + length)])
        }
        entries.sort { $0.address < $1.address }
        self.entries = entries
        self.names = names
        self.modules = modules
    }

    /// Reads /proc/kallsyms; nil when it cannot be read or every address is hidden.
    public static func load(path: String = "/proc/kallsyms") -> KernelSymbols? {
        guard let bytes = readWholeFile(path) else { return nil }
        let table = KernelSymbols(bytes: bytes)
        return table.entries.isEmpty ? nil : table
    }

    /// The symbol at `index` in address order.
    public subscript(index: Int) -> Symbol {
        let e = entries[index]
        let start = Int(e.nameStart)
        return Symbol(address: KernelAddress(e.address),
                      name: String(decoding: names[start..<(start + Int(e.nameLength))], as: UTF8.self),
                      module: e.module == 0 ? nil : modules[Int(e.module) - 1])
    }

    /// The symbol whose address is the greatest one not above `address`, and the offset into it.
    public func lookup(_ address: KernelAddress) -> (symbol: Symbol, offset: UInt64)? {
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].address <= address.rawValue { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        return (self[lo - 1], address.rawValue - entries[lo - 1].address)
    }
}

@inline(__always) private func hexDigit(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x61...0x66: return c - 0x61 + 10
    case 0x41...0x46: return c - 0x41 + 10
    default: return nil
    }
}

/// The whole of a file, read to its end (not to its stat size: /proc files
/// report 0); nil when it cannot be opened.
func readWholeFile(_ path: String) -> [UInt8]? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        bytes.append(contentsOf: buf[0..<n])
    }
    return bytes
}
