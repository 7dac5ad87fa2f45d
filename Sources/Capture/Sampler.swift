import CLibBPF
import CSprof
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Attaches the sampling program to a cpu-clock perf event on every online
/// CPU and drains its ring (or perf) buffer. `poll` runs on the caller's
/// thread; records are decoded into `RawSample`s and handed to `onSample`.
public final class Sampler: @unchecked Sendable {
    public let object: SamplerObject
    private var perfFDs: [Int32] = []
    private var links: [OpaquePointer] = []
    private var ring: OpaquePointer?
    private var perfBuffer: OpaquePointer?
    private let sink: SampleSink

    /// Records the user-space side could not decode (never expected; counted, not hidden).
    public var undecodable: UInt64 { sink.undecodable.load(ordering: .relaxed) }
    /// Records the perf buffer reported lost (perf-buffer fallback only).
    public var perfBufferLost: UInt64 { sink.perfLost.load(ordering: .relaxed) }

    /// - Parameters:
    ///   - frequency: samples per second per CPU of CPU time (cpu-clock period = 1e9 / frequency ns).
    ///   - onSample: called on the polling thread for each record.
    public init(object: SamplerObject, frequency: Int,
                onSample: @escaping (RawSample) -> Void) throws(CaptureError) {
        self.object = object
        sink = SampleSink(onSample)
        let period = UInt64(1_000_000_000 / max(frequency, 1))
        do {
            for cpu in KernelInfo.onlineCPUs {
                let fd = sprof_open_cpu_clock(-1, cpu, period)
                if fd < 0 {
                    if -fd == ENODEV || -fd == ENOENT { continue }  // went offline meanwhile
                    throw CaptureError.perfEventFailed(cpu: cpu, errno: -fd, hint: perfEventHint(-fd))
                }
                perfFDs.append(fd)
                guard let link = bpf_program__attach_perf_event(object.program, fd) else {
                    throw CaptureError.bpfFailed(step: "attaching the sampling program to CPU \(cpu)", errno: errno, hint: "")
                }
                links.append(link)
            }
            if let point = object.offCPUPoint, let prog = object.offCPUProgram {
                try attachOffCPU(point: point, program: prog)
            }
            let ctx = Unmanaged.passUnretained(sink).toOpaque()
            if object.variants.ringBuffer {
                ring = ring_buffer__new(object.eventsFD, { ctx, data, size in
                    let sink = Unmanaged<SampleSink>.fromOpaque(ctx!).takeUnretainedValue()
                    sink.deliver(UnsafeRawBufferPointer(start: data, count: size))
                    return 0
                }, ctx, nil)
                if ring == nil { throw CaptureError.bpfFailed(step: "opening the ring buffer", errno: errno, hint: "") }
            } else {
                // 64 pages (256 KiB) per CPU: room for a few 60 KiB samples each.
                perfBuffer = perf_buffer__new(object.eventsFD, 64, { ctx, _, data, size in
                    let sink = Unmanaged<SampleSink>.fromOpaque(ctx!).takeUnretainedValue()
                    sink.deliver(UnsafeRawBufferPointer(start: data, count: Int(size)))
                }, { ctx, _, count in
                    let sink = Unmanaged<SampleSink>.fromOpaque(ctx!).takeUnretainedValue()
                    sink.perfLost.add(count, ordering: .relaxed)
                }, ctx, nil)
                if perfBuffer == nil { throw CaptureError.bpfFailed(step: "opening the perf buffer", errno: errno, hint: "") }
            }
        } catch let e as CaptureError {
            teardown()
            throw e
        } catch {
            teardown()
            throw CaptureError.invalidOption("\(error)")
        }
    }

    /// Attaches the off-CPU switch program and the resume programs.
    private func attachOffCPU(point: OffCPUAttachPoint, program: OpaquePointer) throws {
        let link: OpaquePointer?
        if point == .kprobe {
            guard let symbol = OffCPUAttachPoint.finishTaskSwitchSymbol() else {
                throw CaptureError.offCPUUnavailable(tried: ["\(point.title): no finish_task_switch in /proc/kallsyms"])
            }
            link = bpf_program__attach_kprobe(program, false, symbol)
        } else {
            link = bpf_program__attach(program)
        }
        guard let link else {
            throw CaptureError.offCPUUnavailable(tried: ["\(point.title): refused at attach (\(errnoName(errno)))"])
        }
        links.append(link)
        for (name, prog) in object.resumePrograms {
            guard let l = bpf_program__attach(prog) else {
                throw CaptureError.bpfFailed(step: "attaching \(name)", errno: errno, hint: "the off-CPU user stacks need it")
            }
            links.append(l)
        }
    }

    /// Waits up to `timeoutMilliseconds` for records and delivers them.
    /// Returns the number of records consumed, or a negative errno.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32) -> Int32 {
        if let ring {
            // Records arrive without a wakeup until the ring is a quarter
            // full (sprof.bpf.c), so a poll that times out must still consume.
            let polled = ring_buffer__poll(ring, timeoutMilliseconds)
            if polled < 0 && polled != -EINTR { return polled }
            return ring_buffer__consume(ring)
        }
        if let perfBuffer { return perf_buffer__poll(perfBuffer, timeoutMilliseconds) }
        return 0
    }

    /// Changes the sampling rate of every CPU's event in place (the BPF
    /// program stays attached): `sprof agent` lowers it to stay in its CPU
    /// budget. Throws on the first event that refuses.
    public func setFrequency(_ frequency: Int) throws(CaptureError) {
        let period = UInt64(1_000_000_000 / max(frequency, 1))
        for fd in perfFDs {
            let r = sprof_perf_set_period(fd, period)
            if r < 0 { throw .perfEventFailed(cpu: -1, errno: -r, hint: "changing the sampling period") }
        }
    }

    /// Consumes whatever is buffered without waiting.
    public func drain() {
        if let ring { _ = ring_buffer__consume(ring) }
        if let perfBuffer { _ = perf_buffer__consume(perfBuffer) }
    }

    /// Stops sampling (detaches from the perf events); buffered records can still be drained.
    public func stopSampling() {
        for l in links { bpf_link__destroy(l) }
        links = []
        for fd in perfFDs { close(fd) }
        perfFDs = []
    }

    private func teardown() {
        stopSampling()
        if let ring { ring_buffer__free(ring) }
        if let perfBuffer { perf_buffer__free(perfBuffer) }
        ring = nil
        perfBuffer = nil
    }

    deinit { teardown() }
}

final class SampleSink: @unchecked Sendable {
    let onSample: (RawSample) -> Void
    let undecodable = Atomic<UInt64>(0)
    let perfLost = Atomic<UInt64>(0)
    init(_ onSample: @escaping (RawSample) -> Void) { self.onSample = onSample }

    func deliver(_ record: UnsafeRawBufferPointer) {
        do {
            onSample(try RawSample(record: record))
        } catch {
            undecodable.add(1, ordering: .relaxed)
        }
    }
}

func perfEventHint(_ e: Int32) -> String {
    switch e {
    case EACCES, EPERM:
        return "system-wide sampling needs root or CAP_PERFMON (kernel.perf_event_paranoid is \(KernelInfo.perfEventParanoid.map(String.init) ?? "unknown"))"
    case ENOENT, EOPNOTSUPP:
        return "this kernel has no software cpu-clock event"
    case EMFILE:
        return "too many open files: raise `ulimit -n`"
    case EINVAL:
        return "the kernel rejected the sampling period; try a lower -F"
    default:
        return ""
    }
}
