import SprofBase
import SprofELF

/// The `.eh_frame_hdr` section (`PT_GNU_EH_FRAME`): a pointer to
/// `.eh_frame` and a table of (initial location, FDE address) pairs sorted
/// by initial location, for binary search. Linux Standard Base Core
/// Specification §10.6.2 ("The .eh_frame_hdr section"):
///
/// | field | encoding |
/// |---|---|
/// | `version` | ubyte, 1 |
/// | `eh_frame_ptr_enc` | ubyte (`DW_EH_PE_*`) |
/// | `fde_count_enc` | ubyte |
/// | `table_enc` | ubyte |
/// | `eh_frame_ptr` | encoded with `eh_frame_ptr_enc` |
/// | `fde_count` | encoded with `fde_count_enc` |
/// | binary search table | `fde_count` pairs, each value encoded with `table_enc` |
///
/// `DW_EH_PE_datarel` values are relative to the start of this section.
/// ld writes `table_enc` = `DW_EH_PE_datarel | DW_EH_PE_sdata4` (0x3b).
/// The table can be searched only when its entries have a fixed size and
/// are not indirect; otherwise ``isSearchable`` is false and callers scan
/// `.eh_frame` instead (GCC's unwinder does the same).
public struct EHFrameHeader: @unchecked Sendable {
    // @unchecked: the bytes are read-only and kept alive by `owner`.

    public let bytes: UnsafeRawBufferPointer
    /// The section's stated address: the base of `datarel` and `pcrel` values.
    public let address: StatedAddress
    public let version: UInt8
    public let ehFramePointerEncoding: PointerEncoding
    public let fdeCountEncoding: PointerEncoding
    public let tableEncoding: PointerEncoding
    /// `eh_frame_ptr`: where `.eh_frame` starts (nil when `omit`, or indirect).
    public let ehFrameAddress: StatedAddress?
    /// `fde_count` (0 when `omit`).
    public let fdeCount: Int
    /// Section offset of the table.
    public let tableOffset: Int
    /// Bytes per value in the table (an entry is two values); 0 when not searchable.
    public let valueSize: Int
    public let owner: AnyObject?

    /// Whether the table can be binary-searched.
    public var isSearchable: Bool { valueSize > 0 && fdeCount > 0 }

    public init(bytes: UnsafeRawBufferPointer, address: StatedAddress, owner: AnyObject? = nil) throws(CFIError) {
        let sk = CFISectionKind.ehFrameHeader
        guard bytes.count <= Int(UInt32.max) else { throw .sectionTooLarge(section: sk, size: bytes.count) }
        var r = DWARFReader(bytes: bytes, section: sk, sectionAddress: address)
        version = try r.u8()
        guard version == 1 else { throw .unsupportedVersion(section: sk, offset: 0, version: version) }
        ehFramePointerEncoding = PointerEncoding(rawValue: try r.u8())
        fdeCountEncoding = PointerEncoding(rawValue: try r.u8())
        tableEncoding = PointerEncoding(rawValue: try r.u8())
        for (i, e) in [ehFramePointerEncoding, fdeCountEncoding, tableEncoding].enumerated() where !e.isValid {
            throw .badPointerEncoding(section: sk, offset: 1 + i, encoding: e.rawValue)
        }
        let bases = PointerBases(data: address)
        if ehFramePointerEncoding == .omit {
            ehFrameAddress = nil
        } else if case .direct(let a) = try r.encodedPointer(ehFramePointerEncoding, bases: bases) {
            ehFrameAddress = a
        } else {
            ehFrameAddress = nil
        }
        var count: UInt64 = 0
        if fdeCountEncoding != .omit {
            let o = r.offset
            guard case .direct(let c) = try r.encodedPointer(fdeCountEncoding, bases: bases) else {
                throw .badPointerEncoding(section: sk, offset: o, encoding: fdeCountEncoding.rawValue)
            }
            count = c.rawValue
        }
        tableOffset = r.offset
        var size = 0
        if tableEncoding != .omit, !tableEncoding.isIndirect, tableEncoding.application != .aligned,
           let s = tableEncoding.format.fixedSize() {
            size = s
        }
        if size > 0 {
            // Each entry is two values; the count must fit in what is left.
            guard count <= UInt64(r.remaining / (2 * size)) else {
                throw .tableTooLarge(section: sk, offset: tableOffset, count: count)
            }
        } else {
            count = min(count, UInt64(r.remaining))
        }
        fdeCount = Int(count)
        valueSize = size
        self.bytes = bytes
        self.address = address
        self.owner = owner
    }

    /// An ELF `.eh_frame_hdr` section, keeping its file alive.
    public init(_ section: ELFSection) throws(CFIError) {
        try self.init(bytes: section.bytes, address: section.address, owner: section.file)
    }

    /// `file`'s `.eh_frame_hdr`, or nil when it has none.
    public static func of(_ file: ELFFile) throws -> EHFrameHeader? {
        guard let s = try file.section(named: ".eh_frame_hdr") else { return nil }
        return try EHFrameHeader(s)
    }

    /// One table entry: an FDE's initial location and the FDE's address.
    public struct Entry: Hashable, Sendable {
        public var initialLocation: StatedAddress
        public var fdeAddress: StatedAddress
    }

    /// Table entry `index` (0 ..< ``fdeCount``); requires ``isSearchable``.
    public func entry(at index: Int) throws(CFIError) -> Entry {
        let sk = CFISectionKind.ehFrameHeader
        guard isSearchable, index >= 0, index < fdeCount else {
            throw .offsetOutOfBounds(section: sk, offset: tableOffset + max(index, 0) * 2 * valueSize, size: bytes.count)
        }
        let at = tableOffset + index * 2 * valueSize
        if tableEncoding.rawValue == 0x3b {
            // DW_EH_PE_datarel | DW_EH_PE_sdata4, what ld writes: the fast
            // path of the binary search (in bounds: checked at init).
            let location = Int64(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: Int32.self)))
            let fde = Int64(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: at + 4, as: Int32.self)))
            return Entry(initialLocation: StatedAddress(address.rawValue &+ UInt64(bitPattern: location)),
                         fdeAddress: StatedAddress(address.rawValue &+ UInt64(bitPattern: fde)))
        }
        var r = DWARFReader(bytes: bytes, section: sk, sectionAddress: address, offset: at)
        let bases = PointerBases(data: address)
        guard case .direct(let location) = try r.encodedPointer(tableEncoding, bases: bases),
              case .direct(let fde) = try r.encodedPointer(tableEncoding, bases: bases)
        else { throw .badPointerEncoding(section: sk, offset: r.offset, encoding: tableEncoding.rawValue) }
        return Entry(initialLocation: location, fdeAddress: fde)
    }

    /// The entry with the greatest initial location ≤ `address`: the only
    /// FDE that can cover it. Nil when `address` is below every entry or the
    /// table is not searchable. O(log n), allocates nothing. The caller must
    /// still check the FDE's range (the address may fall in a gap between
    /// functions): ``fde(for:in:)`` does.
    public func lookup(_ address: StatedAddress) throws(CFIError) -> Entry? {
        guard isSearchable else { return nil }
        var low = 0, high = fdeCount  // invariant: entries before `low` are ≤ address, from `high` on are >.
        while low < high {
            let mid = low + (high - low) / 2
            if try entry(at: mid).initialLocation <= address { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : try entry(at: low - 1)
    }

    /// The FDE in `ehFrame` that covers `address`, found by binary search;
    /// nil when no FDE covers it.
    public func fde(for address: StatedAddress, in ehFrame: CallFrameSection) throws(CFIError) -> FrameDescriptionEntry? {
        guard let e = try lookup(address) else { return nil }
        let delta = e.fdeAddress.rawValue &- ehFrame.address.rawValue
        guard e.fdeAddress >= ehFrame.address, delta < UInt64(ehFrame.bytes.count) else {
            throw .offsetOutOfBounds(section: .ehFrame, offset: Int(truncatingIfNeeded: delta), size: ehFrame.bytes.count)
        }
        let fde = try ehFrame.fde(at: Int(delta))
        return fde.contains(address) ? fde : nil
    }
}
