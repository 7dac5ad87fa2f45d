import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// Where the file behind a mapping, and its separate debug file, can be
/// opened: shared by the unwinder (which wants CFI) and the symbolizer (which
/// wants symbols and DWARF), so both find the same files the same way.
public enum ModuleFiles {
    /// The paths to try for the file `mapping` maps in process `pid`, in order:
    ///
    /// - `/proc/PID/root/PATH`: the path as the process sees it, through its
    ///   mount namespace (a container's files), resolved inside that root
    ///   (``ELFFile/init(path:)``: `openat2` with `RESOLVE_IN_ROOT`);
    /// - `/proc/PID/map_files/START-END`: the very inode mapped, even when the
    ///   file was replaced or deleted since (proc(5); needs CAP_SYS_ADMIN, or
    ///   CAP_CHECKPOINT_RESTORE since Linux 5.9: fs/proc/base.c
    ///   `proc_map_files_get_link`);
    /// - `PATH` itself (with `includePlainPath`), for a process that has
    ///   exited: only when the build-id can prove it is the same file, or the
    ///   process shares our root (a container's path names a host file of
    ///   someone else's choosing otherwise).
    ///
    /// A `" (deleted)"` suffix, which the kernel appends to the path of an
    /// unlinked file (fs/d_path.c), is dropped. With no `pid`, only `PATH`.
    public static func candidates(for mapping: Mapping, pid: Int32?, includePlainPath: Bool) -> [String] {
        let path = plainPath(of: mapping)
        var out: [String] = []
        if let pid {
            out.append("/proc/\(pid)/root\(path)")
            out.append("/proc/\(pid)/map_files/\(String(mapping.start.rawValue, radix: 16))-\(String(mapping.end.rawValue, radix: 16))")
        }
        if pid == nil || (includePlainPath && (mapping.buildID != nil || sharesOurRoot(pid: pid!))) {
            out.append(path)
        }
        return out
    }

    /// Whether process `pid`'s root directory is ours (same device and inode
    /// as `/`): its paths then name the same files as ours. False when it
    /// cannot be told (the process is gone: its root cannot be read).
    public static func sharesOurRoot(pid: Int32) -> Bool {
        guard let theirs = Syscalls.identity(of: "/proc/\(pid)/root"), let ours = Syscalls.identity(of: "/") else { return false }
        return theirs == ours
    }

    /// The mapping's path without the kernel's `" (deleted)"` suffix.
    public static func plainPath(of mapping: Mapping) -> String {
        mapping.path.hasSuffix(" (deleted)") ? String(mapping.path.dropLast(10)) : mapping.path
    }

    /// Opens the first of `candidates` that is an ELF file with the
    /// mapping's build-id (when the recording knows it). A candidate inside a
    /// process (`/proc/PID/root/...`, `/proc/PID/map_files/...`) must also be
    /// the file mapped: the device and inode of `mapping`'s maps line (when
    /// known), so a path the process replaced or pointed elsewhere since is
    /// not taken for it. On failure, the reason for each candidate tried, in words.
    public static func open(_ candidates: [String], expecting buildID: BuildID?, mapping: Mapping? = nil) -> Result<ELFFile, OpenFailure> {
        var reasons: [String] = []
        let expected = mapping.flatMap(FileIdentity.init(mapping:))
        for candidate in candidates {
            let fd: Int32
            switch Syscalls.openFile(candidate) {
            case .failed(let code):
                reasons.append("\(candidate): \(Syscalls.describe(errno: code))")
                continue
            case .notRegular:
                reasons.append("\(candidate): not a regular file")
                continue
            case .file(let opened, let identity):
                if let expected, candidate.hasPrefix("/proc/"), identity != expected {
                    Syscalls.close(opened)
                    reasons.append("\(candidate) is not the mapped file (\(identity), the mapping has \(expected)): "
                                   + "it was replaced, or a link leads elsewhere")
                    continue
                }
                fd = opened
            }
            defer { Syscalls.close(fd) }
            do {
                let elf = try ELFFile(fileDescriptor: fd, path: candidate)
                if let expected = buildID, let actual = try? elf.buildID(), actual != expected {
                    reasons.append("\(candidate) has build-id \(actual), the recording saw \(expected) (the file was rebuilt or replaced)")
                    continue
                }
                return .success(elf)
            } catch {
                reasons.append("\(error)")
            }
        }
        return .failure(OpenFailure(reason: reasons.last ?? "no such file", tried: reasons))
    }

    /// Why no candidate could be opened.
    public struct OpenFailure: Error, Sendable, CustomStringConvertible {
        /// The reason for the last candidate tried.
        public var reason: String
        /// The reason for each candidate, in order.
        public var tried: [String] = []
        public var description: String { reason }
    }

    /// Opens `path` for reading as ``ELFFile/init(path:)`` does (a regular
    /// file only; inside a process's root when under `/proc/PID/root/`): for
    /// a reader that needs its own descriptor (libdw). The fd, or `-errno`.
    public static func openForReading(_ path: String) -> Int32 {
        switch Syscalls.openFile(path) {
        case .file(let fd, _): return fd
        case .failed(let code): return -code
        case .notRegular: return -EINVAL
        }
    }

    /// Guards a read-only mapping of a file made by someone else (libelf's
    /// `elf_rawfile`) as ``ELFFile`` guards its own: a truncation under it
    /// reads as zeros. Call ``unguard(_:)`` before it is unmapped.
    public static func guardMapping(_ base: UnsafeRawPointer, size: Int) { Syscalls.guardMapping(base, size: size) }
    public static func unguard(_ base: UnsafeRawPointer) { Syscalls.unguardMapping(base) }

    /// Whether this kernel has openat2(2) (Linux 5.6), which opening a file
    /// inside a process's root needs.
    public static let openat2Available: Bool = Syscalls.probeOpenat2()

    /// Pages of mapped files that read as zeros because their file was
    /// truncated under the mapping (a SIGBUS turned into a zero page), since start.
    public static var truncatedPagesRead: UInt64 { Syscalls.guardHits }

    /// Where a separate debug file for `elf` may be, in GDB's search order
    /// (GDB manual, "Separate Debug Files"): `/usr/lib/debug/.build-id/xx/rest.debug`
    /// by build-id, then the `.gnu_debuglink` name beside the binary, in its
    /// `.debug/` directory, and under `/usr/lib/debug/` + the binary's directory.
    public static func debugFileCandidates(for elf: ELFFile, buildID: BuildID?,
                                           debugRoot: String = "/usr/lib/debug") -> [String] {
        let id = buildID ?? (try? elf.buildID())
        var candidates: [String] = []
        if let id, id.bytes.count > 1 {
            let hex = id.description
            candidates.append("\(debugRoot)/.build-id/\(hex.prefix(2))/\(hex.dropFirst(2)).debug")
        }
        if let link = try? elf.debugLink() {
            let dir = elf.path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
            candidates += ["\(dir)/\(link.fileName)", "\(dir)/.debug/\(link.fileName)", "\(debugRoot)\(dir)/\(link.fileName)"]
        }
        return candidates.filter { $0 != elf.path }
    }

    /// The first debug-file candidate that is readable, has the section
    /// `required` (`.debug_frame` for unwinding, `.debug_info` or `.symtab`
    /// for names) and the same build-id as `elf` (when both have one: a
    /// debug file of another build would give wrong answers).
    public static func debugFile(for elf: ELFFile, buildID: BuildID?, having required: [String],
                                 debugRoot: String = "/usr/lib/debug") -> ELFFile? {
        let id = buildID ?? (try? elf.buildID())
        for path in debugFileCandidates(for: elf, buildID: id, debugRoot: debugRoot) {
            guard let debug = try? ELFFile(path: path) else { continue }
            guard required.contains(where: { debug.sectionIndex(named: $0) != nil }) else { continue }
            if let id, let other = try? debug.buildID(), other != id { continue }
            return debug
        }
        return nil
    }

    /// This process's vDSO, standing in for a target's: the kernel maps the
    /// same image into every process of an architecture (arch/x86/entry/vdso),
    /// at the address `getauxval(AT_SYSINFO_EHDR)` gives (getauxval(3)).
    /// Copied, so it outlives nothing.
    public static let vdso: ELFFile? = {
        // getauxval is in glibc but not in Swift's Glibc module; AT_SYSINFO_EHDR is 33 (elf.h).
        typealias GetAuxval = @convention(c) (UInt) -> UInt
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "getauxval") else { return nil }
        let base = unsafeBitCast(sym, to: GetAuxval.self)(33)
        guard base != 0, let p = UnsafeRawPointer(bitPattern: UInt(base)) else { return nil }
        // The image ends with its section header table (e_shoff + e_shnum * e_shentsize).
        let shoff = p.loadUnaligned(fromByteOffset: 0x28, as: UInt64.self)
        let shentsize = UInt64(p.loadUnaligned(fromByteOffset: 0x3A, as: UInt16.self))
        let shnum = UInt64(p.loadUnaligned(fromByteOffset: 0x3C, as: UInt16.self))
        let size = Int(shoff &+ shentsize &* shnum)
        guard size > 64, size < 1 << 20 else { return nil }
        return try? ELFFile(copying: UnsafeRawBufferPointer(start: p, count: size), path: "[vdso]")
    }()
}
