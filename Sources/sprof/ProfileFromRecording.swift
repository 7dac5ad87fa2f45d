import Foundation
import SprofBase
import SprofCapture
import SprofELF
import SprofProfile
import SprofSymbols
import SprofUnwind
#if canImport(Glibc)
import Glibc
#endif

/// Turns a raw recording into a ``Profile``: raw samples are unwound now
/// (sprof's unwinder, or libunwind with `useLibunwind`), addresses named from
/// the recording's locations records or, where it has none, now.
///
/// The profile (pprof's conventions, plus sprof's of ``Profile``): sample
/// types `samples/count` and `cpu/nanoseconds` (one sampling period a
/// sample) and, for a recording with `--off-cpu`, `offcpu/nanoseconds` (the
/// wait's length) and `waits/count`; an off-CPU sample has zero CPU values
/// and its root is a synthetic `[off-cpu]`, `[off-cpu: runnable]` or
/// `[off-cpu: uninterruptible]` location (label `offcpu_state`: blocked,
/// runnable, uninterruptible); labels `pid`, `tid`, `comm` (the process's
/// name) and `thread_name`; mappings with build-ids; one location per address as it
/// was seen (a return address and the same address as an innermost frame
/// can differ), its lines innermost first; a `[truncated: REASON]` location
/// outermost for a stack that could not be unwound to its root; lost
/// samples, the kernel and the host in the comments.
struct RecordingConverter {
    let reader: RawFileReader
    var useLibunwind = false
    var mangled = false

    func profile(progress: Progress? = nil) -> Profile {
        let meta = reader.metadata
        let frequency = Int64(max(meta.frequency, 1))
        let period = 1_000_000_000 / frequency
        let hasOffCPU = meta.extra["offcpu_attach"] != nil
        var b = ProfileBuilder(sampleTypes: [.init("samples", "count"), .init("cpu", "nanoseconds")]
                               + (hasOffCPU ? [.init("offcpu", "nanoseconds"), .init("waits", "count")] : []))
        b.setPeriod(.init("cpu", "nanoseconds"), period)
        if hasOffCPU {
            b.addComment("off-CPU: waits of at least \(meta.extra["offcpu_min_ns"] ?? "?") ns, attached to \(meta.extra["offcpu_attach"] ?? "?")")
            if let c = reader.stats?.counters, let n = c["offcpu_short"], let ns = c["offcpu_short_ns"] {
                b.addComment("off-CPU: \(n) shorter waits (\(ns) ns in all) counted, not in the profile")
            }
        }
        b.setTime(startNanos: Int64(clamping: meta.wallClockStartNanoseconds),
                  durationNanos: Int64(clamping: reader.stats?.durationNanoseconds ?? 0))
        b.addComment("sprof \(meta.sprofVersion) on \(meta.hostname), Linux \(meta.kernelRelease), \(meta.frequency) Hz, target \(meta.target)")
        if let stats = reader.stats {
            b.addComment("lost samples: \(stats.samplesLost) (kernel buffer or queue full; counted, not in the profile)")
            b.addComment("ended: \(stats.endReason)")
        } else {
            b.addComment("the recording did not finish: lost samples unknown")
        }

        let names = FrameNames(recorded: reader.locations, mangled: mangled)
        let unwinder = SampleUnwinder(source: .recordedPaths)
        let oracle = useLibunwind ? LibunwindUnwinder() : nil
        var locationIDs: [RawLocation.Key: UInt64] = [:]
        var truncatedIDs: [UnwindStop: UInt64] = [:]
        var offCPUIDs: [OffCPUState: UInt64] = [:]
        var stack: [UInt64] = []
        var user: [UInt64] = []
        var done = 0
        // A thread's labels, made once: building the strings per sample was
        // most of the conversion's time.
        struct ThreadKey: Hashable { var tgid: Int32; var tid: Int32; var comm: Comm }
        var threadLabels: [ThreadKey: [Profile.Label]] = [:]
        // A stack seen before gets the same location IDs: one hash of its
        // addresses instead of two dictionary lookups a frame (a 200-deep
        // recursion spent ~40 µs a sample there). Bounded: past the limit,
        // new stacks are converted frame by frame as before.
        struct StackKey: Hashable {
            var tgid: Int32, generation: UInt64, offCPU: Bool, stop: UInt8, kernelCount: Int
            var addresses: [UInt64]
        }
        var stacks: [StackKey: [UInt64]] = [:]
        let stackMemoLimit = 200_000

        func mappingID(_ l: RawLocation, snapshot: RawMappingSnapshot?) -> UInt64 {
            switch SymbolizedLocation.Kind(rawValue: l.kind) {
            case .kernel:
                return b.mapping(start: 0xffff_8000_0000_0000, limit: .max, fileOffset: 0, file: l.module, buildID: "")
            case .jit:
                let m = snapshot?.mapping(containing: ProcessAddress(l.key.address))
                return b.mapping(start: m?.start.rawValue ?? l.key.address, limit: m?.end.rawValue ?? l.key.address + 1,
                                 fileOffset: 0, file: "[jit]", buildID: "")
            case .native:
                guard let m = snapshot?.mapping(containing: ProcessAddress(l.key.address)) else { return 0 }
                return b.mapping(start: m.start.rawValue, limit: m.end.rawValue, fileOffset: m.fileOffset.rawValue,
                                 file: ModuleFiles.plainPath(of: m), buildID: m.buildID?.description ?? "")
            default:
                return 0
            }
        }

        func locationID(_ l: RawLocation, snapshot: RawMappingSnapshot?) -> UInt64 {
            if let id = locationIDs[l.key] { return id }
            let mapping = mappingID(l, snapshot: snapshot)
            let lines = l.frames.map { f in
                Profile.Line(functionID: b.function(name: f.function, systemName: f.systemName, file: f.file), line: Int64(f.line))
            }
            if mapping != 0 {
                b.noteMappingHas(mapping, filenames: l.frames.contains { !$0.file.isEmpty },
                                 lineNumbers: l.frames.contains { $0.line > 0 }, inlineFrames: l.frames.count > 1)
            }
            let id = b.location(mappingID: mapping, address: l.key.address, lines: lines)
            locationIDs[l.key] = id
            return id
        }

        var first = true
        reader.forEachSample { sample, snapshot in
            let mappings = snapshot?.mappings ?? []
            let generation = snapshot?.generation ?? 0
            if first, let exe = reader.process(pid: sample.tgid)?.executablePath,
               let m = mappings.first(where: { $0.isExecutable && ModuleFiles.plainPath(of: $0) == exe }) {
                // pprof tools take the first mapping for the main binary ("File:" in -top).
                first = false
                _ = b.mapping(start: m.start.rawValue, limit: m.end.rawValue, fileOffset: m.fileOffset.rawValue,
                              file: exe, buildID: m.buildID?.description ?? "")
            }
            var stop = UnwindStop.complete
            user.removeAll(keepingCapacity: true)
            if let n = sample.userFrameCount {
                for i in 0..<n { user.append(sample.userFrame(i).rawValue) }
                stop = UnwindStop(rawValue: sample.unwindStop) ?? .badCFI
            } else if let oracle {
                let r = oracle.unwind(sample: sample, mappings: mappings, openFile: { $0.path })
                user = r.frames.map(\.rawValue)
                if r.frames.isEmpty { stop = .noUnwindInfo }
            } else {
                unwinder.unwind(sample, pid: sample.tgid, generation: generation, mappings: mappings) { frames, outcome in
                    stop = outcome.stop
                    user.append(contentsOf: frames)
                }
            }
            // Leaf first: kernel frames (innermost first), then user frames, then the truncation marker.
            stack.removeAll(keepingCapacity: true)
            let kernel = sample.kernelStack
            var memoKey = StackKey(tgid: sample.tgid, generation: generation, offCPU: sample.kind == .offCPU,
                                   stop: stop.rawValue, kernelCount: kernel.count,
                                   addresses: kernel.map(\.rawValue) + user)
            if let known = stacks[memoKey] {
                stack = known
            } else {
            var inMachinery = sample.kind == .offCPU
            for (i, k) in kernel.enumerated() {
                let l = names.kernel(k, isReturnAddress: i > 0)
                // An off-CPU kernel stack taken at the tracepoint itself
                // (raw_tp) starts in sprof's own program and the tracing
                // code that called it: not where the thread waits.
                if inMachinery, let f = l.frames.first?.function, isTracingMachinery(f) { continue }
                inMachinery = false
                stack.append(locationID(l, snapshot: snapshot))
            }
            for (i, a) in user.enumerated() {
                stack.append(locationID(names.user(a, isReturnAddress: i > 0, pid: sample.tgid, snapshot: snapshot),
                                        snapshot: snapshot))
            }
            if stop != .complete && stop != .noUserRegisters {
                let id: UInt64
                if let known = truncatedIDs[stop] {
                    id = known
                } else {
                    let name = "[truncated: \(stop)]"
                    id = b.location(mappingID: 0, address: 0,
                                    lines: [.init(functionID: b.function(name: name, systemName: name, file: ""), line: 0)])
                    truncatedIDs[stop] = id
                }
                stack.append(id)
            }
            if stacks.count < stackMemoLimit {
                stacks[memoKey] = stack
            } else {
                memoKey.addresses = []
            }
            }
            let thread = ThreadKey(tgid: sample.tgid, tid: sample.tid, comm: sample.comm)
            var labels: [Profile.Label]
            if let known = threadLabels[thread] {
                labels = known
            } else {
                let comm = reader.process(pid: sample.tgid)?.command ?? sample.comm.description
                labels = [
                    .init(key: "pid", number: Int64(sample.tgid)), .init(key: "tid", number: Int64(sample.tid)),
                    .init(key: "comm", string: comm.isEmpty ? sample.comm.description : comm),
                    .init(key: "thread_name", string: sample.comm.description)]
                threadLabels[thread] = labels
            }
            if sample.kind == .offCPU {
                let state = OffCPUState(sample.flags)
                let id: UInt64
                if let known = offCPUIDs[state] {
                    id = known
                } else {
                    id = b.location(mappingID: 0, address: 0,
                                    lines: [.init(functionID: b.function(name: state.frameName, systemName: state.frameName, file: ""), line: 0)])
                    offCPUIDs[state] = id
                }
                stack.append(id)
                labels.append(.init(key: "offcpu_state", string: state.rawValue))
                // Still waiting when the recording stopped: its time is cut there.
                if sample.flags.contains(.offCPUOngoing) { labels.append(.init(key: "offcpu_ongoing", number: 1)) }
                b.addSample(locationIDs: stack, values: hasOffCPU ? [0, 0, Int64(clamping: sample.weight), 1] : [0, 0], labels: labels)
            } else {
                b.addSample(locationIDs: stack, values: hasOffCPU ? [1, period, 0, 0] : [1, period], labels: labels)
            }
            done += 1
            progress?.update(done, of: reader.sampleCount)
        }
        progress?.finish()
        reportUnavailable(names.unavailable)
        return b.profile
    }
}

/// Kernel functions that run a BPF program from a tracepoint (kernel/trace/bpf_trace.c,
/// include/trace/bpf_probe.h) and the program itself (`bpf_prog_TAG_NAME` in kallsyms).
func isTracingMachinery(_ name: String) -> Bool {
    name.hasPrefix("bpf_prog_") || name.hasPrefix("bpf_trace_run") || name.hasPrefix("__bpf_trace_")
        || name.hasPrefix("__traceiter_") || name.hasPrefix("perf_trace_") || name == "trace_call_bpf"
        || name.hasPrefix("__bpf_prog_run")
}

/// How an off-CPU sample's thread waited (flags from bpf/include/sprof_abi.h).
enum OffCPUState: String, Hashable {
    /// Asleep: waiting for an event (a read, a lock, a timer).
    case blocked
    /// Preempted: runnable, waiting for a CPU.
    case runnable
    /// TASK_UNINTERRUPTIBLE: typically disk I/O or a kernel lock.
    case uninterruptible

    init(_ flags: SampleFlags) {
        if flags.contains(.offCPURunnable) { self = .runnable }
        else if flags.contains(.offCPUUninterruptible) { self = .uninterruptible }
        else { self = .blocked }
    }

    /// The synthetic root frame; flamegraph/ draws everything above a
    /// frame starting `[off-cpu` in its off-CPU colours.
    var frameName: String {
        switch self {
        case .blocked: return "[off-cpu]"
        case .runnable: return "[off-cpu: runnable]"
        case .uninterruptible: return "[off-cpu: uninterruptible]"
        }
    }
}

/// A progress line on stderr for reports that take more than 1.5 s, only
/// when stderr is a terminal.
final class Progress {
    private let what: String
    private let start = DispatchTime.now().uptimeNanoseconds
    private var shown = false
    private var lastPercent = -1
    private let terminal = isatty(2) != 0

    init(_ what: String) { self.what = what }

    func update(_ done: Int, of total: Int) {
        guard terminal, done & 1023 == 0, total > 0 else { return }
        guard shown || DispatchTime.now().uptimeNanoseconds - start > 1_500_000_000 else { return }
        let percent = done * 100 / total
        guard percent != lastPercent else { return }
        lastPercent = percent
        shown = true
        FileHandleStderr.write("\rsprof: \(what) \(percent)% (\(done) of \(total))")
    }

    func finish() {
        if shown { FileHandleStderr.write("\r\u{1b}[K") }
    }
}
