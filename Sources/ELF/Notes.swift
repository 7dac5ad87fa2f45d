import SprofBase

/// One note (gABI "Note Section"; elf(5) "Notes (Nhdr)"): an `Elf64_Nhdr`
/// of three 4-byte words `n_namesz`, `n_descsz`, `n_type`, then the owner
/// name (`n_namesz` bytes including its NUL) and the descriptor (`n_descsz`
/// bytes), each padded to the note area's alignment.
///
/// `name` and `descriptor` point into the file's mapping; the note holds its
/// ``ELFFile`` so they stay valid as long as the note value does.
/// (`@unchecked`: the bytes are read-only and owned by `file`.)
public struct ELFNote: @unchecked Sendable {
    public let file: ELFFile
    /// `n_type`; its meaning depends on the owner (`NT_GNU_BUILD_ID` = 3 for "GNU").
    public let type: UInt32
    /// The owner name without its terminating NUL (e.g. "GNU", "Go", "stapsdt").
    public let name: UnsafeRawBufferPointer
    /// The descriptor bytes.
    public let descriptor: UnsafeRawBufferPointer
    /// File offset of the note's header.
    public let offset: FileOffset

    /// The owner name as a string (allocates).
    public var owner: String { String(decoding: name, as: UTF8.self) }

    /// Whether the owner name is `owner`, compared in place.
    public func isOwned(by owner: String) -> Bool {
        name.count == owner.utf8.count && name.elementsEqual(owner.utf8)
    }

    /// `NT_GNU_BUILD_ID` (binutils include/elf/common.h): the descriptor is
    /// the build-id bit string.
    public static let gnuBuildIDType: UInt32 = 3
}

/// Iterates the notes of a file without allocating: the notes of every
/// `SHT_NOTE` section, or, when the file has no section headers (or no note
/// sections), of every `PT_NOTE` segment. Not both: the segments cover the
/// same bytes as the allocated note sections, and reading both would yield
/// each note twice.
///
/// `next()` throws when a note area lies outside the file or a note's sizes
/// overrun its area, rather than guessing where the next note starts, and
/// when the note areas together hold more bytes than the file: sections do
/// not overlap in a well-formed file (gABI "Sections"), so that many means
/// headers pointing at the same bytes over and over, which would cost
/// O(headers × file size) to read (a 1 MB file can hold 16,000 headers).
public struct ELFNoteIterator {
    public let file: ELFFile
    private let useSections: Bool
    /// Next section/segment index to look at.
    private var tableIndex = 0
    /// The current note area: absolute file offsets, and its alignment.
    private var cursor = 0
    private var end = 0
    private var alignment = 4
    /// Bytes of the note areas entered so far.
    private var visited: UInt64 = 0

    init(file: ELFFile) {
        self.file = file
        useSections = file.sectionHeaders.contains { $0.type == .note }
    }

    /// The next note, nil at the end.
    public mutating func next() throws(ELFError) -> ELFNote? {
        while cursor >= end {
            guard try advanceArea() else { return nil }
        }
        let b = file.bytes
        let at = cursor
        // Elf64_Nhdr: n_namesz@0, n_descsz@4, n_type@8 (4 bytes each).
        guard end - at >= 12 else {
            throw .badNote(path: file.path, offset: UInt64(at),
                           problem: "only \(end - at) bytes left in the note area, less than a 12-byte note header")
        }
        let namesz = UInt64(b.u32(at)), descsz = UInt64(b.u32(at + 4)), type = b.u32(at + 8)
        let a = UInt64(alignment)
        let nameStart = UInt64(at) + 12
        let nameEnd = nameStart + namesz              // ≤ 2^32 + file size: cannot overflow
        let descStart = (nameEnd + a - 1) & ~(a - 1)
        let descEnd = descStart + descsz
        guard nameEnd <= UInt64(end) else {
            throw .badNote(path: file.path, offset: UInt64(at),
                           problem: "owner name of \(namesz) bytes runs past the end of its note area")
        }
        guard descEnd <= UInt64(end) else {
            throw .badNote(path: file.path, offset: UInt64(at),
                           problem: "descriptor of \(descsz) bytes runs past the end of its note area")
        }
        // A trailing pad the producer left out is tolerated.
        cursor = Int(min((descEnd + a - 1) & ~(a - 1), UInt64(end)))
        // n_namesz counts the terminating NUL; drop it (and any padding NULs).
        var name = UnsafeRawBufferPointer(rebasing: b[Int(nameStart)..<Int(nameEnd)])
        if let nul = name.firstIndex(of: 0) { name = UnsafeRawBufferPointer(rebasing: name[..<nul]) }
        return ELFNote(file: file, type: type, name: name,
                       descriptor: UnsafeRawBufferPointer(rebasing: b[Int(descStart)..<Int(descEnd)]),
                       offset: FileOffset(UInt64(at)))
    }

    /// Moves to the next note area; false when there is none.
    private mutating func advanceArea() throws(ELFError) -> Bool {
        if useSections {
            let headers = file.sectionHeaders
            while tableIndex < headers.count {
                let i = tableIndex
                tableIndex += 1
                let s = headers[i]
                guard s.type == .note else { continue }
                guard let r = checkedRange(s.offset.rawValue, s.size, in: file.bytes.count) else {
                    throw .outOfBounds(path: file.path, what: "note section \(file.describeSection(i))",
                                       offset: s.offset.rawValue, size: s.size, fileSize: file.bytes.count)
                }
                try setArea(r, alignment: s.addressAlignment)
                return true
            }
        } else {
            let headers = file.programHeaders
            while tableIndex < headers.count {
                let i = tableIndex
                tableIndex += 1
                let p = headers[i]
                guard p.type == .note else { continue }
                guard let r = checkedRange(p.offset.rawValue, p.fileSize, in: file.bytes.count) else {
                    throw .outOfBounds(path: file.path, what: "note segment (program header \(i))",
                                       offset: p.offset.rawValue, size: p.fileSize, fileSize: file.bytes.count)
                }
                try setArea(r, alignment: p.alignment)
                return true
            }
        }
        return false
    }

    /// The gABI pads name and descriptor to 4 bytes. The one exception in
    /// use is `.note.gnu.property` (`NT_GNU_PROPERTY_TYPE_0`), which on
    /// 64-bit targets is 8-byte aligned and says so in `sh_addralign` /
    /// `p_align` (Linux Extensions to gABI, "Program Property"); glibc, LLVM
    /// and Go read an area with alignment 8 that way, and so do we.
    private mutating func setArea(_ r: Range<Int>, alignment align: UInt64) throws(ELFError) {
        visited += UInt64(r.count)
        guard visited <= UInt64(file.bytes.count) else {
            throw .badNote(path: file.path, offset: UInt64(r.lowerBound),
                           problem: "the note areas add up to more bytes than the file has (overlapping note sections or segments)")
        }
        cursor = r.lowerBound
        end = r.upperBound
        alignment = align == 8 ? 8 : 4
    }
}

extension ELFFile {
    /// An iterator over the file's notes (see ``ELFNoteIterator``).
    public func makeNoteIterator() -> ELFNoteIterator { ELFNoteIterator(file: self) }

    /// All notes, in file order.
    public func notes() throws(ELFError) -> [ELFNote] {
        var it = makeNoteIterator()
        var out: [ELFNote] = []
        while let n = try it.next() { out.append(n) }
        return out
    }

    /// The GNU build-id: the descriptor of the first note owned by "GNU"
    /// with type `NT_GNU_BUILD_ID` (3), as `ld --build-id` writes into
    /// `.note.gnu.build-id`. Nil when the file has none (or an empty one).
    /// Throws only when a note before it is corrupt.
    public func buildID() throws(ELFError) -> BuildID? {
        var it = makeNoteIterator()
        while let n = try it.next() {
            if n.type == ELFNote.gnuBuildIDType, n.isOwned(by: "GNU"), !n.descriptor.isEmpty {
                return BuildID(Array(n.descriptor))
            }
        }
        return nil
    }

    /// The `.gnu_debuglink` section, nil if the file has none. Its layout
    /// (GDB manual, "Debugging Information in Separate Files"): the debug
    /// file's name, NUL-terminated, zero-padded to a multiple of 4 bytes,
    /// then the 4-byte CRC-32 of the debug file in the file's byte order.
    public func debugLink() throws(ELFError) -> DebugLink? {
        guard let s = try section(named: ".gnu_debuglink") else { return nil }
        let b = s.bytes
        guard let nul = b.firstIndex(of: 0) else {
            throw .badDebugLink(path: path, problem: "the file name has no terminating NUL")
        }
        guard nul > 0 else { throw .badDebugLink(path: path, problem: "the file name is empty") }
        let crcAt = (nul + 1 + 3) & ~3
        guard crcAt + 4 <= b.count else {
            throw .badDebugLink(path: path, problem: "the section is \(b.count) bytes, too short for the CRC after the \(nul)-byte name")
        }
        return DebugLink(fileName: String(decoding: UnsafeRawBufferPointer(rebasing: b[..<nul]), as: UTF8.self),
                         crc32: b.u32(crcAt))
    }
}
