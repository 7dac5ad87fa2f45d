import SprofBase

/// One binary's CFI compiled into a sorted table of rows: row i's rule holds
/// from `starts[i]` up to `starts[i + 1]`. Gaps between FDEs are rows with
/// `.noCFI`. Two parallel arrays, so the binary search touches only the
/// 8-byte starts (cache-friendly), then one rule.
///
/// Built once per binary (cached by build-id) and shared by every process
/// that maps it.
public struct UnwindTable: Sendable {
    /// Stated addresses (SVMA), ascending, unique.
    public private(set) var starts: [UInt64]
    public private(set) var rules: [UnwindRuleX86_64]

    public init() {
        starts = []
        rules = []
    }

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
        self.starts = starts
        self.rules = rules
    }

    public var count: Int { starts.count }

    /// Bytes of memory the table holds.
    public var memoryBytes: Int { starts.capacity * 8 + rules.capacity * MemoryLayout<UnwindRuleX86_64>.stride }

    /// The rule for a stated address: `.noCFI` outside every row.
    @inlinable
    public func rule(at address: UInt64) -> UnwindRuleX86_64 {
        starts.withUnsafeBufferPointer { s -> UnwindRuleX86_64 in
            var lo = 0, hi = s.count
            while lo < hi {
                let mid = (lo &+ hi) >> 1
                if s[mid] <= address { lo = mid &+ 1 } else { hi = mid }
            }
            return lo == 0 ? .noCFI : rules[lo &- 1]
        }
    }
}
