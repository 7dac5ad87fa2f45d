/// Everything that can go wrong reading an ELF file. Each case names the file
/// and says what is wrong in words a user can act on; offsets are printed in
/// hex (as `readelf` prints them), sizes in decimal.
public enum ELFError: Error, Equatable, Sendable, CustomStringConvertible {
    /// open(2) failed (`errno`).
    case cannotOpen(path: String, errno: Int32)
    /// The path names a directory, device, FIFO, ... rather than a file.
    case notRegularFile(path: String)
    /// fstat(2) or mmap(2) failed (`errno`).
    case cannotMap(path: String, errno: Int32)
    /// The file is shorter than the 64-byte ELF64 header.
    case truncatedHeader(path: String, fileSize: Int)
    /// The first four bytes are not `0x7f 'E' 'L' 'F'` (gABI `e_ident[EI_MAG0..3]`).
    case badMagic(path: String)
    /// `e_ident[EI_CLASS]` is not `ELFCLASS64`.
    case unsupportedClass(path: String, elfClass: UInt8)
    /// `e_ident[EI_DATA]` is not `ELFDATA2LSB`.
    case unsupportedByteOrder(path: String, encoding: UInt8)
    /// `e_ident[EI_VERSION]` or `e_version` is not `EV_CURRENT` (1).
    case unsupportedVersion(path: String, version: UInt32)
    /// `e_phentsize`/`e_shentsize` is smaller than the structure it must hold.
    case badEntrySize(path: String, table: String, entrySize: Int, minimum: Int)
    /// A table, section, segment or note area lies (partly) outside the file.
    case outOfBounds(path: String, what: String, offset: UInt64, size: UInt64, fileSize: Int)
    /// An index stored in the file (`e_shstrndx`) names no section.
    case badIndex(path: String, what: String, index: Int, count: Int)
    /// A note's sizes do not fit its note area (gABI "Note Section").
    case badNote(path: String, offset: UInt64, problem: String)
    /// The `.gnu_debuglink` section is not a NUL-terminated name plus CRC.
    case badDebugLink(path: String, problem: String)

    public var path: String {
        switch self {
        case .cannotOpen(let p, _), .notRegularFile(let p), .cannotMap(let p, _), .truncatedHeader(let p, _),
             .badMagic(let p), .unsupportedClass(let p, _), .unsupportedByteOrder(let p, _),
             .unsupportedVersion(let p, _), .badEntrySize(let p, _, _, _), .outOfBounds(let p, _, _, _, _),
             .badIndex(let p, _, _, _), .badNote(let p, _, _), .badDebugLink(let p, _):
            return p
        }
    }

    public var description: String {
        switch self {
        case .cannotOpen(let p, let e):
            return "\(p): cannot open: \(Syscalls.describe(errno: e))"
        case .notRegularFile(let p):
            return "\(p): not a regular file"
        case .cannotMap(let p, let e):
            return "\(p): cannot map the file into memory: \(Syscalls.describe(errno: e))"
        case .truncatedHeader(let p, let n):
            if n == 0 { return "\(p): not an ELF file (the file is empty)" }
            return "\(p): not an ELF file (\(n) bytes long, shorter than the 64-byte ELF64 header)"
        case .badMagic(let p):
            return "\(p): not an ELF file (bad magic)"
        case .unsupportedClass(let p, let c):
            if c == 1 { return "\(p): 32-bit ELF file (ELFCLASS32); sprof reads only 64-bit ELF files" }
            return "\(p): unknown ELF class \(c) (expected 2, ELFCLASS64); the file is corrupt"
        case .unsupportedByteOrder(let p, let d):
            if d == 2 { return "\(p): big-endian ELF file (ELFDATA2MSB); sprof reads only little-endian ELF files" }
            return "\(p): unknown ELF data encoding \(d) (expected 1, ELFDATA2LSB); the file is corrupt"
        case .unsupportedVersion(let p, let v):
            return "\(p): unknown ELF version \(v) (expected 1, EV_CURRENT); the file is corrupt"
        case .badEntrySize(let p, let table, let size, let minimum):
            return "\(p): \(table) entries are \(size) bytes, smaller than the \(minimum) bytes each needs; the file is corrupt"
        case .outOfBounds(let p, let what, let offset, let size, let fileSize):
            return "\(p): \(what) at offset \(hex(offset)) (\(size) bytes) runs past the end of the \(fileSize)-byte file; the file is truncated or corrupt"
        case .badIndex(let p, let what, let index, let count):
            return "\(p): \(what) \(index) is out of range (the file has \(count) sections); the file is corrupt"
        case .badNote(let p, let offset, let problem):
            return "\(p): corrupt note at offset \(hex(offset)): \(problem)"
        case .badDebugLink(let p, let problem):
            return "\(p): corrupt .gnu_debuglink section: \(problem)"
        }
    }
}

@inline(__always) func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
