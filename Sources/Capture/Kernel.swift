#if canImport(Glibc)
import Glibc
#endif

/// Facts about the running kernel and this process, read from /proc and /sys.
public enum KernelInfo {
    /// `uname -r`.
    public static var release: String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    public static var hostname: String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: u.nodename) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// (major, minor) of the release, e.g. (6, 18).
    public static var version: (major: Int, minor: Int) {
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return (parts.first ?? 0, parts.count > 1 ? parts[1] : 0)
    }

    /// The whole file as UTF-8 text (read until EOF: /proc and /sys files
    /// report size 0); nil if it cannot be opened. A read error ends it early
    /// with what was read so far.
    public static func readFile(_ path: String) -> String? {
        guard let fd = try? Syscalls.open(path, O_RDONLY | O_CLOEXEC) else { return nil }
        defer { try? Syscalls.close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { b in (try? Syscalls.read(fd, b.baseAddress!, b.count)) ?? 0 }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func readInt(_ path: String) -> Int? {
        readFile(path).flatMap { Int($0.trimmed(" \n")) }
    }

    /// kernel.perf_event_max_sample_rate (100000 by default; the kernel lowers
    /// it when sampling takes too long).
    public static var maxSampleRate: Int { readInt("/proc/sys/kernel/perf_event_max_sample_rate") ?? 100_000 }
    /// kernel.perf_event_paranoid.
    public static var perfEventParanoid: Int? { readInt("/proc/sys/kernel/perf_event_paranoid") }
    public static var unprivilegedBPFDisabled: Int? { readInt("/proc/sys/kernel/unprivileged_bpf_disabled") }
    /// The active lockdown mode ("none", "integrity", "confidentiality"), nil when securityfs says nothing.
    public static var lockdown: String? {
        guard let s = readFile("/sys/kernel/security/lockdown") else { return nil }
        if let open = s.firstIndex(of: "["), let close = s.firstIndex(of: "]"), open < close {
            return String(s[s.index(after: open)..<close])
        }
        return nil
    }
    public static var hasBTF: Bool { access("/sys/kernel/btf/vmlinux", R_OK) == 0 }

    /// CPUs listed in /sys/devices/system/cpu/online ("0-3,5").
    public static var onlineCPUs: [Int32] {
        parseCPUList(readFile("/sys/devices/system/cpu/online") ?? "0")
    }

    public static func parseCPUList(_ text: String) -> [Int32] {
        var cpus: [Int32] = []
        for part in text.trimmed(" \n").split(separator: ",") {
            let ends = part.split(separator: "-").compactMap { Int32($0) }
            if ends.count == 2, ends[0] <= ends[1] { cpus += Array(ends[0]...ends[1]) } else if ends.count == 1 { cpus.append(ends[0]) }
        }
        return cpus
    }

    /// Effective capabilities of this process (CapEff in /proc/self/status).
    public static var effectiveCapabilities: UInt64 {
        guard let status = readFile("/proc/self/status") else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(String(line.dropFirst(7)).trimmed(" \t"), radix: 16) ?? 0
        }
        return 0
    }

    /// Capability numbers, include/uapi/linux/capability.h.
    public enum Capability: Int, CaseIterable, Sendable {
        case sysAdmin = 21, sysPtrace = 19, dacReadSearch = 2, perfmon = 38, bpf = 39
        public var name: String {
            switch self {
            case .sysAdmin: return "CAP_SYS_ADMIN"
            case .sysPtrace: return "CAP_SYS_PTRACE"
            case .dacReadSearch: return "CAP_DAC_READ_SEARCH"
            case .perfmon: return "CAP_PERFMON"
            case .bpf: return "CAP_BPF"
            }
        }
    }

    public static func has(_ cap: Capability) -> Bool { effectiveCapabilities & (1 << UInt64(cap.rawValue)) != 0 }

    /// The capabilities sprof still lacks to load BPF and open perf events;
    /// empty when it has enough. CAP_SYS_ADMIN covers both (pre-5.8 kernels
    /// know nothing else).
    public static var missingCapabilities: [String] {
        if has(.sysAdmin) { return [] }
        return [Capability.bpf, .perfmon].filter { !has($0) }.map(\.name)
    }

    /// Mounts tracefs at /sys/kernel/tracing if no tracefs is mounted (classic
    /// tracepoints and kprobes are found through it). Returns where it is.
    @discardableResult
    public static func ensureTracefs() -> String? {
        for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] where access(dir + "/events", F_OK) == 0 {
            return dir
        }
        if mount("nodev", "/sys/kernel/tracing", "tracefs", 0, nil) == 0 { return "/sys/kernel/tracing" }
        return nil
    }
}

extension String {
    func trimmed(_ set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
