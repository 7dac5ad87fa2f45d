import SprofBase

/// A bounds-checked little-endian cursor over bytes that stay where they are
/// (an `ELFFile`'s mapping): nothing is copied, and every read checks the
/// cursor against ``limit`` first, so corrupt input gives a ``CFIError``,
/// never an out-of-bounds read.
///
/// Offsets are relative to the start of ``bytes`` (the whole section), so
/// errors name the section offset a `readelf -wf` listing shows. ``limit``
/// is the end of the current entry (a CIE, an FDE, an expression), which
/// keeps one corrupt entry from reading into the next.
///
/// Encodings: DWARF 5 §7.6 (LEB128), §7.4 (32- and 64-bit DWARF formats);
/// the Linux Standard Base Core Specification, "DWARF Extensions" §10.5
/// (`DW_EH_PE_*` pointer encodings).
public struct DWARFReader {
    /// The whole section (or expression).
    public let bytes: UnsafeRawBufferPointer
    /// Where the next read starts.
    public var offset: Int
    /// Reads never go at or past this offset (≤ `bytes.count`).
    public var limit: Int
    /// For error messages.
    public let section: CFISectionKind
    /// The stated address of `bytes[0]`: the base of `DW_EH_PE_pcrel`.
    public let sectionAddress: StatedAddress

    public init(bytes: UnsafeRawBufferPointer, section: CFISectionKind, sectionAddress: StatedAddress = StatedAddress(0),
                offset: Int = 0, limit: Int? = nil) {
        self.bytes = bytes
        self.section = section
        self.sectionAddress = sectionAddress
        self.offset = offset
        self.limit = min(limit ?? bytes.count, bytes.count)
    }

    /// Bytes left before ``limit``.
    @inline(__always) public var remaining: Int { offset < limit ? limit - offset : 0 }
    @inline(__always) public var isAtEnd: Bool { offset >= limit }

    @inline(__always) func need(_ n: Int) throws(CFIError) {
        guard offset >= 0, n <= remaining else {
            throw .truncated(section: section, offset: offset, needed: n, limit: limit)
        }
    }

    @inline(__always) public mutating func u8() throws(CFIError) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    @inline(__always) public mutating func u16() throws(CFIError) -> UInt16 {
        try need(2)
        defer { offset += 2 }
        return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always) public mutating func u32() throws(CFIError) -> UInt32 {
        try need(4)
        defer { offset += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always) public mutating func u64() throws(CFIError) -> UInt64 {
        try need(8)
        defer { offset += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// An unsigned integer of `size` bytes (1, 2, 4 or 8; an address of the
    /// CIE's `address_size`, DWARF 5 §6.4.1), zero-extended.
    public mutating func unsigned(size: Int) throws(CFIError) -> UInt64 {
        switch size {
        case 1: return UInt64(try u8())
        case 2: return UInt64(try u16())
        case 4: return UInt64(try u32())
        case 8: return try u64()
        default:
            // Any other size: little-endian bytes, at most 8 of them.
            guard size > 0, size < 8 else {
                throw .badAddressSize(section: section, offset: offset, size: UInt8(clamping: size))
            }
            try need(size)
            var v: UInt64 = 0
            for i in 0..<size { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
            offset += size
            return v
        }
    }

    /// Skips `n` bytes.
    public mutating func skip(_ n: Int) throws(CFIError) {
        try need(n)
        offset += n
    }

    /// An unsigned LEB128 number (DWARF 5 §7.6): 7 bits per byte, low
    /// groups first, the high bit of each byte set when another follows.
    /// Redundant trailing `0x80` padding is accepted; bits beyond 64 are an
    /// error. Cannot run past ``limit``, so it always ends.
    public mutating func uleb128() throws(CFIError) -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < limit else {
                throw .truncated(section: section, offset: start, needed: offset - start + 1, limit: limit)
            }
            let byte = bytes[offset]
            offset += 1
            let low = UInt64(byte & 0x7f)
            if shift < 64 {
                // The 10th byte holds bit 63 only.
                if shift == 63 && low > 1 { throw .leb128Overflow(section: section, offset: start) }
                result |= low << shift
            } else if low != 0 {
                throw .leb128Overflow(section: section, offset: start)
            }
            shift += 7
            if byte & 0x80 == 0 { return result }
        }
    }

    /// A signed LEB128 number (DWARF 5 §7.6): as ``uleb128()``, then
    /// sign-extended from the last group's bit 6.
    public mutating func sleb128() throws(CFIError) -> Int64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < limit else {
                throw .truncated(section: section, offset: start, needed: offset - start + 1, limit: limit)
            }
            let byte = bytes[offset]
            offset += 1
            let low = UInt64(byte & 0x7f)
            if shift < 64 {
                if shift == 63 && low != 0 && low != 0x7f { throw .leb128Overflow(section: section, offset: start) }
                result |= low << shift
            } else if low != 0 && low != 0x7f {
                // Padding past 64 bits must repeat the sign.
                throw .leb128Overflow(section: section, offset: start)
            }
            shift += 7
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 { result |= ~0 << shift }
                return Int64(bitPattern: result)
            }
        }
    }

    /// The NUL-terminated string at the cursor, without the NUL, as a range
    /// of section offsets; the cursor moves past the NUL.
    public mutating func cString() throws(CFIError) -> Range<Int> {
        let start = offset
        var i = offset
        while i < limit {
            if bytes[i] == 0 {
                offset = i + 1
                return start..<i
            }
            i += 1
        }
        throw .truncated(section: section, offset: start, needed: i - start + 1, limit: limit)
    }

    /// `length` bytes at the cursor as a range of section offsets (a
    /// `DW_FORM_block`, an augmentation data area); the cursor moves past them.
    public mutating func block(length: UInt64) throws(CFIError) -> Range<Int> {
        guard length <= UInt64(remaining) else {
            throw .truncated(section: section, offset: offset, needed: Int(clamping: length), limit: limit)
        }
        let start = offset
        offset += Int(length)
        return start..<offset
    }

    // MARK: - Pointer encodings

    /// A pointer in encoding `encoding` (LSB §10.5.1, "DWARF Exception
    /// Header Encoding"), applied to the base the encoding's upper bits name:
    ///
    /// - `DW_EH_PE_absptr`: no base;
    /// - `DW_EH_PE_pcrel`: the stated address of the encoded value itself
    ///   (``sectionAddress`` + the value's offset);
    /// - `DW_EH_PE_textrel`, `DW_EH_PE_datarel`, `DW_EH_PE_funcrel`: the
    ///   matching base in `bases` (an error if it is not given);
    /// - `DW_EH_PE_aligned`: the value is an absolute pointer aligned to
    ///   `addressSize` in memory; padding before it is skipped.
    ///
    /// With `DW_EH_PE_indirect` (0x80) the result is the address of a
    /// pointer-sized word holding the real pointer: ``EncodedPointer/indirect(_:)``.
    /// This reader never dereferences it (the word may be in `.got`, written
    /// by the dynamic linker, which only the running process has).
    public mutating func encodedPointer(_ encoding: PointerEncoding, bases: PointerBases,
                                        addressSize: Int = 8) throws(CFIError) -> EncodedPointer {
        let fieldOffset = offset
        guard encoding.isValid, encoding != .omit else {
            throw .badPointerEncoding(section: section, offset: fieldOffset, encoding: encoding.rawValue)
        }
        var base: UInt64
        switch encoding.application {
        case .absolute: base = 0
        case .pcRelative: base = sectionAddress.rawValue &+ UInt64(fieldOffset)
        case .textRelative:
            guard let b = bases.text else { throw .missingPointerBase(section: section, offset: fieldOffset, encoding: encoding.rawValue) }
            base = b.rawValue
        case .dataRelative:
            guard let b = bases.data else { throw .missingPointerBase(section: section, offset: fieldOffset, encoding: encoding.rawValue) }
            base = b.rawValue
        case .functionRelative:
            guard let b = bases.function else { throw .missingPointerBase(section: section, offset: fieldOffset, encoding: encoding.rawValue) }
            base = b.rawValue
        case .aligned:
            // Align the stated address of the field up to the address size.
            let here = sectionAddress.rawValue &+ UInt64(fieldOffset)
            let size = UInt64(addressSize)
            let pad = Int((size - here % size) % size)
            try skip(pad)
            base = 0
        default:
            throw .badPointerEncoding(section: section, offset: fieldOffset, encoding: encoding.rawValue)
        }
        let value = try encodedValue(encoding.format, addressSize: addressSize, encoding: encoding)
        let address = StatedAddress(base &+ value)
        return encoding.isIndirect ? .indirect(address) : .direct(address)
    }

    /// A value in the format of `format` (an encoding's low four bits), with
    /// no base applied. The FDE's "PC Range" is read this way: it is a byte
    /// count, so GCC's unwinder (unwind-dw2-fde.c) and gimli read it with
    /// the FDE encoding's format only. Signed formats are sign-extended to
    /// 64 bits.
    public mutating func encodedValue(_ format: PointerEncoding.Format, addressSize: Int = 8,
                                      encoding: PointerEncoding? = nil) throws(CFIError) -> UInt64 {
        switch format {
        case .absolute: return try unsigned(size: addressSize)
        case .uleb128: return try uleb128()
        case .udata2: return UInt64(try u16())
        case .udata4: return UInt64(try u32())
        case .udata8: return try u64()
        case .signed:
            // Signed, address-sized.
            let raw = try unsigned(size: addressSize)
            let shift = UInt64(64 - 8 * addressSize)
            return UInt64(bitPattern: Int64(bitPattern: raw << shift) >> shift)
        case .sleb128: return UInt64(bitPattern: try sleb128())
        case .sdata2: return UInt64(bitPattern: Int64(Int16(bitPattern: try u16())))
        case .sdata4: return UInt64(bitPattern: Int64(Int32(bitPattern: try u32())))
        case .sdata8: return try u64()
        default:
            throw .badPointerEncoding(section: section, offset: offset, encoding: encoding?.rawValue ?? format.rawValue)
        }
    }
}

/// A `DW_EH_PE_*` pointer encoding byte (LSB Core Specification §10.5.1,
/// "DWARF Exception Header Encoding"): "The upper 4 bits indicate how the
/// value is to be applied. The lower 4 bits indicate the format of the
/// data." Bit 7 (`DW_EH_PE_indirect`, a GCC extension in the same table's
/// use) means the result is the address of the real pointer.
public struct PointerEncoding: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ format: Format, _ application: Application = .absolute, indirect: Bool = false) {
        rawValue = format.rawValue | application.rawValue | (indirect ? 0x80 : 0)
    }

    /// `DW_EH_PE_omit` (0xff): "no value is present".
    public static let omit = PointerEncoding(rawValue: 0xff)
    /// `DW_EH_PE_absptr` (0): an absolute pointer the size of an address.
    public static let absolute = PointerEncoding(rawValue: 0)

    /// The low four bits: how the value is stored (LSB table 10-1).
    public struct Format: RawRepresentable, Hashable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// `DW_EH_PE_absptr` 0x00: "The Value is a literal pointer whose size
        /// is determined by the architecture."
        public static let absolute = Format(rawValue: 0x00)
        /// `DW_EH_PE_uleb128` 0x01.
        public static let uleb128 = Format(rawValue: 0x01)
        /// `DW_EH_PE_udata2` 0x02, `udata4` 0x03, `udata8` 0x04.
        public static let udata2 = Format(rawValue: 0x02)
        public static let udata4 = Format(rawValue: 0x03)
        public static let udata8 = Format(rawValue: 0x04)
        /// `DW_EH_PE_signed` 0x08: a signed address-sized value (GCC's unwind-pe.h).
        public static let signed = Format(rawValue: 0x08)
        /// `DW_EH_PE_sleb128` 0x09.
        public static let sleb128 = Format(rawValue: 0x09)
        /// `DW_EH_PE_sdata2` 0x0a, `sdata4` 0x0b, `sdata8` 0x0c.
        public static let sdata2 = Format(rawValue: 0x0a)
        public static let sdata4 = Format(rawValue: 0x0b)
        public static let sdata8 = Format(rawValue: 0x0c)

        /// The encoded size in bytes, or nil for the LEB128 formats.
        public func fixedSize(addressSize: Int = 8) -> Int? {
            switch self {
            case .absolute, .signed: return addressSize
            case .udata2, .sdata2: return 2
            case .udata4, .sdata4: return 4
            case .udata8, .sdata8: return 8
            default: return nil
            }
        }
    }

    /// The upper bits (less `DW_EH_PE_indirect`): what the value is relative to (LSB table 10-2).
    public struct Application: RawRepresentable, Hashable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let absolute = Application(rawValue: 0x00)
        /// `DW_EH_PE_pcrel` 0x10: "relative to the current program counter"
        /// — for data in a section, the address of the value itself.
        public static let pcRelative = Application(rawValue: 0x10)
        /// `DW_EH_PE_textrel` 0x20: relative to the start of `.text`.
        public static let textRelative = Application(rawValue: 0x20)
        /// `DW_EH_PE_datarel` 0x30: "relative to the beginning of the
        /// .eh_frame_hdr section" in that section; the GOT elsewhere.
        public static let dataRelative = Application(rawValue: 0x30)
        /// `DW_EH_PE_funcrel` 0x40: relative to the function's start (the FDE's initial location).
        public static let functionRelative = Application(rawValue: 0x40)
        /// `DW_EH_PE_aligned` 0x50: an absolute pointer aligned to its size.
        public static let aligned = Application(rawValue: 0x50)
    }

    public var format: Format { Format(rawValue: rawValue & 0x0f) }
    public var application: Application { Application(rawValue: rawValue & 0x70) }
    /// `DW_EH_PE_indirect` (0x80).
    public var isIndirect: Bool { rawValue & 0x80 != 0 && self != .omit }

    /// Whether this is `omit` or a known format with a known application.
    public var isValid: Bool {
        if self == .omit { return true }
        switch format {
        case .absolute, .uleb128, .udata2, .udata4, .udata8, .signed, .sleb128, .sdata2, .sdata4, .sdata8: break
        default: return false
        }
        return application.rawValue <= Application.aligned.rawValue
    }

    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// The base addresses relative pointer encodings need (LSB §10.5.1).
/// `DW_EH_PE_pcrel`'s base is always known (the reader's section address);
/// the others are given by the caller when the binary uses them.
public struct PointerBases: Hashable, Sendable {
    /// `DW_EH_PE_textrel`: the stated address of `.text`.
    public var text: StatedAddress?
    /// `DW_EH_PE_datarel`: `.eh_frame_hdr`'s address in that section; the
    /// GOT (`.got` or `_GLOBAL_OFFSET_TABLE_`) in `.eh_frame` on the few
    /// architectures that use it (i386, not x86_64).
    public var data: StatedAddress?
    /// `DW_EH_PE_funcrel`: the FDE's initial location (set by the FDE
    /// reader for the LSDA pointer).
    public var function: StatedAddress?

    public init(text: StatedAddress? = nil, data: StatedAddress? = nil, function: StatedAddress? = nil) {
        self.text = text; self.data = data; self.function = function
    }
}

/// A decoded pointer: the address itself, or (`DW_EH_PE_indirect`) the
/// address of a pointer-sized word that holds it.
public enum EncodedPointer: Hashable, Sendable, CustomStringConvertible {
    case direct(StatedAddress)
    /// The pointer is stored at this address (usually a `.got` slot); read
    /// it from the process (or apply the binary's relocations) to get it.
    case indirect(StatedAddress)

    public var description: String {
        switch self {
        case .direct(let a): return a.description
        case .indirect(let a): return "*" + a.description
        }
    }
}
