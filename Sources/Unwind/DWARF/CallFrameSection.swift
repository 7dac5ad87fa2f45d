import SprofBase
import SprofELF

/// A `.eh_frame` or `.debug_frame` section, read in place: a sequence of
/// Common Information Entries (CIEs) and Frame Description Entries (FDEs),
/// DWARF 5 §6.4.1 ("Structure of Call Frame Information"), with the
/// differences of `.eh_frame` from the Linux Standard Base Core
/// Specification §10.6.1 ("The .eh_frame section"):
///
/// | | `.debug_frame` | `.eh_frame` |
/// |---|---|---|
/// | CIE id | 0xffffffff (0xffffffffffffffff in 64-bit DWARF) | 0 |
/// | FDE's CIE pointer | offset of the CIE from the section start, 4 or 8 bytes | offset back from the pointer field to the CIE, always 4 bytes |
/// | CIE versions | 1, 3, 4 | 1 (3 accepted) |
/// | addresses | `address_size` bytes (v4: from the CIE) | the CIE's `R` pointer encoding |
/// | end | the section end | a zero length (terminator) or the section end |
///
/// Entries start with an initial length: 32-bit, or 0xffffffff followed by
/// a 64-bit length (the 64-bit DWARF format, DWARF 5 §7.4).
///
/// The section's bytes stay in the ``ELFFile``'s mapping (held by `owner`);
/// CIEs, FDEs and rows refer to them by offset. Every length and offset is
/// checked, so corrupt input gives a ``CFIError``, never a trap or a hang.
public struct CallFrameSection: @unchecked Sendable {
    // @unchecked: the bytes are read-only and kept alive by `owner`.

    public enum Kind: Hashable, Sendable {
        case ehFrame
        case debugFrame
    }

    public let kind: Kind
    /// The section's bytes.
    public let bytes: UnsafeRawBufferPointer
    /// The section's stated address (`sh_addr`): the base of
    /// `DW_EH_PE_pcrel` pointers. 0 for a `.debug_frame`, which is not loaded.
    public let address: StatedAddress
    /// Bases for `DW_EH_PE_textrel`/`datarel` pointers (x86_64 uses neither).
    public var bases: PointerBases
    /// The target's address size: `DW_EH_PE_absptr` and `.debug_frame` CIEs
    /// before version 4 (which do not state it). 8 for ELF64.
    public let addressSize: UInt8
    /// Whatever keeps `bytes` alive (the ``ELFFile``), or nil when the caller does.
    public let owner: AnyObject?

    /// The section kind for error messages.
    public var sectionKind: CFISectionKind { kind == .ehFrame ? .ehFrame : .debugFrame }

    /// A section over `bytes` whose lifetime the caller (or `owner`) guarantees.
    public init(kind: Kind, bytes: UnsafeRawBufferPointer, address: StatedAddress, bases: PointerBases = PointerBases(),
                addressSize: UInt8 = 8, owner: AnyObject? = nil) throws(CFIError) {
        let sk: CFISectionKind = kind == .ehFrame ? .ehFrame : .debugFrame
        // Rows refer to expressions by 32-bit offsets (CFIExpression).
        guard bytes.count <= Int(UInt32.max) else { throw .sectionTooLarge(section: sk, size: bytes.count) }
        guard isAddressSize(addressSize) else { throw .badAddressSize(section: sk, offset: 0, size: addressSize) }
        self.kind = kind
        self.bytes = bytes
        self.address = address
        self.bases = bases
        self.addressSize = addressSize
        self.owner = owner
    }

    /// An ELF section (`.eh_frame` or `.debug_frame`), keeping its file alive.
    public init(_ section: ELFSection, kind: Kind, bases: PointerBases = PointerBases()) throws(CFIError) {
        try self.init(kind: kind, bytes: section.bytes, address: section.address, bases: bases, addressSize: 8,
                      owner: section.file)
    }

    /// `file`'s `.eh_frame`, or nil when it has none. The text base is set
    /// from `.text` (for the rare `DW_EH_PE_textrel`).
    public static func ehFrame(of file: ELFFile) throws -> CallFrameSection? {
        guard let s = try file.section(named: ".eh_frame") else { return nil }
        let text = try file.section(named: ".text")?.address
        return try CallFrameSection(s, kind: .ehFrame, bases: PointerBases(text: text))
    }

    /// `file`'s `.debug_frame`, or nil when it has none (or it is compressed,
    /// `SHF_COMPRESSED`, which this reader does not inflate).
    public static func debugFrame(of file: ELFFile) throws -> CallFrameSection? {
        guard let s = try file.section(named: ".debug_frame"), !s.header.flags.contains(.compressed) else { return nil }
        return try CallFrameSection(s, kind: .debugFrame)
    }

    /// The bytes of an expression in a rule of this section's rows.
    public func expression(_ e: CFIExpression) -> DWARFExpression {
        let r = e.range.clamped(to: 0..<bytes.count)
        return DWARFExpression(bytes: UnsafeRawBufferPointer(rebasing: bytes[r]), section: sectionKind,
                               sectionOffset: r.lowerBound, addressSize: Int(addressSize))
    }

    // MARK: - Entries

    /// The fields common to CIEs and FDEs (DWARF 5 §6.4.1: `length`,
    /// `CIE_id`/`CIE_pointer`).
    struct EntryHeader {
        var offset: Int
        var is64Bit: Bool
        /// One past the entry's last byte.
        var end: Int
        /// Where the bytes after the id/pointer start.
        var bodyStart: Int
        /// nil for a CIE; the CIE's section offset for an FDE.
        var cieOffset: Int?
        /// A zero length: `.eh_frame`'s terminator.
        var isTerminator: Bool
    }

    func header(at offset: Int) throws(CFIError) -> EntryHeader {
        var end = 0
        return try header(at: offset, validatedEnd: &end)
    }

    /// As ``header(at:)``; `validatedEnd` is set as soon as the length is
    /// known to be sound, so a caller can step over an entry whose later
    /// fields are corrupt.
    func header(at offset: Int, validatedEnd: inout Int) throws(CFIError) -> EntryHeader {
        let sk = sectionKind
        guard offset >= 0, offset < bytes.count else {
            throw .offsetOutOfBounds(section: sk, offset: offset, size: bytes.count)
        }
        var r = DWARFReader(bytes: bytes, section: sk, sectionAddress: address, offset: offset)
        let length32 = try r.u32()
        if length32 == 0 {
            // LSB §10.6.1: "A 4 byte unsigned value indicating the length ...
            // If Length contains the value 0, then this CIE shall be
            // considered a terminator and processing shall end."
            validatedEnd = r.offset
            return EntryHeader(offset: offset, is64Bit: false, end: r.offset, bodyStart: r.offset, cieOffset: nil,
                               isTerminator: true)
        }
        var length = UInt64(length32)
        let is64 = length32 == 0xffff_ffff
        if is64 {
            length = try r.u64()
        } else if length32 >= 0xffff_fff0 {
            throw .reservedLength(section: sk, offset: offset, value: length32)
        }
        let contentStart = r.offset
        guard length <= UInt64(bytes.count - contentStart) else {
            throw .lengthOutOfBounds(section: sk, offset: offset, length: length, size: bytes.count)
        }
        let end = contentStart + Int(length)
        validatedEnd = end
        r.limit = end
        let idOffset = r.offset
        let cieOffset: Int?
        switch kind {
        case .ehFrame:
            // Always 4 bytes (LSB §10.6.1.2, "CIE Pointer"), even in 64-bit.
            let id = UInt64(try r.u32())
            if id == 0 {
                cieOffset = nil
            } else {
                // "the number of bytes from the CIE Pointer field to the start of the CIE".
                guard id <= UInt64(idOffset) else { throw .badCIEPointer(section: sk, offset: offset, pointer: id) }
                cieOffset = idOffset - Int(id)
            }
        case .debugFrame:
            let id = is64 ? try r.u64() : UInt64(try r.u32())
            if id == (is64 ? UInt64.max : 0xffff_ffff) {
                cieOffset = nil
            } else {
                // "A constant offset into the .debug_frame section that denotes the CIE".
                guard id < UInt64(bytes.count) else { throw .badCIEPointer(section: sk, offset: offset, pointer: id) }
                cieOffset = Int(id)
            }
        }
        return EntryHeader(offset: offset, is64Bit: is64, end: end, bodyStart: r.offset, cieOffset: cieOffset,
                           isTerminator: false)
    }

    /// The CIE at section offset `offset`.
    public func cie(at offset: Int) throws(CFIError) -> CommonInformationEntry {
        let h = try header(at: offset)
        guard !h.isTerminator else { throw .terminator(section: sectionKind, offset: offset) }
        guard h.cieOffset == nil else { throw .wrongEntryKind(section: sectionKind, offset: offset, expectedCIE: true) }
        return try parseCIE(h)
    }

    /// The FDE at section offset `offset`, with its CIE.
    public func fde(at offset: Int) throws(CFIError) -> FrameDescriptionEntry {
        let h = try header(at: offset)
        guard !h.isTerminator else { throw .terminator(section: sectionKind, offset: offset) }
        guard let cieOffset = h.cieOffset else {
            throw .wrongEntryKind(section: sectionKind, offset: offset, expectedCIE: false)
        }
        return try parseFDE(h, cie: cieFor(h, cieOffset: cieOffset))
    }

    /// The entry at `offset`: a CIE, an FDE, or nil for the terminator.
    public func entry(at offset: Int) throws(CFIError) -> CFIEntry? {
        let h = try header(at: offset)
        if h.isTerminator { return nil }
        guard let cieOffset = h.cieOffset else { return .cie(try parseCIE(h)) }
        return .fde(try parseFDE(h, cie: cieFor(h, cieOffset: cieOffset)))
    }

    /// The CIE an FDE points to; a pointer to anything but a CIE's start is an error.
    func cieFor(_ fde: EntryHeader, cieOffset: Int) throws(CFIError) -> CommonInformationEntry {
        let ch: EntryHeader
        do {
            ch = try header(at: cieOffset)
        } catch {
            throw .badCIEPointer(section: sectionKind, offset: fde.offset, pointer: UInt64(cieOffset))
        }
        guard !ch.isTerminator, ch.cieOffset == nil else {
            throw .badCIEPointer(section: sectionKind, offset: fde.offset, pointer: UInt64(cieOffset))
        }
        return try parseCIE(ch)
    }

    /// Parses a CIE's fields (DWARF 5 §6.4.1 items 1–9 and LSB §10.6.1.1).
    func parseCIE(_ h: EntryHeader) throws(CFIError) -> CommonInformationEntry {
        let sk = sectionKind
        var r = DWARFReader(bytes: bytes, section: sk, sectionAddress: address, offset: h.bodyStart, limit: h.end)
        let versionOffset = r.offset
        let version = try r.u8()
        // .eh_frame: LSB "Version ... This value shall be 1"; GCC also
        // writes 3 when the return address column needs a ULEB128.
        // .debug_frame: 1 (DWARF 2), 3 (DWARF 3), 4 (DWARF 4 and 5).
        switch (kind, version) {
        case (.ehFrame, 1), (.ehFrame, 3), (.debugFrame, 1), (.debugFrame, 3), (.debugFrame, 4): break
        default: throw .unsupportedVersion(section: sk, offset: versionOffset, version: version)
        }
        let augmentation = try r.cString()
        var aug = CIEAugmentation()
        let augCount = augmentation.count
        @inline(__always) func augByte(_ i: Int) -> UInt8 { bytes[augmentation.lowerBound + i] }

        // DWARF 5 §6.4.1: an unknown augmentation means the rest of the CIE
        // (and its FDEs) cannot be interpreted. Known: "" ; "z" followed by
        // letters, checked below; "eh" (GCC before 3.0: a pointer-sized
        // eh_ptr follows the string).
        if augCount >= 2 && augByte(0) == UInt8(ascii: "e") && augByte(1) == UInt8(ascii: "h") {
            guard augCount == 2 else {
                throw .unknownAugmentation(section: sk, offset: augmentation.lowerBound + 2, character: augByte(2))
            }
            aug.hasEHData = true
            try r.skip(Int(addressSize))
        } else if augCount > 0 && augByte(0) != UInt8(ascii: "z") {
            throw .unknownAugmentation(section: sk, offset: augmentation.lowerBound, character: augByte(0))
        }
        var addressSize = Int(self.addressSize)
        var segmentSelectorSize = 0
        if version >= 4 {
            // DWARF 5 §6.4.1 items 4–5: address_size, segment_selector_size (ubyte).
            let o = r.offset
            let a = try r.u8()
            guard isAddressSize(a) else { throw .badAddressSize(section: sk, offset: o, size: a) }
            addressSize = Int(a)
            let s = try r.u8()
            guard s <= 8 else { throw .badAddressSize(section: sk, offset: o + 1, size: s) }
            segmentSelectorSize = Int(s)
        }
        let caf = try r.uleb128()
        let daf = try r.sleb128()
        let raOffset = r.offset
        // Version 1: a ubyte; later versions: ULEB128 (DWARF 3 §6.4.1).
        let ra = version == 1 ? UInt64(try r.u8()) : try r.uleb128()
        guard ra <= UInt64(UInt16.max) else { throw .badRegister(section: sk, offset: raOffset, register: ra) }

        if augCount > 0 && augByte(0) == UInt8(ascii: "z") {
            // LSB §10.6.1.1: "z" first: a ULEB128 length of the augmentation
            // data, then one datum per following letter, in order.
            aug.hasAugmentationData = true
            let length = try r.uleb128()
            let data = try r.block(length: length)
            var d = DWARFReader(bytes: bytes, section: sk, sectionAddress: address, offset: data.lowerBound,
                                limit: data.upperBound)
            for i in 1..<augCount {
                let c = augByte(i)
                switch c {
                case UInt8(ascii: "L"):
                    // The LSDA pointer's encoding (the pointer is in each FDE).
                    let o = d.offset
                    aug.lsdaEncoding = PointerEncoding(rawValue: try d.u8())
                    guard aug.lsdaEncoding.isValid else {
                        throw .badPointerEncoding(section: sk, offset: o, encoding: aug.lsdaEncoding.rawValue)
                    }
                case UInt8(ascii: "P"):
                    // The personality routine: its encoding, then the pointer.
                    let o = d.offset
                    let e = PointerEncoding(rawValue: try d.u8())
                    guard e.isValid, e != .omit else { throw .badPointerEncoding(section: sk, offset: o, encoding: e.rawValue) }
                    // Unwinding does not need it: a base we lack leaves it nil.
                    aug.personality = try d.encodedPointerSkippingMissingBase(e, bases: bases, addressSize: addressSize)
                case UInt8(ascii: "R"):
                    // The encoding of the FDEs' initial_location and address_range.
                    let o = d.offset
                    aug.fdeEncoding = PointerEncoding(rawValue: try d.u8())
                    guard aug.fdeEncoding.isValid, aug.fdeEncoding != .omit, !aug.fdeEncoding.isIndirect else {
                        throw .badPointerEncoding(section: sk, offset: o, encoding: aug.fdeEncoding.rawValue)
                    }
                case UInt8(ascii: "S"):
                    // A signal trampoline: the return address is the
                    // interrupted instruction, not after a call (GCC unwind-dw2.c).
                    aug.isSignalFrame = true
                case UInt8(ascii: "B"):
                    // AArch64: return addresses signed with the B key (GCC aarch64).
                    aug.usesBKey = true
                case UInt8(ascii: "G"):
                    // AArch64: MTE-tagged stack frames (GCC aarch64).
                    aug.isMTETagged = true
                default:
                    throw .unknownAugmentation(section: sk, offset: augmentation.lowerBound + i, character: c)
                }
            }
            // Unused trailing data is allowed ("z" gives its size).
            r.offset = data.upperBound
        }
        return CommonInformationEntry(
            offset: h.offset, is64Bit: h.is64Bit, version: version, augmentation: aug,
            addressSize: UInt8(addressSize), segmentSelectorSize: UInt8(segmentSelectorSize),
            codeAlignmentFactor: caf, dataAlignmentFactor: daf, returnAddressRegister: DWARFRegister(UInt16(ra)),
            initialInstructions: r.offset..<h.end)
    }

    /// Parses an FDE's fields (DWARF 5 §6.4.1 items 1–5 of the FDE and LSB §10.6.1.2).
    func parseFDE(_ h: EntryHeader, cie: CommonInformationEntry) throws(CFIError) -> FrameDescriptionEntry {
        let sk = sectionKind
        var r = DWARFReader(bytes: bytes, section: sk, sectionAddress: address, offset: h.bodyStart, limit: h.end)
        let addressSize = Int(cie.addressSize)
        let locationOffset = r.offset
        let initial: UInt64
        let range: UInt64
        switch kind {
        case .debugFrame:
            // "initial_location (segment selector and target address)",
            // "address_range (target address)".
            try r.skip(Int(cie.segmentSelectorSize))
            initial = try r.unsigned(size: addressSize)
            range = try r.unsigned(size: addressSize)
        case .ehFrame:
            let e = cie.augmentation.fdeEncoding
            switch try r.encodedPointer(e, bases: bases, addressSize: addressSize) {
            case .direct(let a): initial = a.rawValue
            case .indirect: throw .badPointerEncoding(section: sk, offset: locationOffset, encoding: e.rawValue)
            }
            range = try r.encodedValue(e.format, addressSize: addressSize, encoding: e)
        }
        let (end, overflow) = initial.addingReportingOverflow(range)
        // An FDE may end exactly at 2^64 (end 0 after wrapping) only in theory; refuse it.
        guard !overflow else { throw .addressOverflow(section: sk, offset: locationOffset) }

        var lsda: EncodedPointer? = nil
        if cie.augmentation.hasAugmentationData {
            let length = try r.uleb128()
            let data = try r.block(length: length)
            if cie.augmentation.lsdaEncoding != .omit {
                var d = DWARFReader(bytes: bytes, section: sk, sectionAddress: address, offset: data.lowerBound,
                                    limit: data.upperBound)
                var b = bases
                b.function = StatedAddress(initial)
                lsda = try d.encodedPointerSkippingMissingBase(cie.augmentation.lsdaEncoding, bases: b,
                                                               addressSize: addressSize)
            }
            r.offset = data.upperBound
        }
        return FrameDescriptionEntry(offset: h.offset, cie: cie, initialLocation: StatedAddress(initial),
                                     addressRange: range, endAddress: StatedAddress(end), lsda: lsda,
                                     instructions: r.offset..<h.end)
    }

    // MARK: - Iteration

    /// Every entry in section order (CIEs and FDEs).
    public func entries() -> EntryIterator { EntryIterator(section: self) }

    /// Every FDE in section order: `var it = section.fdes(); while let fde = try it.next() { ... }`.
    public func fdes() -> FDEIterator { FDEIterator(section: self) }

    /// All FDEs; throws at the first corrupt entry.
    public func allFDEs() throws(CFIError) -> [FrameDescriptionEntry] {
        var out: [FrameDescriptionEntry] = []
        var it = fdes()
        while let f = try it.next() { out.append(f) }
        return out
    }

    /// The FDE covering `address` by a linear scan (for sections without
    /// `.eh_frame_hdr`, such as `.debug_frame`). Corrupt entries are skipped
    /// when their length is intact.
    public func fdeByScanning(for address: StatedAddress) throws(CFIError) -> FrameDescriptionEntry? {
        var it = fdes()
        while true {
            let next: FrameDescriptionEntry?
            do { next = try it.next() } catch {
                if it.isFinished { throw error }
                continue
            }
            guard let fde = next else { return nil }
            if fde.contains(address) { return fde }
        }
    }
}

/// A CIE or an FDE.
public enum CFIEntry: Hashable, Sendable {
    case cie(CommonInformationEntry)
    case fde(FrameDescriptionEntry)
}

/// Walks a section's entries. `next()` returns nil at the end of the section
/// or at `.eh_frame`'s zero terminator. When an entry is corrupt, `next()`
/// throws; if that entry's length was intact the walk can go on with the
/// next call (``isFinished`` is false), otherwise it is over.
public struct EntryIterator {
    public let section: CallFrameSection
    /// The section offset of the next entry.
    public private(set) var offset = 0
    /// No more entries (end, terminator, or a length that cannot be trusted).
    public private(set) var isFinished = false
    /// The last CIE parsed (FDEs of one CIE come together, so one slot hits
    /// almost always).
    private var lastCIE: CommonInformationEntry?
    /// Whether CIEs are returned (false: only FDEs).
    let yieldsCIEs: Bool

    init(section: CallFrameSection, yieldsCIEs: Bool = true) {
        self.section = section
        self.yieldsCIEs = yieldsCIEs
    }

    public mutating func next() throws(CFIError) -> CFIEntry? {
        while !isFinished {
            guard offset < section.bytes.count else {
                isFinished = true
                return nil
            }
            let h: CallFrameSection.EntryHeader
            var end = 0
            do {
                h = try section.header(at: offset, validatedEnd: &end)
            } catch {
                // A sound length: skip the entry; otherwise nothing after it can be found.
                if end > offset { offset = end } else { isFinished = true }
                throw error
            }
            offset = h.end
            if h.isTerminator {
                // .eh_frame ends here. In .debug_frame a zero length is not
                // defined; readelf skips it, and so do we.
                if section.kind == .ehFrame { isFinished = true; return nil }
                continue
            }
            guard let cieOffset = h.cieOffset else {
                if !yieldsCIEs { continue }
                let cie = try section.parseCIE(h)
                lastCIE = cie
                return .cie(cie)
            }
            let cie: CommonInformationEntry
            if let c = lastCIE, c.offset == cieOffset {
                cie = c
            } else {
                cie = try section.cieFor(h, cieOffset: cieOffset)
                lastCIE = cie
            }
            return .fde(try section.parseFDE(h, cie: cie))
        }
        return nil
    }
}

/// Walks a section's FDEs (CIEs are parsed when an FDE needs them). Same
/// error behaviour as ``EntryIterator``.
public struct FDEIterator {
    private var entries: EntryIterator
    init(section: CallFrameSection) { entries = EntryIterator(section: section, yieldsCIEs: false) }
    public var isFinished: Bool { entries.isFinished }
    /// The section offset of the next entry.
    public var offset: Int { entries.offset }

    public mutating func next() throws(CFIError) -> FrameDescriptionEntry? {
        while let e = try entries.next() {
            if case .fde(let f) = e { return f }
        }
        return nil
    }
}

/// The CIE augmentation (DWARF 5 §6.4.1 item 3; LSB §10.6.1.1 "Augmentation
/// String"), decoded.
public struct CIEAugmentation: Hashable, Sendable {
    /// "z": augmentation data lengths are present in the CIE and its FDEs.
    public var hasAugmentationData = false
    /// "eh": GCC 2.x's eh_ptr follows the string (skipped).
    public var hasEHData = false
    /// "L": the encoding of each FDE's LSDA pointer (`omit` when absent).
    public var lsdaEncoding = PointerEncoding.omit
    /// "P": the personality routine.
    public var personality: EncodedPointer? = nil
    /// "R": the encoding of FDE addresses; `absptr` when absent.
    public var fdeEncoding = PointerEncoding.absolute
    /// "S": the FDEs describe signal trampolines (glibc's `__restore_rt`):
    /// the return address is the next instruction to run, so a symbolizer
    /// must not subtract 1 from it.
    public var isSignalFrame = false
    /// "B" (AArch64): return addresses signed with the B key.
    public var usesBKey = false
    /// "G" (AArch64): MTE-tagged frames.
    public var isMTETagged = false
    public init() {}
}

/// A Common Information Entry (DWARF 5 §6.4.1): what the FDEs that point to
/// it share — the alignment factors, the return address column and the
/// initial instructions that set up every FDE's first row.
public struct CommonInformationEntry: Hashable, Sendable {
    /// Section offset of the entry's length field.
    public var offset: Int
    /// The 64-bit DWARF format (initial length 0xffffffff).
    public var is64Bit: Bool
    public var version: UInt8
    public var augmentation: CIEAugmentation
    /// "The size of a target address in this CIE and any FDEs that use it, in bytes."
    public var addressSize: UInt8
    /// "The size of a segment selector in this CIE and any FDEs that use it, in bytes."
    public var segmentSelectorSize: UInt8
    /// "A constant that is factored out of all advance location instructions."
    public var codeAlignmentFactor: UInt64
    /// "A constant that is factored out of certain offset instructions."
    public var dataAlignmentFactor: Int64
    /// "A constant that indicates which column in the rule table represents
    /// the return address of the function."
    public var returnAddressRegister: DWARFRegister
    /// Section offsets of the `initial_instructions`.
    public var initialInstructions: Range<Int>
}

/// A Frame Description Entry (DWARF 5 §6.4.1): the CFA program for one
/// contiguous range of code.
public struct FrameDescriptionEntry: Hashable, Sendable {
    /// Section offset of the entry's length field.
    public var offset: Int
    public var cie: CommonInformationEntry
    /// "The address of the first location associated with this table entry."
    public var initialLocation: StatedAddress
    /// "The number of bytes of program instructions described by this entry."
    public var addressRange: UInt64
    /// `initialLocation + addressRange` (checked not to overflow).
    public var endAddress: StatedAddress
    /// The language-specific data area ("L" augmentation), if any.
    public var lsda: EncodedPointer?
    /// Section offsets of the FDE's instructions.
    public var instructions: Range<Int>

    /// Whether `initialLocation <= address < endAddress`.
    @inlinable public func contains(_ address: StatedAddress) -> Bool {
        initialLocation <= address && address < endAddress
    }
}

/// Address sizes a target can have (bytes).
@inline(__always) func isAddressSize(_ size: UInt8) -> Bool { size == 1 || size == 2 || size == 4 || size == 8 }

extension DWARFReader {
    /// ``encodedPointer(_:bases:addressSize:)``, but a pointer relative to a
    /// base the caller did not give is skipped and nil: for the personality
    /// routine and the LSDA, which unwinding does not use.
    mutating func encodedPointerSkippingMissingBase(_ encoding: PointerEncoding, bases: PointerBases,
                                                    addressSize: Int) throws(CFIError) -> EncodedPointer? {
        let start = offset
        do {
            return try encodedPointer(encoding, bases: bases, addressSize: addressSize)
        } catch {
            guard case .missingPointerBase = error else { throw error }
            offset = start
            _ = try encodedValue(encoding.format, addressSize: addressSize, encoding: encoding)
            return nil
        }
    }
}
