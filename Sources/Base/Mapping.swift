/// A GNU build-id (the `NT_GNU_BUILD_ID` note's descriptor): identifies an ELF
/// file's contents independent of its path.
public struct BuildID: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    /// Parses lowercase or uppercase hex; nil if not an even-length hex string.
    public init?(hex: String) {
        var out: [UInt8] = []
        var chars = Array(hex.utf8)
        guard chars.count % 2 == 0, !chars.isEmpty else { return nil }
        func nib(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        out.reserveCapacity(chars.count / 2)
        while !chars.isEmpty {
            guard let hi = nib(chars[0]), let lo = nib(chars[1]) else { return nil }
            out.append(hi << 4 | lo)
            chars.removeFirst(2)
        }
        bytes = out
    }
    public var description: String {
        let digits = Array("0123456789abcdef".utf8)
        var s = [UInt8]()
        s.reserveCapacity(bytes.count * 2)
        for b in bytes { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 15)]) }
        return String(decoding: s, as: UTF8.self)
    }
}

/// Permissions of a mapping, as the `perms` column of `/proc/PID/maps`
/// (proc(5)): r, w, x, and p (private, copy-on-write) or s (shared).
public struct MappingPermissions: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let read = MappingPermissions(rawValue: 1)
    public static let write = MappingPermissions(rawValue: 2)
    public static let execute = MappingPermissions(rawValue: 4)
    public static let shared = MappingPermissions(rawValue: 8)
    public var description: String {
        (contains(.read) ? "r" : "-") + (contains(.write) ? "w" : "-")
            + (contains(.execute) ? "x" : "-") + (contains(.shared) ? "s" : "p")
    }
}

/// One line of `/proc/PID/maps`: `[start, end)` of the process's address space
/// backed by `path` from `fileOffset` on.
public struct Mapping: Hashable, Sendable {
    public var start: ProcessAddress
    public var end: ProcessAddress
    public var fileOffset: FileOffset
    public var permissions: MappingPermissions
    /// The backing file's device (major, minor) and inode; 0 for anonymous memory.
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    public var inode: UInt64
    /// The path as the kernel prints it: empty for anonymous memory,
    /// `[stack]`, `[vdso]`, `[heap]` for special mappings; a file path
    /// possibly ending in " (deleted)".
    public var path: String
    /// The file's build-id when it has one and it could be read.
    public var buildID: BuildID?

    public init(start: ProcessAddress, end: ProcessAddress, fileOffset: FileOffset,
                permissions: MappingPermissions, deviceMajor: UInt32 = 0, deviceMinor: UInt32 = 0,
                inode: UInt64 = 0, path: String, buildID: BuildID? = nil) {
        self.start = start; self.end = end; self.fileOffset = fileOffset
        self.permissions = permissions; self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor; self.inode = inode; self.path = path; self.buildID = buildID
    }

    @inlinable public func contains(_ address: ProcessAddress) -> Bool {
        address >= start && address < end
    }
    public var isExecutable: Bool { permissions.contains(.execute) }
    /// A file-backed mapping (not anonymous, not `[special]`).
    public var isFile: Bool { inode != 0 && !path.isEmpty && !path.hasPrefix("[") }
    public var size: UInt64 { end.rawValue &- start.rawValue }
}
