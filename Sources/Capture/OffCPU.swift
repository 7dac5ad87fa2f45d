import CLibBPF
import CSprof
import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// The off-CPU attach points, in the order sprof prefers them: kprobe and
/// fentry see `finish_task_switch` itself (the task that just got the CPU
/// back, with its own stack); the sched_switch tracepoints fire in the task
/// that is leaving the CPU, so the user stack of a long wait is copied when
/// the task next runs (bpf/sprof.bpf.c, "Off-CPU").
///
/// The raw value names the tiny program in bpf/probe.bpf.c that `sprof
/// doctor` tries.
public enum OffCPUAttachPoint: String, CaseIterable, Sendable {
    case kprobe = "probe_kprobe"
    case fentry = "probe_fentry"
    case tpBTF = "probe_tp_btf"
    case rawTracepoint = "probe_raw_tp"
    case tracepoint = "probe_tracepoint"

    public var title: String {
        switch self {
        case .kprobe: return "kprobe on finish_task_switch"
        case .fentry: return "fentry on finish_task_switch"
        case .tpBTF: return "tp_btf/sched_switch tracepoint"
        case .rawTracepoint: return "raw_tp/sched_switch tracepoint"
        case .tracepoint: return "tracepoint sched/sched_switch"
        }
    }

    /// The name `--off-cpu-attach` and the recording's metadata use.
    public var shortName: String {
        switch self {
        case .kprobe: return "kprobe"
        case .fentry: return "fentry"
        case .tpBTF: return "tp_btf"
        case .rawTracepoint: return "raw_tp"
        case .tracepoint: return "tracepoint"
        }
    }

    public init?(shortName: String) {
        guard let p = Self.allCases.first(where: { $0.shortName == shortName }) else { return nil }
        self = p
    }

    /// The switch program in bpf/sprof.bpf.c.
    var switchProgram: String {
        switch self {
        case .kprobe: return "sprof_offcpu_kprobe"
        case .fentry: return "sprof_offcpu_fentry"
        case .tpBTF: return "sprof_offcpu_tp_btf"
        case .rawTracepoint: return "sprof_offcpu_raw_tp"
        case .tracepoint: return "sprof_offcpu_tracepoint"
        }
    }

    /// The programs that copy a waiting thread's user stack when it runs
    /// again (tracepoint variants only): at system-call exit, and on the way
    /// back to user mode through rseq where the kernel has that tracepoint.
    func resumePrograms(haveRseq: Bool) -> [String] {
        let suffix: String
        switch self {
        case .kprobe, .fentry: return []
        case .tpBTF: suffix = "btf"
        case .rawTracepoint: suffix = "raw"
        case .tracepoint: suffix = "tp"
        }
        return ["sprof_resume_sys_exit_" + suffix] + (haveRseq ? ["sprof_resume_rseq_" + suffix] : [])
    }

    /// Every off-CPU program in the object.
    static var allPrograms: Set<String> {
        var names = Set(allCases.map(\.switchProgram))
        for p in allCases { names.formUnion(p.resumePrograms(haveRseq: true)) }
        return names
    }

    /// `finish_task_switch` as /proc/kallsyms names it: the compiler often
    /// makes a local clone (`finish_task_switch.isra.0`) and a kprobe must
    /// name the symbol that exists. Scans the bytes with strstr: the file
    /// has over 100,000 lines and only a few mention the name.
    public static func finishTaskSwitchSymbol(kallsyms: [UInt8]? = nil) -> String? {
        guard var bytes = kallsyms ?? (try? readKallsyms()) else { return nil }
        bytes.append(0)
        let needle = " finish_task_switch"
        var clone: String?
        bytes.withUnsafeBytes { b in
            guard let base = b.baseAddress?.assumingMemoryBound(to: CChar.self) else { return }
            let count = b.count - 1
            var offset = 0
            while offset < count, let hit = strstr(base + offset, needle) {
                let at = base.distance(to: hit)
                var end = at + needle.count
                while end < b.count && b[end] != UInt8(ascii: "\n") && b[end] != UInt8(ascii: "\t") && b[end] != UInt8(ascii: " ") { end += 1 }
                let name = String(decoding: b[(at + 1)..<end], as: UTF8.self)
                // The type letter before the name: t or T (text).
                let type = at >= 1 ? b[at - 1] : 0
                if type == UInt8(ascii: "t") || type == UInt8(ascii: "T") {
                    if name == "finish_task_switch" { clone = name; return }
                    if name.hasPrefix("finish_task_switch.") && clone == nil { clone = name }
                }
                offset = end
            }
        }
        return clone
    }

    static func readKallsyms() throws -> [UInt8] {
        let fd = open("/proc/kallsyms", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CaptureError.bpfFailed(step: "reading /proc/kallsyms", errno: errno, hint: "") }
        defer { close(fd) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Whether the kernel has the rseq:rseq_update tracepoint (4.18+, CONFIG_RSEQ).
    static var kernelHasRseqTracepoint: Bool {
        guard let tracefs = KernelInfo.ensureTracefs() else { return false }
        return access(tracefs + "/events/rseq/rseq_update", F_OK) == 0
    }
}

/// How `--off-cpu` records.
public struct OffCPUSettings: Sendable, Equatable {
    /// Waits shorter than this are counted (number and total), not recorded.
    public var minimumNanoseconds: UInt64 = 1_000_000
    /// With `-a`: also kernel threads (left out by default: they idle in waits).
    public var includeKernelThreads = false
    /// Use only this attach point (tests, `--off-cpu-attach`); nil tries each
    /// in order of preference.
    public var forcedAttachPoint: OffCPUAttachPoint?

    public init(minimumNanoseconds: UInt64 = 1_000_000, includeKernelThreads: Bool = false,
                forcedAttachPoint: OffCPUAttachPoint? = nil) {
        self.minimumNanoseconds = minimumNanoseconds
        self.includeKernelThreads = includeKernelThreads
        self.forcedAttachPoint = forcedAttachPoint
    }

    /// The attach points to try, best first: a forced one alone, else those
    /// the doctor's probe programs can attach here (cheap programs, so a
    /// refusal costs little), in order of preference.
    func candidates() -> [OffCPUAttachPoint] {
        if let forced = forcedAttachPoint { return [forced] }
        return OffCPUAttachPoint.allCases.filter { Doctor.tryAttach($0).error == nil }
    }
}

/// Waits still going on when a recording stops: a thread blocked from some
/// point of the recording to its end (a deadlock, a stuck read) would
/// otherwise leave no trace, since a wait is recorded when it ends.
enum WaitsInProgress {
    /// The wait as an off-CPU sample cut at `end`: its user registers from
    /// the switch-out when the program kept them, else from
    /// /proc/PID/task/TID/syscall (proc(5): "number args… sp pc" of a
    /// thread blocked in a system call, "-1 sp pc" when blocked elsewhere),
    /// its user stack read from /proc/PID/mem (the thread is not running:
    /// the bytes are those it waits with). No kernel stack: the kernel has no
    /// interface that gives another task's as addresses.
    static func sample(_ w: OffCPUWaitInProgress, end: UInt64, userStackSize: Int) -> RawSample? {
        guard end > w.start else { return nil }
        var ip = w.ip, sp = w.sp, bp = w.bp
        if !w.flags.contains(.userRegisters) {
            guard let text = KernelInfo.readFile("/proc/\(w.tgid)/task/\(w.tid)/syscall") else { return nil }
            let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            guard fields.count >= 3, fields[0] != "running",
                  let s = UInt64(fields[fields.count - 2].dropFirst(2), radix: 16),
                  let p = UInt64(fields[fields.count - 1].dropFirst(2), radix: 16) else { return nil }
            sp = s; ip = p; bp = 0
        }
        var flags = w.flags.union([.userRegisters, .kernelMode, .offCPUOngoing])
        var stack = [UInt8]()
        let fd = open("/proc/\(w.tgid)/mem", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            defer { close(fd) }
            // Page by page from sp: stops at the first unreadable page (the stack's end).
            var offset = 0
            var chunk = [UInt8](repeating: 0, count: 4096)
            while offset < userStackSize {
                let want = min(4096 - Int((sp &+ UInt64(offset)) & 4095), userStackSize - offset)
                let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(Int64(bitPattern: sp &+ UInt64(offset)))) }
                if n <= 0 { flags.insert(.userStackToEnd); break }
                stack.append(contentsOf: chunk[0..<n])
                offset += n
            }
        }
        let name: String = KernelInfo.readFile("/proc/\(w.tgid)/task/\(w.tid)/comm")?.trimmed("\n") ?? ""
        let comm = Comm(name)
        return RawSample(kind: .offCPU, flags: flags, tgid: w.tgid, tid: w.tid, timeNanoseconds: w.start, cpu: 0,
                         comm: comm, ip: ProcessAddress(ip), sp: ProcessAddress(sp), bp: ProcessAddress(bp),
                         weight: end - w.start, stackEnd: nil, userStackRequested: UInt32(userStackSize),
                         kernelStack: [], userStack: stack)
    }
}
