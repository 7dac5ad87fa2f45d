import CLibDW
import CLibElf
import SprofBase
import SprofELF
#if canImport(Glibc)
import Glibc
#endif

/// Source lines and inline frames from a file's DWARF (`.debug_info`,
/// `.debug_line`, `.debug_ranges`/`.debug_rnglists`), read through
/// elfutils' libdw, which handles DWARF 2 to 5, compressed sections and the
/// forms producers use.
///
/// For an address, the frames are found the way `addr2line -i` finds them
/// (binutils dwarf2.c; elfutils src/addr2line.c): the compilation unit
/// whose ranges hold the address, then the chain of `DW_TAG_subprogram` and
/// `DW_TAG_inlined_subroutine` DIEs nested in it whose ranges hold it
/// (through lexical blocks, and through namespaces, modules and types,
/// which hold C++ and Rust definitions without ranges of their own). The
/// innermost DIE's frame gets the line-table row of the address; each
/// inlined subroutine's `DW_AT_call_file`/`DW_AT_call_line` is where its
/// caller, the next DIE out, was executing (DWARF 5 §3.3.8.1).
///
/// Names are the DIE's `DW_AT_linkage_name` (mangled; `DW_AT_MIPS_linkage_name`
/// from older producers) or else its `DW_AT_name`, following
/// `DW_AT_abstract_origin` and `DW_AT_specification` (an inlined instance
/// has its name on the abstract DIE).
///
/// Not thread-safe (libdw reads lazily into the handle): one thread at a time.
final class DWARFSource {
    /// One frame, innermost first in ``frames(at:)``'s answer.
    struct Frame: Equatable {
        var name: String?
        var file: String?
        var line: Int
        var isInlined: Bool
    }

    private let dwarf: OpaquePointer
    private let fd: Int32
    /// Address ranges of the compilation units, sorted by `low`: built on
    /// the first address `.debug_aranges` does not answer for (producers
    /// other than GCC often omit that section).
    private var ranges: [(low: UInt64, high: UInt64, unit: UInt64)] = []
    private var indexed = false

    /// The file the DWARF is read from: `path`, or its decompressed copy in
    /// the ``DWARFCache``.
    let readPath: String

    /// Opens `path`'s DWARF; nil when it has none (or libdw refuses it).
    /// When the file's debug sections are compressed and `cache` is given,
    /// the DWARF is read from the cache's copy for `buildID`, made from this
    /// open if there is none yet.
    init?(path: String, compressed: Bool = false, buildID: BuildID? = nil, cache: DWARFCache? = nil) {
        let cached = compressed ? buildID.flatMap { id in cache?.lookup(id) } : nil
        var opened: (fd: Int32, dwarf: OpaquePointer, path: String)?
        if let cached, let id = buildID {
            let fd = Glibc.open(cached, O_RDONLY | O_CLOEXEC)
            if fd >= 0, let d = dwarf_begin(fd, DWARF_C_READ) {
                opened = (fd, d, cached)
            } else {
                if fd >= 0 { close(fd) }
                cache?.remove(id)  // refused: made again below from the original
            }
        }
        if opened == nil {
            // Not open(2): `path` may be a file in another process's root
            // (/proc/PID/root/...), resolved inside it (ModuleFiles).
            let fd = ModuleFiles.openForReading(path)
            guard fd >= 0 else { return nil }
            guard let d = dwarf_begin(fd, DWARF_C_READ) else { close(fd); return nil }
            opened = (fd, d, path)
            if compressed, let id = buildID, let cache { cache.store(d, buildID: id) }
        }
        guard let (fd, dwarf, readPath) = opened else { return nil }
        self.fd = fd
        self.dwarf = dwarf
        self.readPath = readPath
        // A file without a single unit has nothing to give.
        var next: OpaquePointer? = nil
        var version: Dwarf_Half = 0
        var unitType: UInt8 = 0
        var cuDie = Dwarf_Die()
        if dwarf_get_units(dwarf, nil, &next, &version, &unitType, &cuDie, nil) != 0 {
            // Every stored property is set, so failing now runs deinit
            // (The Swift Programming Language, "Failable Initializers"),
            // which ends the handle and closes the file: doing it here too
            // freed libdw's handle twice (found by bench/fuzz.sh dwarf).
            return nil
        }
        // libelf maps the file itself (ELF_C_READ_MMAP): guard that mapping
        // too, since the file's owner can truncate it under us (mmap(2), SIGBUS).
        var rawSize = 0
        if let elf = dwarf_getelf(dwarf), let raw = elf_rawfile(elf, &rawSize), rawSize > 0 {
            mappedImage = UnsafeRawPointer(raw)
            ModuleFiles.guardMapping(UnsafeRawPointer(raw), size: rawSize)
        }
    }

    /// libelf's mapping of the file, guarded against SIGBUS while open.
    private var mappedImage: UnsafeRawPointer?

    deinit {
        if let mappedImage { ModuleFiles.unguard(mappedImage) }
        dwarf_end(dwarf)
        close(fd)
    }

    /// DW_UT_compile (1) and DW_UT_partial (3) hold code (DWARF 5 §7.5.1);
    /// DWARF 4 units report DW_UT_compile.
    private func indexUnits() {
        indexed = true
        var unit: OpaquePointer? = nil
        while true {
            var next: OpaquePointer? = nil
            var version: Dwarf_Half = 0
            var unitType: UInt8 = 0
            var cuDie = Dwarf_Die()
            guard dwarf_get_units(dwarf, unit, &next, &version, &unitType, &cuDie, nil) == 0 else { break }
            unit = next
            guard unitType == 1 || unitType == 3 else { continue }
            let offset = dwarf_dieoffset(&cuDie)
            var base: Dwarf_Addr = 0, start: Dwarf_Addr = 0, end: Dwarf_Addr = 0
            var o = dwarf_ranges(&cuDie, 0, &base, &start, &end)
            while o > 0 {
                if end > start { ranges.append((start, end, offset)) }
                o = dwarf_ranges(&cuDie, o, &base, &start, &end)
            }
        }
        ranges.sort { $0.low < $1.low }
    }

    /// The compilation unit DIE whose ranges hold `address`: from
    /// `.debug_aranges` (libdw's `dwarf_addrdie`, a table read once), else
    /// from the units' own ranges.
    private func unit(containing address: UInt64) -> Dwarf_Die? {
        var found = Dwarf_Die()
        if dwarf_addrdie(dwarf, Dwarf_Addr(address), &found) != nil { return found }
        if !indexed { indexUnits() }
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].low <= address { lo = mid + 1 } else { hi = mid }
        }
        // A few units back, in case ranges nest or overlap (rare: merged objects).
        var i = lo - 1
        while i >= 0 && i >= lo - 8 {
            if ranges[i].high > address {
                var die = Dwarf_Die()
                if dwarf_offdie(dwarf, Dwarf_Off(ranges[i].unit), &die) != nil { return die }
            }
            i -= 1
        }
        return nil
    }

    /// The frames at `address` (a stated address of the file), innermost
    /// first: the inlined subroutines (``Frame/isInlined``), then the
    /// function they were inlined into. Empty when no unit covers it.
    func frames(at address: StatedAddress) -> [Frame] {
        let a = address.rawValue
        guard var cu = unit(containing: a) else { return [] }
        var chain: [Dwarf_Die] = []
        if var function = function(containing: a, in: &cu) {
            chain.append(function)
            _ = descend(&function, a, &chain)
        }

        var files: OpaquePointer? = nil
        var fileCount = 0
        let haveFiles = dwarf_getsrcfiles(&cu, &files, &fileCount) == 0
        // A relative name is relative to the unit's compilation directory
        // (DWARF 5 §6.2.4, "include_directories"; §3.1.1 DW_AT_comp_dir), as
        // addr2line prints it.
        var compDir: String? = nil
        var dirAttr = Dwarf_Attribute()
        if dwarf_attr(&cu, 0x1b /* DW_AT_comp_dir */, &dirAttr) != nil, let d = dwarf_formstring(&dirAttr) {
            compDir = String(cString: d)
        }
        func absolute(_ name: UnsafePointer<CChar>) -> String {
            let path = String(cString: name)
            guard !path.hasPrefix("/"), let compDir, !compDir.isEmpty else { return path }
            return compDir.hasSuffix("/") ? compDir + path : compDir + "/" + path
        }

        // The line-table row at the address: the innermost frame's place.
        var file: String? = nil
        var line: Int32 = 0
        if let row = dwarf_getsrc_die(&cu, Dwarf_Addr(a)) {
            if let s = dwarf_linesrc(row, nil, nil) { file = absolute(s) }
            _ = dwarf_lineno(row, &line)
        }
        // No row for it (code without line information): the unit's own
        // source file, as addr2line gives it, with line 0 (unknown).
        if file == nil, let name = dwarf_diename(&cu) { file = absolute(name) }
        guard !chain.isEmpty else {
            // Code in the unit's ranges but in no subprogram (hand-written assembly):
            // the line is still worth having.
            return file == nil ? [] : [Frame(name: nil, file: file, line: Int(line), isInlined: false)]
        }
        var out: [Frame] = []
        out.reserveCapacity(chain.count)
        var place = (file: file, line: Int(line))
        for k in stride(from: chain.count - 1, through: 0, by: -1) {
            out.append(Frame(name: name(of: &chain[k]), file: place.file, line: place.line, isInlined: k > 0))
            guard k > 0 else { break }
            // The caller (chain[k-1]) is at the call site of chain[k].
            var attr = Dwarf_Attribute()
            var value: Dwarf_Word = 0
            var callFile: String? = nil
            if haveFiles, dwarf_attr(&chain[k], 0x58 /* DW_AT_call_file */, &attr) != nil,
               dwarf_formudata(&attr, &value) == 0, value < UInt64(fileCount),
               let s = dwarf_filesrc(files, Int(value), nil, nil) {
                callFile = absolute(s)
            }
            var callLine: Dwarf_Word = 0
            if dwarf_attr(&chain[k], 0x59 /* DW_AT_call_line */, &attr) != nil { _ = dwarf_formudata(&attr, &callLine) }
            // A line past Int32.max is no line (and Int(_:) of a UInt64 above Int.max traps).
            place = (callFile, callLine <= UInt64(Int32.max) ? Int(callLine) : 0)
        }
        return out
    }

    /// The functions (`DW_TAG_subprogram` DIEs with code) of each unit
    /// looked at so far, by the unit's offset: (low, high, DIE offset),
    /// sorted by low. Built by one walk of the unit's tree the first time an
    /// address falls in it, so that a lookup is a binary search and a walk
    /// of one function, not of the unit (Rust's and C++'s units hold
    /// thousands of functions in nested namespaces).
    private var functions: [UInt64: [(low: UInt64, high: UInt64, die: UInt64)]] = [:]

    private func function(containing address: UInt64, in cu: inout Dwarf_Die) -> Dwarf_Die? {
        let key = dwarf_dieoffset(&cu)
        if functions[key] == nil {
            var list: [(low: UInt64, high: UInt64, die: UInt64)] = []
            collectFunctions(under: &cu, into: &list)
            list.sort { $0.low < $1.low }
            functions[key] = list
        }
        let list = functions[key]!
        var lo = 0, hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if list[mid].low <= address { lo = mid + 1 } else { hi = mid }
        }
        // The smallest range holding the address (a function nested in
        // another, as Swift's local functions are, lies inside it), looking
        // back over functions that start earlier and still cover it.
        var best: (size: UInt64, die: UInt64)?
        var i = lo - 1
        var scanned = 0
        while i >= 0 && scanned < 64 {
            let f = list[i]
            if f.high > address, best == nil || f.high - f.low < best!.size { best = (f.high - f.low, f.die) }
            i -= 1
            scanned += 1
        }
        guard let best else { return nil }
        var die = Dwarf_Die()
        return dwarf_offdie(dwarf, Dwarf_Off(best.die), &die) != nil ? die : nil
    }

    /// How deep ``collectFunctions(under:into:depth:)`` and
    /// ``descend(_:_:_:depth:)`` follow nested DIEs. Each level is a frame of
    /// our own stack, and a file can nest DIEs as deep as it has bytes (one
    /// abbreviation code per level, DWARF 5 §7.5.2), which would overflow
    /// the stack. Real code nests far less: namespaces, classes, lexical
    /// blocks and inline chains together stay in the tens.
    static let maximumDepth = 256

    /// Every subprogram with code under `parent`, at any depth up to ``maximumDepth``.
    private func collectFunctions(under parent: inout Dwarf_Die, into list: inout [(low: UInt64, high: UInt64, die: UInt64)],
                                  depth: Int = 0) {
        guard depth < Self.maximumDepth else { return }
        var child = Dwarf_Die()
        guard dwarf_child(&parent, &child) == 0 else { return }
        while true {
            let tag = dwarf_tag(&child)
            if tag == 0x2e || tag == 0x03 {  // DW_TAG_subprogram, DW_TAG_entry_point
                var base: Dwarf_Addr = 0, start: Dwarf_Addr = 0, end: Dwarf_Addr = 0
                var o = dwarf_ranges(&child, 0, &base, &start, &end)
                let offset = dwarf_dieoffset(&child)
                while o > 0 {
                    if end > start { list.append((start, end, offset)) }
                    o = dwarf_ranges(&child, o, &base, &start, &end)
                }
            }
            // Types, namespaces and functions can all hold function definitions;
            // inlined instances and variables cannot.
            if tag != 0x1d && tag != 0x34 && tag != 0x05 && dwarf_haschildren(&child) != 0 {
                collectFunctions(under: &child, into: &list, depth: depth + 1)
            }
            var next = Dwarf_Die()
            guard dwarf_siblingof(&child, &next) == 0 else { return }
            child = next
        }
    }

    /// Appends to `chain` the subprogram and inlined-subroutine DIEs under
    /// `parent` whose ranges hold `address`, outermost first. True when a
    /// code scope holding it was found under `parent`.
    private func descend(_ parent: inout Dwarf_Die, _ address: UInt64, _ chain: inout [Dwarf_Die], depth: Int = 0) -> Bool {
        guard depth < Self.maximumDepth else { return false }
        var child = Dwarf_Die()
        guard dwarf_child(&parent, &child) == 0 else { return false }
        while true {
            let tag = dwarf_tag(&child)
            switch tag {
            case 0x2e, 0x1d, 0x0b, 0x32, 0x25, 0x03:
                // DW_TAG_subprogram, inlined_subroutine, lexical_block, try_block, catch_block, entry_point
                if dwarf_haspc(&child, Dwarf_Addr(address)) == 1 {
                    if tag == 0x2e || tag == 0x1d || tag == 0x03 { chain.append(child) }
                    _ = descend(&child, address, &chain, depth: depth + 1)
                    return true
                }
            case 0x39, 0x1e, 0x02, 0x13, 0x17, 0x38:
                // DW_TAG_namespace, module, class_type, structure_type, union_type, interface_type
                if descend(&child, address, &chain, depth: depth + 1) { return true }
            default:
                break
            }
            var next = Dwarf_Die()
            guard dwarf_siblingof(&child, &next) == 0 else { return false }
            child = next
        }
    }

    /// The DIE's linkage name, else its name (through its abstract origin or specification).
    private func name(of die: inout Dwarf_Die) -> String? {
        var attr = Dwarf_Attribute()
        for at in [0x6e /* DW_AT_linkage_name */, 0x2007 /* DW_AT_MIPS_linkage_name */] as [UInt32] {
            if dwarf_attr_integrate(&die, at, &attr) != nil, let s = dwarf_formstring(&attr) {
                return String(cString: s)
            }
        }
        return dwarf_diename(&die).map { String(cString: $0) }
    }
}
