import CSprof
import Foundation
import SprofAgent
import SprofBase
import SprofELF
import SprofCapture
import SprofClickHouse
import SprofProfile
import SprofStore
import SprofSymbols
import SprofUnwind
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What one run of the agent does: the effective configuration, made
/// concrete (directories chosen, host known).
struct AgentSettings: Sendable, Equatable {
    var frequency = 19
    var windowSeconds = 10.0
    var offCPU = false
    var offCPUMinimumMicroseconds = 1000.0
    var userStackSize = 16 << 10
    /// Cores (0.01 = 1% of one core).
    var cpuBudget = 0.01
    var host = KernelInfo.hostname
    /// nil: no local store.
    var storeDirectory: String?
    var storeMaxAge: Double = 7 * 86_400
    var storeMaxBytes = 2 << 30
    /// "host:port"; nil: no HTTP endpoint.
    var listen: String? = "127.0.0.1:7070"
    var allowRemote = false
    var clickHouseURL: String?
    var clickHouseSpoolDirectory = ""
    var clickHouseSpoolBytes = 256 << 20
    var clickHouseRetentionDays = 30
    var pyroscopeURL: String?
    var pyroscopeAppName = "sprof"
    /// Static labels on every sample.
    var labels: [String: String] = [:]
    /// Stop after this many seconds (tests, benchmarks); nil: until SIGTERM.
    var duration: Double?
    /// Where the open window's raw file is kept (tmpfs when root).
    var runtimeDirectory = AgentSettings.defaultRuntimeDirectory
    /// Keep every capability instead of dropping to ``PrivilegePlan/agent(lastCapability:permitted:)``'s.
    var keepRoot = false

    static var defaultRuntimeDirectory: String {
        if let d = ProcessInfo.processInfo.environment["SPROF_RUNTIME_DIR"], !d.isEmpty { return d }
        return getuid() == 0 ? "/run/sprof" : NSTemporaryDirectory() + "sprof-\(getuid())"
    }
}

/// Memory bounds of the agent's caches: the compiled unwind tables (by
/// build-id, least recently used evicted) and the symbolizer's modules
/// (trimmed between windows). Together with the 4 MiB ring buffer (mapped
/// twice) and a window's samples they keep the agent under 100 MB.
enum AgentBounds {
    static let unwindTables = 48 << 20
    static let symbols = 32 << 20
    static let queue = 16 << 20
    /// The most of one process's perf map read (its newest lines): about
    /// 90,000 lines, some 7 MB once parsed, which fits the JIT symbolizer's
    /// trim (a quarter of ``symbols``). 16 MiB (29 MB parsed) was dropped by
    /// that trim at every window and parsed again.
    static let perfMap = 4 << 20
    /// Windows waiting to be converted and written; past it the oldest is dropped and counted.
    static let pendingWindows = 6

    /// Binaries not used for this many windows are let go (their files
    /// unmapped, their tables freed): the processes that used them are gone.
    static let idleWindows = 6
    private static let symbolMarks = Mutex<[UInt64]>([])
    private static let unwindMarks = Mutex<[UInt64]>([])

    /// At each window's end (the namer thread): drops the symbolizer's
    /// modules unused for ``idleWindows`` windows.
    static func dropIdle(_ symbolizer: Symbolizer) {
        let mark = symbolMarks.withLock { m -> UInt64? in
            m.append(symbolizer.useMark)
            return m.count > idleWindows ? m.removeFirst() : nil
        }
        if let mark { symbolizer.dropUnused(since: mark) }
    }

    /// The same for compiled unwind tables.
    static func dropIdle(_ cache: ModuleCache) {
        let mark = unwindMarks.withLock { m -> UInt64? in
            m.append(cache.useMark)
            return m.count > idleWindows ? m.removeFirst() : nil
        }
        if let mark { cache.dropUnused(since: mark) }
    }

    /// The BPF ring buffer: half a second of every CPU's samples at the
    /// configured rate (the reader drains it every 50 ms), a power of two
    /// from 256 KiB to the recorder's default. At 19 Hz with 16 KiB stacks
    /// on 2 CPUs that is 512 KiB instead of `record`'s 4 MiB, which counts
    /// twice in RSS (libbpf maps the data area twice).
    static func ringBufferBytes(frequency: Int, userStackSize: Int, cpus: Int = KernelInfo.onlineCPUs.count) -> Int {
        let want = Double(max(cpus, 1)) * Double(frequency) * Double(userStackSize + 1024) * 0.5
        let cap = RecordSettings.defaultRingBufferBytes(cpus: cpus)
        var size = 256 << 10
        while Double(size) < want && size < cap { size <<= 1 }
        return size
    }
}

/// The processes of one window, noted on the writer thread at their first
/// sample, while they live: their cgroup (container, systemd unit). A
/// process that lived only milliseconds may be gone by then; its samples
/// still carry the kernel's `comm` and the executable's path.
final class WindowNotes: @unchecked Sendable {
    private let cgroups = Mutex<[Int32: CgroupLabels]>([:])

    func note(pid: Int32) {
        guard pid > 0, let labels = CgroupLabels.of(pid: pid) else { return }
        cgroups.withLock { $0[pid] = labels }
    }

    func cgroup(of pid: Int32) -> CgroupLabels? { cgroups.withLock { $0[pid] } }
}

/// The recording's symbolization for one window (names every address at the
/// window's end with the agent's shared symbolizer), noting each new
/// process's cgroup as it goes.
final class AgentWindowSymbolization: RecordingSymbolization {
    private let inner: RecordingSymbolizer
    let notes = WindowNotes()
    private var seen: Set<Int32> = []

    private let shared: Symbolizer

    /// - Parameters:
    ///   - symbolizer: names the window's addresses at its end, on the
    ///     recorder's namer thread (one window at a time), trimmed after.
    ///   - jit: names JIT code as it is seen, on the writer thread.
    init(symbolizer: Symbolizer, jit: Symbolizer) {
        shared = symbolizer
        inner = RecordingSymbolizer(symbolizer: symbolizer, early: jit)
    }

    func note(_ sample: RawSample, generation: UInt64, mappings: [Mapping], userFrames: UnsafeBufferPointer<UInt64>) {
        if seen.insert(sample.tgid).inserted { notes.note(pid: sample.tgid) }
        inner.note(sample, generation: generation, mappings: mappings, userFrames: userFrames)
    }

    func locations() -> [RawLocation] {
        let named = inner.locations()
        AgentBounds.dropIdle(shared)
        shared.trim(toBytes: AgentBounds.symbols)
        return named
    }
}

/// Where each window goes: the store, ClickHouse, Pyroscope. Each sink's
/// failure is its own: it is counted and logged, and neither stops
/// sampling nor the other sinks.
final class AgentSinks: @unchecked Sendable {
    let store: ProfileStore?
    let clickHouse: ClickHouseSink?
    let pyroscope: PyroscopePusher?
    let settings: AgentSettings
    /// Touched only by the windows thread.
    var lastClickHouseRetention = Date.distantPast
    var lastRetention = Date.distantPast

    init(_ s: AgentSettings) throws {
        settings = s
        store = try s.storeDirectory.map { d throws(StoreError) in try ProfileStore(directory: d) }
        if let url = s.clickHouseURL {
            var c = ClickHouseSink.Configuration(url: url, spoolDirectory: s.clickHouseSpoolDirectory)
            c.maxSpoolBytes = Int64(s.clickHouseSpoolBytes)
            clickHouse = try ClickHouseSink(c, log: { agentLog("clickhouse: \($0)") })
        } else {
            clickHouse = nil
        }
        if let url = s.pyroscopeURL {
            var c = PyroscopePusher.Configuration(url: url, appName: s.pyroscopeAppName, sampleRate: s.frequency)
            c.labels = s.labels.merging(["host": s.host]) { a, _ in a }
            pyroscope = try PyroscopePusher(c, log: { agentLog("pyroscope: \($0)") })
        } else {
            pyroscope = nil
        }
    }

    /// Gives the senders a few seconds, side by side: what ClickHouse has not
    /// taken stays in the spool for the next start; Pyroscope's queue is dropped.
    func close() {
        let group = DispatchGroup()
        if let clickHouse {
            DispatchQueue.global().async(group: group) {
                if !clickHouse.close(timeout: 3) {
                    agentLog("clickhouse: the server did not take everything in 3 s; the rest stays in \(self.settings.clickHouseSpoolDirectory) for the next start")
                }
            }
        }
        if let pyroscope {
            DispatchQueue.global().async(group: group) {
                if !pyroscope.close(timeout: 3) { agentLog("pyroscope: windows not pushed in 3 s were dropped") }
            }
        }
        group.wait()
    }
}

/// `sprof agent`: samples every CPU continuously, one window at a time.
///
/// Threads: the recorder's (reader, writer: unwinding and naming while the
/// processes live, one raw file per window in the runtime directory, a
/// tmpfs), one that turns each closed window into a profile and hands it
/// to the sinks, the sinks' senders, and the HTTP endpoint's. The main
/// thread runs the recorder and, on SIGHUP, restarts it with the reloaded
/// configuration (the open window is closed and written first).
final class AgentRunner: @unchecked Sendable {
    /// Read by every thread, replaced by the main thread on SIGHUP.
    private let current: Mutex<AgentSettings>
    var settings: AgentSettings { current.withLock { $0 } }
    let metrics = Metrics()
    private let reload: (@Sendable () throws -> AgentSettings)?
    private let jobs = NSCondition()
    private var pending: [(ClosedWindow, WindowNotes?)] = []
    private var closing = false
    private let sinksLock = Mutex<AgentSinks?>(nil)
    private var endpoint: HTTPEndpoint?
    private let symbolizer = Mutex<(Symbolizer, Symbolizer)?>(nil)
    /// The notes of each window not yet handed over, oldest first: the
    /// recorder makes one symbolization per window and hands windows over in
    /// order, one each.
    private let windowNotes = Mutex<[WindowNotes]>([])
    /// The failing kinds: the last error said, and when.
    private let lastErrors = Mutex<[String: (message: String, at: UInt64)]>([:])
    private var run = 0
    /// CLOCK_MONOTONIC when the first recording started (main thread only).
    private var startedAt: UInt64 = 0
    private let rate: Mutex<RateController>
    /// Compiled unwind tables by build-id, kept across reloads.
    private let moduleCache = ModuleCache(memoryLimit: AgentBounds.unwindTables)
    /// Whether the capabilities were dealt with (dropped or kept by
    /// --keep-root): once, after the first run's programs are attached (main thread only).
    private var privilegesSettled = false
    /// What was shed past the bounds so far, for the metrics and the log.
    private let shedding = ShedNotes()

    init(settings: AgentSettings, reload: (@Sendable () throws -> AgentSettings)? = nil) {
        current = Mutex(settings)
        rate = Mutex(RateController(configuredHz: settings.frequency, budget: settings.cpuBudget))
        self.reload = reload
        declareMetrics()
    }

    /// Runs until SIGTERM/SIGINT (or `duration`); returns the exit status.
    func runUntilStopped() -> Int32 {
        // glibc gives each thread that allocates its own arena (up to 8 per
        // CPU), and a daemon whose threads allocate and free in turns keeps
        // the freed pages of all of them: two arenas, and what a window freed
        // handed back to the kernel after it (malloc_trim, below).
        sprof_malloc_limit_arenas(2)
        do {
            try prepareRuntimeDirectory()
            sinksLock.withLock { $0 = nil }
            let sinks = try AgentSinks(settings)
            sinksLock.withLock { $0 = sinks }
            try startEndpoint()
        } catch {
            agentLog("\(error)")
            return 1
        }
        announce()
        let workerDone = DispatchSemaphore(value: 0)
        let worker = Thread { [self] in
            processWindows()
            workerDone.signal()
        }
        worker.name = "sprof-windows"
        worker.start()

        var status: Int32 = 0
        while true {
            // A SIGHUP handled; a SIGTERM that came meanwhile still stops the next run at once.
            _ = recordStopRequested.compareExchange(expected: SIGHUP, desired: 0, ordering: .relaxed)
            let summary: RecordSummary
            do {
                summary = try Recorder(settings: recordSettings()).run()
            } catch {
                agentLog("\(error)")
                status = 1
                break
            }
            if summary.lost > 0 { agentLog("\(summary.lost) samples lost in this run (see sprof_agent_lost_samples_total)") }
            guard recordStopRequested.load(ordering: .relaxed) == SIGHUP, let reload else { break }
            do {
                let next = try reload()
                applyReload(next)
            } catch {
                agentLog("the configuration was not reloaded, the old one stays: \(error)")
            }
        }
        // Every window closed by now; write them, then flush the sinks.
        jobs.lock()
        closing = true
        jobs.broadcast()
        jobs.unlock()
        workerDone.wait()
        sinksLock.withLock { $0 }?.close()
        endpoint?.stop()
        removeRuntimeDirectory()
        agentLog("stopped")
        return status
    }

    // MARK: - Configuration

    private func recordSettings() -> RecordSettings {
        run += 1
        let s = settings
        let runIndex = run
        let directory = runtimeWindowDirectory
        var r = RecordSettings(target: .all, output: "")
        r.frequency = rate.withLock { $0.currentHz }
        // `-d` counts from the start, across reloads.
        let now = monotonicNanoseconds()
        if startedAt == 0 { startedAt = now }
        r.duration = s.duration.map { max(0.05, $0 - Double(now - startedAt) / 1e9) }
        r.userStackSize = s.userStackSize
        r.ringBufferBytes = AgentBounds.ringBufferBytes(frequency: s.frequency, userStackSize: s.userStackSize)
        r.queueBytes = AgentBounds.queue
        // Up to 500 samples a second (19 Hz on 26 CPUs; a wakeup costs a few
        // µs), each is handed over at once, not in 50 ms batches: a process
        // that lives 20 ms is read (mappings, files) before it is gone.
        r.wakeEverySample = s.frequency * KernelInfo.onlineCPUs.count <= 500
        r.excludedPids = [getpid()]
        r.forcedFallbacks = CaptureVariants.environmentFallbacks
        if s.offCPU {
            r.offCPU = OffCPUSettings(minimumNanoseconds: UInt64(s.offCPUMinimumMicroseconds * 1000), includeKernelThreads: false)
        }
        let cache = moduleCache
        r.makeUnwinder = { SampleUnwinder(cache: cache, source: .live) }
        r.makeSymbolization = { [self] in
            // One symbolizer for every window (the namer thread's), one for JIT code (the writer's).
            let (shared, jit) = symbolizer.withLock { sym -> (Symbolizer, Symbolizer) in
                if let sym { return sym }
                let made = (makeSymbolizer(perfMapMaxBytes: AgentBounds.perfMap), makeSymbolizer(perfMapMaxBytes: AgentBounds.perfMap))
                sym = made
                return made
            }
            jit.trim(toBytes: AgentBounds.symbols / 4)
            let made = AgentWindowSymbolization(symbolizer: shared, jit: jit)
            windowNotes.withLock { $0.append(made.notes) }
            return made
        }
        r.windows = WindowRotation(seconds: s.windowSeconds,
                                   path: { "\(directory)/run\(runIndex)-window\($0).raw" },
                                   onWindow: { [self] closed in enqueue(closed) })
        r.control = { [self] status in control(status) }
        r.attached = { [self] () throws(CaptureError) in try settlePrivileges() }
        return r
    }

    private func applyReload(_ next: AgentSettings) {
        let old = settings
        current.withLock { $0 = next }
        if next.frequency != old.frequency || next.cpuBudget != old.cpuBudget {
            rate.withLock { $0 = RateController(configuredHz: next.frequency, budget: next.cpuBudget) }
        }
        let sinksChanged = next.storeDirectory != old.storeDirectory || next.clickHouseURL != old.clickHouseURL
            || next.clickHouseSpoolDirectory != old.clickHouseSpoolDirectory || next.clickHouseSpoolBytes != old.clickHouseSpoolBytes
            || next.pyroscopeURL != old.pyroscopeURL || next.pyroscopeAppName != old.pyroscopeAppName
            || next.labels != old.labels || next.host != old.host
        if sinksChanged {
            do {
                let sinks = try AgentSinks(next)
                let previous = sinksLock.withLock { s -> AgentSinks? in let p = s; s = sinks; return p }
                previous?.close()
            } catch {
                agentLog("reload: \(error); the previous sinks stay")
            }
        }
        if next.listen != old.listen || next.allowRemote != old.allowRemote {
            endpoint?.stop()
            endpoint = nil
            do { try startEndpoint() } catch { agentLog("reload: \(error); the page is off until the next reload") }
        }
        if next.keepRoot != old.keepRoot {
            agentLog("keep_root changes at the next start: capabilities dropped cannot be taken back")
        }
        agentLog("configuration reloaded")
        announce()
    }

    private func announce() {
        let s = settings
        var parts = ["sampling every CPU at \(rate.withLock { $0.currentHz }) Hz\(s.offCPU ? " with off-CPU" : "") in \(formatSeconds(s.windowSeconds)) windows",
                     "CPU budget \(String(format: "%g", s.cpuBudget * 100))% of a core"]
        parts.append(s.storeDirectory.map { "store \($0)" } ?? "no local store")
        parts.append(endpoint.map { "page http://\($0.address)/" } ?? "no page")
        if let u = s.clickHouseURL { parts.append("ClickHouse \(redactedURL(u))") }
        if let u = s.pyroscopeURL { parts.append("Pyroscope \(redactedURL(u))") }
        agentLog(parts.joined(separator: "; "))
    }

    // MARK: - Privileges

    /// After the first run's programs are attached (the HTTP endpoint is
    /// bound by then): keeps only what ``PrivilegePlan/agent(lastCapability:permitted:)``
    /// names, on every thread, and says so; a failure stops the agent
    /// rather than leave it running as full root. Later runs (SIGHUP) load
    /// with what was kept.
    private func settlePrivileges() throws(CaptureError) {
        guard !privilegesSettled else { return }
        privilegesSettled = true
        if settings.keepRoot {
            agentLog("kept every capability (--keep-root): whatever took the agent over would hold them all")
            metrics.set("sprof_agent_capabilities_dropped", 0)
            return
        }
        let plan = PrivilegePlan.agent(lastCapability: Privileges.lastCapability, permitted: Privileges.current().permitted)
        let bounding = try Privileges.restrict(to: plan.set)
        agentLog("kept capabilities: \(plan.kept.map(\.0.name).joined(separator: ", ")) (dropped the rest; --keep-root keeps all)")
        for note in plan.notes { agentLog(note) }
        if !bounding {
            agentLog("the bounding set stays as this process was started with (no cap_setpcap to drop from it); no_new_privs keeps execve from gaining any")
        }
        metrics.set("sprof_agent_capabilities_dropped", 1)
    }

    // MARK: - HTTP

    private func startEndpoint() throws {
        guard let listen = settings.listen else { return }
        let (host, port) = try parseListen(listen)
        let e = try HTTPEndpoint(host: host, port: port, allowRemote: settings.allowRemote) { [self] request in
            handle(request)
        }
        endpoint = e
        e.start()
    }

    private func handle(_ request: HTTPEndpoint.Request) -> HTTPEndpoint.Response {
        switch request.path {
        case "/healthz":
            return .init(status: 200, text: "ok\n")
        case "/metrics":
            updateGauges()
            return .init(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", text: metrics.render())
        default:
            guard let store = sinksLock.withLock({ $0?.store }) else {
                return .init(status: 404, text: "the agent keeps no local store (started with --no-store): there is no page\n")
            }
            return AgentPage(store: store, host: settings.host).handle(request)
                ?? .init(status: 404, text: "not found: \(request.path)\n")
        }
    }

    // MARK: - Windows

    private func enqueue(_ closed: ClosedWindow) {
        AgentBounds.dropIdle(moduleCache)
        let notes = windowNotes.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        jobs.lock()
        pending.append((closed, notes))
        while pending.count > AgentBounds.pendingWindows {
            let (old, _) = pending.removeFirst()
            if let p = old.path { unlink(p) }
            metrics.add("sprof_agent_windows_dropped_total")
            metrics.add("sprof_agent_lost_samples_total", Double(old.samples))
            agentLog("window \(old.index) dropped: windows are arriving faster than they can be written")
        }
        jobs.signal()
        jobs.unlock()
    }

    private func processWindows() {
        while true {
            jobs.lock()
            while pending.isEmpty && !closing { jobs.wait() }
            if pending.isEmpty && closing { jobs.unlock(); return }
            let (closed, notes) = pending.removeFirst()
            jobs.unlock()
            process(closed, notes: notes)
            sprof_malloc_trim()
        }
    }

    private func process(_ closed: ClosedWindow, notes: WindowNotes?) {
        metrics.add("sprof_agent_samples_total", Double(closed.samples))
        metrics.add("sprof_agent_lost_samples_total", Double(closed.lost))
        guard let path = closed.path else {
            failure("window", "window \(closed.index) could not be recorded: \(closed.error.map { "\($0)" } ?? "unknown error")")
            return
        }
        defer { unlink(path) }
        let profile: Profile
        do {
            let reader = try RawFileReader(path: path)
            profile = try windowProfile(reader: reader, notes: notes)
        } catch {
            failure("window", "window \(closed.index) could not be converted: \(error)")
            return
        }
        metrics.add("sprof_agent_windows_total")
        guard let sinks = sinksLock.withLock({ $0 }) else { return }
        if let store = sinks.store {
            do {
                try store.write(profile, host: settings.host)
                metrics.add("sprof_agent_windows_written_total", labels: ["sink": "store"])
                recovered("store")
                // Once a minute: a week of 10 s windows is 60,000 files to look at.
                if Date().timeIntervalSince(sinks.lastRetention) >= 60 {
                    sinks.lastRetention = Date()
                    let r = try store.enforceRetention(maxAge: settings.storeMaxAge, maxBytes: settings.storeMaxBytes)
                    metrics.set("sprof_agent_store_bytes", Double(r.remainingBytes))
                    if r.removedWindows > 0 { metrics.add("sprof_agent_store_removed_windows_total", Double(r.removedWindows)) }
                }
            } catch {
                failure("store", "store: \(error)")
            }
        }
        if sinks.clickHouse != nil, let url = settings.clickHouseURL, Date().timeIntervalSince(sinks.lastClickHouseRetention) > 3600 {
            // ClickHouse 18.16 has no table TTL: the agent drops day partitions past the retention, hourly.
            sinks.lastClickHouseRetention = Date()
            let days = settings.clickHouseRetentionDays
            // On its own thread: a server that hangs must not hold up the windows.
            Thread.detachNewThread { [self] in
                do {
                    let dropped = try ClickHouseClient(url: url, timeout: 30).dropPartitions(keepingDays: days)
                    if !dropped.isEmpty { agentLog("clickhouse: dropped the partitions of \(dropped.joined(separator: ", ")) (retention \(days) days)") }
                } catch {
                    failure("clickhouse", "clickhouse retention: \(error)")
                }
            }
        }
        if let ch = sinks.clickHouse, !profile.samples.isEmpty {
            do {
                try ch.write(profile)
                metrics.add("sprof_agent_windows_written_total", labels: ["sink": "clickhouse"])
            } catch {
                failure("clickhouse", "clickhouse: \(error)")
            }
        }
        if let py = sinks.pyroscope, !profile.samples.isEmpty {
            do {
                try py.enqueue(pprof: Pprof.encode(profile), from: Date(timeIntervalSince1970: Double(profile.timeNanos) / 1e9),
                               until: Date(timeIntervalSince1970: Double(profile.timeNanos + profile.durationNanos) / 1e9))
                metrics.add("sprof_agent_windows_written_total", labels: ["sink": "pyroscope"])
            } catch {
                failure("pyroscope", "pyroscope: \(error)")
            }
        }
    }

    /// A window's profile with the agent's labels: `host`, `pid`, `comm`,
    /// `exe`, `thread_name`, `cgroup`, `container_id`, `systemd_unit` (where
    /// the cgroup says), the static labels, and `offcpu_state` for off-CPU
    /// samples; identical samples summed (`tid` is left out: a window would
    /// otherwise hold one sample per thread and stack).
    func windowProfile(reader: RawFileReader, notes: WindowNotes?) throws -> Profile {
        var p = RecordingConverter(reader: reader).profile()
        let folded = ThreadNameFold.apply(&p)
        if folded > 0 { metrics.add("sprof_agent_shed_total", Double(folded), labels: ["kind": "thread_names"]) }
        let statics = settings.labels.sorted { $0.key < $1.key }.map { Profile.Label(key: $0.key, string: $0.value) }
        var perProcess: [Int64: [Profile.Label]] = [:]
        for i in p.samples.indices {
            var labels = p.samples[i].labels.filter { $0.key != "tid" }
            let pid = labels.first { $0.key == "pid" }?.number ?? -1
            if let known = perProcess[pid] {
                labels += known
            } else {
                var extra = [Profile.Label(key: "host", string: settings.host)]
                if let exe = reader.process(pid: Int32(clamping: pid))?.executablePath, !exe.isEmpty {
                    extra.append(.init(key: "exe", string: exe))
                }
                if let c = notes?.cgroup(of: Int32(clamping: pid)) {
                    extra.append(.init(key: "cgroup", string: c.path))
                    if let id = c.containerID { extra.append(.init(key: "container_id", string: id)) }
                    if let unit = c.systemdUnit { extra.append(.init(key: "systemd_unit", string: unit)) }
                }
                extra += statics
                perProcess[pid] = extra
                labels += extra
            }
            p.samples[i].labels = labels
        }
        return try Profile.merging([p])
    }

    // MARK: - Budget and metrics

    private var lastUsage: (cpu: Double, at: UInt64)?

    /// Once a second from the recorder's main loop: every window's length,
    /// the agent's CPU use over it decides the next rate.
    private func control(_ status: RecorderStatus) -> Int? {
        if let e = status.frequencyError { failure("rate", e) }
        shedding.note(status.processTable, cache: moduleCache, metrics: metrics)
        // The first window pays for loading the program and reading every
        // running binary's unwind tables and symbols once: not counted.
        guard status.elapsedSeconds >= settings.windowSeconds, let usage = SelfUsage.current() else { return nil }
        let now = monotonicNanoseconds()
        guard let last = lastUsage else { lastUsage = (usage.cpuSeconds, now); return nil }
        let elapsed = Double(now - last.at) / 1e9
        guard elapsed >= settings.windowSeconds else { return nil }
        lastUsage = (usage.cpuSeconds, now)
        let used = (usage.cpuSeconds - last.cpu) / elapsed
        metrics.set("sprof_agent_cpu_cores", used)
        let (before, after, throttled) = rate.withLock { r -> (Int, Int, Bool) in
            let b = r.currentHz
            let a = r.next(used: used)
            return (b, a, r.throttled)
        }
        metrics.set("sprof_agent_sampling_hz", Double(after))
        metrics.set("sprof_agent_throttled", throttled ? 1 : 0)
        if after < before {
            agentLog(String(format: "using %.2f%% of a core, over the budget of %g%%: sampling at %d Hz instead of %d",
                            used * 100, settings.cpuBudget * 100, after, before))
        } else if after > before {
            agentLog("back under the CPU budget: sampling at \(after) Hz")
        }
        return after
    }

    private func declareMetrics() {
        let m = metrics
        m.declare("sprof_agent_samples_total", .counter, help: "Samples recorded (on-CPU and off-CPU).")
        m.declare("sprof_agent_lost_samples_total", .counter, help: "Samples lost: kernel buffer or queue full, or a window that could not be written.")
        m.declare("sprof_agent_windows_total", .counter, help: "Windows closed and converted to profiles.")
        m.declare("sprof_agent_windows_written_total", .counter, help: "Windows handed to each sink.")
        m.declare("sprof_agent_windows_dropped_total", .counter, help: "Windows dropped because they arrived faster than they could be written.")
        m.declare("sprof_agent_errors_total", .counter, help: "Errors by stage or sink (window, store, clickhouse, pyroscope, rate).")
        m.declare("sprof_agent_store_bytes", .gauge, help: "Bytes of windows in the local store (as of the last retention pass, once a minute).")
        m.declare("sprof_agent_store_removed_windows_total", .counter, help: "Windows removed by retention (age or size).")
        m.declare("sprof_agent_cpu_seconds_total", .counter, help: "CPU time the agent used (user + system).")
        m.declare("sprof_agent_cpu_cores", .gauge, help: "The agent's CPU use over the last window, in cores.")
        m.declare("sprof_agent_rss_bytes", .gauge, help: "The agent's resident memory.")
        m.declare("sprof_agent_sampling_hz", .gauge, help: "The sampling rate now, per CPU.")
        m.declare("sprof_agent_throttled", .gauge, help: "1 while the CPU budget holds the rate below the configured one.")
        m.declare("sprof_agent_capabilities_dropped", .gauge, help: "1 once the agent keeps only the capabilities it needs; 0 with --keep-root.")
        m.declare("sprof_agent_clickhouse_rows_total", .counter, help: "Sample rows ClickHouse accepted.")
        m.declare("sprof_agent_clickhouse_spooled_bytes", .gauge, help: "Bytes of batches waiting on disk for ClickHouse.")
        m.declare("sprof_agent_clickhouse_dropped_rows_total", .counter, help: "Rows dropped past the spool bound.")
        m.declare("sprof_agent_clickhouse_retries_total", .counter, help: "ClickHouse requests retried (server down or refusing).")
        m.declare("sprof_agent_pyroscope_pushed_total", .counter, help: "Windows Pyroscope accepted.")
        m.declare("sprof_agent_pyroscope_retries_total", .counter, help: "Pyroscope pushes retried.")
        m.declare("sprof_agent_pyroscope_dropped_total", .counter, help: "Windows not pushed to Pyroscope (queue full or retries exhausted).")
        m.declare("sprof_agent_shed_total", .counter, help: "Work shed past a bound, by kind: mappings (of processes over the mappings kept per process), unwind_tables (binaries whose CFI is over the bound for one), unwind_samples (stacks stopped at such a binary), thread_names (samples labelled \"\(ThreadNameFold.other)\": a process with more thread names in a window than kept).")
        for kind in ["mappings", "unwind_tables", "unwind_samples", "thread_names"] { m.set("sprof_agent_shed_total", 0, labels: ["kind": kind]) }
        m.declare("sprof_agent_perf_maps_refused_total", .counter, help: "Perf maps (/tmp/perf-PID.map) ignored: owned by neither the process's user nor root.")
        m.declare("sprof_agent_perf_map_skipped_bytes_total", .counter, help: "Bytes of perf maps left unread past the 4 MiB read of each (their oldest lines).")
        m.declare("sprof_agent_truncated_file_pages_total", .counter, help: "Pages of mapped binaries that read as zeros: their file was truncated while the agent read it.")
        m.set("sprof_agent_sampling_hz", Double(settings.frequency))
        m.set("sprof_agent_throttled", 0)
        m.set("sprof_agent_samples_total", 0)
        m.set("sprof_agent_lost_samples_total", 0)
        m.set("sprof_agent_windows_total", 0)
    }

    private func updateGauges() {
        metrics.set("sprof_agent_perf_maps_refused_total", Double(PerfMap.refusedCount))
        metrics.set("sprof_agent_perf_map_skipped_bytes_total", Double(PerfMap.skippedByteCount))
        metrics.set("sprof_agent_truncated_file_pages_total", Double(ModuleFiles.truncatedPagesRead))
        let c = moduleCache.statistics
        metrics.set("sprof_agent_shed_total", Double(c.shedModules), labels: ["kind": "unwind_tables"])
        metrics.set("sprof_agent_shed_total", Double(c.shedSamples), labels: ["kind": "unwind_samples"])
        if let u = SelfUsage.current() {
            metrics.set("sprof_agent_cpu_seconds_total", u.cpuSeconds)
            metrics.set("sprof_agent_rss_bytes", Double(u.rssBytes))
        }
        let sinks = sinksLock.withLock { $0 }
        if let c = sinks?.clickHouse?.currentCounters {
            metrics.set("sprof_agent_clickhouse_rows_total", Double(c.rowsWritten))
            metrics.set("sprof_agent_clickhouse_spooled_bytes", Double(c.spooledBytes))
            metrics.set("sprof_agent_clickhouse_dropped_rows_total", Double(c.droppedRows))
            metrics.set("sprof_agent_clickhouse_retries_total", Double(c.retries))
        }
        if let c = sinks?.pyroscope?.currentCounters {
            metrics.set("sprof_agent_pyroscope_pushed_total", Double(c.pushed))
            metrics.set("sprof_agent_pyroscope_dropped_total", Double(c.dropped + c.failed))
            metrics.set("sprof_agent_pyroscope_retries_total", Double(c.retries))
        }
    }

    /// Counts an error and logs it when it differs from the last one of its
    /// kind (a full disk every 10 s is one line, not one a window).
    private func failure(_ kind: String, _ message: String) {
        metrics.add("sprof_agent_errors_total", labels: ["kind": kind])
        let now = monotonicNanoseconds()
        let say = lastErrors.withLock { e -> Bool in
            guard let last = e[kind] else { e[kind] = (message, now); return true }
            // Failing already: a different error is said at most once a minute.
            guard last.message != message, now - last.at >= 60_000_000_000 else { return false }
            e[kind] = (message, now)
            return true
        }
        if say { agentLog(message) }
    }

    private func recovered(_ kind: String) {
        if lastErrors.withLock({ $0.removeValue(forKey: kind) }) != nil { agentLog("\(kind): working again") }
    }

    // MARK: - Runtime directory

    private var runtimeWindowDirectory: String { settings.runtimeDirectory + "/agent-\(getpid())" }

    /// Makes this agent's directory for raw windows (0700: they hold stack
    /// addresses and process names) and removes those of agents that are
    /// gone (kill -9: their open window is lost, nothing else).
    private func prepareRuntimeDirectory() throws {
        let base = settings.runtimeDirectory
        // 0700, and refused if it is a symlink, another user's or writable by
        // others (SafeFile, Sources/Base/SafeWrite.swift): root writes here.
        try SafeFile.makePrivateDirectory(base)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where name.hasPrefix("agent-") {
            if let pid = Int32(name.dropFirst(6)), pid != getpid(), kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(atPath: base + "/" + name)
            }
        }
        try? FileManager.default.removeItem(atPath: runtimeWindowDirectory)
        try SafeFile.makePrivateDirectory(runtimeWindowDirectory)
    }

    private func removeRuntimeDirectory() { try? FileManager.default.removeItem(atPath: runtimeWindowDirectory) }
}

/// "127.0.0.1:7070", "[::1]:7070" -> (host, port).
func parseListen(_ text: String) throws(AgentError) -> (String, UInt16) {
    var host: Substring
    var port: Substring
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
            throw .badListenAddress(text)
        }
        host = text[text.index(after: text.startIndex)..<close]
        port = text[text.index(close, offsetBy: 2)...]
    } else {
        guard let colon = text.lastIndex(of: ":") else { throw .badListenAddress(text) }
        host = text[..<colon]
        port = text[text.index(after: colon)...]
    }
    if host == "localhost" { host = "127.0.0.1" }
    guard let p = UInt16(port) else { throw .badListenAddress(text) }
    return (String(host), p)
}

/// A URL without its password, for logs.
func redactedURL(_ url: String) -> String {
    guard var c = URLComponents(string: url), c.password != nil else { return url }
    c.password = "***"
    return c.string ?? url
}

func formatSeconds(_ s: Double) -> String {
    s.truncatingRemainder(dividingBy: 60) == 0 && s >= 60 ? "\(Int(s / 60)) min" : String(format: "%g s", s)
}

/// One line on stderr (journald keeps it with the unit).
func agentLog(_ message: String) {
    FileHandleStderr.write("sprof agent: \(message)\n")
}
