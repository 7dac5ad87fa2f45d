import SprofBase

/// A 64-bit little-endian ELF file, read in place.
///
/// The file is mapped read-only (`mmap(PROT_READ, MAP_PRIVATE)`) and every
/// structure is decoded from the mapping on demand: nothing is copied except
/// the program and section header tables, decoded once at `init`. Every offset
/// and size taken from the file is checked against the file's length before
/// it is used, so a truncated or corrupt file gives an ``ELFError``, never a
/// trap or an out-of-bounds read.
///
/// Caveat inherent to `mmap`: if another process truncates the file on disk
/// while it is mapped, touching the vanished pages raises `SIGBUS`. Binaries
/// are replaced by rename (new inode) in practice, which is safe.
///
/// Formats: System V gABI chapter 4 ("ELF Header", "Sections", "Program
/// Header", "Note Section") and elf(5).
public final class ELFFile: @unchecked Sendable {
    // @unchecked: all stored properties are immutable after init and the
    // mapping is read-only, so sharing between threads is safe.

    /// The path the file was opened by (used in error messages).
    public let path: String
    /// The whole file. Valid for the lifetime of this object.
    public let bytes: UnsafeRawBufferPointer
    public let header: ELFHeader
    /// The program header table (empty when `e_phoff` is 0).
    public let programHeaders: [ProgramHeader]
    /// The section header table (empty when `e_shoff` is 0, as in
    /// `sstrip`ped files). Index 0 is the reserved null section.
    public let sectionHeaders: [SectionHeader]
    /// The section-name string table's bytes (empty when there is none).
    let sectionNames: UnsafeRawBufferPointer
    private let storage: Storage

    private enum Storage {
        case mapped
        case allocated
    }

    /// Opens and maps the file at `path`: a regular file only, and a path
    /// under `/proc/PID/root/` resolved inside that root
    /// (`Syscalls.openFile`).
    public convenience init(path: String) throws(ELFError) {
        switch Syscalls.openFile(path) {
        case .failed(let errno):
            throw .cannotOpen(path: path, errno: errno)
        case .notRegular:
            throw .notRegularFile(path: path)
        case .file(let fd, _):
            defer { Syscalls.close(fd) }
            try self.init(fileDescriptor: fd, path: path)
        }
    }

    /// Maps the file open on `fd` (which stays the caller's to close; the
    /// mapping outlives it). `path` is only used in error messages. For a
    /// caller that must check the file (`fstat`) before reading it.
    public convenience init(fileDescriptor fd: Int32, path: String) throws(ELFError) {
        let st = Syscalls.regularFileSize(fd)
        guard st.errno == 0 else { throw .cannotMap(path: path, errno: st.errno) }
        guard st.isRegular else { throw .notRegularFile(path: path) }
        // mmap(2) of length 0 fails with EINVAL; an empty file is simply too short.
        guard st.size > 0 else { throw .truncatedHeader(path: path, fileSize: 0) }
        let (base, mapErrno) = Syscalls.mapReadOnly(fd, size: st.size)
        guard let base else { throw .cannotMap(path: path, errno: mapErrno) }
        let bytes = UnsafeRawBufferPointer(start: base, count: st.size)
        do {
            try self.init(bytes: bytes, storage: .mapped, path: path)
        } catch {
            Syscalls.unmap(base, size: st.size)
            throw error
        }
    }

    /// Reads an ELF image held in memory (a `[UInt8]`, `Data`, ...), copying
    /// it once into storage this object owns. For tests and for images that
    /// do not come from a file.
    public convenience init(copying source: some Collection<UInt8>, path: String = "<memory>") throws(ELFError) {
        let count = source.count
        guard count > 0 else { throw .truncatedHeader(path: path, fileSize: 0) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        let copied: Void? = source.withContiguousStorageIfAvailable { buffer.copyMemory(from: UnsafeRawBufferPointer($0)) }
        if copied == nil { _ = buffer.initializeMemory(as: UInt8.self, from: source) }
        do {
            try self.init(bytes: UnsafeRawBufferPointer(buffer), storage: .allocated, path: path)
        } catch {
            buffer.deallocate()
            throw error
        }
    }

    /// Parses the headers of `bytes`, which this object then owns as
    /// `storage` says (released in deinit). On a throw the caller still owns them.
    private init(bytes: UnsafeRawBufferPointer, storage: Storage, path: String) throws(ELFError) {
        let layout = try Layout(bytes, path: path)
        self.path = path
        self.bytes = bytes
        self.storage = storage
        self.header = layout.header
        self.programHeaders = layout.programHeaders
        self.sectionHeaders = layout.sectionHeaders
        self.sectionNames = layout.sectionNames
    }

    deinit {
        switch storage {
        case .mapped:
            if let base = bytes.baseAddress { Syscalls.unmap(base, size: bytes.count) }
        case .allocated:
            UnsafeMutableRawBufferPointer(mutating: bytes).deallocate()
        }
    }

    /// `sizeof(Elf64_Ehdr)`, `sizeof(Elf64_Phdr)`, `sizeof(Elf64_Shdr)` (gABI).
    static let headerSize = 64
    static let programHeaderSize = 56
    static let sectionHeaderSize = 64

    /// The file's length in bytes.
    public var fileSize: Int { bytes.count }

    /// The `PT_LOAD` segments, in file order (gABI requires ascending
    /// `p_vaddr`). A mapping from `/proc/PID/maps` with file offset `o`
    /// belongs to the segment whose `[p_offset, p_offset + p_filesz)` holds
    /// `o`; the load bias is then `start - o - (p_vaddr - p_offset)`.
    public var loadSegments: [ProgramHeader] { programHeaders.filter { $0.type == .load } }

    // MARK: - Sections

    /// The name of a section, from the section-name string table (gABI
    /// "String Table": NUL-terminated, indexed by byte offset). Nil when the
    /// file has no such table or `sh_name` points outside it.
    public func name(of section: SectionHeader) -> String? {
        guard let raw = nameBytes(section.nameOffset) else { return nil }
        return String(decoding: raw, as: UTF8.self)
    }

    /// The first section called `name` (e.g. ".text", ".eh_frame_hdr"), or nil
    /// if there is none. Compares bytes in place: allocates nothing. Throws
    /// when the section's bytes lie outside the file.
    public func section(named name: String) throws(ELFError) -> ELFSection? {
        guard let index = sectionIndex(named: name) else { return nil }
        return try section(at: index)
    }

    /// The index of the first section called `name`. Compares `name`'s
    /// bytes and the NUL after them in place, so a lookup costs
    /// O(sections × name length) whatever the string table holds.
    public func sectionIndex(named name: String) -> Int? {
        let count = name.utf8.count
        for (i, s) in sectionHeaders.enumerated() where i > 0 {
            let start = Int(s.nameOffset)
            guard start < sectionNames.count, sectionNames.count - start >= count else { continue }
            // The name ends at a NUL, or at the end of a table whose last byte is not NUL.
            guard start + count == sectionNames.count || sectionNames[start + count] == 0 else { continue }
            if UnsafeRawBufferPointer(rebasing: sectionNames[start..<start + count]).elementsEqual(name.utf8) { return i }
        }
        return nil
    }

    /// The section at `index` in the section header table, its bytes checked
    /// to lie inside the file.
    public func section(at index: Int) throws(ELFError) -> ELFSection {
        guard sectionHeaders.indices.contains(index) else {
            throw .badIndex(path: path, what: "section index", index: index, count: sectionHeaders.count)
        }
        let h = sectionHeaders[index]
        guard let r = checkedRange(h.offset.rawValue, h.fileSize, in: bytes.count) else {
            throw .outOfBounds(path: path, what: "section \(describeSection(index))", offset: h.offset.rawValue,
                               size: h.size, fileSize: bytes.count)
        }
        return ELFSection(file: self, index: index, header: h, bytes: UnsafeRawBufferPointer(rebasing: bytes[r]))
    }

    /// The file bytes of a segment (`[p_offset, p_offset + p_filesz)`),
    /// valid while this object lives.
    public func withContents<R>(of segment: ProgramHeader,
                                _ body: (UnsafeRawBufferPointer) throws(ELFError) -> R) throws(ELFError) -> R {
        guard let r = checkedRange(segment.offset.rawValue, segment.fileSize, in: bytes.count) else {
            throw .outOfBounds(path: path, what: "segment (p_type \(hex(UInt64(segment.type.rawValue))))",
                               offset: segment.offset.rawValue, size: segment.fileSize, fileSize: bytes.count)
        }
        return try body(UnsafeRawBufferPointer(rebasing: bytes[r]))
    }

    /// "5 (.text)" or "5" for error messages.
    func describeSection(_ index: Int) -> String {
        guard sectionHeaders.indices.contains(index), let n = name(of: sectionHeaders[index]), !n.isEmpty
        else { return "\(index)" }
        return "\(index) (\(n))"
    }

    /// The most bytes of a section name read. `sh_name` is any offset into
    /// `.shstrtab`, so in a table without NULs every name would run to its
    /// end, and naming each of n sections would cost O(n × table size).
    /// Section names are short (the longest in use, `.gnu.linkonce.*` and
    /// `.text.` + a mangled function name with `-ffunction-sections`, stay
    /// within a few KiB).
    static let maximumNameLength = 4096

    /// The NUL-terminated string at `offset` in `.shstrtab`, without the NUL
    /// (at most ``maximumNameLength`` bytes of it).
    func nameBytes(_ offset: UInt32) -> UnsafeRawBufferPointer? {
        let start = Int(offset)
        guard start < sectionNames.count else { return nil }
        let tail = UnsafeRawBufferPointer(rebasing: sectionNames[start..<min(sectionNames.count, start + Self.maximumNameLength)])
        // A name without its terminating NUL runs to the end of the table.
        let end = tail.firstIndex(of: 0) ?? tail.count
        return UnsafeRawBufferPointer(rebasing: tail[..<end])
    }
}

// MARK: - Decoding the header tables

/// The tables decoded at `init`, every range checked against the file.
private struct Layout {
    var header: ELFHeader
    var programHeaders: [ProgramHeader]
    var sectionHeaders: [SectionHeader]
    var sectionNames: UnsafeRawBufferPointer

    init(_ b: UnsafeRawBufferPointer, path: String) throws(ELFError) {
        let size = b.count
        // e_ident (gABI "ELF Identification"): EI_MAG0..3 = 7f 'E' 'L' 'F',
        // EI_CLASS = 4, EI_DATA = 5, EI_VERSION = 6, EI_OSABI = 7. The magic
        // first: a short text file is "not ELF" rather than "truncated".
        let magic: (UInt8, UInt8, UInt8, UInt8) = (0x7f, 0x45, 0x4c, 0x46)
        guard withUnsafeBytes(of: magic, { $0.prefix(size).elementsEqual(b.prefix(4)) }) else {
            throw .badMagic(path: path)
        }
        guard size >= ELFFile.headerSize else { throw .truncatedHeader(path: path, fileSize: size) }
        guard b[4] == 2 else { throw .unsupportedClass(path: path, elfClass: b[4]) }        // ELFCLASS64
        guard b[5] == 1 else { throw .unsupportedByteOrder(path: path, encoding: b[5]) }    // ELFDATA2LSB
        guard b[6] == 1 else { throw .unsupportedVersion(path: path, version: UInt32(b[6])) } // EV_CURRENT
        // Elf64_Ehdr after e_ident: e_type@16 u16, e_machine@18 u16,
        // e_version@20 u32, e_entry@24, e_phoff@32, e_shoff@40 u64,
        // e_flags@48 u32, e_ehsize@52, e_phentsize@54, e_phnum@56,
        // e_shentsize@58, e_shnum@60, e_shstrndx@62 u16.
        let version = b.u32(20)
        guard version == 1 else { throw .unsupportedVersion(path: path, version: version) }
        let phoff = b.u64(32), shoff = b.u64(40)
        let phentsize = Int(b.u16(54)), shentsize = Int(b.u16(58))
        var phnum = Int(b.u16(56)), shnum = Int(b.u16(60)), shstrndx = Int(b.u16(62))

        // Section 0 holds the real counts when they do not fit in 16 bits
        // (gABI "Sections", "Extended Section Header Table Indices" and
        // "PN_XNUM"): e_shnum 0 → sh_size, e_shstrndx SHN_XINDEX → sh_link,
        // e_phnum PN_XNUM (0xffff) → sh_info.
        if shoff != 0 {
            guard shentsize >= ELFFile.sectionHeaderSize else {
                throw .badEntrySize(path: path, table: "section header table", entrySize: shentsize,
                                    minimum: ELFFile.sectionHeaderSize)
            }
            guard let r0 = checkedRange(shoff, UInt64(ELFFile.sectionHeaderSize), in: size) else {
                throw .outOfBounds(path: path, what: "section header table", offset: shoff,
                                   size: UInt64(max(shnum, 1)) * UInt64(shentsize), fileSize: size)
            }
            let s0 = r0.lowerBound
            if shnum == 0 {
                let real = b.u64(s0 + 32)
                // More headers than the file has bytes for cannot be real.
                guard real <= UInt64(size / ELFFile.sectionHeaderSize) else {
                    throw .outOfBounds(path: path, what: "section header table", offset: shoff,
                                       size: real &* UInt64(shentsize), fileSize: size)
                }
                shnum = Int(real)
            }
            if shstrndx == 0xffff { shstrndx = Int(b.u32(s0 + 40)) }
            if phnum == 0xffff { phnum = Int(b.u32(s0 + 44)) }
        } else {
            shnum = 0
            shstrndx = 0
        }

        header = ELFHeader(osABI: b[7], type: ELFFileType(rawValue: b.u16(16)),
                           machine: ELFMachine(rawValue: b.u16(18)), entry: StatedAddress(b.u64(24)),
                           programHeaderOffset: FileOffset(phoff), sectionHeaderOffset: FileOffset(shoff),
                           flags: b.u32(48), programHeaderEntrySize: phentsize, programHeaderCount: phnum,
                           sectionHeaderEntrySize: shentsize, sectionHeaderCount: shnum,
                           sectionNameTableIndex: shstrndx)

        // Program headers (Elf64_Phdr): p_type@0 u32, p_flags@4 u32,
        // p_offset@8, p_vaddr@16, p_paddr@24, p_filesz@32, p_memsz@40, p_align@48 u64.
        var phdrs: [ProgramHeader] = []
        if phoff != 0 && phnum > 0 {
            guard phentsize >= ELFFile.programHeaderSize else {
                throw .badEntrySize(path: path, table: "program header table", entrySize: phentsize,
                                    minimum: ELFFile.programHeaderSize)
            }
            let total = UInt64(phnum) * UInt64(phentsize)
            guard let r = checkedRange(phoff, total, in: size) else {
                throw .outOfBounds(path: path, what: "program header table", offset: phoff, size: total,
                                   fileSize: size)
            }
            phdrs.reserveCapacity(phnum)
            for o in stride(from: r.lowerBound, to: r.upperBound, by: phentsize) {
                phdrs.append(ProgramHeader(
                    type: SegmentType(rawValue: b.u32(o)), flags: SegmentFlags(rawValue: b.u32(o + 4)),
                    offset: FileOffset(b.u64(o + 8)), virtualAddress: StatedAddress(b.u64(o + 16)),
                    fileSize: b.u64(o + 32), memorySize: b.u64(o + 40), alignment: b.u64(o + 48)))
            }
        }
        programHeaders = phdrs

        // Section headers (Elf64_Shdr): sh_name@0 u32, sh_type@4 u32,
        // sh_flags@8, sh_addr@16, sh_offset@24, sh_size@32 u64, sh_link@40 u32,
        // sh_info@44 u32, sh_addralign@48, sh_entsize@56 u64.
        var shdrs: [SectionHeader] = []
        if shnum > 0 {
            let total = UInt64(shnum) * UInt64(shentsize)
            guard let r = checkedRange(shoff, total, in: size) else {
                throw .outOfBounds(path: path, what: "section header table", offset: shoff, size: total,
                                   fileSize: size)
            }
            shdrs.reserveCapacity(shnum)
            for o in stride(from: r.lowerBound, to: r.upperBound, by: shentsize) {
                shdrs.append(SectionHeader(
                    nameOffset: b.u32(o), type: SectionType(rawValue: b.u32(o + 4)),
                    flags: SectionFlags(rawValue: b.u64(o + 8)), address: StatedAddress(b.u64(o + 16)),
                    offset: FileOffset(b.u64(o + 24)), size: b.u64(o + 32), link: b.u32(o + 40),
                    info: b.u32(o + 44), addressAlignment: b.u64(o + 48), entrySize: b.u64(o + 56)))
            }
        }
        sectionHeaders = shdrs

        // The section-name string table (gABI "String Table"). SHN_UNDEF (0)
        // means there is none.
        sectionNames = UnsafeRawBufferPointer(start: nil, count: 0)
        if shstrndx != 0 {
            guard shstrndx < shdrs.count else {
                throw .badIndex(path: path, what: "section-name string table index (e_shstrndx)",
                                index: shstrndx, count: shdrs.count)
            }
            let s = shdrs[shstrndx]
            guard let r = checkedRange(s.offset.rawValue, s.fileSize, in: size) else {
                throw .outOfBounds(path: path, what: "section-name string table (section \(shstrndx))",
                                   offset: s.offset.rawValue, size: s.size, fileSize: size)
            }
            sectionNames = UnsafeRawBufferPointer(rebasing: b[r])
        }
    }
}

// MARK: - Bounds-checked access

/// `[offset, offset + size)` as an index range of a buffer of `count` bytes,
/// or nil if any part lies outside it (overflow-safe).
@inline(__always) func checkedRange(_ offset: UInt64, _ size: UInt64, in count: Int) -> Range<Int>? {
    let n = UInt64(count)
    guard offset <= n, size <= n - offset else { return nil }
    return Int(offset)..<Int(offset + size)
}

extension UnsafeRawBufferPointer {
    // Little-endian loads; callers have checked the range (ELFDATA2LSB).
    @inline(__always) func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always) func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always) func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
}
