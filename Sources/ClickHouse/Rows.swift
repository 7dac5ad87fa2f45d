import SprofProfile

/// A stack as the tables key it: its day (UTC, days since 1970) and hash.
struct StackKey: Hashable, Sendable {
    var day: UInt16
    var hash: UInt64
}

/// Rows ready to insert: stacks and samples in RowBinary, with what is
/// needed to account for them.
struct EncodedRows {
    var stacks = RowBinaryWriter()
    var samples = RowBinaryWriter()
    var stackKeys: [StackKey] = []
    var stackSet: Set<StackKey> = []
    var sampleRows = 0
    var stackRows: Int { stackKeys.count }
    var byteCount: Int { stacks.bytes.count + samples.bytes.count }
    var isEmpty: Bool { sampleRows == 0 && stackKeys.isEmpty }

    mutating func append(_ other: EncodedRows) {
        stacks.bytes.append(contentsOf: other.stacks.bytes)
        samples.bytes.append(contentsOf: other.samples.bytes)
        stackKeys.append(contentsOf: other.stackKeys)
        stackSet.formUnion(other.stackKeys)
        sampleRows += other.sampleRows
    }
}

enum WindowRows {
    /// The sample types the schema has a column for, by pprof type name.
    static let valueColumns = ["samples", "cpu", "offcpu", "waits"]

    /// The stack hash: 64-bit FNV-1a (Fowler, Noll, Vo; http://www.isthe.com/chongo/tech/comp/fnv/)
    /// over the frames' UTF-8 bytes, each frame followed by 0xFF, a byte UTF-8
    /// never contains, so ["ab","c"] and ["a","bc"] differ. Stable across runs
    /// and machines (Swift's Hasher is seeded per process, so unusable here).
    /// Collisions: among a million distinct stacks the chance of any is about
    /// n²/2⁶⁵ ≈ 3·10⁻⁸.
    static func hash(_ frames: [String]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for f in frames {
            for b in f.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
            h = (h ^ 0xff) &* 0x0000_0100_0000_01b3
        }
        return h
    }

    /// A location's frames as folded stacks name them: `Profile.frames(of:)`,
    /// `;` made `:` and the kind's suffix added, exactly as
    /// `Profile.foldedStacks` does (Sources/Profile/Stacks.swift; a test
    /// checks the two agree).
    static func foldedNames(_ profile: Profile, _ location: Profile.Location) -> [String] {
        profile.frames(of: location).map {
            ($0.name.contains(";") ? $0.name.replacingOccurrences(of: ";", with: ":") : $0.name) + $0.kind.suffix
        }
    }

    /// Encodes `window`'s samples as rows of both tables; stacks for which
    /// `isKnown` is true (already on the server, or already in the batch) are
    /// not repeated. A window the schema cannot hold is an error and nothing
    /// of it is encoded.
    static func encode(_ window: Profile, isKnown: (StackKey) -> Bool) throws(ClickHouseError) -> EncodedRows {
        guard window.timeNanos > 0 else {
            throw .badWindow("it has no start time (pprof time_nanos is 0); the agent sets it to the window's start")
        }
        guard window.durationNanos >= 0 else { throw .badWindow("its duration is negative (\(window.durationNanos) ns)") }
        var column: [Int] = []  // sample value index -> value column (0...3)
        for t in window.sampleTypes {
            guard let c = valueColumns.firstIndex(of: t.type) else {
                throw .badWindow("sample type \(t.type)/\(t.unit) has no column; the schema keeps \(valueColumns.joined(separator: ", "))")
            }
            column.append(c)
        }
        let startSeconds = window.timeNanos / 1_000_000_000
        guard startSeconds <= Int64(UInt32.max) else { throw .badWindow("its start time \(window.timeNanos) ns is past 2106, beyond DateTime") }
        let day = UInt16(ClickHouseTime.day(seconds: startSeconds))
        var out = EncodedRows()
        var names: [UInt64: [String]] = [:]
        var frames: [String] = []
        var hashes: [[UInt64]: UInt64] = [:]  // leaf-first location ids -> hash, within the window
        for sample in window.samples {
            // Frames root first, as folded stacks list them.
            let hash: UInt64
            if let known = hashes[sample.locationIDs] {
                hash = known
            } else {
                frames.removeAll(keepingCapacity: true)
                for id in sample.locationIDs.reversed() {
                    if let n = names[id] { frames.append(contentsOf: n); continue }
                    guard let l = window.location(id) else {
                        throw .badWindow("a sample refers to location \(id); the profile has \(window.locations.count)")
                    }
                    let n = foldedNames(window, l)
                    names[id] = n
                    frames.append(contentsOf: n)
                }
                hash = Self.hash(frames)
                hashes[sample.locationIDs] = hash
                let key = StackKey(day: day, hash: hash)
                if !out.stackSet.contains(key) && !isKnown(key) {
                    out.stacks.uint16(day)
                    out.stacks.uint64(hash)
                    out.stacks.strings(frames)
                    out.stackKeys.append(key)
                    out.stackSet.insert(key)
                }
            }
            encodeSample(sample, hash: hash, column: column, window: window, into: &out.samples)
            out.sampleRows += 1
        }
        return out
    }

    static func encodeSample(_ s: Profile.Sample, hash: UInt64, column: [Int], window: Profile, into w: inout RowBinaryWriter) {
        var strings = [String](repeating: "", count: ClickHouseSchema.stringLabelColumns.count)
        var numbers: [Int32] = [-1, -1]
        var otherKeys: [String] = [], otherValues: [String] = []
        var numKeys: [String] = [], numValues: [Int64] = []
        for label in s.labels {
            if let str = label.string {
                if let i = ClickHouseSchema.stringLabelColumns.firstIndex(of: label.key), strings[i].isEmpty, !str.isEmpty {
                    strings[i] = str
                } else {
                    otherKeys.append(label.key); otherValues.append(str)
                }
            } else if let n = label.number {
                if let i = ClickHouseSchema.numberLabelColumns.firstIndex(of: label.key), numbers[i] == -1,
                   let v = Int32(exactly: n), v >= 0 {
                    numbers[i] = v
                } else {
                    numKeys.append(label.key); numValues.append(n)
                }
            }
        }
        var values: [Int64] = [0, 0, 0, 0]
        for (i, c) in column.enumerated() where i < s.values.count { values[c] &+= s.values[i] }
        let start = window.timeNanos
        w.uint32(UInt32(start / 1_000_000_000))
        w.int64(start)
        w.int64(start &+ window.durationNanos)
        w.string(strings[0])  // host
        w.int32(numbers[0])   // pid
        w.int32(numbers[1])   // tid
        for i in 1..<strings.count { w.string(strings[i]) }  // comm … systemd_unit
        w.strings(otherKeys)
        w.strings(otherValues)
        w.strings(numKeys)
        w.int64s(numValues)
        w.uint64(hash)
        for v in values { w.int64(v) }
    }
}
