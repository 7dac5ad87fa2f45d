import SprofBase

/// One binary's CFI compiled into a sorted table of rows: row i's rule holds
/// from `starts[i]` up to `starts[i + 1]`. Gaps between FDEs are rows with
/// `.noCFI`. Two parallel arrays, so the binary search touches only the
/// 8-byte starts (cache-friendly), then one rule.
///
/// Built once per binary (cached by build-id) and shared by every process
/// that maps it.
public struct UnwindTable: Sendable {
    /// The rows in memory that never moves, so a process's code lookup can
    /// keep raw pointers to it (no reference counting per frame).
    final class Storage: @unchecked Sendable {
        let count: Int
        /// Stated addresses (SVMA), ascending, unique.
        let starts: UnsafeMutablePointer<UInt64>
        let rules: UnsafeMutablePointer<UnwindRuleX86_64>
        init(starts s: [UInt64], rules r: [UnwindRuleX86_64]) {
            count = s.count
            starts = .allocate(capacity: max(count, 1))
            rules = .allocate(capacity: max(count, 1))
            s.withUnsafeBufferPointer { starts.initialize(from: $0.baseAddress!, count: count) }
            r.withUnsafeBufferPointer { rules.initialize(from: $0.baseAddress!, count: count) }
        }
        deinit {
            starts.deallocate()
            rules.deallocate()
        }
    }

    let storage: Storage

    public init() { storage = Storage(starts: [], rules: []) }

    /// Builds from rows that may come in any order. Each row is `[start, end)`
    /// with one rule. Where rows overlap (malformed or nested FDEs), the
    /// later-starting row wins until its end, and after it comes `.noCFI`
    /// unless another row starts there: an unknown rule stops an unwind
    /// cleanly, a guessed one could make a wrong frame.
    public init(rows: [(start: UInt64, end: UInt64, rule: UnwindRuleX86_64)]) {
        let sorted = rows.filter { $0.end > $0.start }.sorted { $0.start < $1.start }
        var starts: [UInt64] = []
        var rules: [UnwindRuleX86_64] = []
        starts.reserveCapacity(sorted.count * 2)
        rules.reserveCapacity(sorted.count * 2)
        for (i, row) in sorted.enumerated() {
            if let last = starts.last, last == row.start {
                rules[rules.count - 1] = row.rule  // same start: keep the last one
            } else {
                starts.append(row.start)
                rules.append(row.rule)
            }
            let nextStart = i + 1 < sorted.count ? sorted[i + 1].start : UInt64.max
            if row.end < nextStart {
                // A gap after this row (the next row starts later): no CFI there.
                starts.append(row.end)
                rules.append(.noCFI)
            }
        }
        storage = Storage(starts: starts, rules: rules)
    }

    public var count: Int { storage.count }

    /// Bytes of memory the table holds.
    public var memoryBytes: Int { storage.count * (8 + MemoryLayout<UnwindRuleX86_64>.stride) }

    /// The rule for a stated address: `.noCFI` outside every row.
    public func rule(at address: UInt64) -> UnwindRuleX86_64 {
        Self.rule(at: address, starts: storage.starts, rules: storage.rules, count: storage.count)
    }

    /// Binary search for the last row starting at or before `address`.
    @inline(__always)
    static func rule(at address: UInt64, starts: UnsafePointer<UInt64>, rules: UnsafePointer<UnwindRuleX86_64>,
                     count: Int) -> UnwindRuleX86_64 {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            if starts[mid] <= address { lo = mid &+ 1 } else { hi = mid }
        }
        return lo == 0 ? .noCFI : rules[lo &- 1]
    }
}
