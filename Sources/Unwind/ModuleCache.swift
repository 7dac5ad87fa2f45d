import Foundation
import SprofBase
import SprofELF
import Synchronization

/// Loaded binaries, keyed by build-id (else device + inode + path), shared by
/// every process that maps them, bounded in memory: when the compiled tables
/// exceed `memoryLimit`, the least recently used modules are dropped (and
/// rebuilt if needed again).
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
    }

    public struct Statistics: Sendable, Equatable {
        public var loads = 0
        public var failures = 0
        public var evictions = 0
        public var hits = 0
    }

    private let state = Mutex<(entries: [Key: Entry], clock: UInt64, bytes: Int, stats: Statistics)>(([:], 0, 0, Statistics()))
    public let memoryLimit: Int

    public init(memoryLimit: Int = 512 << 20) {
        self.memoryLimit = memoryLimit
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
    @discardableResult
    public func dropUnused(since mark: UInt64) -> Int {
        state.withLock { s in
            var dropped = 0
            for (key, e) in s.entries where e.lastUse < mark {
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
        do { module = try open(mapping) } catch { failure = "\(mapping.path): \(error)" }
        return state.withLock { s in
            if let existing = s.entries[key] { return existing.module }  // another thread won
            s.clock += 1
            s.entries[key] = Entry(module: module, lastUse: s.clock, failure: failure)
            if let module {
                s.stats.loads += 1
                s.bytes += module.memoryBytes
            } else {
                s.stats.failures += 1
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
