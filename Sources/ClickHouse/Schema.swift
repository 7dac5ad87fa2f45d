import Foundation

/// sprof's two tables (README.md, "Schema", says why each choice).
/// Written for ClickHouse 18.16 (Debian 12's), which has no table TTL (19.6),
/// no column codecs (19.1) and only experimental LowCardinality: retention is
/// ``ClickHouseClient/dropPartitions(keepingDays:now:)``, compression LZ4 (the default).
public enum ClickHouseSchema {
    public static let stacksTable = "sprof_stacks"
    public static let samplesTable = "sprof_samples"

    /// Stacks, once per day and hash: `frames` root first, named as folded
    /// stacks name them (``Profile/foldedStacks(valueIndex:mangled:filter:)``:
    /// `_[k]`, `_[j]`, `_[i]` suffixes, `;` made `:`), without the process name.
    static let createStacks = """
        CREATE TABLE IF NOT EXISTS \(stacksTable) (
            day Date,
            hash UInt64,
            frames Array(String)
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMMDD(day)
        ORDER BY hash
        """

    /// One row per (window, stack, labels): the window's sample, values summed.
    static let createSamples = """
        CREATE TABLE IF NOT EXISTS \(samplesTable) (
            time DateTime('UTC'),
            window_start_ns Int64,
            window_end_ns Int64,
            host String,
            pid Int32,
            tid Int32,
            comm String,
            exe String,
            thread_name String,
            cgroup String,
            container_id String,
            systemd_unit String,
            labels Nested(key String, value String),
            num_labels Nested(key String, value Int64),
            stack_hash UInt64,
            samples Int64,
            cpu_ns Int64,
            offcpu_ns Int64,
            waits Int64
        ) ENGINE = MergeTree()
        PARTITION BY toYYYYMMDD(time)
        ORDER BY (toStartOfHour(time), host, comm, pid, stack_hash)
        """

    /// The columns of a stacks row, in RowBinary order.
    static let stackColumns = "day, hash, frames"
    /// The columns of a samples row, in RowBinary order.
    static let sampleColumns = "time, window_start_ns, window_end_ns, host, pid, tid, comm, exe, thread_name, cgroup, container_id, systemd_unit, "
        + "labels.key, labels.value, num_labels.key, num_labels.value, stack_hash, samples, cpu_ns, offcpu_ns, waits"

    /// Label keys stored as columns of their own (strings), in column order.
    public static let stringLabelColumns = ["host", "comm", "exe", "thread_name", "cgroup", "container_id", "systemd_unit"]
    /// Label keys stored as Int32 columns; -1 means the sample had no such label.
    public static let numberLabelColumns = ["pid", "tid"]
}

extension ClickHouseClient {
    /// Creates sprof's tables where missing (`CREATE TABLE IF NOT EXISTS`:
    /// running it again changes nothing, and never alters a table that exists).
    public func ensureSchema() throws(ClickHouseError) {
        _ = try execute(ClickHouseSchema.createStacks)
        _ = try execute(ClickHouseSchema.createSamples)
    }

    /// Whether both of sprof's tables exist in the URL's database.
    public func hasSchema() throws(ClickHouseError) -> Bool {
        let answer = try execute("""
            SELECT count() FROM system.tables WHERE database = currentDatabase()
            AND name IN ('\(ClickHouseSchema.stacksTable)', '\(ClickHouseSchema.samplesTable)') FORMAT RowBinary
            """)
        var r = RowBinaryReader(answer, source: displayURL)
        return try r.uint64() == 2
    }

    /// Retention, since 18.16 has no table TTL: drops the day partitions
    /// (`ALTER TABLE … DROP PARTITION YYYYMMDD`, a metadata operation that
    /// removes the day's parts at once) of both tables older than today
    /// (UTC) minus `keepingDays`: `keepingDays: 7` keeps today and the 7 days
    /// before it. Samples and the stacks they reference share their day, so
    /// no sample kept loses its stack. Returns the partitions dropped, as
    /// `table/YYYYMMDD`. The agent calls this on a timer (e.g. hourly).
    @discardableResult
    public func dropPartitions(keepingDays: Int, now: Date = Date()) throws(ClickHouseError) -> [String] {
        guard keepingDays >= 0 else { throw .badFilter("retention: keepingDays must be 0 or more, not \(keepingDays)") }
        let today = Int64(now.timeIntervalSince1970.rounded(.down)) / 86_400
        let cutoff = ClickHouseTime.yyyymmdd(day: today - Int64(keepingDays))
        let answer = try execute("""
            SELECT DISTINCT table, partition FROM system.parts
            WHERE database = currentDatabase() AND active
            AND table IN ('\(ClickHouseSchema.stacksTable)', '\(ClickHouseSchema.samplesTable)')
            ORDER BY table, partition FORMAT RowBinary
            """)
        var r = RowBinaryReader(answer, source: displayURL)
        var dropped: [String] = []
        while !r.isAtEnd {
            let table = try r.string()
            let partition = try r.string()
            // toYYYYMMDD partitions print as the number itself (20261122).
            guard let day = Int(partition), day < cutoff else { continue }
            _ = try execute("ALTER TABLE \(table) DROP PARTITION \(day)")
            dropped.append("\(table)/\(day)")
        }
        return dropped
    }

    /// What sprof's tables hold on disk, from `system.parts` (active parts).
    public struct TableStatistics: Sendable, Equatable {
        public var table: String
        public var rows: UInt64
        public var parts: UInt64
        public var bytesOnDisk: UInt64
        public var compressedBytes: UInt64
        public var uncompressedBytes: UInt64
    }

    public func tableStatistics() throws(ClickHouseError) -> [TableStatistics] {
        let answer = try execute("""
            SELECT table, sum(rows), count(), sum(bytes_on_disk), sum(data_compressed_bytes), sum(data_uncompressed_bytes)
            FROM system.parts WHERE database = currentDatabase() AND active
            AND table IN ('\(ClickHouseSchema.stacksTable)', '\(ClickHouseSchema.samplesTable)')
            GROUP BY table ORDER BY table FORMAT RowBinary
            """)
        var r = RowBinaryReader(answer, source: displayURL)
        var out: [TableStatistics] = []
        while !r.isAtEnd {
            out.append(TableStatistics(table: try r.string(), rows: try r.uint64(), parts: try r.uint64(),
                                       bytesOnDisk: try r.uint64(), compressedBytes: try r.uint64(), uncompressedBytes: try r.uint64()))
        }
        return out
    }
}

/// Days and times as the schema keeps them: UTC, whatever the server's time zone.
enum ClickHouseTime {
    /// Days since 1970-01-01 (a `Date` in RowBinary) of a UTC time in seconds.
    static func day(seconds: Int64) -> Int64 { seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400 }

    /// 20261122 for a day number (Howard Hinnant's civil_from_days,
    /// http://howardhinnant.github.io/date_algorithms.html).
    static func yyyymmdd(day: Int64) -> Int {
        let (y, m, d) = civil(day: day)
        return Int(y * 10_000 + m * 100 + d)
    }

    /// "2026-11-22" for a day number.
    static func isoDate(day: Int64) -> String {
        let (y, m, d) = civil(day: day)
        return String(format: "%04lld-%02lld-%02lld", y, m, d)
    }

    static func civil(day: Int64) -> (Int64, Int64, Int64) {
        let z = day + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
