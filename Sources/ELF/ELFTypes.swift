import SprofBase

// Value types for the ELF64 structures. Field names and layouts follow the
// System V ABI generic specification ("gABI", chapter 4 "Object Files",
// https://www.sco.com/developers/gabi/latest/contents.html) and elf(5).

/// `e_type`: the object file type (gABI "ELF Header"). Unknown values are kept.
public struct ELFFileType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// `ET_REL`: a relocatable object (`.o`).
    public static let relocatable = ELFFileType(rawValue: 1)
    /// `ET_EXEC`: an executable loaded at the addresses it states (non-PIE).
    public static let executable = ELFFileType(rawValue: 2)
    /// `ET_DYN`: a shared object or a position-independent executable; loaded
    /// at an address chosen at run time (the load bias).
    public static let sharedObject = ELFFileType(rawValue: 3)
    /// `ET_CORE`: a core dump.
    public static let core = ELFFileType(rawValue: 4)
    /// The names `readelf -h` prints.
    public var description: String {
        switch self {
        case .relocatable: return "REL"
        case .executable: return "EXEC"
        case .sharedObject: return "DYN"
        case .core: return "CORE"
        default: return "type 0x" + String(rawValue, radix: 16)
        }
    }
}

/// `e_machine` (gABI "ELF Header"; values from the gABI's machine list).
public struct ELFMachine: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// `EM_X86_64` = 62.
    public static let x86_64 = ELFMachine(rawValue: 62)
    /// `EM_AARCH64` = 183.
    public static let aarch64 = ELFMachine(rawValue: 183)
}

/// The parts of the ELF header (`Elf64_Ehdr`, gABI "ELF Header") a reader
/// needs, with the extended numbering of gABI "Sections" already applied:
/// counts and the string-table index are the real ones even when the header
/// holds `PN_XNUM`/`SHN_XINDEX` escapes.
public struct ELFHeader: Hashable, Sendable {
    /// `e_ident[EI_OSABI]`.
    public var osABI: UInt8
    /// `e_type`.
    public var type: ELFFileType
    /// `e_machine`.
    public var machine: ELFMachine
    /// `e_entry`: the stated address of the entry point (0 if none).
    public var entry: StatedAddress
    /// `e_phoff`: where the program header table starts (0 if none).
    public var programHeaderOffset: FileOffset
    /// `e_shoff`: where the section header table starts (0 if none).
    public var sectionHeaderOffset: FileOffset
    /// `e_flags`: processor-specific flags.
    public var flags: UInt32
    /// `e_phentsize`: bytes per program header (at least 56, `sizeof(Elf64_Phdr)`).
    public var programHeaderEntrySize: Int
    /// `e_phnum`, or `sh_info` of section 0 when `e_phnum` is `PN_XNUM` (0xffff).
    public var programHeaderCount: Int
    /// `e_shentsize`: bytes per section header (at least 64, `sizeof(Elf64_Shdr)`).
    public var sectionHeaderEntrySize: Int
    /// `e_shnum`, or `sh_size` of section 0 when `e_shnum` is 0 and `e_shoff` is not.
    public var sectionHeaderCount: Int
    /// `e_shstrndx`, or `sh_link` of section 0 when it is `SHN_XINDEX` (0xffff);
    /// 0 (`SHN_UNDEF`) when the file has no section-name string table.
    public var sectionNameTableIndex: Int
}

/// `p_type` (gABI "Program Header"; `PT_GNU_*` from the Linux Standard Base
/// and binutils' include/elf/common.h).
public struct SegmentType: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let null = SegmentType(rawValue: 0)
    /// `PT_LOAD`: bytes `[p_offset, p_offset + p_filesz)` of the file are
    /// mapped at `p_vaddr`, zero-filled up to `p_memsz`.
    public static let load = SegmentType(rawValue: 1)
    public static let dynamic = SegmentType(rawValue: 2)
    public static let interpreter = SegmentType(rawValue: 3)
    /// `PT_NOTE`: a sequence of notes (gABI "Note Section").
    public static let note = SegmentType(rawValue: 4)
    public static let programHeaders = SegmentType(rawValue: 6)
    public static let threadLocalStorage = SegmentType(rawValue: 7)
    /// `PT_GNU_EH_FRAME` (0x6474e550): the `.eh_frame_hdr` binary-search table.
    public static let gnuEHFrame = SegmentType(rawValue: 0x6474_e550)
    public static let gnuStack = SegmentType(rawValue: 0x6474_e551)
    public static let gnuRelRO = SegmentType(rawValue: 0x6474_e552)
    public static let gnuProperty = SegmentType(rawValue: 0x6474_e553)
}

/// `p_flags` (gABI "Program Header": `PF_X` = 1, `PF_W` = 2, `PF_R` = 4).
public struct SegmentFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let execute = SegmentFlags(rawValue: 1)
    public static let write = SegmentFlags(rawValue: 2)
    public static let read = SegmentFlags(rawValue: 4)
}

/// One program header (`Elf64_Phdr`, 56 bytes, gABI "Program Header").
public struct ProgramHeader: Hashable, Sendable {
    /// `p_type`.
    public var type: SegmentType
    /// `p_flags`.
    public var flags: SegmentFlags
    /// `p_offset`: where the segment's bytes start in the file.
    public var offset: FileOffset
    /// `p_vaddr`: the stated address of the segment's first byte.
    public var virtualAddress: StatedAddress
    /// `p_filesz`: bytes present in the file.
    public var fileSize: UInt64
    /// `p_memsz`: bytes in memory (≥ `fileSize` for `PT_LOAD`; the rest is zero).
    public var memorySize: UInt64
    /// `p_align`: `p_vaddr ≡ p_offset (mod p_align)` for loadable segments.
    public var alignment: UInt64

    public init(type: SegmentType, flags: SegmentFlags, offset: FileOffset, virtualAddress: StatedAddress,
                fileSize: UInt64, memorySize: UInt64, alignment: UInt64) {
        self.type = type; self.flags = flags; self.offset = offset; self.virtualAddress = virtualAddress
        self.fileSize = fileSize; self.memorySize = memorySize; self.alignment = alignment
    }

    /// Whether the segment's file bytes contain `offset`.
    public func containsFileOffset(_ o: FileOffset) -> Bool {
        o >= offset && o.rawValue &- offset.rawValue < fileSize
    }
}

/// `sh_type` (gABI "Sections", figure "Section Types").
public struct SectionType: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let null = SectionType(rawValue: 0)
    public static let progbits = SectionType(rawValue: 1)
    public static let symbolTable = SectionType(rawValue: 2)
    public static let stringTable = SectionType(rawValue: 3)
    public static let rela = SectionType(rawValue: 4)
    public static let hash = SectionType(rawValue: 5)
    public static let dynamic = SectionType(rawValue: 6)
    /// `SHT_NOTE`: a sequence of notes (gABI "Note Section").
    public static let note = SectionType(rawValue: 7)
    /// `SHT_NOBITS`: occupies no file space (`.bss`, or any section of a
    /// separate debug file that `objcopy --only-keep-debug` emptied);
    /// `sh_offset` is nominal only.
    public static let nobits = SectionType(rawValue: 8)
    public static let dynamicSymbols = SectionType(rawValue: 11)
}

/// `sh_flags` bits used by a reader (gABI "Sections": `SHF_WRITE` = 1,
/// `SHF_ALLOC` = 2, `SHF_EXECINSTR` = 4, `SHF_COMPRESSED` = 0x800).
public struct SectionFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let write = SectionFlags(rawValue: 0x1)
    public static let alloc = SectionFlags(rawValue: 0x2)
    public static let executable = SectionFlags(rawValue: 0x4)
    /// The bytes start with an `Elf64_Chdr` and are compressed (zlib/zstd).
    public static let compressed = SectionFlags(rawValue: 0x800)
}

/// One section header (`Elf64_Shdr`, 64 bytes, gABI "Sections").
public struct SectionHeader: Hashable, Sendable {
    /// `sh_name`: offset of the name in the section-name string table.
    public var nameOffset: UInt32
    /// `sh_type`.
    public var type: SectionType
    /// `sh_flags`.
    public var flags: SectionFlags
    /// `sh_addr`: the stated address of the first byte in memory (0 if the
    /// section is not loaded).
    public var address: StatedAddress
    /// `sh_offset`: where the bytes start in the file.
    public var offset: FileOffset
    /// `sh_size`: bytes in the section (in memory for `SHT_NOBITS`).
    public var size: UInt64
    /// `sh_link`, `sh_info`: type-dependent.
    public var link: UInt32
    public var info: UInt32
    /// `sh_addralign`.
    public var addressAlignment: UInt64
    /// `sh_entsize`: bytes per entry for tables of fixed-size entries.
    public var entrySize: UInt64

    /// Bytes the section occupies in the file (0 for `SHT_NOBITS`).
    public var fileSize: UInt64 { type == .nobits ? 0 : size }
}

/// A section's bytes in the file, without copying. `bytes` points into the
/// ``ELFFile``'s mapping; the section keeps its file (and so the mapping)
/// alive, so `bytes` is valid for as long as the section value is.
/// (`@unchecked`: the bytes are read-only and owned by `file`.)
public struct ELFSection: @unchecked Sendable {
    /// The file the bytes belong to; held so the mapping outlives `bytes`.
    public let file: ELFFile
    /// Index in the section header table.
    public let index: Int
    public let header: SectionHeader
    /// The section's file bytes; empty for `SHT_NOBITS`.
    public let bytes: UnsafeRawBufferPointer

    /// `sh_addr`.
    public var address: StatedAddress { header.address }
    /// `sh_offset`.
    public var offset: FileOffset { header.offset }
    public var size: UInt64 { header.size }
}

/// The `.gnu_debuglink` section: the file name of the separate debug file and
/// the CRC-32 of its contents (GDB manual, "Debugging Information in Separate
/// Files").
public struct DebugLink: Hashable, Sendable {
    /// A base name, looked up next to the binary, in its `.debug/`
    /// subdirectory and under the global debug directory.
    public var fileName: String
    /// CRC-32 (the zlib/IEEE 802.3 polynomial) of the whole debug file.
    public var crc32: UInt32
    public init(fileName: String, crc32: UInt32) { self.fileName = fileName; self.crc32 = crc32 }
}
