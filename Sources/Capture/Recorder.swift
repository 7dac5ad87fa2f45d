import CLibBPF
import CSprof
import Foundation
import SprofBase
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What `sprof record` profiles.
public enum RecordTarget: Sendable, Equatable {
    case pids([Int32])
    case all
    /// Start this command (argv) and profile it until it exits.
    case command([String])

    var description: String {
        switch self {
        case .pids(let p): return "pids " + p.map(String.init).joined(separator: ",")
        case .all: return "all"
        case .command(let argv): return "command " + argv.joined(separator: " ")
        }
    }
}

public struct RecordSettings: Sendable {
    public var target: RecordTarget
    public var frequency: Int = 999
    /// Seconds; nil = until Ctrl-C or the target exits.
    public var duration: Double?
    public var output: String
    public var userStackSize: Int = Int(SPROF_USTACK_DEFAULT)
    public var forcedFallbacks: Set<String> = []
    /// The BPF ring buffer: 2 MiB per possible CPU, 4 MiB to 256 MiB (a
    /// power of two, as BPF_MAP_TYPE_RINGBUF requires). At 999 Hz with
    /// ~7 KiB stack copies that is ~0.3 s of every CPU's samples, against a
    /// reader that drains it every 50 ms or when a quarter is pending. Its
    /// pages count twice in the recorder's RSS (libbpf maps the data area
    /// twice for wrap-around), so a fixed 16 MiB cost 32 MiB there on a 2-CPU
    /// machine.
    public var ringBufferBytes: Int = RecordSettings.defaultRingBufferBytes(cpus: Int(libbpf_num_possible_cpus()))

    public static func defaultRingBufferBytes(cpus: Int) -> Int {
        let want = max(cpus, 1) * (2 << 20)
        var size = 4 << 20
        while size < want && size < 256 << 20 { size <<= 1 }
        return size
    }
    /// Bytes of samples the reader may queue ahead of the writer.
    public var queueBytes: Int = 64 << 20
    /// Print a live status line on stderr (only when stderr is a terminal).
    public var statusLine: Bool = false
    /// Unwinds user stacks on the writer thread, so the file holds return
    /// addresses instead of stack bytes; nil keeps the raw bytes (`--raw`).
    /// Made on the writer thread, used only there.
    public var makeUnwinder: (@Sendable () -> any OnlineUnwinding)?
    /// Names every address at the end of the recording, while the binaries
    /// are certainly present, into the file's locations records; nil leaves
    /// naming to `sprof report`. Made and used on the writer thread.
    public var makeSymbolization: (@Sendable () -> any RecordingSymbolization)?
    /// Also record where threads wait off the CPU (`--off-cpu`); nil: on-CPU only.
    public var offCPU: OffCPUSettings?
    /// Hand each sample to user space at once instead of in batches (a
    /// wakeup per sample, which only a low rate can afford): the process's
    /// mappings and files are read within a millisecond of the sample, so
    /// processes that live a few milliseconds can still be unwound and named.
    public var wakeEverySample = false
    /// Samples of these processes are dropped on arrival (`sprof agent`
    /// leaves itself out: its cost is in its metrics, and naming its own
    /// large binaries would be most of that cost).
    public var excludedPids: Set<Int32> = []
    /// A continuous recording cut into windows, one raw file each (`sprof
    /// agent`); nil: one file at `output`.
    public var windows: WindowRotation?
    /// Called by the main loop about once a second; a rate it returns
    /// becomes the sampling frequency, changed in place (the BPF program
    /// stays loaded). `sprof agent` keeps to its CPU budget with it.
    public var control: (@Sendable (RecorderStatus) -> Int?)?
    /// Called once the programs are loaded and attached, before the first
    /// sample is read, on the thread that runs the recorder; an error stops
    /// the recording. `sprof agent` drops its capabilities here.
    public var attached: (@Sendable () throws(CaptureError) -> Void)?

    public init(target: RecordTarget, output: String) {
        self.target = target
        self.output = output
    }
}

/// How a continuous recording is cut into windows. Each window is a
/// complete raw file (metadata, processes, mappings, samples, names,
/// stats) committed atomically, so a crash loses at most the open one.
/// Between windows the BPF program, the process table and the unwinder's
/// caches carry over; processes that exited are forgotten.
public struct WindowRotation: Sendable {
    /// The window's length.
    public var seconds: Double
    /// The raw file of window `index` (0, 1, ...); `RecordSettings.output`
    /// is not used.
    public var path: @Sendable (_ index: Int) -> String
    /// Called on the writer thread with each window as it closes, written or
    /// not; must return quickly (hand the file to another thread).
    public var onWindow: @Sendable (ClosedWindow) -> Void

    public init(seconds: Double, path: @escaping @Sendable (Int) -> String,
                onWindow: @escaping @Sendable (ClosedWindow) -> Void) {
        self.seconds = seconds
        self.path = path
        self.onWindow = onWindow
    }
}

/// A window of a continuous recording, closed.
public struct ClosedWindow: Sendable {
    public var index: Int
    /// The committed raw file; nil when the window could not be written
    /// (`error` says why; its samples are counted in `lost`).
    public var path: String?
    public var error: CaptureError?
    public var samples: UInt64
    /// Samples lost in this window: kernel buffer, queue, perf buffer, and
    /// those that could not be written.
    public var lost: UInt64
    public var durationNanoseconds: UInt64
    /// The recording ends with this window.
    public var isLast: Bool
}

/// What the main loop tells `RecordSettings.control`.
public struct RecorderStatus: Sendable {
    public var elapsedSeconds: Double
    public var samples: UInt64
    public var lost: UInt64
    /// The sampling frequency now.
    public var frequency: Int
    /// Why the last change of frequency was refused, if it was.
    public var frequencyError: String?
    /// The process table's counters so far (mappings read, and shed past its bound).
    public var processTable = ProcessTableStatistics()
}

/// Online unwinding, provided by a layer above capture (SprofUnwind), so
/// capture knows nothing of CFI.
public protocol OnlineUnwinding: AnyObject {
    /// Writes the user frames of `sample` (innermost first) into `frames`
    /// using its process's mappings of generation `generation`; returns how
    /// many and why the walk stopped (0: complete), or nil to keep the raw
    /// stack bytes for this sample.
    func unwind(_ sample: RawSample, generation: UInt64, mappings: [Mapping],
                into frames: UnsafeMutableBufferPointer<UInt64>) -> (count: Int, stop: UInt8)?
    /// The process exited or exec'd: drop what is cached for it.
    func forget(pid: Int32)
}

/// Why a recording ended.
public enum StopReason: String, Sendable {
    case duration = "duration elapsed"
    case signal = "interrupted"
    case targetExited = "target exited"
}

public struct RecordSummary: Sendable {
    public var samples: UInt64
    /// Ring/perf buffer full in the kernel, plus queue overflow in user space.
    public var lost: UInt64
    public var durationSeconds: Double
    public var bytesWritten: UInt64
    public var reason: StopReason
    /// Exit status of the profiled command (`-- CMD`), shell-style.
    public var commandExitStatus: Int32?
    public var counters: KernelCounters
    public var variants: CaptureVariants
    /// Where off-CPU recording attached; nil without `--off-cpu`.
    public var offCPUPoint: OffCPUAttachPoint?
    public var offCPUMinimumNanoseconds: UInt64 = 0
    /// Waits still going on at the end, recorded cut there.
    public var offCPUOngoing: UInt64 = 0

    public var line: String {
        let size = bytesWritten >= 1_000_000 ? String(format: "%.1f MB", Double(bytesWritten) / 1_000_000)
            : String(format: "%.1f kB", Double(bytesWritten) / 1_000)
        return "\(samples) samples, \(lost) lost, \(String(format: "%.2f", durationSeconds)) s, "
            + "\(size) written (\(reason.rawValue))"
    }

    /// What off-CPU recording saw, in one line; nil without `--off-cpu`.
    public var offCPULine: String? {
        guard let point = offCPUPoint else { return nil }
        let c = counters
        var text = "off-CPU via \(point.title): \(c.offCPUEmitted) waits recorded"
        if offCPUOngoing > 0 { text += " and \(offCPUOngoing) still going on at the end (cut there)" }
        text += String(format: ", %llu shorter than %.0f µs not recorded (%.1f ms in all)", c.offCPUShort,
                       Double(offCPUMinimumNanoseconds) / 1000, Double(c.offCPUShortNanoseconds) / 1e6)
        if c.offCPUNoUserStack > 0 { text += ", \(c.offCPUNoUserStack) without a user stack (the thread ran before it could be copied)" }
        if c.offCPUMapFull > 0 { text += ", \(c.offCPUMapFull) lost to full maps" }
        return text
    }
}

/// Set by SIGINT/SIGTERM; the recording loop stops when it sees it.
public let recordStopRequested = Atomic<Int32>(0)

/// `sprof record`: validates everything it can before loading anything,
/// loads the sampling program, drains samples on a reader thread into a
/// bounded queue, writes them (with the mappings needed to unwind them) on a
/// writer thread, and commits the file atomically when the recording ends.
public final class Recorder: @unchecked Sendable {
    public let settings: RecordSettings

    public init(settings: RecordSettings) { self.settings = settings }

    /// Checks that need no BPF: privileges, -F, --stack-size, pids.
    public static func validate(_ s: RecordSettings) throws(CaptureError) {
        let maxRate = KernelInfo.maxSampleRate
        guard s.frequency >= 1 && s.frequency <= maxRate else {
            throw .invalidFrequency(requested: s.frequency, max: maxRate)
        }
        guard s.userStackSize >= 4096 && s.userStackSize <= Int(SPROF_USTACK_MAX) && s.userStackSize % 8 == 0 else {
            throw .invalidStackSize(requested: s.userStackSize)
        }
        if let d = s.duration, !(d > 0) { throw .invalidOption("-d \(d): the duration must be a positive number of seconds") }
        if case .pids(let pids) = s.target {
            if pids.isEmpty { throw .invalidOption("-p needs at least one process id") }
            for pid in pids {
                guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { throw .processNotFound(pid: pid) }
                guard access("/proc/\(pid)/maps", R_OK) == 0 else {
                    throw errno == ENOENT ? .processNotFound(pid: pid) : .processNotAccessible(pid: pid)
                }
            }
        }
        if case .command(let argv) = s.target, argv.isEmpty {
            throw .invalidOption("-- needs a command to run")
        }
        let missing = KernelInfo.missingCapabilities
        if !missing.isEmpty { throw .missingPrivileges(missing: missing) }
    }

    /// Records until the duration elapses, the targets exit or `recordStopRequested` is set.
    public func run() throws(CaptureError) -> RecordSummary {
        var s = settings
        try Recorder.validate(s)
        var variants = CaptureVariants.probe(forcedFallbacks: s.forcedFallbacks)
        if !variants.ringBuffer && s.userStackSize > Int(SPROF_PERFBUF_USTACK_MAX) {
            s.userStackSize = Int(SPROF_PERFBUF_USTACK_MAX)
        }
        // The output first: an unwritable destination fails before anything is loaded.
        // 0600: the file holds raw stack bytes, which can contain secrets.
        let writer = try RawFileWriter(path: s.windows?.path(0) ?? s.output, mode: 0o600)
        let object: SamplerObject
        if let off = s.offCPU {
            object = try Recorder.loadWithOffCPU(off, variants: variants, settings: s)
        } else {
            object = try SamplerObject(variants: variants, userStackSize: s.userStackSize,
                                       allTasks: s.target == .all, ringBufferBytes: s.ringBufferBytes,
                                       wakeEverySample: s.wakeEverySample)
        }
        variants = object.variants

        var child: pid_t = 0
        var gate: Int32 = -1
        var watched: [Int32] = []
        switch s.target {
        case .pids(let pids):
            for pid in pids { try object.addTarget(pid: pid) }
            watched = pids
        case .all:
            break
        case .command(let argv):
            var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
            defer { for p in cargs { free(p) } }
            child = sprof_spawn_gated(&cargs, &gate)
            if child < 0 { throw .commandFailed(command: argv[0], errno: -child) }
            try object.addTarget(pid: child)
            watched = [child]
        }

        let processes = ProcessTable()
        let queue = SampleQueue(byteLimit: s.queueBytes)
        let meta = RawMetadata(
            sprofVersion: sprofVersion, kernelRelease: KernelInfo.release, hostname: KernelInfo.hostname,
            wallClockStartNanoseconds: UInt64(Date().timeIntervalSince1970 * 1e9),
            monotonicStartNanoseconds: monotonicNanoseconds(),
            frequency: UInt32(s.frequency), userStackSize: UInt32(s.userStackSize),
            target: s.target.description, variants: variants.names,
            extra: object.offCPUPoint.map { ["offcpu_attach": $0.shortName,
                                             "offcpu_min_ns": String(s.offCPU?.minimumNanoseconds ?? 0)] } ?? [:])
        try writer.writeMetadata(meta)

        let samplesWritten = Atomic<UInt64>(0)
        let writeError = Mutex<CaptureError?>(nil)
        // Exits of watched processes, noticed by the main loop below and
        // written by the writer thread: the file has one writer.
        let exitNotices = Mutex<[ExitNotice]>([])
        let writerDone = DispatchSemaphore(value: 0)
        let makeUnwinder = s.makeUnwinder
        let makeSymbolization = s.makeSymbolization
        let symbolizationReport = Mutex<(locations: Int, nanoseconds: UInt64)?>(nil)
        let rotation = s.windows
        let excluded = s.excludedPids
        let slot = WriterSlot(writer)
        // Finishes windows (names, stats, commit, hand-over) one at a time, in order.
        let namer = DispatchQueue(label: "sprof-namer")
        let writerThread = Thread {
            defer { writerDone.signal() }
            var records = ProcessRecords()
            var generations: [Int32: UInt64] = [:]
            var mainThreadComms: [Int32: Comm] = [:]
            let unwinder = makeUnwinder?()
            var symbolization = makeSymbolization?()
            let frames = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: 512)
            defer { frames.deallocate() }
            // A continuous recording's window: an error ends the window, not the recording.
            var window = (index: 0, samples: UInt64(0), unwritten: UInt64(0), start: meta.monotonicStartNanoseconds,
                          lostAtStart: UInt64(0), error: CaptureError?.none)
            func keep(_ error: CaptureError) {
                if rotation != nil {
                    if window.error == nil { window.error = error }
                } else {
                    writeError.withLock { if $0 == nil { $0 = error } }
                }
            }
            func writeExits() throws(CaptureError) {
                let notices = exitNotices.withLock { n -> [ExitNotice] in
                    let taken = n
                    n = []
                    return taken
                }
                guard let writer = slot.writer else { return }
                for n in notices {
                    if let r = records.exited(pid: n.pid, at: n.timeNanoseconds) { try writer.writeProcess(r) }
                }
            }
            /// The end of a file: exits, then the names of every address in it.
            /// Every sample of the file is written: the exits noticed while the
            /// last ones drained, then those of unwatched processes (-a) that
            /// /proc says are gone now (when they went is not known).
            func writeFinalExits(_ writer: RawFileWriter) throws(CaptureError) {
                try writeExits()
                for pid in records.pidsNotKnownToHaveExited where procSaysExited(pid: pid) {
                    if let r = records.exited(pid: pid, at: nil) { try writer.writeProcess(r) }
                }
            }
            func finishContents() throws(CaptureError) {
                guard let writer = slot.writer else { return }
                try writeFinalExits(writer)
                // Name every address now, before the file is committed.
                if let symbolization {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let locations = symbolization.locations()
                    try writer.writeLocations(locations)
                    let took = DispatchTime.now().uptimeNanoseconds - t0
                    symbolizationReport.withLock { $0 = (locations.count, took) }
                }
            }
            /// Closes the window at `mark`, hands it to the namer, and opens the next unless it is the last.
            func rotate(_ mark: WindowMark, _ rotation: WindowRotation) {
                var closed = ClosedWindow(index: window.index, path: nil, error: window.error, samples: window.samples,
                                          lost: mark.lostSoFar &- window.lostAtStart + window.unwritten,
                                          durationNanoseconds: mark.monotonicNanoseconds &- window.start, isLast: mark.isLast)
                var handed: WindowInFlight?
                if let writer = slot.writer {
                    if window.error == nil {
                        do throws(CaptureError) {
                            try writeFinalExits(writer)
                            handed = WindowInFlight(writer: writer, symbolization: symbolization)
                        } catch {
                            closed.error = error
                            writer.abandon()
                        }
                    } else {
                        writer.abandon()
                    }
                }
                if let handed {
                    // Naming every address reads files and DWARF: seconds for the first
                    // window of a busy machine. It runs beside the next window, so the
                    // writer keeps taking samples (and reading short-lived processes
                    // before they are gone). Windows are handed over in order.
                    let stats = RawStats(samplesWritten: window.samples, samplesLost: closed.lost, counters: [:],
                                         durationNanoseconds: closed.durationNanoseconds,
                                         endReason: mark.isLast ? mark.reason : "window")
                    let pending = closed
                    namer.async {
                        var closed = pending
                        var stats = stats
                        do throws(CaptureError) {
                            if let symbolization = handed.symbolization {
                                let t0 = DispatchTime.now().uptimeNanoseconds
                                let locations = symbolization.locations()
                                try handed.writer.writeLocations(locations)
                                stats.counters["symbolized_locations"] = UInt64(locations.count)
                                stats.counters["symbolize_us"] = (DispatchTime.now().uptimeNanoseconds - t0) / 1000
                            }
                            _ = try handed.writer.finish(stats: stats)
                            closed.path = handed.writer.path
                        } catch {
                            closed.error = error
                            closed.lost += closed.samples
                            closed.samples = 0
                            handed.writer.abandon()
                        }
                        rotation.onWindow(closed)
                    }
                } else {
                    if closed.error == nil { closed.error = window.error }
                    closed.lost += closed.samples
                    closed.samples = 0
                    let pending = closed
                    namer.async { rotation.onWindow(pending) }
                }
                slot.writer = nil
                guard !mark.isLast else { return }
                // The next window: its own file with everything needed to read it alone.
                window = (window.index + 1, 0, 0, mark.monotonicNanoseconds, mark.lostSoFar, nil)
                records = ProcessRecords()
                generations = [:]
                symbolization = makeSymbolization?()
                for pid in processes.forgetExited() {
                    unwinder?.forget(pid: pid)
                    mainThreadComms[pid] = nil
                }
                var m = meta
                m.monotonicStartNanoseconds = mark.monotonicNanoseconds
                m.wallClockStartNanoseconds = mark.wallClockNanoseconds
                do throws(CaptureError) {
                    let w = try RawFileWriter(path: rotation.path(window.index), mode: 0o600)
                    do throws(CaptureError) { try w.writeMetadata(m) } catch { w.abandon(); throw error }
                    slot.writer = w
                } catch {
                    window.error = error
                }
            }
            while let item = queue.next() {
                let sample: RawSample
                switch item {
                case .windowEnd(let mark):
                    if let rotation { rotate(mark, rotation) }
                    continue
                case .sample(let s):
                    sample = s
                }
                if excluded.contains(sample.tgid) { continue }
                guard let writer = slot.writer, window.error == nil else {
                    // This window could not be written: its samples are counted as lost.
                    window.unwritten += 1
                    continue
                }
                do throws(CaptureError) {
                    try writeExits()
                    if !records.hasRecord(pid: sample.tgid) {
                        try writer.writeProcess(records.first(processes.processInfo(pid: sample.tgid, comm: sample.comm.description)))
                    }
                    if sample.tid == sample.tgid {
                        // The main thread's name changes at exec (to the new program's):
                        // re-read the mappings now, not after the miss rate limit (50 ms),
                        // which is the whole life of a short process run by fork + exec.
                        if let c = mainThreadComms[sample.tgid], c != sample.comm { processes.noteExec(pid: sample.tgid) }
                        mainThreadComms[sample.tgid] = sample.comm
                    }
                    if sample.flags.contains(.userRegisters) { processes.noteAddress(sample.ip, pid: sample.tgid) }
                    let gen = processes.generation(of: sample.tgid)
                    let mappings = processes.mappings(of: sample.tgid)
                    if generations[sample.tgid] != gen {
                        if generations[sample.tgid] != nil {
                            // New mappings (exec, dlopen): the command and executable may have changed too.
                            try writer.writeProcess(records.updated(processes.processInfo(pid: sample.tgid, comm: sample.comm.description)))
                        }
                        generations[sample.tgid] = gen
                        try writer.writeMappings(pid: sample.tgid, generation: gen, mappings: mappings)
                    }
                    var userFrames = UnsafeBufferPointer<UInt64>(start: nil, count: 0)
                    if let unwinder, let (count, stop) = unwinder.unwind(sample, generation: gen, mappings: mappings, into: frames) {
                        userFrames = UnsafeBufferPointer(start: frames.baseAddress, count: count)
                        try writer.writeUnwoundSample(sample, userFrames: userFrames, stop: stop)
                    } else {
                        try writer.writeSample(sample)
                    }
                    symbolization?.note(sample, generation: gen, mappings: mappings, userFrames: userFrames)
                    samplesWritten.add(1, ordering: .relaxed)
                    window.samples += 1
                } catch {
                    keep(error)
                    // keep draining so the reader never blocks; the error ends the recording (the window)
                }
            }
            // The last window closed at its mark; wait until the namer has handed every window over.
            guard rotation == nil else { namer.sync {}; return }
            do throws(CaptureError) {
                if writeError.withLock({ $0 == nil }) { try finishContents() }
            } catch {
                keep(error)
            }
        }
        writerThread.name = "sprof-writer"
        writerThread.start()

        let sampler: Sampler
        do {
            sampler = try Sampler(object: object, frequency: s.frequency) { sample in _ = queue.push(sample) }
            try s.attached?()
        } catch {
            if gate >= 0 { close(gate) }  // the child exits 127 without running the command
            if child > 0 { var st: Int32 = 0; waitpid(child, &st, 0) }
            queue.close()
            writerDone.wait()
            slot.writer?.abandon()
            throw error
        }

        let readerStop = Atomic<Bool>(false)
        let readerDone = DispatchSemaphore(value: 0)
        let readerThread = Thread {
            while !readerStop.load(ordering: .relaxed) {
                sampler.poll(timeoutMilliseconds: 50)
                queue.wake()
            }
            sampler.drain()
            queue.wake()
            readerDone.signal()
        }
        readerThread.name = "sprof-reader"
        readerThread.start()

        let start = monotonicNanoseconds()
        if gate >= 0 {
            var one: UInt8 = 1
            _ = write(gate, &one, 1)
            close(gate)
        }
        var pidfds: [Int32: Int32] = [:]
        for pid in watched where pid != child {
            let fd = sprof_pidfd_open(pid)
            if fd >= 0 { pidfds[pid] = fd }
        }
        defer { for fd in pidfds.values { close(fd) } }

        /// The exit time is when this loop noticed it: within one pass
        /// (20 ms and a poll) of the real exit.
        func noteExit(_ pid: Int32) {
            let notice = ExitNotice(pid: pid, timeNanoseconds: monotonicNanoseconds())
            exitNotices.withLock { $0.append(notice) }
        }

        var reason = StopReason.signal
        var exitStatus: Int32?
        var alive = Set(watched)
        let isTTY = isatty(2) == 1 && s.statusLine
        var lastStatus = start
        func lostSoFar() -> UInt64 { object.counterValues().lost + queue.droppedCount + sampler.perfBufferLost }
        // Windows end on wall-clock multiples of their length (12:00:10,
        // 12:00:20, ...), so those of many hosts line up; the first is shorter.
        var windowEnd = UInt64.max
        if let w = s.windows {
            let length = UInt64(w.seconds * 1e9)
            let wall = wallClockNanoseconds()
            windowEnd = start + (wall / length + 1) * length - wall
        }
        var frequency = s.frequency
        var frequencyError: String?
        var lastControl = start
        loop: while true {
            if recordStopRequested.load(ordering: .relaxed) != 0 { reason = .signal; break }
            let now = monotonicNanoseconds()
            if let d = s.duration, Double(now - start) / 1e9 >= d { reason = .duration; break }
            if writeError.withLock({ $0 != nil }) { break }
            if child > 0 {
                var st: Int32 = 0
                if waitpid(child, &st, WNOHANG) == child {
                    exitStatus = sprof_wait_status_code(st)
                    alive.remove(child)
                    noteExit(child)
                }
            }
            for pid in alive where pid != child && !isAlive(pid, pidfd: pidfds[pid]) {
                alive.remove(pid)
                noteExit(pid)
            }
            if !watched.isEmpty && alive.isEmpty { reason = .targetExited; break loop }
            if now >= windowEnd, let w = s.windows {
                queue.markWindowEnd(WindowMark(monotonicNanoseconds: now, wallClockNanoseconds: wallClockNanoseconds(),
                                               lostSoFar: lostSoFar()))
                let length = UInt64(w.seconds * 1e9)
                windowEnd += length
                if windowEnd <= now { windowEnd = now + length }  // the loop was stalled
            }
            if let control = s.control, now - lastControl >= 1_000_000_000 {
                lastControl = now
                let status = RecorderStatus(elapsedSeconds: Double(now - start) / 1e9, samples: samplesWritten.load(ordering: .relaxed),
                                            lost: lostSoFar(), frequency: frequency, frequencyError: frequencyError,
                                            processTable: processes.statistics)
                if let f = control(status), f != frequency, f >= 1 {
                    do throws(CaptureError) {
                        try sampler.setFrequency(f)
                        frequency = f
                    } catch {
                        frequencyError = "could not change the sampling rate to \(f) Hz: \(error)"
                    }
                }
            }
            if isTTY && now - lastStatus >= 250_000_000 {
                lastStatus = now
                let c = object.counterValues()
                let line = String(format: "\r\u{1b}[Ksprof: recording %.1f s, %llu samples, %llu lost",
                                  Double(now - start) / 1e9, samplesWritten.load(ordering: .relaxed),
                                  c.lost + queue.droppedCount + sampler.perfBufferLost)
                FileHandle.standardError.write(line.data(using: .utf8)!)
            }
            // A continuous recording watches no process: a window end within 50 ms is soon enough.
            usleep(s.windows == nil ? 20_000 : 50_000)
        }
        let end = monotonicNanoseconds()
        sampler.stopSampling()
        readerStop.store(true, ordering: .relaxed)
        readerDone.wait()
        // Waits that had not ended: cut at the end, after every recorded sample.
        var ongoing: UInt64 = 0
        if let off = s.offCPU {
            for w in object.offCPUWaitsInProgress() where end > w.start && end - w.start >= off.minimumNanoseconds {
                if let sample = WaitsInProgress.sample(w, end: end, userStackSize: s.userStackSize), queue.push(sample) { ongoing += 1 }
            }
        }
        if s.windows != nil {
            var last = WindowMark(monotonicNanoseconds: end, wallClockNanoseconds: wallClockNanoseconds(), lostSoFar: lostSoFar())
            last.isLast = true
            last.reason = reason.rawValue
            queue.markWindowEnd(last)
        }
        queue.close()
        writerDone.wait()
        if isTTY { FileHandle.standardError.write("\r\u{1b}[K".data(using: .utf8)!) }

        if child > 0 && exitStatus == nil {
            // Stopped before the command ended (Ctrl-C, -d): pass the signal on and collect it.
            kill(child, recordStopRequested.load(ordering: .relaxed) == 0 ? SIGTERM : recordStopRequested.load(ordering: .relaxed))
            var st: Int32 = 0
            for _ in 0..<200 {
                if waitpid(child, &st, WNOHANG) == child { exitStatus = sprof_wait_status_code(st); break }
                usleep(10_000)
            }
        }

        if s.windows != nil {
            // Each window was committed (or reported) as it closed.
            let counters = object.counterValues()
            return RecordSummary(samples: samplesWritten.load(ordering: .relaxed), lost: lostSoFar(),
                                 durationSeconds: Double(end - start) / 1e9, bytesWritten: 0, reason: reason,
                                 commandExitStatus: exitStatus, counters: counters, variants: variants,
                                 offCPUPoint: object.offCPUPoint, offCPUMinimumNanoseconds: s.offCPU?.minimumNanoseconds ?? 0,
                                 offCPUOngoing: ongoing)
        }
        if let e = writeError.withLock({ $0 }) { writer.abandon(); throw e }
        let counters = object.counterValues()
        let lost = counters.lost + queue.droppedCount + sampler.perfBufferLost
        var stats = RawStats(samplesWritten: samplesWritten.load(ordering: .relaxed), samplesLost: lost,
                             counters: counters.dictionary, durationNanoseconds: end - start, endReason: reason.rawValue)
        stats.counters["queue_dropped"] = queue.droppedCount
        stats.counters["perfbuf_lost"] = sampler.perfBufferLost
        stats.counters["undecodable"] = sampler.undecodable
        if s.offCPU != nil { stats.counters["offcpu_ongoing"] = ongoing }
        if let (n, ns) = symbolizationReport.withLock({ $0 }) {
            stats.counters["symbolized_locations"] = UInt64(n)
            stats.counters["symbolize_us"] = ns / 1000
        }
        let bytes = try writer.finish(stats: stats)
        return RecordSummary(samples: stats.samplesWritten, lost: lost, durationSeconds: Double(end - start) / 1e9,
                             bytesWritten: bytes, reason: reason, commandExitStatus: exitStatus,
                             counters: counters, variants: variants, offCPUPoint: object.offCPUPoint,
                             offCPUMinimumNanoseconds: s.offCPU?.minimumNanoseconds ?? 0, offCPUOngoing: ongoing)
    }

    /// Loads the sampling object with the first off-CPU attach point the
    /// kernel accepts; says what each refusal was when none does.
    static func loadWithOffCPU(_ off: OffCPUSettings, variants: CaptureVariants,
                               settings s: RecordSettings) throws(CaptureError) -> SamplerObject {
        var tried: [String] = []
        let candidates = off.candidates()
        if candidates.isEmpty {
            for p in OffCPUAttachPoint.allCases { tried.append("\(p.title): \(Doctor.tryAttach(p).error ?? "refused")") }
        }
        for point in candidates {
            do {
                return try SamplerObject(variants: variants, userStackSize: s.userStackSize, allTasks: s.target == .all,
                                         ringBufferBytes: s.ringBufferBytes, offCPU: (off, point),
                                         wakeEverySample: s.wakeEverySample)
            } catch {
                tried.append("\(point.title): \(error)")
            }
        }
        throw .offCPUUnavailable(tried: tried)
    }

    private func isAlive(_ pid: Int32, pidfd: Int32?) -> Bool {
        if let fd = pidfd {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            return poll(&p, 1, 0) == 0
        }
        // No pidfd (pre-5.3): a zombie still answers kill(0); read its state.
        return !procSaysExited(pid: pid)
    }
}

public let sprofVersion = "0.1.0"

/// CLOCK_REALTIME in nanoseconds since the Unix epoch.
func wallClockNanoseconds() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1e9) }

/// A closed window on its way to the namer thread, which alone touches it from then on.
struct WindowInFlight: @unchecked Sendable {
    let writer: RawFileWriter
    let symbolization: (any RecordingSymbolization)?
}

/// Holds the writer of the current window; the writer thread replaces it
/// between windows, the main thread reads it only once that thread is done.
final class WriterSlot: @unchecked Sendable {
    var writer: RawFileWriter?
    init(_ writer: RawFileWriter) { self.writer = writer }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of sample times.
public func monotonicNanoseconds() -> UInt64 { Syscalls.monotonicNanoseconds() }

/// A watched process seen to exit, on its way from the main loop to the
/// writer thread.
struct ExitNotice: Sendable {
    var pid: Int32
    /// CLOCK_MONOTONIC when the exit was noticed.
    var timeNanoseconds: UInt64
}

/// What the writer has written about each process, so that an exit can be
/// written as a second, complete process record: the format keeps the last
/// record of a pid (docs/raw-format.md, "Process"), so that record must
/// repeat the command and executable, which can no longer be read from
/// `/proc` once the process is gone.
///
/// Only pids with samples get records. An exit noticed before the pid's
/// first sample reached the writer (samples can still be in the kernel
/// buffer when the main loop sees the exit) is kept and goes into that
/// first record.
struct ProcessRecords {
    /// The last record written for each pid.
    private var written: [Int32: RawProcess] = [:]
    /// Exit times of pids with no record yet.
    private var pendingExits: [Int32: UInt64] = [:]

    func hasRecord(pid: Int32) -> Bool { written[pid] != nil }

    /// The record to write before the pid's first sample: `info`, with the
    /// exit if one was already noticed.
    mutating func first(_ info: RawProcess) -> RawProcess {
        precondition(written[info.pid] == nil, "a second first record for pid \(info.pid)")
        var r = info
        if let t = pendingExits.removeValue(forKey: info.pid) {
            r.exited = true
            r.exitTimeNanoseconds = t
        }
        written[r.pid] = r
        return r
    }

    /// The record to write now that `pid` is known to have exited (at `time`
    /// if known), or nil when there is nothing new to say: no record yet (the
    /// exit is kept for the first one), or the last one already says it.
    mutating func exited(pid: Int32, at time: UInt64?) -> RawProcess? {
        guard var r = written[pid] else {
            if let time, pendingExits[pid] == nil { pendingExits[pid] = time }
            return nil
        }
        if r.exitTimeNanoseconds != nil || (r.exited && time == nil) { return nil }
        r.exited = true
        r.exitTimeNanoseconds = time
        written[pid] = r
        return r
    }

    /// A newer record for a pid that has one (after exec): keeps what is
    /// known of its exit.
    mutating func updated(_ info: RawProcess) -> RawProcess {
        var r = info
        if let old = written[info.pid], old.exited {
            r.exited = true
            r.exitTimeNanoseconds = old.exitTimeNanoseconds
        }
        written[r.pid] = r
        return r
    }

    /// Pids with a record that does not say they exited, ascending.
    var pidsNotKnownToHaveExited: [Int32] {
        written.values.filter { !$0.exited }.map(\.pid).sorted()
    }
}
