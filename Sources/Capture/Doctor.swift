import CLibBPF
import CSprof
import SprofELF
#if canImport(Glibc)
import Glibc
#endif

/// One check of `sprof doctor`: what was tried, whether it worked, and what
/// follows for the user, in plain words.
public struct DoctorCheck: Sendable {
    public enum Status: String, Sendable { case ok = "ok", fallback = "fallback", missing = "no", info = "info" }
    public var name: String
    public var status: Status
    /// What was seen ("loads and attaches", "EPERM: Operation not permitted").
    public var detail: String
    /// What follows for the user.
    public var consequence: String
    /// Extra lines for --verbose (verifier counts, libbpf messages).
    public var verbose: [String] = []

    public init(name: String, status: Status, detail: String, consequence: String, verbose: [String] = []) {
        self.name = name; self.status = status; self.detail = detail; self.consequence = consequence; self.verbose = verbose
    }
}

public enum Doctor {
    /// Loads and attaches one tiny program from bpf/probe.bpf.c, then detaches.
    /// Returns nil on success or the error text.
    public static func tryAttach(_ point: OffCPUAttachPoint) -> (error: String?, log: [String]) {
        LibBPFLog.install()
        if point == .tracepoint || point == .kprobe { KernelInfo.ensureTracefs() }
        var length = 0
        let bytes = sprof_probe_bpf_object(&length)!
        var opts = bpf_object_open_opts()
        opts.sz = MemoryLayout<bpf_object_open_opts>.size
        let (result, log) = LibBPFLog.collecting { () -> String? in
            guard let obj = bpf_object__open_mem(bytes, length, &opts) else { return "cannot open the probe object (\(errnoName(errno)))" }
            defer { bpf_object__close(obj) }
            var chosen: OpaquePointer?
            var p = bpf_object__next_program(obj, nil)
            while let prog = p {
                let isIt = String(cString: bpf_program__name(prog)) == point.rawValue
                bpf_program__set_autoload(prog, isIt)
                if isIt { chosen = prog }
                p = bpf_object__next_program(obj, prog)
            }
            guard let prog = chosen else { return "probe program missing: the embedded object is stale" }
            let rc = bpf_object__load(obj)
            if rc != 0 { return "refused at load (\(errnoName(-rc)))" }
            let attached: OpaquePointer?
            if point == .kprobe {
                guard let name = OffCPUAttachPoint.finishTaskSwitchSymbol() else { return "refused at attach (ENOENT: no finish_task_switch in /proc/kallsyms)" }
                attached = bpf_program__attach_kprobe(prog, false, name)
            } else {
                attached = bpf_program__attach(prog)
            }
            guard let link = attached else { return "refused at attach (\(errnoName(errno)))" }
            bpf_link__destroy(link)
            return nil
        }
        return (result, log)
    }

    /// Every check, in the order printed.
    public static func run() -> [DoctorCheck] {
        var checks: [DoctorCheck] = []
        let (major, minor) = KernelInfo.version
        checks.append(DoctorCheck(name: "kernel", status: .info, detail: KernelInfo.release,
                                  consequence: major > 5 || (major == 5 && minor >= 8) ? "new enough for every sprof feature" : "older than 5.8: sprof uses its fallbacks"))
        let btf = KernelInfo.hasBTF
        checks.append(DoctorCheck(name: "BTF (/sys/kernel/btf/vmlinux)", status: btf ? .ok : .missing,
                                  detail: btf ? "present" : "absent",
                                  consequence: btf ? "CO-RE relocations and tp_btf work" : "sprof cannot relocate its program to this kernel's structures: use a kernel built with CONFIG_DEBUG_INFO_BTF=y"))
        let euid = geteuid()
        let missing = KernelInfo.missingCapabilities
        checks.append(DoctorCheck(name: "privileges", status: missing.isEmpty ? .ok : .missing,
                                  detail: euid == 0 ? "root" : (missing.isEmpty ? "uid \(euid) with the needed capabilities" : "uid \(euid), lacking \(missing.joined(separator: ", "))"),
                                  consequence: missing.isEmpty ? "sprof can load BPF and open perf events" : CaptureError.missingPrivileges(missing: missing).description))
        let paranoid = KernelInfo.perfEventParanoid
        checks.append(DoctorCheck(name: "kernel.perf_event_paranoid", status: .info, detail: paranoid.map(String.init) ?? "unknown",
                                  consequence: (paranoid ?? 2) > 0 && euid != 0 && !KernelInfo.has(.perfmon) ? "system-wide sampling needs CAP_PERFMON or root" : "no obstacle for sprof"))
        let lockdown = KernelInfo.lockdown
        checks.append(DoctorCheck(name: "lockdown", status: lockdown == "confidentiality" ? .missing : .info, detail: lockdown ?? "not reported (securityfs not mounted or no lockdown LSM)",
                                  consequence: lockdown == "confidentiality" ? "reading kernel memory is forbidden: BPF tracing will not work" : "no obstacle for sprof"))
        checks.append(DoctorCheck(name: "kernel.perf_event_max_sample_rate", status: .info, detail: "\(KernelInfo.maxSampleRate) Hz", consequence: "-F may go up to this"))

        guard missing.isEmpty else { return checks }

        let detected = CaptureVariants.probe()
        checks.append(DoctorCheck(name: "BPF ring buffer (5.8+)", status: detected.ringBuffer ? .ok : .fallback,
                                  detail: detected.ringBuffer ? "available" : "absent",
                                  consequence: detected.ringBuffer ? "samples go through one shared ring buffer" : "samples go through per-CPU perf buffers; user-stack copies are capped at 60 KiB"))
        checks.append(DoctorCheck(name: "bpf_find_vma (5.17+)", status: detected.findVMA ? .ok : .fallback,
                                  detail: detected.findVMA ? "available" : "absent",
                                  consequence: detected.findVMA ? "each user-stack copy stops exactly at the end of the stack" : "user stacks are copied page by page, stopping at the first unreadable page"))
        checks.append(DoctorCheck(name: "bpf_task_pt_regs (5.15+)", status: detected.taskPtRegs ? .ok : .fallback,
                                  detail: detected.taskPtRegs ? "available" : "absent",
                                  consequence: detected.taskPtRegs ? "samples in kernel code still get the task's user registers" : "samples in kernel code read user registers from the task's saved frame (x86_64, 16 KiB kernel stacks assumed)"))

        let openat2 = ModuleFiles.openat2Available
        checks.append(DoctorCheck(name: "openat2 RESOLVE_IN_ROOT (5.6+)", status: openat2 ? .ok : .fallback,
                                  detail: openat2 ? "available" : "absent",
                                  consequence: openat2 ? "a container's binaries are opened inside its root: its symlinks cannot lead to host files"
                                      : "a container's binaries are opened only through /proc/PID/map_files (needs CAP_SYS_ADMIN, or CAP_CHECKPOINT_RESTORE); separate debug files beside them are not searched"))

        // The sampling program itself, in the detected variant and each fallback.
        var sampling = DoctorCheck(name: "perf-event sampling (cpu-clock)", status: .ok, detail: "", consequence: "")
        do {
            let obj = try SamplerObject(variants: detected, userStackSize: Int(SPROF_USTACK_DEFAULT), allTasks: false)
            let fd = sprof_open_cpu_clock(-1, KernelInfo.onlineCPUs.first ?? 0, 1_000_000)
            if fd < 0 {
                sampling.status = .missing
                sampling.detail = "program loads, perf event refused (\(errnoName(-fd)))"
                sampling.consequence = perfEventHint(-fd)
            } else {
                if let link = bpf_program__attach_perf_event(obj.program, fd) {
                    bpf_link__destroy(link)
                    sampling.detail = "loads and attaches (\(detected)), \(obj.verifiedInstructions) instructions verified"
                    sampling.consequence = "sprof record works"
                } else {
                    sampling.status = .missing
                    sampling.detail = "attach refused (\(errnoName(errno)))"
                    sampling.consequence = "sprof record cannot sample on this kernel"
                }
                close(fd)
            }
        } catch {
            sampling.status = .missing
            sampling.detail = "refused"
            sampling.consequence = "\(error)"
        }
        for forced in [Set<String>(), ["perfbuf"], ["chunked"], ["saved-regs"], ["task"], ["perfbuf", "chunked", "saved-regs", "task"]] {
            let v = CaptureVariants.probe(forcedFallbacks: forced)
            do {
                let obj = try SamplerObject(variants: v, userStackSize: Int(SPROF_USTACK_MAX), allTasks: false)
                sampling.verbose.append("variant \(v): loads, \(obj.verifiedInstructions) instructions verified")
            } catch {
                sampling.verbose.append("variant \(v): \(error)")
            }
        }
        checks.append(sampling)

        var firstOffCPU: OffCPUAttachPoint?
        for point in OffCPUAttachPoint.allCases {
            let (error, log) = tryAttach(point)
            if error == nil && firstOffCPU == nil { firstOffCPU = point }
            var c = DoctorCheck(name: point.title, status: error == nil ? .ok : .missing,
                                detail: error ?? "loads and attaches", consequence: "")
            if let error {
                switch point {
                case .kprobe:
                    c.consequence = error.contains("ENOENT") ? "this kernel has no kprobes (no kprobe PMU or kprobe_events): sprof uses a tracepoint instead" : "kprobes are refused here: sprof uses a tracepoint instead"
                case .fentry:
                    c.consequence = error.contains("EPERM") ? "fentry is refused (EPERM: lockdown, a security module or no BPF trampoline): sprof uses a tracepoint instead" : "fentry is unavailable: sprof uses a tracepoint instead"
                default:
                    c.consequence = "this attach point is unavailable"
                }
            }
            c.verbose = verifierLogTail(log.filter { !$0.contains("skipped loading") }, count: 4)
            checks.append(c)
        }
        var offCPU = DoctorCheck(name: "off-CPU profiling (--off-cpu)", status: firstOffCPU == nil ? .missing : .ok,
                                 detail: firstOffCPU.map { "uses the \($0.title)" } ?? "no attach point works",
                                 consequence: "off-CPU sampling cannot attach on this kernel")
        if let point = firstOffCPU {
            switch point {
            case .kprobe, .fentry:
                offCPU.consequence = "each long wait is captured when its thread gets the CPU back, user and kernel stack"
            case .tpBTF, .rawTracepoint, .tracepoint:
                let rseq = OffCPUAttachPoint.kernelHasRseqTracepoint
                offCPU.consequence = "a wait's user stack is copied when its thread next runs: at system-call exit"
                    + (rseq ? " or on its return to user mode (rseq; glibc 2.35+ threads)" : " (no rseq tracepoint here: a thread preempted in user code keeps only its registers)")
                    + (point == .tpBTF ? "" : "; the kernel stack is copied at every switch-out (costlier than tp_btf)")
            }
            do {
                let obj = try SamplerObject(variants: detected, userStackSize: Int(SPROF_USTACK_DEFAULT), allTasks: false,
                                            offCPU: (OffCPUSettings(forcedAttachPoint: point), point))
                for (name, n) in obj.verifiedInstructionsByProgram.sorted(by: { $0.key < $1.key }) {
                    offCPU.verbose.append("\(name): \(n) instructions verified")
                }
            } catch {
                offCPU.status = .missing
                offCPU.consequence = "the off-CPU programs do not load: \(error)"
            }
        }
        checks.append(offCPU)
        return checks
    }
}
