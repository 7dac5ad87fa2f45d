import Foundation
import SprofProfile

/// What `sprof query` reads back: windows that START in [since, until),
/// samples matching every filter, summed per stack and the labels kept.
public struct ClickHouseQuery: Sendable, Equatable {
    public var since: Date
    public var until: Date
    /// `key=value` filters: different keys must all match, the values of one
    /// key are alternatives (`--where comm=a --where comm=b`: either).
    public var filters: [(key: String, value: String)] = []
    /// Labels kept in the result (``ClickHouseQuery/defaultKeep``); the others
    /// are summed over. `comm` is always kept: folded stacks start with it.
    public var keep: Set<String> = ClickHouseQuery.defaultKeep

    /// Every label but `tid`: thread ids multiply the rows and no report
    /// shows them unless asked (`--keep all`).
    public static let defaultKeep: Set<String> = Set(ClickHouseSchema.stringLabelColumns + ["pid", "labels"])
    public static let allLabels: Set<String> = defaultKeep.union(["tid"])

    public init(since: Date, until: Date) { self.since = since; self.until = until }

    public static func == (a: Self, b: Self) -> Bool {
        a.since == b.since && a.until == b.until && a.keep == b.keep
            && a.filters.map { "\($0.key)=\($0.value)" } == b.filters.map { "\($0.key)=\($0.value)" }
    }

    /// `key=value`, as `--where` takes it.
    public static func parseFilter(_ text: String) throws(ClickHouseError) -> (key: String, value: String) {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw .badFilter("--where \(text): expected KEY=VALUE, e.g. comm=nginx, host=web-1, pid=1234, container_id=…, or a static label from the agent's config")
        }
        let key = String(text[..<eq]), value = String(text[text.index(after: eq)...])
        if ClickHouseSchema.numberLabelColumns.contains(key), Int32(value) == nil {
            throw .badFilter("--where \(text): \(key) is a number")
        }
        return (key, value)
    }

    /// `--keep host,pid,comm`, or `all`.
    public static func parseKeep(_ text: String) throws(ClickHouseError) -> Set<String> {
        if text == "all" { return allLabels }
        var out: Set<String> = ["comm"]
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            guard allLabels.contains(part) else {
                throw .badFilter("--keep \(text): \(part) is not one of \(allLabels.sorted().joined(separator: ", ")) or all (labels: the agent's static labels)")
            }
            out.insert(part)
        }
        return out
    }

    /// A time: `now`, a duration before `now` (`90s`, `10m`, `1h`, `2d`,
    /// `1h30m`), an ISO 8601 time (`2026-11-22T10:00:00Z`, with an offset or
    /// Z) or a UTC date (`2026-11-22`), or seconds since the epoch
    /// (`@1763805600`, or bare as `report --store` takes them: `1763805600`).
    public static func parseTime(_ text: String, now: Date, flag: String) throws(ClickHouseError) -> Date {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t == "now" { return now }
        if t.hasPrefix("@"), let s = Double(t.dropFirst()) { return Date(timeIntervalSince1970: s) }
        // Bare unix seconds, as `report --store` and the agent's page take them.
        if !t.isEmpty, t.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), let s = Double(t) {
            return Date(timeIntervalSince1970: s)
        }
        if let d = duration(t) { return now.addingTimeInterval(-d) }
        let iso = ISO8601DateFormatter()
        if let d = iso.date(from: t) { return d }
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = iso.date(from: t) { return d }
        iso.formatOptions = [.withFullDate]
        if let d = iso.date(from: t) { return d }
        throw .badTime("\(flag) \(text): expected a duration before now (90s, 10m, 1h, 2d, 1h30m), an ISO 8601 time (2026-11-22T10:00:00Z), a date (2026-11-22), unix seconds (1763805600 or @1763805600) or now")
    }

    static func duration(_ t: String) -> Double? {
        var total = 0.0, number = "", any = false
        for ch in t {
            if ch.isNumber || ch == "." { number.append(ch); continue }
            guard let n = Double(number) else { return nil }
            switch ch {
            case "s": total += n
            case "m": total += n * 60
            case "h": total += n * 3600
            case "d": total += n * 86_400
            case "w": total += n * 7 * 86_400
            default: return nil
            }
            number = ""
            any = true
        }
        return any && number.isEmpty ? total : nil
    }

    /// A ClickHouse string literal: backslash escapes, as its lexer reads them
    /// (quoted strings in https://clickhouse.com/docs/en/sql-reference/syntax).
    static func literal(_ s: String) -> String {
        var out = "'"
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "'": out += "\\'"
            case "\0": out += "\\0"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out + "'"
    }

    /// The WHERE clause of the samples table.
    func samplesCondition() -> String {
        let s = Int64(since.timeIntervalSince1970.rounded(.down)), u = Int64(until.timeIntervalSince1970.rounded(.up))
        var terms = ["time >= toDateTime(\(s), 'UTC')", "time < toDateTime(\(u), 'UTC')"]
        var byKey: [String: [String]] = [:]
        var order: [String] = []
        for f in filters {
            if byKey[f.key] == nil { order.append(f.key) }
            byKey[f.key, default: []].append(f.value)
        }
        for key in order {
            let values = byKey[key]!
            let alternatives: [String] = values.map { v in
                if ClickHouseSchema.numberLabelColumns.contains(key) { return "\(key) = \(Int32(v) ?? -2)" }
                if ClickHouseSchema.stringLabelColumns.contains(key) { return "\(key) = \(Self.literal(v))" }
                // Another label: a string one, or a number one when the value is a number.
                var alt = "arrayExists((k, v) -> k = \(Self.literal(key)) AND v = \(Self.literal(v)), labels.key, labels.value)"
                if let n = Int64(v) { alt += " OR arrayExists((k, v) -> k = \(Self.literal(key)) AND v = \(n), num_labels.key, num_labels.value)" }
                return alt
            }
            terms.append("(" + alternatives.joined(separator: " OR ") + ")")
        }
        return terms.joined(separator: " AND ")
    }
}

extension ClickHouseClient {
    /// Reads the samples `query` selects, summed in SQL per stack and the
    /// labels kept, with their stacks, as a profile: sample types samples,
    /// cpu (plus offcpu and waits when any row has them), one location per
    /// frame group exactly as ``Profile/init(folded:sampleType:)`` builds
    /// them, so the result's folded stacks equal those of the windows written.
    public func profile(_ query: ClickHouseQuery) throws(ClickHouseError) -> Profile {
        guard query.since < query.until else {
            throw .badTime("--since \(query.since) is not before --until \(query.until)")
        }
        guard try hasSchema() else { throw .noTables(url: displayURL, database: database) }
        let keep = query.keep.union(["comm"])
        let condition = query.samplesCondition()
        // Labels not kept are constants under names of their own: an alias
        // named like a column would replace the column in WHERE (ClickHouse
        // substitutes aliases everywhere in the query).
        var select = ["stack_hash"], group = ["stack_hash"]
        for c in ClickHouseSchema.stringLabelColumns {
            if keep.contains(c) { select.append(c); group.append(c) } else { select.append("'' AS _dropped_\(c)") }
        }
        for c in ClickHouseSchema.numberLabelColumns {
            if keep.contains(c) { select.append(c); group.append(c) } else { select.append("toInt32(-1) AS _dropped_\(c)") }
        }
        if keep.contains("labels") {
            select += ["labels.key", "labels.value", "num_labels.key", "num_labels.value"]
            group += ["labels.key", "labels.value", "num_labels.key", "num_labels.value"]
        } else {
            select += ["emptyArrayString() AS _dropped_1", "emptyArrayString() AS _dropped_2", "emptyArrayString() AS _dropped_3",
                       "emptyArrayInt64() AS _dropped_4"]
        }
        select += ["sum(samples)", "sum(cpu_ns)", "sum(offcpu_ns)", "sum(waits)"]
        let rowsSQL = "SELECT \(select.joined(separator: ", ")) FROM \(ClickHouseSchema.samplesTable) WHERE \(condition) "
            + "GROUP BY \(group.joined(separator: ", ")) FORMAT RowBinary"
        struct Row { var hash: UInt64; var labels: [Profile.Label]; var values: [Int64] }
        var rows: [Row] = []
        var r = RowBinaryReader(try execute(rowsSQL), source: displayURL)
        while !r.isAtEnd {
            let hash = try r.uint64()
            var strings: [String] = []
            for _ in ClickHouseSchema.stringLabelColumns { strings.append(try r.string()) }
            let pid = try r.int32(), tid = try r.int32()
            let keys = try r.strings(), values = try r.strings(), numKeys = try r.strings(), numValues = try r.int64s()
            var labels: [Profile.Label] = []
            for (i, c) in ClickHouseSchema.stringLabelColumns.enumerated() where !strings[i].isEmpty {
                labels.append(.init(key: c, string: strings[i]))
            }
            if pid >= 0 { labels.append(.init(key: "pid", number: Int64(pid))) }
            if tid >= 0 { labels.append(.init(key: "tid", number: Int64(tid))) }
            for (k, v) in zip(keys, values) { labels.append(.init(key: k, string: v)) }
            for (k, v) in zip(numKeys, numValues) { labels.append(.init(key: k, number: v)) }
            rows.append(Row(hash: hash, labels: labels, values: [try r.int64(), try r.int64(), try r.int64(), try r.int64()]))
        }
        // Stacks: deduplicated on read (GROUP BY hash, any(frames)), so the
        // result never depends on ReplacingMergeTree having merged yet.
        let firstDay = ClickHouseTime.isoDate(day: ClickHouseTime.day(seconds: Int64(query.since.timeIntervalSince1970.rounded(.down))))
        let lastDay = ClickHouseTime.isoDate(day: ClickHouseTime.day(seconds: Int64(query.until.timeIntervalSince1970.rounded(.up))))
        let stacksSQL = "SELECT hash, any(frames) FROM \(ClickHouseSchema.stacksTable) "
            + "WHERE day >= '\(firstDay)' AND day <= '\(lastDay)' "
            + "AND hash IN (SELECT stack_hash FROM \(ClickHouseSchema.samplesTable) WHERE \(condition)) "
            + "GROUP BY hash FORMAT RowBinary"
        var frames: [UInt64: [String]] = [:]
        var s = RowBinaryReader(try execute(stacksSQL), source: displayURL)
        while !s.isAtEnd {
            let hash = try s.uint64()
            frames[hash] = try s.strings()
        }
        let hashes = Array(Set(rows.map(\.hash))).sorted()
        for h in hashes where frames[h] == nil {
            throw .badAnswer(url: displayURL, reason: "samples refer to stack \(String(h, radix: 16)), which \(ClickHouseSchema.stacksTable) lacks (its day partition dropped by hand?)")
        }
        // Locations built by Profile(folded:) (the inverse of folded stacks),
        // one sample per stack under a unique name; then the real samples.
        let folded = hashes.enumerated().map { (["#\($0.offset)"] + frames[$0.element]!, Int64(1)) }
        var profile = Profile(folded: folded)
        var locations: [UInt64: [UInt64]] = [:]
        for (i, h) in hashes.enumerated() { locations[h] = profile.samples[i].locationIDs }
        let hasOffCPU = rows.contains { $0.values[2] != 0 || $0.values[3] != 0 }
        profile.sampleTypes = [.init("samples", "count"), .init("cpu", "nanoseconds")]
            + (hasOffCPU ? [.init("offcpu", "nanoseconds"), .init("waits", "count")] : [])
        let width = profile.sampleTypes.count
        profile.samples = rows.map { Profile.Sample(locationIDs: locations[$0.hash]!, values: Array($0.values.prefix(width)), labels: $0.labels) }
        profile.timeNanos = Int64(query.since.timeIntervalSince1970 * 1e9)
        profile.durationNanos = Int64(query.until.timeIntervalSince(query.since) * 1e9)
        profile.comments = ["sprof query: \(displayURL) \(query.samplesCondition())"]
        return profile
    }
}
