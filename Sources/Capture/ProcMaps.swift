import SprofBase
#if canImport(Glibc)
import Glibc
#endif

extension Mapping {
    /// The kernel appends " (deleted)" to the path of a file that was
    /// unlinked (or replaced by rename) after it was mapped (proc(5)); the
    /// path then names nothing, or another file.
    public var isDeletedFile: Bool { isFile && path.hasSuffix(ProcMaps.deletedSuffix) }
}

/// `/proc/PID/maps` (proc(5)). Each line, as `show_map_vma()` in the
/// kernel's fs/proc/task_mmu.c prints it:
///
///     address           perms offset  dev   inode      pathname
///     00400000-00452000 r-xp 00000000 08:02 173521     /usr/bin/dbus-daemon
///
/// `start-end` (hex, `[start, end)`), four permission characters (`r`, `w`,
/// `x`, then `p` private or `s` shared), the file offset (hex), the device
/// `major:minor` (hex), the inode (decimal), then, after padding spaces, the
/// path: empty for anonymous memory, `[heap]`, `[stack]`, `[vdso]`,
/// `[vvar]`, `[anon:NAME]` (prctl `PR_SET_VMA_ANON_NAME`), or a file path
/// that may contain spaces and may end in " (deleted)". A newline in a file
/// name is printed as `\012`, so every mapping is exactly one line.
public enum ProcMaps {
    static let deletedSuffix = " (deleted)"

    /// Parses the text of a maps file. Empty lines are skipped.
    public static func parse(_ text: String, pid: Int32? = nil) throws(CaptureError) -> [Mapping] {
        var text = text
        return try text.withUTF8 { bytes in
            Result { () throws(CaptureError) in try parse(bytes: UnsafeRawBufferPointer(bytes), pid: pid) }
        }.get()
    }

    /// Parses the bytes of a maps file. Empty lines are skipped.
    public static func parse(bytes: UnsafeRawBufferPointer, pid: Int32? = nil) throws(CaptureError) -> [Mapping] {
        var out: [Mapping] = []
        var lineStart = 0
        var lineNumber = 0
        while lineStart < bytes.count {
            let lineEnd = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            lineNumber += 1
            if lineEnd > lineStart {
                let line = UnsafeRawBufferPointer(rebasing: bytes[lineStart..<lineEnd])
                do {
                    out.append(try parseLine(line))
                } catch {
                    throw .malformedLine(pid: pid, lineNumber: lineNumber,
                                         line: String(decoding: line, as: UTF8.self), problem: error.problem)
                }
            }
            lineStart = lineEnd + 1
        }
        return out
    }

    /// Reads and parses `/proc/PID/maps`.
    public static func read(pid: Int32) throws(CaptureError) -> [Mapping] {
        let bytes = try readBytes(pid: pid)
        return try bytes.withUnsafeBytes { b in
            Result { () throws(CaptureError) in try parse(bytes: b, pid: pid) }
        }.get()
    }

    /// The raw contents of `/proc/PID/maps`. The file reports size 0, so it
    /// is read until EOF; the kernel produces it a page at a time and each
    /// read(2) returns whole lines.
    static func readBytes(pid: Int32) throws(CaptureError) -> [UInt8] {
        func mapped(_ e: Int32) -> CaptureError {
            switch e {
            case ENOENT, ESRCH: return .processNotFound(pid: pid)
            case EACCES, EPERM: return .permissionDenied(pid: pid)
            default: return .readFailed(pid: pid, errno: e)
            }
        }
        guard pid > 0 else { throw .processNotFound(pid: pid) }
        let fd: Int32
        do { fd = try Syscalls.open("/proc/\(pid)/maps", O_RDONLY | O_CLOEXEC) } catch { throw mapped(error.code) }
        defer { try? Syscalls.close(fd) }
        var out = [UInt8]()
        let chunk = 64 << 10
        var failure: Int32 = 0
        withUnsafeTemporaryAllocation(byteCount: chunk, alignment: 16) { buf in
            guard let base = buf.baseAddress else { return }
            while true {
                let n: Int
                do throws(Errno) { n = try Syscalls.read(fd, base, chunk) } catch {
                    failure = error.code
                    return
                }
                if n == 0 { return }
                out.append(contentsOf: UnsafeRawBufferPointer(start: base, count: n))
            }
        }
        if failure != 0 { throw mapped(failure) }
        return out
    }

    // MARK: - One line

    struct LineError: Error { var problem: String }

    /// Parses one line (without its newline).
    static func parseLine(_ b: UnsafeRawBufferPointer) throws(LineError) -> Mapping {
        var i = 0
        let start = try hex(b, &i, upTo: UInt8(ascii: "-"), field: "start address", maxDigits: 16)
        let end = try hex(b, &i, upTo: UInt8(ascii: " "), field: "end address", maxDigits: 16)
        guard start <= end else {
            throw LineError(problem: "start address \(hexString(start)) is above end address \(hexString(end))")
        }
        guard i + 5 <= b.count, b[i + 4] == UInt8(ascii: " ") else {
            throw LineError(problem: "permissions are not four characters followed by a space")
        }
        var perms = MappingPermissions()
        let p = (b[i], b[i + 1], b[i + 2], b[i + 3])
        switch p.0 { case UInt8(ascii: "r"): perms.insert(.read); case UInt8(ascii: "-"): break; default: throw badPerms(b, i) }
        switch p.1 { case UInt8(ascii: "w"): perms.insert(.write); case UInt8(ascii: "-"): break; default: throw badPerms(b, i) }
        switch p.2 { case UInt8(ascii: "x"): perms.insert(.execute); case UInt8(ascii: "-"): break; default: throw badPerms(b, i) }
        switch p.3 { case UInt8(ascii: "s"): perms.insert(.shared); case UInt8(ascii: "p"): break; default: throw badPerms(b, i) }
        i += 5
        let offset = try hex(b, &i, upTo: UInt8(ascii: " "), field: "offset", maxDigits: 16)
        // Device numbers: 12-bit major, 20-bit minor (include/linux/kdev_t.h).
        let major = try hex(b, &i, upTo: UInt8(ascii: ":"), field: "device major", maxDigits: 8)
        let minor = try hex(b, &i, upTo: UInt8(ascii: " "), field: "device minor", maxDigits: 8)
        let inode = try decimal(b, &i, field: "inode")
        // Padding, then the path (which keeps any spaces of its own, trailing ones included).
        while i < b.count && b[i] == UInt8(ascii: " ") { i += 1 }
        let path = String(decoding: UnsafeRawBufferPointer(rebasing: b[i...]), as: UTF8.self)
        return Mapping(start: ProcessAddress(start), end: ProcessAddress(end), fileOffset: FileOffset(offset),
                       permissions: perms, deviceMajor: UInt32(major), deviceMinor: UInt32(minor),
                       inode: inode, path: path)
    }

    private static func badPerms(_ b: UnsafeRawBufferPointer, _ i: Int) -> LineError {
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: b[i..<min(i + 4, b.count)]), as: UTF8.self)
        return LineError(problem: "bad permissions '\(text)' (expected [r-][w-][x-][ps])")
    }

    /// Hex digits up to `terminator`, which is consumed.
    private static func hex(_ b: UnsafeRawBufferPointer, _ i: inout Int, upTo terminator: UInt8, field: String,
                            maxDigits: Int) throws(LineError) -> UInt64 {
        var v: UInt64 = 0
        var digits = 0
        while i < b.count && b[i] != terminator {
            let c = b[i]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw LineError(problem: "\(field) has a non-hex character '\(printable(c))'")
            }
            digits += 1
            guard digits <= maxDigits else { throw LineError(problem: "\(field) has more than \(maxDigits) hex digits") }
            v = v << 4 | UInt64(d)
            i += 1
        }
        guard digits > 0 else { throw LineError(problem: "\(field) is missing") }
        guard i < b.count else {
            throw LineError(problem: "line ends after the \(field)")
        }
        i += 1
        return v
    }

    /// Decimal digits up to a space or the end of the line.
    private static func decimal(_ b: UnsafeRawBufferPointer, _ i: inout Int, field: String) throws(LineError) -> UInt64 {
        var v: UInt64 = 0
        var digits = 0
        while i < b.count && b[i] != UInt8(ascii: " ") {
            let c = b[i]
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else {
                throw LineError(problem: "\(field) has a non-digit character '\(printable(c))'")
            }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            guard !o1 && !o2 else { throw LineError(problem: "\(field) does not fit in 64 bits") }
            v = s
            digits += 1
            i += 1
        }
        guard digits > 0 else { throw LineError(problem: "\(field) is missing") }
        return v
    }

    private static func printable(_ c: UInt8) -> String {
        c >= 0x20 && c < 0x7f ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
    }
}

@inline(__always) private func hexString(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
