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
        /// Filled by `fill`, which writes up to `capacity` rows and returns how many.
        init(capacity: Int, fill: (UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<UnwindRuleX86_64>) -> Int) {
            let s = UnsafeMutablePointer<UInt64>.allocate(capacity: max(capacity, 1))
            let r = UnsafeMutablePointer<UnwindRuleX86_64>.allocate(capacity: max(capacity, 1))
            let n = fill(s, r)
            precondition(n <= capacity)
            if n == capacity || n == 0 {
                (starts, rules, count) = (s, r, n)
            } else {
                // Exactly as large as needed: the table lives as long as its binary is used.
                starts = .allocate(capacity: n)
                rules = .allocate(capacity: n)
                starts.moveInitialize(from: s, count: n)
                rules.moveInitialize(from: r, count: n)
                s.deallocate()
                r.deallocate()
                count = n
            }
        }
        deinit {
            starts.deinitialize(count: count)
            rules.deinitialize(count: count)
            starts.deallocate()
            rules.deallocate()
        }
    }

    let storage: Storage

    public init() { storage = Storage(capacity: 0) { _, _ in 0 } }

    /// Builds from rows that may come in any order. Each row is `[start, end)`
    /// with one rule. Where rows overlap (malformed or nested FDEs), the
    /// later-starting row wins until its end, and after it comes `.noCFI`
    /// unless another row starts there: an unknown rule stops an unwind
    /// cleanly, a guessed one could make a wrong frame.
    public init(rows: [(start: UInt64, end: UInt64, rule: UnwindRuleX86_64)]) {
        var rows = rows
        self.init(consuming: &rows)
    }

    /// The same, sorting `rows` in place and emptying it: the rows and the
    /// table are the only copies (a million rows are 24 MB as tuples and
    /// 16 to 32 MB as a table), so building a large table does not take
    /// twice its memory.
    init(consuming rows: inout [(start: UInt64, end: UInt64, rule: UnwindRuleX86_64)]) {
        rows.removeAll { $0.end <= $0.start }
        // Stable for equal starts (the later one wins below, as it came later).
        var sortedAlready = true
        for i in rows.indices.dropFirst() where rows[i - 1].start > rows[i].start { sortedAlready = false; break }
        if !sortedAlready {
            var order = Array(rows.indices)
            order.sort { rows[$0].start != rows[$1].start ? rows[$0].start < rows[$1].start : $0 < $1 }
            rows = order.map { rows[$0] }
        }
        let sorted = rows
        rows = []
        storage = Storage(capacity: sorted.count * 2) { starts, rules in
            var n = 0
            for (i, row) in sorted.enumerated() {
                if n > 0, starts[n - 1] == row.start {
                    rules[n - 1] = row.rule  // same start: keep the last one
                } else {
                    (starts + n).initialize(to: row.start)
                    (rules + n).initialize(to: row.rule)
                    n += 1
                }
                let nextStart = i + 1 < sorted.count ? sorted[i + 1].start : UInt64.max
                if row.end < nextStart {
                    // A gap after this row (the next row starts later): no CFI there.
                    (starts + n).initialize(to: row.end)
                    (rules + n).initialize(to: .noCFI)
                    n += 1
                }
            }
            return n
        }
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
