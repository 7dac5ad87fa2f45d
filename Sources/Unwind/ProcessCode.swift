import CSprof
import Foundation
import SprofBase
import SprofELF
#if canImport(Glibc)
import Glibc
#endif

/// Where binaries are read from.
public enum ModuleSource: Sendable {
    /// While recording: through `/proc/PID/root` (containers), else
    /// `/proc/PID/map_files` (deleted or replaced files).
    case live
    /// Later (`sprof report` on a raw file): the recorded path, accepted only
    /// if its build-id matches the recorded one.
    case recordedPaths
}

/// The code of one process (one mapping snapshot): its executable mappings,
/// resolved lazily to modules and load biases. Not thread-safe: one per
/// unwinding thread and snapshot.
///
/// The per-frame lookup touches no reference-counted object: slots live in
/// raw memory and hold raw pointers to their module's table (the modules
/// are kept alive by `modules`). Measured: reference counting was a third
/// of the unwinding time before.
public final class ProcessCode: CodeLookup {
    private struct Slot {
        var start: UInt64
        var end: UInt64
        var bias: UInt64 = 0
        var resolved = false
        var loaded = false
        var tableCount = 0
        var starts: UnsafePointer<UInt64>?
        var rules: UnsafePointer<UnwindRuleX86_64>?
    }

    private let slots: UnsafeMutableBufferPointer<Slot>

    /// A direct-mapped cache of recent lookups, keyed by process address:
    /// a process's samples revisit the same few hundred return addresses,
    /// so most frames skip the table's binary search. 1024 entries (24 KiB)
    /// hold the hot addresses of a typical process; a miss costs one search.
    private struct CacheEntry {
        var address: UInt64 = .max
        var hit: CodeHit = CodeHit(rule: .noCFI, bias: 0, slot: 0)
    }
    private static let cacheBits = 10
    private let ruleCache: UnsafeMutableBufferPointer<CacheEntry>
    public private(set) var ruleCacheHits: UInt64 = 0
    public private(set) var ruleCacheMisses: UInt64 = 0
    private let mappings: [Mapping]
    private var modules: [UnwindModule?]
    private var lastHit = 0
    private let pid: Int32
    private let cache: ModuleCache
    private let source: ModuleSource

    public init(pid: Int32, mappings: [Mapping], cache: ModuleCache, source: ModuleSource) {
        self.pid = pid
        self.cache = cache
        self.source = source
        self.mappings = mappings.filter(\.isExecutable).sorted { $0.start < $1.start }
        modules = Array(repeating: nil, count: self.mappings.count)
        slots = .allocate(capacity: max(self.mappings.count, 1))
        ruleCache = .allocate(capacity: 1 << Self.cacheBits)
        ruleCache.initialize(repeating: CacheEntry())
        for (i, m) in self.mappings.enumerated() {
            (slots.baseAddress! + i).initialize(to: Slot(start: m.start.rawValue, end: m.end.rawValue))
        }
    }

    deinit {
        slots.deallocate()
        ruleCache.deallocate()
    }

    @inline(__always)
    private func index(of address: UInt64) -> Int? {
        let n = mappings.count
        if lastHit < n, slots[lastHit].start <= address, address < slots[lastHit].end { return lastHit }
        var lo = 0, hi = n
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            if slots[mid].start <= address { lo = mid &+ 1 } else { hi = mid }
        }
        guard lo > 0, address < slots[lo &- 1].end else { return nil }
        lastHit = lo &- 1
        return lo &- 1
    }

    public func isExecutable(_ address: UInt64) -> Bool { index(of: address) != nil }

    @inline(__always)
    public func lookup(_ address: UInt64) -> CodeHit? {
        // Fibonacci hashing of the address into the cache.
        let h = Int(truncatingIfNeeded: (address &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - Self.cacheBits))
        if ruleCache[h].address == address {
            ruleCacheHits &+= 1
            return ruleCache[h].hit
        }
        ruleCacheMisses &+= 1
        guard let hit = search(address) else { return nil }
        ruleCache[h] = CacheEntry(address: address, hit: hit)
        return hit
    }

    @inline(__always)
    private func search(_ address: UInt64) -> CodeHit? {
        guard let i = index(of: address) else { return nil }
        if !slots[i].resolved { resolve(i) }
        let slot = slots[i]
        guard slot.loaded, let starts = slot.starts, let rules = slot.rules else { return nil }
        let rule = UnwindTable.rule(at: address &- slot.bias, starts: starts, rules: rules, count: slot.tableCount)
        return CodeHit(rule: rule, bias: slot.bias, slot: i)
    }

    public func module(slot: Int) -> UnwindModule? { modules[slot] }

    public func module(containing address: UInt64) -> (module: UnwindModule, bias: UInt64)? {
        guard let i = index(of: address) else { return nil }
        if !slots[i].resolved { resolve(i) }
        guard let m = modules[i] else { return nil }
        return (m, slots[i].bias)
    }

    private func resolve(_ i: Int) {
        slots[i].resolved = true
        let mapping = mappings[i]
        let module = cache.module(for: mapping) { m in try ModuleLoader.load(mapping: m, pid: pid, source: source) }
        guard let module else { return }
        // The vDSO image is its own file: its offset 0 is the mapping start.
        let offset = mapping.path == "[vdso]" ? FileOffset(0) : mapping.fileOffset
        guard let bias = module.elf.loadBias(mappingStart: mapping.start, mappingOffset: offset) else { return }
        modules[i] = module
        slots[i].bias = bias
        slots[i].loaded = true
        slots[i].tableCount = module.table.storage.count
        slots[i].starts = UnsafePointer(module.table.storage.starts)
        slots[i].rules = UnsafePointer(module.table.storage.rules)
    }
}

/// Finds and opens the ELF file behind a mapping, and its separate debug file.
public enum ModuleLoader {
    public static func load(mapping: Mapping, pid: Int32, source: ModuleSource) throws -> UnwindModule {
        if mapping.path == "[vdso]" {
            guard let vdso = ModuleFiles.vdso else { throw UnwindError.moduleUnavailable(path: "[vdso]", reason: "this process has no vDSO to read") }
            return try UnwindModule(elf: vdso)
        }
        // A live process can exit before its samples are unwound (a short
        // command, a slow writer): then the path itself, last, only when the
        // build-id can prove it is the same file.
        let candidates = ModuleFiles.candidates(for: mapping, pid: source == .live ? pid : nil,
                                                includePlainPath: source == .recordedPaths || mapping.buildID != nil)
        switch ModuleFiles.open(candidates, expecting: mapping.buildID, mapping: mapping) {
        case .success(let elf):
            return try UnwindModule(elf: elf, debugELF: ModuleFiles.debugFile(for: elf, buildID: mapping.buildID, having: [".debug_frame"]))
        case .failure(let failure):
            throw UnwindError.moduleUnavailable(path: ModuleFiles.plainPath(of: mapping), reason: failure.reason)
        }
    }
}

