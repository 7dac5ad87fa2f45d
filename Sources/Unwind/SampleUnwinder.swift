import SprofBase
import SprofCapture

/// Unwinds samples of many processes: one `ProcessCode` per mapping snapshot
/// (pid, generation), binaries shared through a `ModuleCache`, one frame
/// buffer reused for every sample. Not thread-safe: one per unwinding thread.
public final class SampleUnwinder {
    public let cache: ModuleCache
    public let source: ModuleSource
    private var processes: [ProcessKey: ProcessCode] = [:]
    private let buffer = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: UnwinderX86_64.maxFrames)

    private struct ProcessKey: Hashable { var pid: Int32; var generation: UInt64 }
    private var lastKey = ProcessKey(pid: -1, generation: .max)
    private var lastCode: ProcessCode?

    /// Counters for reports: stops by reason, frames, samples.
    public private(set) var stops = [UInt64](repeating: 0, count: UnwindStop.allCases.count)
    public private(set) var frames: UInt64 = 0
    public private(set) var samples: UInt64 = 0
    /// Rule-cache hits and misses of processes already dropped.
    private var droppedCacheCounts: (hits: UInt64, misses: UInt64) = (0, 0)

    /// Rule-cache hits and misses (`ProcessCode`), over every process unwound so far.
    public var ruleCacheCounts: (hits: UInt64, misses: UInt64) {
        processes.values.reduce(droppedCacheCounts) { ($0.hits + $1.ruleCacheHits, $0.misses + $1.ruleCacheMisses) }
    }

    private func drop(pid: Int32) {
        if lastKey.pid == pid { lastCode = nil; lastKey = ProcessKey(pid: -1, generation: .max) }
        for (k, c) in processes where k.pid == pid {
            droppedCacheCounts.hits += c.ruleCacheHits
            droppedCacheCounts.misses += c.ruleCacheMisses
            processes[k] = nil
        }
    }

    public init(cache: ModuleCache = ModuleCache(), source: ModuleSource) {
        self.cache = cache
        self.source = source
    }

    deinit { buffer.deallocate() }

    /// Unwinds one sample against its process's mappings. `body` gets the
    /// frames (innermost first; valid only during the call) and the outcome.
    public func unwind<R>(_ sample: RawSample, pid: Int32, generation: UInt64, mappings: [Mapping],
                          _ body: (UnsafeBufferPointer<UInt64>, UnwindOutcome) -> R) -> R {
        samples += 1
        if let n = sample.userFrameCount {
            // Unwound while recording: its stack bytes are frames already.
            let count = min(n, buffer.count)
            for i in 0..<count { buffer[i] = sample.userFrame(i).rawValue }
            let outcome = UnwindOutcome(frameCount: count, stop: UnwindStop(rawValue: sample.unwindStop) ?? .badCFI)
            stops[Int(outcome.stop.rawValue)] += 1
            frames += UInt64(count)
            return body(UnsafeBufferPointer(start: buffer.baseAddress, count: count), outcome)
        }
        guard sample.flags.contains(.userRegisters) else {
            stops[Int(UnwindStop.noUserRegisters.rawValue)] += 1
            return body(UnsafeBufferPointer(start: buffer.baseAddress, count: 0), UnwindOutcome(frameCount: 0, stop: .noUserRegisters))
        }
        let key = ProcessKey(pid: pid, generation: generation)
        let code: ProcessCode
        if key == lastKey, let c = lastCode {
            code = c  // consecutive samples of one process: no hashing
        } else if let c = processes[key] {
            code = c
        } else {
            // A newer generation replaces the older ones of the same pid.
            drop(pid: pid)
            code = ProcessCode(pid: pid, mappings: mappings, cache: cache, source: source)
            processes[key] = code
        }
        lastKey = key
        lastCode = code
        let offset = sample.kernelFrameCount * 8
        return sample.stackBytes.withUnsafeBytes { all in
            let stackBytes = UnsafeRawBufferPointer(rebasing: all[offset...])
            let outcome = UnwinderX86_64.unwind(
                registers: RegistersX86_64(ip: sample.ip.rawValue, sp: sample.sp.rawValue, bp: sample.bp.rawValue),
                stack: StackMemory(base: sample.sp.rawValue, bytes: stackBytes), code: code, into: buffer)
            stops[Int(outcome.stop.rawValue)] += 1
            frames += UInt64(outcome.frameCount)
            if outcome.stop == .moduleUnavailable, outcome.frameCount > 0 {
                noteShed(at: buffer[outcome.frameCount - 1], mappings: mappings)
            }
            return body(UnsafeBufferPointer(start: buffer.baseAddress, count: outcome.frameCount), outcome)
        }
    }

    /// A walk stopped at `address` because its binary has no table: if the
    /// cache left it untabulated (over its bound), the sample is counted as shed.
    /// `mappings` are sorted by start (as the process table keeps them).
    private func noteShed(at address: UInt64, mappings: [Mapping]) {
        // The stop is at the last frame: the sampled ip, or a return address (looked up at address - 1).
        for a in [address, address &- 1] {
            var lo = 0, hi = mappings.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if mappings[mid].start.rawValue <= a { lo = mid + 1 } else { hi = mid }
            }
            if lo > 0, mappings[lo - 1].contains(ProcessAddress(a)) {
                cache.noteStop(in: mappings[lo - 1])
                return
            }
        }
    }

    /// Forget a process (it exited).
    public func forget(pid: Int32) {
        drop(pid: pid)
    }
}

extension SampleUnwinder: OnlineUnwinding {
    /// Online unwinding for `sprof record`: the frames go straight into the
    /// recorder's buffer.
    public func unwind(_ sample: RawSample, generation: UInt64, mappings: [Mapping],
                       into out: UnsafeMutableBufferPointer<UInt64>) -> (count: Int, stop: UInt8)? {
        guard sample.flags.contains(.userRegisters) else { return (0, UnwindStop.noUserRegisters.rawValue) }
        return unwind(sample, pid: sample.tgid, generation: generation, mappings: mappings) { frames, outcome in
            let n = min(frames.count, out.count)
            for i in 0..<n { out[i] = frames[i] }
            return (n, outcome.stop.rawValue)
        }
    }
}
