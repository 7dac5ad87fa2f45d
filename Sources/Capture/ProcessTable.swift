import SprofBase
import SprofELF
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the table knows about a process's liveness.
public enum ProcessState: Equatable, Sendable {
    /// The last read of its mappings succeeded.
    case running
    /// It has exited (its `/proc` entry is gone, or its address space is
    /// empty: a zombie; a kernel thread, which never had one, looks the
    /// same). The last mappings read are kept, so samples taken before the
    /// exit can still be unwound; the table stops re-reading it until
    /// ``ProcessTable/forget(pid:)`` or ``ProcessTable/noteExec(pid:)``.
    case exited
    /// Its mappings could not be read (e.g. permission denied); the error
    /// says why and what to do.
    case unreadable(CaptureError)
}

/// Counters a recording can show; every refresh, skip and failure is counted.
public struct ProcessTableStatistics: Equatable, Sendable {
    /// Reads of a `/proc/PID/maps`.
    public var refreshes: UInt64 = 0
    /// Addresses outside every mapping that did not cause a refresh because
    /// one had just happened (rate limit) or was under way.
    public var rateLimitedMisses: UInt64 = 0
    /// `stat(/proc/PID/exe)` calls, and how many of them found a new executable.
    public var execChecks: UInt64 = 0
    public var execsDetected: UInt64 = 0
    /// ELF files opened to read a build-id, and lookups the cache answered.
    public var buildIDFileReads: UInt64 = 0
    public var buildIDCacheHits: UInt64 = 0
    /// Executable file mappings whose file could not be opened at all.
    public var buildIDOpenFailures: UInt64 = 0
    /// Reads of a process with more mappings than ``ProcessTable/maxMappingsPerProcess``,
    /// and the mappings those reads did not keep (summed over reads).
    public var oversizedReads: UInt64 = 0
    public var shedMappings: UInt64 = 0
    public init() {}
}

/// The mappings of the processes being profiled, kept current cheaply enough
/// to be consulted for every sample.
///
/// - Lookups (`mapping(containing:pid:)`) are a dictionary probe and a binary
///   search over the pid's mappings, sorted by start address, under a lock
///   held for nothing else.
/// - A refresh re-reads `/proc/PID/maps`. It happens when an address falls
///   outside every known mapping (a library `dlopen`ed since the last read),
///   at most once per `minimumRefreshInterval` per pid, so a stream of
///   garbage addresses cannot cause a storm of reads; and after an `exec`.
/// - `exec` is detected by `stat("/proc/PID/exe")`: the link resolves to the
///   running executable, so a changed (`st_dev`, `st_ino`) means a new
///   program. That is one syscall with no text to parse (about 1 µs on the
///   development VM, against 20 µs just to read a 30-line maps file, before
///   parsing it, to compare its first entry), and it is done at most once per
///   `execCheckInterval` per pid, and only when an address *hit* a known
///   mapping (a miss refreshes anyway). An exec of the same file is not seen
///   by it, but its new layout (ASLR) makes addresses miss, which refreshes.
///   An exec event from the kernel, when there is one, can be passed in with
///   ``noteExec(pid:)``.
/// - Every change of a pid's mappings gives it a new `generation`, drawn from
///   one counter for the whole table: strictly increasing for a pid, never
///   reused even after ``forget(pid:)``, and 0 while no mappings were read.
/// - Build-ids are read for executable file mappings, from the file as the
///   process sees it (`/proc/PID/root/PATH`, so containers work) or, when
///   that path is deleted or names another inode, through
///   `/proc/PID/map_files/START-END` (needs CAP_SYS_ADMIN or
///   CAP_CHECKPOINT_RESTORE). Results are cached by (device, inode): a
///   library mapped by a hundred processes is read once. Every mapping of a
///   file whose build-id is known gets it, executable or not.
/// - A process may map up to `vm.max_map_count` (65,530) areas, and a
///   hostile one maps that many on purpose. The table keeps at most
///   `maxMappingsPerProcess` of them (see ``keep(_:limit:)`` for which).
///   A miss re-reads a process whose last read took over 2 ms at most
///   once per 100 times that (and never more often than
///   `minimumRefreshInterval`): a
///   65,000-line maps file takes tens of milliseconds to read and parse,
///   and at the usual 20 reads a second it would take a whole core; so
///   re-reading any one process costs at most 1% of a core. What is
///   dropped is counted (``ProcessTableStatistics/shedMappings``).
///
/// Nothing here throws: a process that cannot be read, or has exited, is
/// reported by ``state(of:)`` and keeps its last mappings. File and `/proc`
/// I/O happens outside the lock.
public final class ProcessTable: @unchecked Sendable {
    // @unchecked: all mutable state is inside the two Mutexes.

    public let minimumRefreshInterval: Duration
    public let execCheckInterval: Duration
    public let readsBuildIDs: Bool
    public let maxMappingsPerProcess: Int
    public static let defaultMaxMappingsPerProcess = 8192

    private let minimumRefreshNanoseconds: UInt64
    private let execCheckNanoseconds: UInt64
    private let table = Mutex(Table())
    private let buildIDs = Mutex(BuildIDCache())

    /// - Parameters:
    ///   - minimumRefreshInterval: the least time between two re-reads of one
    ///     pid's maps caused by misses. 50 ms: a `dlopen` is picked up within
    ///     a few samples at 99 Hz, while an unwinder fed garbage addresses
    ///     costs at most 20 reads a second per process.
    ///   - execCheckInterval: the least time between two `exec` checks of one
    ///     pid. 200 ms: 5 `stat` calls a second per profiled process (about
    ///     1 µs each), and samples of a freshly exec'd program that
    ///     happen to land in the old program's mappings stop within 200 ms.
    ///   - readBuildIDs: read build-ids of executable file mappings.
    ///   - maxMappingsPerProcess: mappings kept per process. 8,192: a JVM or
    ///     a browser has a few thousand; at about 150 bytes a mapping (and a
    ///     copy in each window's file) that is 1.2 MB per process at most,
    ///     against 10 MB for the 65,530 the kernel allows by default.
    public init(minimumRefreshInterval: Duration = .milliseconds(50),
                execCheckInterval: Duration = .milliseconds(200),
                readBuildIDs: Bool = true,
                maxMappingsPerProcess: Int = ProcessTable.defaultMaxMappingsPerProcess) {
        self.minimumRefreshInterval = minimumRefreshInterval
        self.execCheckInterval = execCheckInterval
        self.readsBuildIDs = readBuildIDs
        self.maxMappingsPerProcess = max(maxMappingsPerProcess, 1)
        minimumRefreshNanoseconds = nanoseconds(minimumRefreshInterval)
        execCheckNanoseconds = nanoseconds(execCheckInterval)
    }

    // MARK: - Queries (no I/O)

    /// The pid's mappings sorted by start address; empty for an unknown pid.
    public func mappings(of pid: Int32) -> [Mapping] {
        table.withLock { $0.entries[pid]?.mappings ?? [] }
    }

    /// The mapping holding `address` in `pid`, from what is known now.
    public func mapping(containing address: ProcessAddress, pid: Int32) -> Mapping? {
        table.withLock { t in
            guard let e = t.entries[pid], let i = e.index(containing: address) else { return nil }
            return e.mappings[i]
        }
    }

    /// Changes whenever the pid's mappings change; 0 while none have been read.
    public func generation(of pid: Int32) -> UInt64 {
        table.withLock { $0.entries[pid]?.generation ?? 0 }
    }

    /// Nil for a pid the table does not know.
    public func state(of pid: Int32) -> ProcessState? {
        table.withLock { $0.entries[pid]?.state }
    }

    /// The pids being tracked, ascending.
    public var trackedPIDs: [Int32] {
        table.withLock { $0.entries.keys.sorted() }
    }

    public var statistics: ProcessTableStatistics {
        let (t, b) = (table.withLock { $0.statistics }, buildIDs.withLock { $0.statistics })
        var s = t
        s.buildIDFileReads = b.buildIDFileReads
        s.buildIDCacheHits = b.buildIDCacheHits
        s.buildIDOpenFailures = b.buildIDOpenFailures
        return s
    }

    // MARK: - Updates

    /// Reads the pid's mappings now (adding the pid if it is new), whatever
    /// the rate limit says. Returns the resulting state.
    @discardableResult
    public func refresh(pid: Int32) -> ProcessState {
        let began = table.withLock { t in
            var e = t.entries[pid] ?? Entry()
            let fresh = !e.refreshing
            e.refreshing = true
            e.lastRefresh = monotonicNow()
            t.entries[pid] = e
            return fresh
        }
        // A refresh already under way on another thread reads what this one would.
        if began { install(load(pid: pid), pid: pid) }
        return state(of: pid) ?? .exited
    }

    /// Records that a sample of `pid` had `address` (its `ip`), and returns
    /// whether `address` lies in a known mapping. An unknown pid is read
    /// first. An address outside every mapping triggers a refresh, unless
    /// one happened less than `minimumRefreshInterval` ago or the process has
    /// exited; an address inside one triggers, every `execCheckInterval`, the
    /// exec check. Never throws; failures end up in ``state(of:)``.
    @discardableResult
    public func noteAddress(_ address: ProcessAddress, pid: Int32) -> Bool {
        let now = monotonicNow()
        let action: Action = table.withLock { t in
            guard let i = t.entries.index(forKey: pid) else {
                var e = Entry()
                e.refreshing = true
                e.lastRefresh = now
                t.entries[pid] = e
                return .refresh
            }
            // In place: the hit path copies nothing.
            let action = decide(&t.entries.values[i], address: address, now: now)
            if case .rateLimited = action { t.statistics.rateLimitedMisses += 1 }
            return action
        }
        switch action {
        case .hit: return true
        case .miss, .rateLimited: return false
        case .refresh:
            install(load(pid: pid), pid: pid)
        case .checkExec(let known):
            let now = identity(of: "/proc/\(pid)/exe")
            let execed: Bool = table.withLock { t in
                t.statistics.execChecks += 1
                guard case .success(let id) = now else {
                    // No executable: the process has exited (a zombie, or
                    // reaped). Its mappings stay for samples still queued.
                    if case .failure(let e) = now, e.code == ENOENT || e.code == ESRCH { t.entries[pid]?.state = .exited }
                    return false
                }
                guard let known, known != id, var e = t.entries[pid], !e.refreshing else { return false }
                t.statistics.execsDetected += 1
                e.refreshing = true
                e.lastRefresh = monotonicNow()
                t.entries[pid] = e
                return true
            }
            if !execed { return true }
            install(load(pid: pid), pid: pid)
        }
        return table.withLock { $0.entries[pid]?.index(containing: address) != nil }
    }

    /// What `noteAddress` does for a known pid; updates `e` to match.
    private func decide(_ e: inout Entry, address: ProcessAddress, now: UInt64) -> Action {
        let hit = e.index(containing: address) != nil
        if e.refreshing { return hit ? .hit : .miss }
        if case .exited = e.state { return hit ? .hit : .miss }
        if e.execReported {
            e.execReported = false
        } else if hit {
            guard now &- e.lastExecCheck >= execCheckNanoseconds else { return .hit }
            e.lastExecCheck = now
            return .checkExec(e.executable)
        } else {
            // A large maps file is read less often: at most 1% of the time goes to reading it.
            // Only an expensive read (over 2 ms: thousands of mappings) backs
            // off; an ordinary one (well under a millisecond, more on a busy
            // machine) keeps the plain interval, so exits and dlopens are
            // still seen within it.
            let interval = e.lastReadNanoseconds > 2_000_000
                ? max(minimumRefreshNanoseconds, e.lastReadNanoseconds &* 100) : minimumRefreshNanoseconds
            guard now &- e.lastRefresh >= interval else { return .rateLimited }
        }
        e.refreshing = true
        e.lastRefresh = now
        return .refresh
    }

    /// Tells the table that `pid` called `exec` (e.g. from a
    /// `sched_process_exec` event): its mappings are re-read at its next
    /// ``noteAddress(_:pid:)``, whatever the rate limit says.
    public func noteExec(pid: Int32) {
        table.withLock { t in
            guard var e = t.entries[pid] else { return }
            e.execReported = true
            if e.state == .exited { e.state = .running }
            t.entries[pid] = e
        }
    }

    /// The process record the recorder writes before a pid's first sample:
    /// `comm` from the sample, the executable from `/proc/PID/exe` (empty if
    /// unreadable: a kernel thread, a zombie, or no ptrace access), and
    /// whether the process is known to have exited (`/proc/PID` is gone, or
    /// the table saw it go).
    public func processInfo(pid: Int32, comm: String) -> RawProcess {
        let exited = state(of: pid) == .exited
        // The process's own name now (/proc/PID/comm, its main thread's):
        // the sample's is its thread's, and may predate an exec.
        var command = comm
        if let f = fopen("/proc/\(pid)/comm", "r") {
            var buf = [CChar](repeating: 0, count: 64)
            if fgets(&buf, 64, f) != nil {
                let name = String(cString: buf).trimmingCharacters(in: .newlines)
                if !name.isEmpty { command = name }
            }
            fclose(f)
        }
        do {
            return RawProcess(pid: pid, command: command, executablePath: try Syscalls.readlink("/proc/\(pid)/exe"), exited: exited)
        } catch {
            let gone: Bool
            if case .failure(let e) = identity(of: "/proc/\(pid)"), e.code == ENOENT { gone = true } else { gone = exited }
            return RawProcess(pid: pid, command: command, executablePath: "", exited: gone)
        }
    }

    /// Drops everything known about `pid` (it exited and its samples are
    /// written). Build-ids stay cached; they belong to files, not processes.
    public func forget(pid: Int32) {
        _ = table.withLock { $0.entries.removeValue(forKey: pid) }
    }

    /// The pids it knows, ascending.
    public var knownPids: [Int32] { table.withLock { $0.entries.keys.sorted() } }

    /// Forgets every pid `/proc` says has exited (a continuous recording
    /// calls it between windows, so a storm of short-lived processes does
    /// not grow the table); returns them. The build-id cache is bounded on
    /// its own (65,536 files).
    public func forgetExited() -> [Int32] {
        let gone = knownPids.filter { procSaysExited(pid: $0) }
        if !gone.isEmpty { table.withLock { t in for pid in gone { t.entries[pid] = nil } } }
        return gone
    }

    // MARK: - Internals

    private enum Action {
        case hit, miss, rateLimited, refresh
        case checkExec(FileIdentity?)
    }

    private enum LoadResult {
        case mappings([Mapping], executable: FileIdentity?, read: Int, took: UInt64)
        case exited
        case failed(CaptureError)
    }

    private struct Entry {
        /// Sorted by start, non-overlapping (as the kernel lists them).
        var mappings: [Mapping] = []
        /// How long the last read of the maps file took (reading, parsing,
        /// bounding; not the build-ids, cached after the first read),
        /// CLOCK_MONOTONIC nanoseconds.
        var lastReadNanoseconds: UInt64 = 0
        var generation: UInt64 = 0
        var state: ProcessState = .running
        /// `stat(/proc/PID/exe)` when the mappings were read.
        var executable: FileIdentity?
        /// CLOCK_MONOTONIC nanoseconds.
        var lastRefresh: UInt64 = 0
        var lastExecCheck: UInt64 = 0
        /// ``noteExec(pid:)`` was called: refresh at the next note.
        var execReported = false
        /// A thread is reading this pid's maps; others do not start another.
        var refreshing = false

        /// Binary search for the last mapping starting at or below `address`.
        func index(containing address: ProcessAddress) -> Int? {
            var lo = 0, hi = mappings.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if mappings[mid].start <= address { lo = mid + 1 } else { hi = mid }
            }
            guard lo > 0, mappings[lo - 1].contains(address) else { return nil }
            return lo - 1
        }
    }

    private struct Table {
        var entries: [Int32: Entry] = [:]
        var nextGeneration: UInt64 = 0
        var statistics = ProcessTableStatistics()
    }

    /// Reads maps (and build-ids) with no lock held.
    private func load(pid: Int32) -> LoadResult {
        var executable: FileIdentity?
        if case .success(let id) = identity(of: "/proc/\(pid)/exe") { executable = id }
        // What a re-read costs: the maps file (build-ids are read once per file, then cached).
        let began = monotonicNow()
        var maps: [Mapping]
        do {
            maps = try ProcMaps.read(pid: pid)
        } catch {
            if case .processNotFound = error { return .exited }
            return .failed(error)
        }
        // A zombie (or a process between exit_mm and reaping) has no address space.
        if maps.isEmpty { return .exited }
        // The kernel lists mappings in address order; make sure, the lookups rely on it.
        if zip(maps, maps.dropFirst()).contains(where: { $0.start > $1.start }) { maps.sort { $0.start < $1.start } }
        let read = maps.count
        if read > maxMappingsPerProcess { maps = Self.keep(maps, limit: maxMappingsPerProcess) }
        let took = monotonicNow() &- began
        if readsBuildIDs { fillBuildIDs(&maps, pid: pid) }
        return .mappings(maps, executable: executable, read: read, took: took)
    }

    /// The mappings kept of a process that has more than `limit`, in address
    /// order. Samples land in executable mappings and only those are
    /// unwound and named, so they come first: those of a (file, offset)
    /// mapped once (the text segment of the executable and of each library)
    /// before those of a (file, offset) mapped many times (copies of one
    /// part of a file), and anonymous executable memory (JIT code) last,
    /// each group in address order; then the special mappings (`[stack]`,
    /// `[heap]`, `[vdso]`), then the rest (data). A process that maps a
    /// page of a file ten thousand times loses the copies, not its libraries.
    static func keep(_ maps: [Mapping], limit: Int) -> [Mapping] {
        guard maps.count > limit else { return maps }
        struct PartKey: Hashable { var major: UInt32, minor: UInt32, inode: UInt64, offset: UInt64 }
        func part(_ m: Mapping) -> PartKey {
            PartKey(major: m.deviceMajor, minor: m.deviceMinor, inode: m.inode, offset: m.fileOffset.rawValue)
        }
        var copies: [PartKey: Int] = [:]
        for m in maps where m.isExecutable && m.isFile { copies[part(m), default: 0] += 1 }
        // One pass for the ranks, one sort of (rank, index) pairs: ~65,000 of them at most.
        var ranked = [(rank: Int, index: Int)]()
        ranked.reserveCapacity(maps.count)
        for (i, m) in maps.enumerated() {
            let rank: Int
            if m.isExecutable && m.isFile {
                // Parts mapped more often rank later; twice is still ordinary (a library loaded in two namespaces).
                let n = copies[part(m)] ?? 1
                rank = n <= 2 ? 0 : min(n, 1 << 20)
            } else if m.isExecutable {
                rank = 2 << 20
            } else if m.path.hasPrefix("[") {
                rank = 3 << 20
            } else {
                rank = 4 << 20
            }
            ranked.append((rank, i))
        }
        ranked.sort { $0.rank != $1.rank ? $0.rank < $1.rank : $0.index < $1.index }
        var kept = ranked.prefix(limit).map(\.index)
        kept.sort()
        return kept.map { maps[$0] }
    }

    private func install(_ result: LoadResult, pid: Int32) {
        table.withLock { t in
            t.statistics.refreshes += 1
            // Forgotten while we read: do not bring it back.
            guard var e = t.entries[pid] else { return }
            e.refreshing = false
            switch result {
            case .mappings(let maps, let executable, let read, let took):
                if read > maps.count {
                    t.statistics.oversizedReads += 1
                    t.statistics.shedMappings += UInt64(read - maps.count)
                }
                e.lastReadNanoseconds = took
                if maps != e.mappings || e.generation == 0 {
                    t.nextGeneration += 1
                    e.generation = t.nextGeneration
                    e.mappings = maps
                }
                e.executable = executable
                e.state = .running
                e.lastExecCheck = monotonicNow()
            case .exited:
                e.state = .exited
            case .failed(let error):
                e.state = .unreadable(error)
            }
            t.entries[pid] = e
        }
    }

    // MARK: - Build-ids

    /// Identifies a file across processes: the (device, inode) the maps line shows.
    private struct FileKey: Hashable {
        var major: UInt32, minor: UInt32, inode: UInt64
        init(_ m: Mapping) { major = m.deviceMajor; minor = m.deviceMinor; inode = m.inode }
    }

    private struct BuildIDCache {
        /// nil value: the file was read and has no build-id (or is not ELF).
        var byFile: [FileKey: BuildID?] = [:]
        var statistics = ProcessTableStatistics()
    }

    private func fillBuildIDs(_ maps: inout [Mapping], pid: Int32) {
        var resolved: [FileKey: BuildID?] = [:]
        for m in maps where m.isFile && m.isExecutable {
            let key = FileKey(m)
            if resolved[key] != nil { continue }
            let cached: BuildID?? = buildIDs.withLock { c in
                guard let v = c.byFile[key] else { return nil }
                c.statistics.buildIDCacheHits += 1
                return .some(v)
            }
            if let cached { resolved[key] = .some(cached); continue }
            // Not cached: read with no lock held. Two threads may read the
            // same file at once; both get the same answer.
            guard let read = readBuildID(of: m, pid: pid) else { continue }
            resolved[key] = .some(read)
            buildIDs.withLock { c in
                // Bounded (a host that keeps building new binaries): start over past the limit.
                if c.byFile.count >= 65_536 { c.byFile.removeAll(keepingCapacity: true) }
                c.byFile[key] = .some(read)
            }
        }
        guard !resolved.isEmpty else { return }
        for i in maps.indices where maps[i].isFile {
            if case .some(.some(let id)) = resolved[FileKey(maps[i])] { maps[i].buildID = id }
        }
    }

    /// The build-id of the file behind `m`: `.some(nil)` if the file was read
    /// and has none, nil if no candidate path could be opened (not cached, so
    /// the next refresh tries again).
    private func readBuildID(of m: Mapping, pid: Int32) -> BuildID?? {
        var candidates: [String] = []
        // /proc/PID/root is the process's root directory: the path as the
        // process sees it resolves there even inside a container.
        if !m.isDeletedFile && m.path.hasPrefix("/") { candidates.append("/proc/\(pid)/root" + m.path) }
        // The kernel names map_files entries "%lx-%lx" (fs/proc/base.c,
        // proc_map_files_readdir): lowercase hex, no 0x, no padding.
        candidates.append("/proc/\(pid)/map_files/" + String(m.start.rawValue, radix: 16) + "-"
                          + String(m.end.rawValue, radix: 16))
        for path in candidates {
            // Resolved inside the process's root, regular files only (a FIFO
            // planted at a mapped path would block open(2) forever).
            let fd = ModuleFiles.openForReading(path)
            guard fd >= 0 else { continue }
            defer { try? Syscalls.close(fd) }
            // The path may now name another file (replaced, or another mount):
            // only the inode the process mapped will do.
            guard let st = try? Syscalls.fstat(fd), st.inode == m.inode else { continue }
            buildIDs.withLock { $0.statistics.buildIDFileReads += 1 }
            do {
                return .some(try ELFFile(fileDescriptor: fd, path: path).buildID())
            } catch {
                // The mapped file itself is not a readable ELF file: it has no build-id.
                return .some(nil)
            }
        }
        buildIDs.withLock { $0.statistics.buildIDOpenFailures += 1 }
        return nil
    }
}

// MARK: - /proc

/// Whether `/proc/PID/stat` says the process has exited: the file is gone
/// (reaped, or never existed), or the state field is `Z` (zombie) or `X`
/// (dead). Unlike ``ProcessState/exited`` this does not mistake a kernel
/// thread (no address space either) for an exited process.
///
/// The state is the first field after the parenthesized command name, which
/// can itself contain ") ", hence the last ")" (proc(5), /proc/pid/stat
/// fields 2 and 3).
func procSaysExited(pid: Int32) -> Bool {
    guard let stat = KernelInfo.readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")"),
          let state = stat[stat.index(after: close)...].dropFirst().first else { return true }
    return state == "Z" || state == "X"
}

// MARK: - File identity

/// (`st_dev`, `st_ino`) of a file.
private struct FileIdentity: Hashable, Sendable {
    var device: UInt64
    var inode: UInt64
    init(_ st: FileStatus) { device = st.device; inode = st.inode }
}

/// The identity of the file `path` resolves to (following links), or the errno.
private func identity(of path: String) -> Result<FileIdentity, Errno> {
    Result { () throws(Errno) in FileIdentity(try Syscalls.stat(path)) }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of `bpf_ktime_get_ns`).
private func monotonicNow() -> UInt64 { Syscalls.monotonicNanoseconds() }

private func nanoseconds(_ d: Duration) -> UInt64 {
    let (s, atto) = d.components
    guard s >= 0 else { return 0 }
    return UInt64(s) &* 1_000_000_000 &+ UInt64(atto / 1_000_000_000)
}
