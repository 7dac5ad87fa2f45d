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
    /// The core kernel's text, `_stext` to `_etext`, when both are listed:
    /// no module, BPF program or trampoline is ever placed inside it.
    public let coreText: Range<UInt64>?

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
        self.coreText = Self.coreText(entries, names)
    }

    init(entries: [Entry], names: [UInt8], modules: [String], coreText: Range<UInt64>?) {
        self.entries = entries
        self.names = names
        self.modules = modules
        self.coreText = coreText
    }

    private static func coreText(_ entries: [Entry], _ names: [UInt8]) -> Range<UInt64>? {
        func find(_ name: String) -> UInt64? {
            let want = Array(name.utf8)
            return entries.first { e in
                e.module == 0 && Int(e.nameLength) == want.count
                    && names[Int(e.nameStart)..<(Int(e.nameStart) + want.count)].elementsEqual(want)
            }?.address
        }
        guard let start = find("_stext"), let end = find("_etext"), start < end else { return nil }
        return start..<end
    }

    /// Whether `address` is in the core kernel's text (see ``coreText``).
    public func isCoreText(_ address: KernelAddress) -> Bool { coreText?.contains(address.rawValue) ?? false }

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

// MARK: - The core kernel's symbols, kept for the boot

extension KernelSymbols {
    /// The core kernel's text symbols, `_stext` to `_etext`, read from a file
    /// kept for this boot, else from /proc/kallsyms (and then kept).
    ///
    /// Reading /proc/kallsyms costs ~60 ms of kernel time on a 6.x kernel:
    /// each read formats every one of its ~120,000 lines again
    /// (kernel/kallsyms.c `s_show`); for a short recording that was a quarter
    /// of sprof's own CPU. The core kernel's symbols cannot change while it
    /// runs, so they are written once per boot (`/proc/sys/kernel/random/boot_id`)
    /// as a binary table; modules, BPF programs and trampolines come and go,
    /// so an address outside the core text still needs /proc/kallsyms
    /// (``Symbolizer`` reads it then). The file is written atomically, mode
    /// 0600 (kernel addresses defeat KASLR and are only shown to CAP_SYSLOG),
    /// and only when the addresses are visible.
    ///
    /// - Parameter directory: where the file is kept; nil: not kept.
    /// - Returns: the table and whether it came from the kept file; nil when
    ///   kallsyms is unreadable or its addresses are hidden.
    public static func loadCore(keptIn directory: String?, kallsyms: String = "/proc/kallsyms",
                                bootID: String? = readBootID()) -> (symbols: KernelSymbols, kept: Bool)? {
        let file = directory.flatMap { d in bootID.map { "\(d)/kallsyms-\($0).bin" } }
        // Only a regular file this user wrote (not a symlink, not one another
        // user planted): its addresses name every kernel frame.
        if let file, let st = try? SafeFile.lstat(file), st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid(),
           let bytes = readWholeFile(file), let table = KernelSymbols(kept: bytes) {
            return (table, true)
        }
        guard let full = load(path: kallsyms) else { return nil }
        guard let core = full.coreText else { return (full, false) }
        if let file, let directory {
            let kept = full.entries.filter { $0.module == 0 && core.contains($0.address) }
            full.write(kept, core: core, to: file, directory: directory)
        }
        return (full, false)
    }

    /// This boot's id, from `/proc/sys/kernel/random/boot_id`.
    public static func readBootID() -> String? {
        guard let b = readWholeFile("/proc/sys/kernel/random/boot_id") else { return nil }
        let id = String(decoding: b, as: UTF8.self).filter { $0.isHexDigit || $0 == "-" }
        return id.isEmpty ? nil : id
    }

    /// `SPROF_CACHE_DIR` if set (`off` or empty: none); else `/run/sprof`
    /// for root (a tmpfs emptied at every boot); else none (without root
    /// the addresses are hidden anyway).
    public static var standardDirectory: String? {
        if let dir = getenv("SPROF_CACHE_DIR").map({ String(cString: $0) }) {
            return dir.isEmpty || dir == "off" ? nil : dir + "/kallsyms"
        }
        return geteuid() == 0 ? "/run/sprof" : nil
    }

    // Layout: "SPROFKS1", entry count (u64), core start, core end (u64),
    // then the entries (address u64, name start u32, name length u16,
    // 0 u16), then the names. Little-endian, as the kernel it describes.
    private static let magic = Array("SPROFKS1".utf8)

    init?(kept bytes: [UInt8]) {
        guard bytes.count >= 32, Array(bytes[0..<8]) == Self.magic else { return nil }
        func u64(_ at: Int) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self) } }
        let count = Int(truncatingIfNeeded: u64(8))
        let namesAt = 32 + count * 16
        guard count > 0, count < 1 << 24, namesAt <= bytes.count else { return nil }
        var entries = [Entry](repeating: Entry(address: 0, nameStart: 0, nameLength: 0, module: 0), count: count)
        bytes.withUnsafeBytes { raw in
            for i in 0..<count {
                let at = 32 + i * 16
                entries[i] = Entry(address: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self),
                                   nameStart: raw.loadUnaligned(fromByteOffset: at + 8, as: UInt32.self),
                                   nameLength: raw.loadUnaligned(fromByteOffset: at + 12, as: UInt16.self), module: 0)
            }
        }
        let names = Array(bytes[namesAt...])
        guard let last = entries.last, Int(last.nameStart) + Int(last.nameLength) <= names.count else { return nil }
        let (start, end) = (u64(16), u64(24))
        guard start < end, entries.allSatisfy({ (start..<end).contains($0.address) }) else { return nil }
        self.init(entries: entries, names: names, modules: [], coreText: start..<end)
    }

    private func write(_ kept: [Entry], core: Range<UInt64>, to file: String, directory: String) {
        var out = Self.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        put(UInt64(kept.count)); put(core.lowerBound); put(core.upperBound)
        var blob: [UInt8] = []
        for e in kept {
            put(e.address); put(UInt32(blob.count)); put(e.nameLength); put(UInt16(0))
            blob += names[Int(e.nameStart)..<(Int(e.nameStart) + Int(e.nameLength))]
        }
        out += blob
        // SprofBase's SafeFile (Sources/Base/SafeWrite.swift), as for every
        // file sprof writes: the directory 0700, refused if it is a symlink or
        // another user's (/run/sprof is shared with the agent's windows); the
        // file 0600, created O_EXCL|O_NOFOLLOW and renamed into place.
        guard (try? SafeFile.makePrivateDirectory(directory)) != nil else { return }
        try? SafeFile.write(out, to: file)
    }
}
