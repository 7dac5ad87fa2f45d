import SprofBase
import SprofELF

/// The function symbols of one ELF file, sorted by address, with a lookup of
/// the function that contains a ``StatedAddress``.
///
/// Read from `.symtab` when the file has one (a full symbol table: local
/// functions included), else from `.dynsym` (exported functions only: what
/// a stripped library keeps). The tables are found by type (`SHT_SYMTAB`,
/// `SHT_DYNSYM`); the gABI allows at most one of each. Kept: `STT_FUNC` and
/// `STT_GNU_IFUNC` symbols that are defined (`st_shndx != SHN_UNDEF`). Names
/// are the raw bytes of the string table (C++, Rust and Swift names stay
/// mangled; a `.symtab` name keeps any `@VERSION`/`@@VERSION` an assembler
/// `.symver` gave it, as in libc's debug file's `memcpy@GLIBC_2.2.5`, while
/// a `.dynsym` name never has one: its version is in `.gnu.version`) and are
/// decoded only when a ``Symbol`` is asked for; the table holds 40 bytes per
/// symbol, 16 to 32 more for the lookup tree, and the file's mapping (through
/// ``file``).
///
/// Addresses are the file's own (`st_value`), so a process address must be
/// translated first: ``lookup(_:in:)`` does that with
/// `ELFFile.statedAddress(of:in:)` (AddressTranslation.swift). `st_value` of a relocatable
/// object (`ET_REL`) is an offset into its section, not an address; such
/// files are read but their lookups are meaningless.
///
/// Every offset, size and index read from the file is checked: a corrupt
/// table gives a ``SymbolError``, never a trap.
///
/// Format: System V gABI chapter 4, "Symbol Table" and "String Table";
/// `STT_GNU_IFUNC`/`STB_GNU_UNIQUE` from the Linux gABI extensions.
public struct ELFSymbols: RandomAccessCollection, Sendable {
    /// Which table the symbols came from.
    public enum Table: String, Sendable {
        case symtab = ".symtab"
        case dynsym = ".dynsym"
    }

    /// `STT_*` (gABI "Symbol Table", `ELF64_ST_TYPE(st_info)`), the two kept.
    public enum Kind: UInt8, Sendable {
        /// `STT_FUNC` (2).
        case function = 2
        /// `STT_GNU_IFUNC` (10): the symbol's code is a resolver that returns
        /// the address of the implementation to use; it is still code.
        case indirectFunction = 10
    }

    /// `STB_*` (gABI "Symbol Table", `ELF64_ST_BIND(st_info)`). Unknown values are kept.
    public struct Binding: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// `STB_LOCAL` (0): not visible outside its object file.
        public static let local = Binding(rawValue: 0)
        /// `STB_GLOBAL` (1).
        public static let global = Binding(rawValue: 1)
        /// `STB_WEAK` (2): global, but a global of the same name wins at link time.
        public static let weak = Binding(rawValue: 2)
        /// `STB_GNU_UNIQUE` (10): global and unique in the whole process.
        public static let gnuUnique = Binding(rawValue: 10)
        /// The names `readelf -s` prints.
        public var description: String {
            switch self {
            case .local: return "LOCAL"
            case .global: return "GLOBAL"
            case .weak: return "WEAK"
            case .gnuUnique: return "UNIQUE"
            default: return "binding \(rawValue)"
            }
        }
    }

    /// One function symbol.
    public struct Symbol: Hashable, Sendable {
        /// The name as the string table holds it (mangled, no `@VERSION`).
        public var name: String
        /// `st_value`: the function's first byte.
        public var address: StatedAddress
        /// `st_size`: the function's length; 0 when the producer did not say
        /// (hand-written assembly, linker-made stubs).
        public var size: UInt64
        /// The end (exclusive) of the range ``ELFSymbols/lookup(_:)`` gives to
        /// this symbol: `address + size`; for a symbol of size 0, the next
        /// symbol's address or the end of its section, whichever comes first.
        public var end: StatedAddress
        public var kind: Kind
        public var binding: Binding

        public init(name: String, address: StatedAddress, size: UInt64, end: StatedAddress,
                    kind: Kind, binding: Binding) {
            self.name = name; self.address = address; self.size = size; self.end = end
            self.kind = kind; self.binding = binding
        }
    }

    /// One kept symbol as stored (32 bytes with padding), no name decoded.
    struct Entry {
        var address: UInt64
        /// See ``Symbol/end``.
        var end: UInt64
        var size: UInt64
        /// `st_name`, checked to lie inside the string table.
        var nameOffset: UInt32
        /// `st_info`.
        var info: UInt8
    }

    /// The file the symbols were read from; held so its mapping (where the
    /// names are) outlives this value.
    public let file: ELFFile
    /// The table the symbols came from; nil when the file has neither.
    public let table: Table?
    /// Sorted by address; at one address, the preferred name first (see ``init(_:)``).
    let entries: [Entry]
    /// A max segment tree over the entries' `end`s: node 1 is the root,
    /// node `k` has children `2k` and `2k + 1`, and leaf `leaves + i` holds
    /// `entries[i].end` (leaves past the last entry hold 0). A lookup finds
    /// the last symbol before an address that still contains it in
    /// O(log n) steps, however the symbols overlap: walking back symbol by
    /// symbol took O(n) per lookup for a table a hostile binary can make
    /// (one huge symbol, then many small ones, or many aliases at one
    /// address), and the symbolizer looks up every distinct address.
    let endTree: [UInt64]
    /// The number of leaves of ``endTree``: a power of two, at least `entries.count`.
    let leaves: Int
    /// The string table (nil when there is no symbol table); its bytes
    /// point into ``file``'s mapping.
    let stringTable: ELFSection?

    /// `sizeof(Elf64_Sym)` (gABI "Symbol Table").
    static let entrySize = 24

    /// Reads the function symbols of `file` (see the type's description for
    /// which; a `.symtab` without a single function counts as none). At one
    /// address, aliases are ordered so that the first, which
    /// ``lookup(_:)`` returns, is the one with the greatest size, then a
    /// global over a weak over a local one, then the first in the table:
    /// libc's `qsort_r` (weak) wins over its alias `__qsort_r` (local).
    public init(_ file: ELFFile) throws(SymbolError) {
        self.file = file
        for (type, table) in [(SectionType.symbolTable, Table.symtab), (.dynamicSymbols, .dynsym)] {
            guard let i = file.sectionHeaders.indices.dropFirst().first(where: { file.sectionHeaders[$0].type == type })
            else { continue }
            // A .symtab emptied by `objcopy --only-keep-debug` (SHT_NOBITS) is no table.
            guard file.sectionHeaders[i].fileSize > 0 else { continue }
            let read = try Self.read(file, sectionIndex: i, table: table)
            if read.entries.isEmpty && table == .symtab { continue }  // no functions there: try .dynsym
            self.table = table
            self.entries = read.entries
            self.stringTable = read.strings
            (self.endTree, self.leaves) = Self.tree(read.entries)
            return
        }
        self.table = nil
        self.entries = []
        self.stringTable = nil
        (self.endTree, self.leaves) = Self.tree([])
    }

    /// The max segment tree of ``endTree`` over `entries`.
    private static func tree(_ entries: [Entry]) -> ([UInt64], Int) {
        var leaves = 1
        while leaves < entries.count { leaves *= 2 }
        var tree = [UInt64](repeating: 0, count: 2 * leaves)
        for (i, e) in entries.enumerated() { tree[leaves + i] = e.end }
        for k in stride(from: leaves - 1, through: 1, by: -1) { tree[k] = Swift.max(tree[2 * k], tree[2 * k + 1]) }
        return (tree, leaves)
    }

    /// The last (`fromRight`) or first index `i` in `l...r` whose
    /// `entries[i].end` is above `a`, searching the subtree of `node`, which
    /// covers the indices `lo...hi`. Visits O(log n) nodes: at most two
    /// partly covered nodes per level, and a fully covered node whose
    /// maximum is above `a` always holds an answer. Recursion depth log2(n).
    private func search(_ node: Int, _ lo: Int, _ hi: Int, _ l: Int, _ r: Int, above a: UInt64,
                        fromRight: Bool) -> Int? {
        if r < lo || hi < l || endTree[node] <= a { return nil }
        if lo == hi { return lo }
        let mid = (lo + hi) / 2
        if fromRight {
            return search(2 * node + 1, mid + 1, hi, l, r, above: a, fromRight: true)
                ?? search(2 * node, lo, mid, l, r, above: a, fromRight: true)
        }
        return search(2 * node, lo, mid, l, r, above: a, fromRight: false)
            ?? search(2 * node + 1, mid + 1, hi, l, r, above: a, fromRight: false)
    }

    // MARK: - Collection

    public var startIndex: Int { 0 }
    public var endIndex: Int { entries.count }

    /// The symbol at `index` in address order (its name decoded now).
    public subscript(index: Int) -> Symbol {
        let e = entries[index]
        return Symbol(name: name(at: e.nameOffset), address: StatedAddress(e.address), size: e.size,
                      end: StatedAddress(e.end), kind: Kind(rawValue: e.info & 0xf) ?? .function,
                      binding: Binding(rawValue: e.info >> 4))
    }

    // MARK: - Lookup

    /// The index of the symbol whose range contains `address`: among the
    /// symbols at the greatest address not above it, the first whose
    /// `[address, end)` holds it (a sized symbol by `st_size`, a size-0 one up
    /// to the next symbol). When that address's symbols all end before
    /// `address` (it is in padding after a function, or a PLT stub), the
    /// lookup walks back to an enclosing symbol, if any: a small sized symbol
    /// inside a larger function does not hide the function past its own end.
    /// Binary searches and two searches of ``endTree``: O(log n) whatever
    /// the table holds; allocates nothing.
    public func index(containing address: StatedAddress) -> Int? {
        let a = address.rawValue
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].address <= a { lo = mid + 1 } else { hi = mid }
        }
        // The last symbol starting at or before `a` that contains it: its
        // address is the greatest that has a symbol holding `a`.
        guard lo > 0, let last = search(1, 0, leaves - 1, 0, lo - 1, above: a, fromRight: true) else { return nil }
        // The first of that address's symbols: the preferred one holding `a`.
        let start = entries[last].address
        var first = 0, upper = last
        while first < upper {
            let mid = (first + upper) / 2
            if entries[mid].address < start { first = mid + 1 } else { upper = mid }
        }
        return search(1, 0, leaves - 1, first, last, above: a, fromRight: false)
    }

    /// The function containing `address` and the offset into it, or nil
    /// when no function symbol covers it.
    public func lookup(_ address: StatedAddress) -> (symbol: Symbol, offset: UInt64)? {
        guard let i = index(containing: address) else { return nil }
        return (self[i], address.rawValue - entries[i].address)
    }

    /// The function containing `address` of a process in which `mapping`
    /// maps this file: the address is translated with the file's `PT_LOAD`
    /// segments (`ELFFile.statedAddress(of:in:)`) and looked up.
    /// Nil when the address is outside the mapping or its segments, or no
    /// symbol covers it.
    public func lookup(_ address: ProcessAddress, in mapping: Mapping) -> (symbol: Symbol, offset: UInt64)? {
        guard let stated = file.statedAddress(of: address, in: mapping) else { return nil }
        return lookup(stated)
    }

    /// The most bytes of a name read: names of different symbols may share
    /// bytes (gABI "String Table": `st_name` is any offset), so a hostile
    /// table without NULs would make every name the rest of the table, and
    /// decoding n of them O(n × table size). Real names stay far below it:
    /// the longest mangled C++ and Rust names seen are a few KiB.
    static let maximumNameLength = 16 << 10

    /// The name at `st_name` (checked at init to lie inside the table): up to
    /// the next NUL, or to the end of a table whose last byte is not NUL, or
    /// ``maximumNameLength`` bytes.
    func name(at offset: UInt32) -> String {
        guard let strings = stringTable?.bytes else { return "" }
        let start = Int(offset)
        let tail = UnsafeRawBufferPointer(rebasing: strings[start..<Swift.min(strings.count, start + Self.maximumNameLength)])
        let end = tail.firstIndex(of: 0) ?? tail.count
        return String(decoding: UnsafeRawBufferPointer(rebasing: tail[..<end]), as: UTF8.self)
    }

    // MARK: - Reading a table

    private struct Read {
        var entries: [Entry]
        var strings: ELFSection
    }

    private static func read(_ file: ELFFile, sectionIndex: Int, table: Table) throws(SymbolError) -> Read {
        let header = file.sectionHeaders[sectionIndex]
        let sectionName = "\(sectionIndex) (\(file.name(of: header) ?? table.rawValue))"
        func corrupt(_ problem: String) -> SymbolError {
            .badSymbolTable(path: file.path, section: sectionName, problem: problem)
        }
        // sh_entsize must be sizeof(Elf64_Sym); some producers leave it 0.
        guard header.entrySize == UInt64(entrySize) || header.entrySize == 0 else {
            throw corrupt("entries are \(header.entrySize) bytes (sh_entsize), not the \(entrySize) of Elf64_Sym")
        }
        guard header.size % UInt64(entrySize) == 0 else {
            throw corrupt("its size, \(header.size) bytes, is not a multiple of the \(entrySize)-byte Elf64_Sym")
        }
        let symbols: ELFSection
        do { symbols = try file.section(at: sectionIndex) } catch { throw .elf(error) }

        // sh_link: the section index of the string table holding the names.
        let link = Int(header.link)
        guard link > 0, link < file.sectionHeaders.count else {
            throw corrupt("its string table index (sh_link) \(link) names no section (the file has \(file.sectionHeaders.count))")
        }
        guard file.sectionHeaders[link].type == .stringTable else {
            throw corrupt("its string table index (sh_link) \(link) names a section of type \(file.sectionHeaders[link].type.rawValue), not SHT_STRTAB (3)")
        }
        let stringTable: ELFSection
        do { stringTable = try file.section(at: link) } catch { throw .elf(error) }
        let strings = stringTable.bytes

        // Elf64_Sym: st_name@0 u32, st_info@4 u8, st_other@5 u8,
        // st_shndx@6 u16, st_value@8 u64, st_size@16 u64.
        let b = symbols.bytes
        var entries: [Entry] = []
        var sections: [UInt16] = []
        var ranks: [UInt32] = []
        // Index 0 is the reserved undefined symbol (gABI "Symbol Table Entry: Index 0").
        for o in stride(from: entrySize, to: b.count, by: entrySize) {
            let info = b[o + 4]
            guard Kind(rawValue: info & 0xf) != nil else { continue }  // functions only
            let shndx = b.le16(o + 6)
            guard shndx != 0 else { continue }  // SHN_UNDEF: defined elsewhere
            let nameOffset = b.le32(o)
            guard Int(nameOffset) < strings.count || (nameOffset == 0 && strings.isEmpty) else {
                throw corrupt("symbol \(o / entrySize) has its name at offset \(hexString(UInt64(nameOffset))) (st_name), past the end of the \(strings.count)-byte string table")
            }
            let address = b.le64(o + 8), size = b.le64(o + 16)
            // A size that runs past the top of the address space cannot be real; clamp it.
            let end = size <= UInt64.max - address ? address + size : UInt64.max
            entries.append(Entry(address: address, end: end, size: size, nameOffset: nameOffset, info: info))
            sections.append(shndx)
            ranks.append(UInt32(ranks.count))
        }

        // Sort by address; at one address the preferred alias first.
        func bindingRank(_ info: UInt8) -> Int {
            switch Binding(rawValue: info >> 4) {
            case .global, .gnuUnique: return 0
            case .weak: return 1
            case .local: return 3
            default: return 2
            }
        }
        var order = Array(entries.indices)
        order.sort { x, y in
            let a = entries[x], b = entries[y]
            if a.address != b.address { return a.address < b.address }
            if a.size != b.size { return a.size > b.size }
            let ra = bindingRank(a.info), rb = bindingRank(b.info)
            if ra != rb { return ra < rb }
            return x < y
        }
        var sorted = order.map { entries[$0] }
        let sortedSections = order.map { sections[$0] }

        // A size-0 symbol reaches the next symbol's address, and never past
        // the end of its section (when st_shndx names a loaded section that
        // holds it; SHN_ABS and the other reserved indices >= 0xff00 do not).
        var next = UInt64.max
        var i = sorted.count - 1
        while i >= 0 {
            let a = sorted[i].address
            var groupStart = i
            while groupStart > 0 && sorted[groupStart - 1].address == a { groupStart -= 1 }
            for j in groupStart...i where sorted[j].size == 0 {
                var end = next
                let s = Int(sortedSections[j])
                if s < 0xff00, s < file.sectionHeaders.count {
                    let h = file.sectionHeaders[s]
                    let start = h.address.rawValue
                    let sectionEnd = h.size <= UInt64.max - start ? start + h.size : UInt64.max
                    if h.flags.contains(.alloc), a >= start, a < sectionEnd { end = Swift.min(end, sectionEnd) }
                }
                sorted[j].end = Swift.max(end, a)
            }
            next = a
            i = groupStart - 1
        }

        return Read(entries: sorted, strings: stringTable)
    }
}

// MARK: - Bounds-checked little-endian loads

extension UnsafeRawBufferPointer {
    // Callers have checked `o + width <= count` (ELFDATA2LSB: little-endian).
    @inline(__always) func le16(_ o: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always) func le32(_ o: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always) func le64(_ o: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
}

@inline(__always) func hexString(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
