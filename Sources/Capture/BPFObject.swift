import CLibBPF
import CSprof
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// libbpf's log, routed through swift-log (label "sprof.libbpf"). While an
/// object loads, lines are also collected so a verifier rejection can quote
/// the log's tail.
enum LibBPFLog {
    static let logger = Logger(label: "sprof.libbpf")
    private static let capture = Mutex<[String]?>(nil)

    static func install() {
        sprof_set_libbpf_log { level, line in
            guard let line else { return }
            let text = String(cString: line)
            LibBPFLog.capture.withLock { lines in
                if lines != nil { lines!.append(contentsOf: text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)) }
            }
            switch level {
            case 0: LibBPFLog.logger.debug("\(text)")  // warnings are turned into CaptureErrors by the caller
            case 1: LibBPFLog.logger.debug("\(text)")
            default: LibBPFLog.logger.trace("\(text)")
            }
        }
    }

    /// Runs `body` and returns the libbpf lines printed meanwhile.
    static func collecting<T>(_ body: () -> T) -> (T, [String]) {
        capture.withLock { $0 = [] }
        let result = body()
        let lines = capture.withLock { lines -> [String] in
            defer { lines = nil }
            return lines ?? []
        }
        return (result, lines)
    }
}

/// What a verifier log means, in one line, for the messages that matter on
/// the kernels sprof supports (kernel/bpf/verifier.c wordings).
func diagnoseVerifierLog(_ lines: [String], errno: Int32,
                         privileged: Bool = KernelInfo.missingCapabilities.isEmpty) -> String {
    let text = lines.joined(separator: "\n")
    let rules: [(String, String)] = [
        ("BPF program is too large", "the program exceeds the kernel's instruction limit; this is a sprof bug, please report it with `sprof doctor --verbose`"),
        ("unknown func", "the program calls a BPF helper this kernel does not have; sprof should have picked a fallback: report it with `sprof doctor --verbose`"),
        ("invalid func", "the program calls a BPF helper this kernel does not have; sprof should have picked a fallback: report it with `sprof doctor --verbose`"),
        ("min value is negative", "a copy size could be negative as this kernel's verifier sees it; report it with `sprof doctor --verbose`"),
        ("is not supported yet", "this kernel's verifier does not support a construct in the program"),
        ("invalid access to map value", "a read or write could leave its buffer as this kernel's verifier sees it"),
        ("helper call is not allowed in probe", "a helper is not allowed in this program type on this kernel"),
        ("program of this type cannot use helper", "a helper is not allowed in this program type on this kernel"),
        ("unknown opcode", "this kernel is older than the instructions the compiler emitted"),
        ("Invalid argument", "the kernel rejected the program's arguments"),
    ]
    for (needle, meaning) in rules where text.contains(needle) { return meaning }
    switch errno {
    case EPERM, EACCES:
        if privileged {
            return "refused although sprof has the privileges it needs: kernel lockdown (\(KernelInfo.lockdown ?? "not reported")), "
                + "a security module, or (for fentry) a kernel without BPF trampolines forbids this program type"
        }
        return "permission denied: run as root or with CAP_BPF and CAP_PERFMON; kernel lockdown (\(KernelInfo.lockdown ?? "unknown")) can also forbid it"
    case E2BIG:
        return "the program or a map is larger than this kernel accepts"
    case ENOMEM:
        return "the kernel could not allocate memory for the program or its maps (check `ulimit -l` on kernels before 5.11)"
    default:
        return "the kernel's verifier rejected the program; its log below says where"
    }
}

/// The last meaningful lines of a verifier log.
func verifierLogTail(_ lines: [String], count: Int = 12) -> [String] {
    var body = lines
    if let begin = lines.lastIndex(where: { $0.contains("BEGIN PROG LOAD LOG") }) {
        let after = lines[(begin + 1)...]
        let end = after.firstIndex(where: { $0.contains("END PROG LOAD LOG") }) ?? lines.endIndex
        body = Array(lines[(begin + 1)..<end])
    }
    return Array(body.filter { !$0.trimmed(" \t").isEmpty && !$0.hasSuffix("skipped loading") }.suffix(count))
}

/// Which kernel-version-dependent code paths the sampling program takes.
/// Each has a fallback that loads on older kernels; any can be forced off
/// (environment `SPROF_FORCE_FALLBACK=perfbuf,chunked,saved-regs,task` or the
/// hidden `record --force-fallback`) to test the fallbacks on new kernels.
public struct CaptureVariants: Hashable, Sendable, CustomStringConvertible {
    /// BPF ring buffer (5.8+); else the per-CPU perf buffer.
    public var ringBuffer: Bool
    /// bpf_find_vma (5.17+) bounds the stack copy; else page-by-page copy.
    public var findVMA: Bool
    /// bpf_task_pt_regs (5.15+); else the task's saved pt_regs.
    public var taskPtRegs: Bool
    /// bpf_get_current_task_btf (5.11+).
    public var taskBTF: Bool

    public init(ringBuffer: Bool, findVMA: Bool, taskPtRegs: Bool, taskBTF: Bool) {
        self.ringBuffer = ringBuffer; self.findVMA = findVMA; self.taskPtRegs = taskPtRegs; self.taskBTF = taskBTF
    }

    /// The fallback names accepted by `SPROF_FORCE_FALLBACK`.
    public static let fallbackNames = ["perfbuf", "chunked", "saved-regs", "task"]

    /// What the running kernel supports, with `forcedFallbacks` switched off.
    public static func probe(forcedFallbacks: Set<String> = []) -> CaptureVariants {
        let ring = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nil) == 1
        func helper(_ id: bpf_func_id) -> Bool { libbpf_probe_bpf_helper(BPF_PROG_TYPE_PERF_EVENT, id, nil) == 1 }
        let taskBTF = helper(BPF_FUNC_get_current_task_btf)
        var v = CaptureVariants(
            ringBuffer: ring,
            findVMA: taskBTF && helper(BPF_FUNC_find_vma),
            taskPtRegs: taskBTF && helper(BPF_FUNC_task_pt_regs),
            taskBTF: taskBTF)
        if forcedFallbacks.contains("perfbuf") { v.ringBuffer = false }
        if forcedFallbacks.contains("chunked") { v.findVMA = false }
        if forcedFallbacks.contains("saved-regs") { v.taskPtRegs = false }
        if forcedFallbacks.contains("task") { v.taskBTF = false; v.findVMA = false; v.taskPtRegs = false }
        return v
    }

    /// Fallbacks forced through the environment.
    public static var environmentFallbacks: Set<String> {
        guard let value = getenv("SPROF_FORCE_FALLBACK") else { return [] }
        return Set(String(cString: value).split(separator: ",").map { String($0).trimmed(" ") })
    }

    public var names: [String] {
        [ringBuffer ? "ringbuf" : "perfbuf", findVMA ? "find_vma" : "chunked",
         taskPtRegs ? "task_pt_regs" : "saved-regs"] + (taskBTF ? [] : ["no-task-btf"])
    }
    public var description: String { names.joined(separator: ",") }
}

/// The sampling BPF object (bpf/sprof.bpf.c), configured and loaded.
/// The only place that owns libbpf objects for sampling.
public final class SamplerObject: @unchecked Sendable {
    let object: OpaquePointer
    public let variants: CaptureVariants
    public let program: OpaquePointer
    let events: OpaquePointer
    let counters: OpaquePointer
    let targets: OpaquePointer
    public let userStackSize: Int
    /// Off-CPU: where the switch program attaches, the program, and the
    /// programs that copy a waiting thread's user stack when it runs again.
    public let offCPUPoint: OffCPUAttachPoint?
    let offCPUProgram: OpaquePointer?
    let resumePrograms: [(name: String, program: OpaquePointer)]

    /// Number of possible CPUs (libbpf_num_possible_cpus), the width of per-CPU values.
    public let possibleCPUs: Int

    /// Opens the embedded object, writes the settings into .rodata, sizes the
    /// maps and loads it. Throws `.verifierRejected` with the log tail on failure.
    public init(variants: CaptureVariants, userStackSize: Int, allTasks: Bool,
                ringBufferBytes: Int = 16 << 20,
                offCPU: (settings: OffCPUSettings, point: OffCPUAttachPoint)? = nil,
                wakeEverySample: Bool = false) throws(CaptureError) {
        LibBPFLog.install()
        self.variants = variants
        offCPUPoint = offCPU?.point
        self.userStackSize = userStackSize
        possibleCPUs = Int(libbpf_num_possible_cpus())
        var length = 0
        // Without bpf_find_vma, the object built without it: its callback
        // subprogram alone makes kernels before 5.13 refuse the object.
        let bytes = (variants.findVMA ? sprof_sprof_bpf_object(&length) : sprof_sprof_legacy_bpf_object(&length))!
        var opts = bpf_object_open_opts()
        opts.sz = MemoryLayout<bpf_object_open_opts>.size
        let (opened, openLog) = LibBPFLog.collecting { bpf_object__open_mem(bytes, length, &opts) }
        guard let obj = opened else {
            throw .bpfFailed(step: "opening the embedded BPF object", errno: errno,
                             hint: verifierLogTail(openLog, count: 3).joined(separator: "; "))
        }
        object = obj
        func map(_ name: String) throws(CaptureError) -> OpaquePointer {
            guard let m = bpf_object__find_map_by_name(obj, name) else {
                bpf_object__close(obj)
                throw .bpfFailed(step: "finding map '\(name)' in the BPF object", errno: ENOENT, hint: "the embedded object is stale: run bpf/build.sh")
            }
            return m
        }
        events = try map("events")
        counters = try map("counters")
        targets = try map("targets")
        let scratch = try map("scratch_cpu")
        guard let prog = bpf_object__find_program_by_name(obj, "sprof_cpu_sample") else {
            bpf_object__close(obj)
            throw .bpfFailed(step: "finding program sprof_cpu_sample", errno: ENOENT, hint: "the embedded object is stale: run bpf/build.sh")
        }
        program = prog

        // Only the programs this recording uses are loaded: the others may
        // need what this kernel lacks (fentry's trampoline, rseq's tracepoint).
        let haveRseq = offCPU != nil && OffCPUAttachPoint.kernelHasRseqTracepoint
        let wanted: Set<String> = offCPU.map { Set([$0.point.switchProgram] + $0.point.resumePrograms(haveRseq: haveRseq)) } ?? []
        var offProgram: OpaquePointer?
        var resume: [(String, OpaquePointer)] = []
        var pp = bpf_object__next_program(obj, nil)
        while let cur = pp {
            let name = String(cString: bpf_program__name(cur))
            if OffCPUAttachPoint.allPrograms.contains(name) {
                bpf_program__set_autoload(cur, wanted.contains(name))
                if name == offCPU?.point.switchProgram { offProgram = cur }
                else if wanted.contains(name) { resume.append((name, cur)) }
            }
            pp = bpf_object__next_program(obj, cur)
        }
        if let offCPU, offProgram == nil || resume.count != offCPU.point.resumePrograms(haveRseq: haveRseq).count {
            bpf_object__close(obj)
            throw .bpfFailed(step: "finding the off-CPU programs", errno: ENOENT, hint: "the embedded object is stale: run bpf/build.sh")
        }
        // Settings: `cfg` is the only variable in .rodata (checked by size).
        var rodata: OpaquePointer?
        var m: OpaquePointer? = bpf_object__next_map(obj, nil)
        while let cur = m {
            if String(cString: bpf_map__name(cur)).hasSuffix(".rodata") { rodata = cur }
            m = bpf_object__next_map(obj, cur)
        }
        var size = 0
        guard let ro = rodata, bpf_map__initial_value(ro, &size) != nil,
              size == MemoryLayout<sprof_config>.size else {
            bpf_object__close(obj)
            throw .bpfFailed(step: "finding the settings (.rodata) of the BPF object", errno: EINVAL, hint: "the embedded object is stale: run bpf/build.sh")
        }
        var cfg = sprof_config()
        cfg.all_tasks = allTasks ? 1 : 0
        cfg.ustack_size = UInt32(userStackSize)
        cfg.use_ringbuf = variants.ringBuffer ? 1 : 0
        cfg.use_find_vma = variants.findVMA ? 1 : 0
        cfg.use_task_pt_regs = variants.taskPtRegs ? 1 : 0
        cfg.use_task_btf = variants.taskBTF ? 1 : 0
        cfg.thread_size = UInt32(SPROF_THREAD_SIZE_DEFAULT)
        // Wake the reader only when a quarter of the ring is pending; it
        // polls every 50 ms regardless (Sampler.poll). Or at every sample
        // (0), for a low rate that wants each sample in user space at once.
        cfg.wakeup_bytes = wakeEverySample ? 0 : UInt32(ringBufferBytes / 4)
        if let offCPU {
            // bpf_get_task_stack (5.9+) on tp_btf's task pointer reads the
            // arriving task's kernel stack only for long waits; the other
            // variants copy it at every switch-out.
            let (major, minor) = KernelInfo.version
            cfg.offcpu_task_stack = offCPU.point == .tpBTF && (major, minor) >= (5, 9) ? 1 : 0
            cfg.offcpu_min_ns = offCPU.settings.minimumNanoseconds
            cfg.offcpu_all_threads = offCPU.settings.includeKernelThreads ? 1 : 0
        }
        _ = withUnsafeBytes(of: &cfg) { bpf_map__set_initial_value(ro, $0.baseAddress, $0.count) }

        bpf_map__set_max_entries(scratch, UInt32(possibleCPUs))
        // The off-CPU maps: full size only when used (they are preallocated).
        let offScratch = try map("scratch_offcpu")
        bpf_map__set_max_entries(offScratch, offCPU == nil ? 1 : UInt32(possibleCPUs))
        if offCPU == nil || cfg.offcpu_task_stack == 1 { bpf_map__set_max_entries(try map("offcpu_kstart"), 1) }
        if offCPU == nil {
            bpf_map__set_max_entries(try map("offcpu_start"), 1)
            bpf_map__set_max_entries(try map("offcpu_pending"), 1)
        }
        if variants.ringBuffer {
            bpf_map__set_max_entries(events, UInt32(ringBufferBytes))
        } else {
            // A perf-event array: one perf ring per CPU (libbpf sizes it to the CPUs when 0).
            bpf_map__set_type(events, BPF_MAP_TYPE_PERF_EVENT_ARRAY)
            bpf_map__set_key_size(events, 4)
            bpf_map__set_value_size(events, 4)
            bpf_map__set_max_entries(events, 0)
        }

        // Every stored property is set from here on: a throw runs deinit,
        // which closes the object.
        offCPUProgram = offProgram
        resumePrograms = resume
        let (rc, log) = LibBPFLog.collecting { bpf_object__load(obj) }
        if rc != 0 {
            let e = -rc
            // libbpf names the program it failed on ("prog 'NAME': failed to load").
            let failed = log.last(where: { $0.contains("prog '") && $0.contains("failed") })
                .flatMap { line -> String? in
                    guard let a = line.range(of: "prog '"), let b = line[a.upperBound...].firstIndex(of: "'") else { return nil }
                    return String(line[a.upperBound..<b])
                } ?? "sprof_cpu_sample"
            throw .verifierRejected(program: failed, errno: e, logTail: verifierLogTail(log),
                                    diagnosis: diagnoseVerifierLog(log, errno: e))
        }
    }

    deinit { bpf_object__close(object) }

    public var programFD: Int32 { bpf_program__fd(program) }
    public var eventsFD: Int32 { bpf_map__fd(events) }

    /// Instructions the verifier processed for the sampling program (5.16+; 0 before).
    public var verifiedInstructions: Int {
        var t: UInt64 = 0, c: UInt64 = 0, v: UInt32 = 0
        return sprof_prog_stats(programFD, &t, &c, &v) == 0 ? Int(v) : 0
    }

    /// Instructions the verifier processed for each loaded program, by name (5.16+; 0 before).
    public var verifiedInstructionsByProgram: [String: Int] {
        var out: [String: Int] = ["sprof_cpu_sample": verifiedInstructions]
        let off = (offCPUProgram.map { [(String(cString: bpf_program__name($0)), $0)] } ?? []) + resumePrograms
        for (name, prog) in off {
            var t: UInt64 = 0, c: UInt64 = 0, v: UInt32 = 0
            out[name] = sprof_prog_stats(bpf_program__fd(prog), &t, &c, &v) == 0 ? Int(v) : 0
        }
        return out
    }

    /// Cumulative run time and count of the program (needs kernel.bpf_stats_enabled=1).
    public var runStats: (nanoseconds: UInt64, runs: UInt64) {
        var t: UInt64 = 0, c: UInt64 = 0, v: UInt32 = 0
        _ = sprof_prog_stats(programFD, &t, &c, &v)
        return (t, c)
    }

    public func addTarget(pid: Int32) throws(CaptureError) {
        var key = UInt32(bitPattern: pid)
        var one: UInt8 = 1
        let rc = bpf_map_update_elem(bpf_map__fd(targets), &key, &one, UInt64(BPF_ANY))
        if rc != 0 { throw .bpfFailed(step: "adding pid \(pid) to the targets map", errno: -rc, hint: "") }
    }

    public func removeTarget(pid: Int32) {
        var key = UInt32(bitPattern: pid)
        _ = bpf_map_delete_elem(bpf_map__fd(targets), &key)
    }

    /// Threads whose wait is still going on: the off-CPU start entries with a
    /// start time (`struct offcpu_start` in bpf/sprof.bpf.c: ts, ip, sp, bp,
    /// tgid, flags; 40 bytes).
    public func offCPUWaitsInProgress() -> [OffCPUWaitInProgress] {
        guard offCPUPoint != nil, let m = bpf_object__find_map_by_name(object, "offcpu_start") else { return [] }
        let fd = bpf_map__fd(m)
        var out: [OffCPUWaitInProgress] = []
        var value = [UInt8](repeating: 0, count: Int(bpf_map__value_size(m)))
        guard value.count >= 40 else { return [] }
        var key: UInt32 = 0
        var next: UInt32 = 0
        var rc = bpf_map_get_next_key(fd, nil, &next)
        while rc == 0 {
            key = next
            if value.withUnsafeMutableBytes({ bpf_map_lookup_elem(fd, &key, $0.baseAddress) }) == 0 {
                value.withUnsafeBytes { b in
                    let w = OffCPUWaitInProgress(
                        tid: Int32(bitPattern: key), tgid: Int32(bitPattern: b.loadUnaligned(fromByteOffset: 32, as: UInt32.self)),
                        start: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                        flags: SampleFlags(rawValue: b.loadUnaligned(fromByteOffset: 36, as: UInt32.self)),
                        ip: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self), sp: b.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
                        bp: b.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
                    if w.start != 0 { out.append(w) }
                }
            }
            rc = bpf_map_get_next_key(fd, &key, &next)
        }
        return out
    }

    /// The kernel-side counters summed over CPUs (`enum sprof_counter`).
    public func counterValues() -> KernelCounters {
        var out = KernelCounters()
        var values = [UInt64](repeating: 0, count: possibleCPUs)
        for i in 0..<Int(SPROF_CNT_MAX.rawValue) {
            var key = UInt32(i)
            let rc = values.withUnsafeMutableBytes { bpf_map_lookup_elem(bpf_map__fd(counters), &key, $0.baseAddress) }
            if rc == 0 { out.values[i] = values.reduce(0, &+) }
        }
        return out
    }
}

/// A wait that had not ended when the recording stopped.
public struct OffCPUWaitInProgress: Sendable, Equatable {
    public var tid: Int32
    public var tgid: Int32
    /// CLOCK_MONOTONIC ns of the switch-out.
    public var start: UInt64
    public var flags: SampleFlags
    /// User registers, when the switch-out saved them (classic tracepoint).
    public var ip: UInt64, sp: UInt64, bp: UInt64
}

/// `enum sprof_counter`, summed over CPUs.
public struct KernelCounters: Sendable, Equatable {
    public var values = [UInt64](repeating: 0, count: Int(SPROF_CNT_MAX.rawValue))
    public init() {}
    public var runs: UInt64 { values[Int(SPROF_CNT_RUNS.rawValue)] }
    public var emitted: UInt64 { values[Int(SPROF_CNT_EMITTED.rawValue)] }
    /// Records the ring/perf buffer had no room for.
    public var lost: UInt64 { values[Int(SPROF_CNT_LOST.rawValue)] }
    public var filtered: UInt64 { values[Int(SPROF_CNT_FILTERED.rawValue)] }
    public var userStackFaults: UInt64 { values[Int(SPROF_CNT_USTACK_FAULT.rawValue)] }
    public var kernelStackErrors: UInt64 { values[Int(SPROF_CNT_KSTACK_ERR.rawValue)] }
    public var noScratch: UInt64 { values[Int(SPROF_CNT_NO_SCRATCH.rawValue)] }
    public var noUserRegisters: UInt64 { values[Int(SPROF_CNT_NO_USER_REGS.rawValue)] }
    /// Samples whose `bpf_find_vma` copy failed: refused (-EBUSY), no VMA at
    /// sp, or a faulting read (page-by-page copies instead).
    public var findVMAFailed: UInt64 { values[Int(SPROF_CNT_FIND_VMA_FAILED.rawValue)] }

    /// Switch-outs of profiled threads seen by the off-CPU program.
    public var offCPUSwitches: UInt64 { values[Int(SPROF_CNT_OFFCPU_SWITCHES.rawValue)] }
    /// Off-CPU records handed to the buffer (also counted in ``emitted``).
    public var offCPUEmitted: UInt64 { values[Int(SPROF_CNT_OFFCPU_EMITTED.rawValue)] }
    /// Waits shorter than the threshold: counted, not recorded.
    public var offCPUShort: UInt64 { values[Int(SPROF_CNT_OFFCPU_SHORT.rawValue)] }
    /// Their total nanoseconds.
    public var offCPUShortNanoseconds: UInt64 { values[Int(SPROF_CNT_OFFCPU_SHORT_NS.rawValue)] }
    /// Off-CPU records without a user stack: the thread ran user code before it could be copied.
    public var offCPUNoUserStack: UInt64 { values[Int(SPROF_CNT_OFFCPU_NO_USTACK.rawValue)] }
    /// Waits lost because a per-thread map was full.
    public var offCPUMapFull: UInt64 { values[Int(SPROF_CNT_OFFCPU_MAP_FULL.rawValue)] }

    public var dictionary: [String: UInt64] {
        ["offcpu_switches": offCPUSwitches, "offcpu_emitted": offCPUEmitted, "offcpu_short": offCPUShort,
         "offcpu_short_ns": offCPUShortNanoseconds, "offcpu_no_ustack": offCPUNoUserStack, "offcpu_map_full": offCPUMapFull,
         "runs": runs, "emitted": emitted, "lost": lost, "filtered": filtered,
         "ustack_faults": userStackFaults, "kstack_errors": kernelStackErrors,
         "no_scratch": noScratch, "no_user_regs": noUserRegisters, "find_vma_failed": findVMAFailed]
    }
}
