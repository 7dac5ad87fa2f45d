import Foundation
import SprofBase
import SprofELF
import Synchronization

/// Loaded binaries, keyed by build-id (else device + inode + path), shared by
/// every process that maps them, bounded in memory: when the compiled tables
/// exceed `memoryLimit`, the least recently used modules are dropped (and
/// rebuilt if needed again).
///
/// One binary may take at most ``maxModuleBytes`` (half of the
/// bound): a binary whose CFI would compile to more (a hostile or generated
/// `.eh_frame` of a hundred megabytes) is not tabulated. Its load fails
/// with `.tableTooLarge` before the rows pass the limit, the failure is
/// remembered like any other (the binary is read once), and stacks stop at
/// its frames with `moduleUnavailable`; ``Statistics/shedModules`` and
/// ``Statistics/shedSamples`` count them. The other binaries, and the rest
/// of the profile, are unaffected. (framehop never tabulates, it evaluates
/// the FDE per lookup; the OpenTelemetry eBPF profiler tabulates every
/// binary into fixed-size BPF maps. A table per binary with a bound per
/// binary keeps both the hot path and the memory predictable.)
public final class ModuleCache: @unchecked Sendable {
    public struct Key: Hashable, Sendable {
        var buildID: BuildID?
        var device: UInt64
        var inode: UInt64
        var path: String

        init(mapping: Mapping) {
            buildID = mapping.buildID
            if mapping.buildID != nil {
                device = 0; inode = 0; path = ""
            } else {
                device = UInt64(mapping.deviceMajor) << 32 | UInt64(mapping.deviceMinor)
                inode = mapping.inode
                path = mapping.path
            }
        }
    }

    private struct Entry {
        var module: UnwindModule?
        var lastUse: UInt64
        var failure: String?
        /// Not tabulated: its CFI was over ``ModuleCache/maxModuleBytes``.
        var shed = false
    }

    public struct Statistics: Sendable, Equatable {
        public var loads = 0
        public var failures = 0
        public var evictions = 0
        public var hits = 0
        /// Binaries not tabulated because their table would pass ``ModuleCache/maxModuleBytes``
        /// (counted once per load attempt: again only after the failure was dropped as idle).
        public var shedModules = 0
        /// Samples whose stack stopped at a frame in such a binary.
        public var shedSamples = 0
    }

    private let state = Mutex<(entries: [Key: Entry], clock: UInt64, bytes: Int, stats: Statistics)>(([:], 0, 0, Statistics()))
    public let memoryLimit: Int
    /// The most one binary's compiled table may take: half of
    /// `memoryLimit`, so one binary never evicts all the others. At the
    /// agent's 48 MiB that is about a million rows: binaries of the size of
    /// swift-frontend (2.4 million rows of CFI, `readelf --debug-dump=frames-interp`)
    /// are shed there, counted and logged; `record`'s 512 MiB takes them. Building
    /// it holds the rows as 24-byte tuples next to the table (16 bytes a
    /// row, twice that with gaps), so this also bounds the memory a load
    /// takes while it runs.
    public let maxModuleBytes: Int

    /// Rows of one binary's table at most: ``maxModuleBytes`` over the
    /// size of a row while it is built (the larger form).
    public var maxModuleRows: Int {
        maxModuleBytes / MemoryLayout<(start: UInt64, end: UInt64, rule: UnwindRuleX86_64)>.stride
    }

    public init(memoryLimit: Int = 512 << 20) {
        self.memoryLimit = memoryLimit
        maxModuleBytes = memoryLimit / 2
    }

    /// The failures of binaries that were not tabulated (over ``maxModuleBytes``).
    public var shedFailures: [String] { state.withLock { $0.entries.values.filter(\.shed).compactMap(\.failure) } }

    /// Whether `mapping`'s binary was left untabulated (over the bound). Called
    /// when a stack stops with `moduleUnavailable`; counts the sample as shed when so.
    @discardableResult
    public func noteStop(in mapping: Mapping) -> Bool {
        let key = Key(mapping: mapping)
        return state.withLock { s in
            guard var e = s.entries[key], e.shed else { return false }
            // In use: kept past ``dropUnused(since:)``, so it is not read again and its samples stay counted.
            s.clock += 1
            e.lastUse = s.clock
            s.entries[key] = e
            s.stats.shedSamples += 1
            return true
        }
    }

    public var statistics: Statistics { state.withLock { $0.stats } }
    public var memoryBytes: Int { state.withLock { $0.bytes } }
    /// Bytes of compiled table per loaded binary, by path.
    public var tableSizes: [(String, Int)] {
        state.withLock { $0.entries.values.compactMap { e in e.module.map { ($0.elf.path, $0.memoryBytes) } } }
    }

    /// Failures by key, for reports ("could not open /usr/lib/...: ...").
    public var failures: [String] { state.withLock { $0.entries.values.compactMap(\.failure) } }

    /// A mark of "now" in use order, for ``dropUnused(since:)``.
    public var useMark: UInt64 { state.withLock { $0.clock } }

    /// Drops the modules not used since `mark` (a ``useMark`` taken earlier)
    /// that no process's code holds any more:
    /// a long-running caller (`sprof agent`) lets go of the binaries of
    /// processes that are gone (a compiler run, a deploy) instead of keeping
    /// them until the memory bound is reached. Remembered failures go too.
    /// Returns how many modules were dropped.
    ///
    /// Binaries left untabulated (over ``maxModuleBytes``) are remembered
    /// longer: forgetting one means reading its CFI up to the bound again
    /// for the next process that maps it. Up to 1,024 of them (a line of
    /// text each) stay until the cache is past that many.
    @discardableResult
    public func dropUnused(since mark: UInt64) -> Int {
        state.withLock { s in
            var dropped = 0
            let keepShed = s.entries.values.lazy.filter(\.shed).count <= 1024
            for (key, e) in s.entries where e.lastUse < mark && !(keepShed && e.shed) {
                guard var m = s.entries.removeValue(forKey: key)?.module else { continue }
                // A process still unwinding with it holds it (ProcessCode looks a
                // module up once per process): then it is in use, and stays.
                if isKnownUniquelyReferenced(&m) {
                    s.bytes -= m.memoryBytes
                    dropped += 1
                    s.stats.evictions += 1
                } else {
                    s.entries[key] = e
                }
            }
            return dropped
        }
    }

    /// The module for a mapping, loading it with `open` on first use.
    /// Failures are remembered, so a missing file is tried once.
    public func module(for mapping: Mapping, open: (Mapping) throws -> UnwindModule) -> UnwindModule? {
        let key = Key(mapping: mapping)
        let cached: (hit: Bool, module: UnwindModule?) = state.withLock { s in
            s.clock += 1
            guard var e = s.entries[key] else { return (false, nil) }
            e.lastUse = s.clock
            s.entries[key] = e
            s.stats.hits += 1
            return (true, e.module)
        }
        if cached.hit { return cached.module }
        // Load outside the lock: building a table takes milliseconds.
        var module: UnwindModule?
        var failure: String?
        var shed = false
        do {
            module = try UnwindModule.$maxTableRows.withValue(maxModuleRows) { try open(mapping) }
        } catch {
            if case UnwindError.tableTooLarge = error { shed = true }
            failure = shed ? "\(error)" : "\(mapping.path): \(error)"
        }
        return state.withLock { s in
            if let existing = s.entries[key] { return existing.module }  // another thread won
            s.clock += 1
            s.entries[key] = Entry(module: module, lastUse: s.clock, failure: failure, shed: shed)
            if let module {
                s.stats.loads += 1
                s.bytes += module.memoryBytes
            } else {
                s.stats.failures += 1
                if shed { s.stats.shedModules += 1 }
            }
            // Evict least recently used modules beyond the bound (never the one just loaded).
            while s.bytes > memoryLimit {
                guard let victim = s.entries.filter({ $0.value.module != nil && $0.key != key })
                    .min(by: { $0.value.lastUse < $1.value.lastUse }) else { break }
                s.bytes -= victim.value.module!.memoryBytes
                s.entries[victim.key] = nil
                s.stats.evictions += 1
            }
            return module
        }
    }
}
