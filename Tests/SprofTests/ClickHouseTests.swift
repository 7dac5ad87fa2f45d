import Foundation
import XCTest
@testable import SprofClickHouse
import SprofProfile
#if canImport(Glibc)
import Glibc
#endif

/// The ClickHouse sink and `sprof query`, against a REAL clickhouse-server
/// (Debian 12's package, 18.16.1), no fake.
///
/// How the server runs: each test writes a config.xml and users.xml into a
/// temporary directory (data, tmp, logs all under it; only the HTTP port, a
/// free loopback port found by binding port 0; `listen_host` 127.0.0.1; no
/// TCP, interserver or MySQL ports; timezone UTC), starts
/// `/usr/sbin/clickhouse-server --config-file=DIR/config.xml` as a child
/// process (as root it runs fine with root-owned directories; as another
/// user the directories are that user's), polls `/ping` until "Ok." (≤ 30 s),
/// and tearDown stops it with SIGTERM (SIGKILL after 15 s) and removes the
/// directory. Without clickhouse-server (apt-get install clickhouse-server
/// clickhouse-client, or .ci/setup) the tests skip, and fail under CI=true.
final class ClickHouseTests: XCTestCase {
    var scratch = ""
    var servers: [ClickHouseTestServer] = []

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: ClickHouseTestServer.binary) else {
            throw skipOrFailInCI("needs \(ClickHouseTestServer.binary) (Debian: apt-get install clickhouse-server clickhouse-client)")
        }
        scratch = NSTemporaryDirectory() + "sprof-ch-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        for s in servers { s.stop() }
        servers = []
        if !scratch.isEmpty { try? FileManager.default.removeItem(atPath: scratch) }
    }

    func server(port: Int? = nil, start: Bool = true) throws -> ClickHouseTestServer {
        let s = try ClickHouseTestServer(directory: scratch + "/server-\(servers.count)", port: port)
        servers.append(s)
        if start { try s.start() }
        return s
    }

    func sinkConfig(_ url: String, spool: String = "spool") -> ClickHouseSink.Configuration {
        var c = ClickHouseSink.Configuration(url: url, spoolDirectory: scratch + "/" + spool)
        c.backoffBase = 0.05
        c.backoffCap = 0.3
        c.requestTimeout = 5
        c.maxBatchDelay = 0.05
        return c
    }

    /// Log lines of the sink, for assertions.
    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func add(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    }

    // MARK: - Schema

    func testSchemaCreationIsIdempotentAndAsDocumented() throws {
        let s = try server()
        let client = try ClickHouseClient(url: s.url)
        XCTAssertFalse(try client.hasSchema())
        try client.ensureSchema()
        try client.ensureSchema()  // IF NOT EXISTS: a second run changes nothing
        XCTAssertTrue(try client.hasSchema())
        let tables = try s.text("SELECT name, engine, partition_key, sorting_key FROM system.tables WHERE database = 'default' ORDER BY name FORMAT TSV")
        XCTAssertEqual(tables, """
            sprof_samples\tMergeTree\ttoYYYYMMDD(time)\ttoStartOfHour(time), host, comm, pid, stack_hash
            sprof_stacks\tReplacingMergeTree\ttoYYYYMMDD(day)\thash

            """)
        let columns = try s.text("SELECT name, type FROM system.columns WHERE database = 'default' AND table = 'sprof_samples' FORMAT TSV")
        XCTAssertEqual(columns.split(separator: "\n").map { $0.replacingOccurrences(of: "\t", with: " ") }, [
            "time DateTime(\\'UTC\\')", "window_start_ns Int64", "window_end_ns Int64", "host String", "pid Int32", "tid Int32",
            "comm String", "exe String", "thread_name String", "cgroup String", "container_id String", "systemd_unit String",
            "labels.key Array(String)", "labels.value Array(String)", "num_labels.key Array(String)", "num_labels.value Array(Int64)",
            "stack_hash UInt64", "samples Int64", "cpu_ns Int64", "offcpu_ns Int64", "waits Int64",
        ])
        // The insert column lists name exactly these columns, in this order.
        XCTAssertEqual(ClickHouseSchema.sampleColumns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) },
                       columns.split(separator: "\n").map { String($0.split(separator: "\t")[0]) })
    }

    // MARK: - Write and read back

    /// Windows with every kind of frame (kernel, JIT, inlined, truncated,
    /// names with ';', quotes, tabs, backslashes, non-ASCII) and every label
    /// kind go in; the query's folded stacks equal the windows' for each
    /// value, and per stack and label set the sums are equal.
    func testWriteWindowsAndReadThemBack() throws {
        let s = try server()
        let sink = try ClickHouseSink(sinkConfig(s.url))
        let t0: Int64 = 1_763_805_600  // 2025-11-22T10:00:00Z
        let windows = (0..<6).map { ClickHouseFixtures.window(start: t0 + 10 * Int64($0), seed: UInt64($0), offCPU: $0 % 2 == 0) }
        for w in windows { try sink.write(w) }
        XCTAssertTrue(sink.flush(timeout: 30), "\(sink.currentCounters)")
        let c = sink.currentCounters
        let rows = windows.reduce(0) { $0 + $1.samples.count }
        XCTAssertEqual(c.windowsAccepted, 6)
        XCTAssertEqual(c.rowsWritten, UInt64(rows))
        XCTAssertGreaterThanOrEqual(c.batchesWritten, 1)
        XCTAssertEqual(c.droppedBatches, 0)
        XCTAssertEqual(c.spooledBatches, 0)
        XCTAssertEqual(c.spooledBytes, 0)
        XCTAssertNil(c.lastError)
        XCTAssertEqual(try s.text("SELECT count() FROM sprof_samples FORMAT TSV"), "\(rows)\n")

        let client = try ClickHouseClient(url: s.url)
        var q = ClickHouseQuery(since: Date(timeIntervalSince1970: Double(t0)), until: Date(timeIntervalSince1970: Double(t0 + 60)))
        q.keep = ClickHouseQuery.allLabels
        let back = try client.profile(q)
        XCTAssertEqual(back.sampleTypes.map(\.type), ["samples", "cpu", "offcpu", "waits"])
        for type in ["samples", "cpu", "offcpu", "waits"] {
            // Windows without off-CPU values come back with zeros there; compare what is not zero.
            let expected = ClickHouseFixtures.folded(windows, type).filter { $0.value != 0 }
            XCTAssertFalse(expected.isEmpty)
            XCTAssertEqual(back.foldedStacks(valueIndex: back.valueIndex(type)!).filter { $0.value != 0 }, expected, "folded stacks of \(type)")
        }
        XCTAssertEqual(ClickHouseFixtures.byStackAndLabels(back), ClickHouseFixtures.byStackAndLabels(windows),
                       "per stack and label set, every value")
        // --keep comm: the same folded stacks, summed over the other labels in SQL.
        q.keep = ["comm"]
        let coarse = try client.profile(q)
        XCTAssertEqual(coarse.foldedStacks(valueIndex: 1), ClickHouseFixtures.folded(windows, "cpu"))
        XCTAssertLessThan(coarse.samples.count, back.samples.count)
        XCTAssertTrue(coarse.samples.allSatisfy { $0.labels.map(\.key) == ["comm"] })
        // Stack rows hold folded-stack frame names (the same function Profile.foldedStacks uses).
        let frames = try s.text("SELECT arrayStringConcat(frames, ';') FROM sprof_stacks FORMAT TSV")
        XCTAssertTrue(frames.contains("do_syscall_64_[k]") && frames.contains("jit_loop_[j]") && frames.contains("mix_[i]"), frames)
        XCTAssertTrue(frames.contains("a:b"), "';' in a name becomes ':' as in folded stacks")
        XCTAssertTrue(sink.close(timeout: 5))
        XCTAssertThrowsError(try sink.write(windows[0])) { XCTAssertEqual($0 as? ClickHouseError, .closed) }
    }

    /// The same stacks written by two sinks (neither knows what the other
    /// sent) are stored twice, and the query still counts each sample once:
    /// stacks are deduplicated on read, not by merges.
    func testDuplicateStacksAreDeduplicatedOnRead() throws {
        let s = try server()
        let t0: Int64 = 1_763_805_600
        let w = ClickHouseFixtures.window(start: t0, seed: 7, offCPU: false)
        try ClickHouseClient(url: s.url).ensureSchema()
        // Otherwise a background merge may remove the copies before we count them.
        _ = try s.text("SYSTEM STOP MERGES sprof_stacks")
        for name in ["a", "b"] {
            let sink = try ClickHouseSink(sinkConfig(s.url, spool: name))
            try sink.write(w)
            XCTAssertTrue(sink.close(timeout: 30))
        }
        let distinct = Int(try s.text("SELECT uniqExact(hash) FROM sprof_stacks FORMAT TSV").dropLast())!
        XCTAssertEqual(try s.text("SELECT count() FROM sprof_stacks FORMAT TSV"), "\(2 * distinct)\n", "stored twice, not merged yet")
        let back = try ClickHouseClient(url: s.url).profile(ClickHouseQuery(since: Date(timeIntervalSince1970: Double(t0)),
                                                                            until: Date(timeIntervalSince1970: Double(t0 + 1))))
        XCTAssertEqual(back.foldedStacks(valueIndex: 0), ClickHouseFixtures.folded([w, w], "samples"))
    }

    // MARK: - Filters

    func testTimeRangeAndWhereFilters() throws {
        let s = try server()
        let sink = try ClickHouseSink(sinkConfig(s.url))
        let t0: Int64 = 1_763_805_600
        let a = ClickHouseFixtures.window(start: t0, seed: 1, offCPU: false)
        let b = ClickHouseFixtures.window(start: t0 + 60, seed: 2, offCPU: false)
        let c = ClickHouseFixtures.window(start: t0 + 120, seed: 3, offCPU: false)
        for w in [a, b, c] { try sink.write(w) }
        XCTAssertTrue(sink.close(timeout: 30))
        let client = try ClickHouseClient(url: s.url)
        func query(_ from: Int64, _ to: Int64, _ filters: [String] = [], keep: Set<String> = ClickHouseQuery.defaultKeep) throws -> [[String]: Int64] {
            var q = ClickHouseQuery(since: Date(timeIntervalSince1970: Double(from)), until: Date(timeIntervalSince1970: Double(to)))
            q.filters = try filters.map(ClickHouseQuery.parseFilter)
            q.keep = keep
            return try client.profile(q).foldedStacks(valueIndex: 0)
        }
        // Windows whose start is in [since, until).
        XCTAssertEqual(try query(t0 + 60, t0 + 120), ClickHouseFixtures.folded([b], "samples"))
        XCTAssertEqual(try query(t0, t0 + 61), ClickHouseFixtures.folded([a, b], "samples"))
        XCTAssertEqual(try query(t0 + 1, t0 + 121), ClickHouseFixtures.folded([b, c], "samples"))
        XCTAssertEqual(try query(t0 + 200, t0 + 300), [:])
        // --where on columns, on a static label, on a number label, and alternatives.
        let windows = [a, b, c]
        func expected(_ keep: (Profile.Sample) -> Bool) -> [[String]: Int64] {
            ClickHouseFixtures.folded(windows.map { w in var w = w; w.samples = w.samples.filter(keep); return w }, "samples")
        }
        for (filters, keep) in [
            (["comm=nginx"], { (s: Profile.Sample) in s.label("comm")?.string == "nginx" }),
            (["comm=nginx", "comm=redis"], { s in ["nginx", "redis"].contains(s.label("comm")?.string ?? "") }),
            (["comm=nginx", "pid=100"], { s in s.label("comm")?.string == "nginx" && s.label("pid")?.number == 100 }),
            (["comm=nginx", "pid=101"], { _ in false }),
            (["host=web-2"], { s in s.label("host")?.string == "web-2" }),
            (["container_id=c0ffee"], { s in s.label("container_id")?.string == "c0ffee" }),
            (["env=prod"], { s in s.labels.contains(.init(key: "env", string: "prod")) }),
            (["quote=it's \\ \"odd\""], { s in s.labels.contains(.init(key: "quote", string: "it's \\ \"odd\"")) }),
            (["shard=3"], { s in s.labels.contains(.init(key: "shard", number: 3)) }),
        ] as [([String], (Profile.Sample) -> Bool)] {
            let want = expected(keep)
            XCTAssertEqual(want.isEmpty, filters == ["comm=nginx", "pid=101"], "\(filters) selects something (or, for the contradiction, nothing)")
            XCTAssertEqual(try query(t0, t0 + 300, filters), want, "\(filters)")
            // Filtering on labels the result does not keep.
            XCTAssertEqual(try query(t0, t0 + 300, filters, keep: ["comm"]), want, "\(filters), keeping only comm")
        }
        XCTAssertEqual(try query(t0, t0 + 300, ["comm=nosuch"]), [:])
        XCTAssertThrowsError(try ClickHouseQuery.parseFilter("pid=abc")) { XCTAssertTrue("\($0)".contains("pid is a number"), "\($0)") }
        XCTAssertThrowsError(try ClickHouseQuery.parseFilter("comm")) { XCTAssertTrue("\($0)".contains("KEY=VALUE"), "\($0)") }
    }

    func testTimeParsing() throws {
        let now = Date(timeIntervalSince1970: 1_763_805_600)
        XCTAssertEqual(try ClickHouseQuery.parseTime("1h", now: now, flag: "--since"), now.addingTimeInterval(-3600))
        XCTAssertEqual(try ClickHouseQuery.parseTime("1h30m", now: now, flag: "--since"), now.addingTimeInterval(-5400))
        XCTAssertEqual(try ClickHouseQuery.parseTime("90s", now: now, flag: "--since"), now.addingTimeInterval(-90))
        XCTAssertEqual(try ClickHouseQuery.parseTime("2025-11-22T09:00:00Z", now: now, flag: "--since"), now.addingTimeInterval(-3600))
        XCTAssertEqual(try ClickHouseQuery.parseTime("2025-11-22", now: now, flag: "--since"), Date(timeIntervalSince1970: 1_763_769_600))
        XCTAssertEqual(try ClickHouseQuery.parseTime("@1763805600", now: now, flag: "--until"), now)
        XCTAssertEqual(try ClickHouseQuery.parseTime("now", now: now, flag: "--until"), now)
        XCTAssertEqual(try ClickHouseQuery.parseTime("1763805600", now: .distantPast, flag: "--until"), now, "bare, as report --store takes it")
        XCTAssertThrowsError(try ClickHouseQuery.parseTime("yesterday", now: now, flag: "--since")) {
            XCTAssertTrue("\($0)".hasPrefix("--since yesterday: expected a duration"), "\($0)")
        }
        XCTAssertThrowsError(try ClickHouseQuery.parseTime("5x", now: now, flag: "--since"))
        XCTAssertEqual(ClickHouseTime.yyyymmdd(day: 20_414), 20_251_122)
        XCTAssertEqual(ClickHouseTime.isoDate(day: 0), "1970-01-01")
        XCTAssertEqual(ClickHouseTime.day(seconds: 1_763_805_600), 20_414)
    }

    // MARK: - Outage, spool, bound

    /// Server down at write time: batches spool to disk and are retried; the
    /// sink is closed with them still there; a new sink takes them up, the
    /// server comes up, and everything arrives exactly once.
    func testServerDownBatchesSpoolThenDelivered() throws {
        let s = try server(start: false)
        let log = Log()
        let t0: Int64 = 1_763_805_600
        let windows = (0..<4).map { ClickHouseFixtures.window(start: t0 + 10 * Int64($0), seed: 100 + UInt64($0), offCPU: true) }
        let first = try ClickHouseSink(sinkConfig(s.url), log: log.add)
        try first.write(windows[0])
        try first.write(windows[1])
        XCTAssertFalse(first.flush(timeout: 1), "the server is down")
        var c = first.currentCounters
        XCTAssertGreaterThanOrEqual(c.retries, 1)
        XCTAssertGreaterThanOrEqual(c.spooledBatches, 1)
        XCTAssertGreaterThan(c.spooledBytes, 0)
        XCTAssertEqual(c.rowsWritten, 0)
        XCTAssertTrue(c.lastError?.contains("refused the connection") == true, c.lastError ?? "no error")
        XCTAssertTrue(log.all.contains { $0.contains("refused the connection") && $0.contains("retrying in") }, "\(log.all)")
        XCTAssertFalse(first.close(timeout: 0.2))
        let files = try FileManager.default.contentsOfDirectory(atPath: scratch + "/spool").filter { $0.hasSuffix(".sprofch") }
        XCTAssertEqual(files.count, c.spooledBatches, "spooled batches are files")
        let onDisk = files.reduce(Int64(0)) { $0 + ClickHouseSyscalls.size(scratch + "/spool/" + $1)! }
        XCTAssertEqual(onDisk, c.spooledBytes)

        let second = try ClickHouseSink(sinkConfig(s.url), log: log.add)
        XCTAssertEqual(second.currentCounters.spooledBatches, files.count, "taken up from the earlier run")
        try second.write(windows[2])
        try second.write(windows[3])
        XCTAssertFalse(second.flush(timeout: 0.5))
        try s.start()
        XCTAssertTrue(second.flush(timeout: 30), "\(second.currentCounters)")
        c = second.currentCounters
        XCTAssertEqual(c.rowsWritten, UInt64(windows.reduce(0) { $0 + $1.samples.count }), "earlier run's rows counted too")
        XCTAssertEqual(c.droppedBatches, 0)
        XCTAssertEqual(c.droppedRows, 0)
        XCTAssertEqual(c.spooledBatches, 0)
        XCTAssertEqual(c.spooledBytes, 0)
        XCTAssertTrue(second.close(timeout: 5))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch + "/spool").filter { $0.hasSuffix(".sprofch") }, [])
        let back = try ClickHouseClient(url: s.url).profile(ClickHouseQuery(since: Date(timeIntervalSince1970: Double(t0)),
                                                                            until: Date(timeIntervalSince1970: Double(t0 + 60))))
        for type in ["samples", "cpu", "offcpu", "waits"] {
            XCTAssertEqual(back.foldedStacks(valueIndex: back.valueIndex(type)!), ClickHouseFixtures.folded(windows, type), type)
        }
    }

    /// Past the bound the oldest batches go, counted and logged; the newest
    /// arrive once the server is up.
    func testSpoolBoundDropsOldestBatchesAndCountsThem() throws {
        let s = try server(start: false)
        let log = Log()
        let t0: Int64 = 1_763_805_600
        let windows = (0..<5).map { ClickHouseFixtures.window(start: t0 + 60 * Int64($0), seed: 9, offCPU: false) }
        let size = SpooledBatch(try WindowRows.encode(windows[0]) { _ in false }).fileSize
        XCTAssertEqual(SpooledBatch(try WindowRows.encode(windows[4]) { _ in false }).fileSize, size, "same stacks, same size")
        var config = sinkConfig(s.url)
        config.maxSpoolBytes = Int64(size * 5 / 2)  // room for two batches
        let sink = try ClickHouseSink(config, log: log.add)
        for w in windows {
            try sink.write(w)
            XCTAssertFalse(sink.flush(timeout: 0.3))  // one batch per window
        }
        var c = sink.currentCounters
        XCTAssertEqual(c.droppedBatches, 3)
        XCTAssertEqual(c.droppedRows, UInt64(3 * windows[0].samples.count))
        XCTAssertEqual(c.spooledBatches, 2)
        XCTAssertEqual(c.spooledBytes, Int64(2 * size))
        XCTAssertLessThanOrEqual(c.spooledBytes, config.maxSpoolBytes)
        XCTAssertTrue(log.all.contains { $0.contains("spool full") && $0.contains("dropped the 1 oldest") }, "\(log.all)")
        try s.start()
        XCTAssertTrue(sink.close(timeout: 30))
        c = sink.currentCounters
        XCTAssertEqual(c.rowsWritten, UInt64(2 * windows[0].samples.count))
        let times = try s.text("SELECT DISTINCT toUnixTimestamp(time) AS t FROM sprof_samples ORDER BY t FORMAT TSV")
        XCTAssertEqual(times, "\(t0 + 180)\n\(t0 + 240)\n", "the two newest windows")
    }

    /// A window the schema cannot hold is refused at write(), with a message,
    /// and nothing of it is queued.
    func testBadWindowsAreRefused() throws {
        let sink = try ClickHouseSink(sinkConfig("http://127.0.0.1:1"))
        defer { sink.close(timeout: 0) }
        var w = ClickHouseFixtures.window(start: 1_763_805_600, seed: 1, offCPU: false)
        w.sampleTypes.append(.init("alloc", "bytes"))
        XCTAssertThrowsError(try sink.write(w)) { XCTAssertTrue("\($0)".contains("sample type alloc/bytes has no column"), "\($0)") }
        w = ClickHouseFixtures.window(start: 1_763_805_600, seed: 1, offCPU: false)
        w.timeNanos = 0
        XCTAssertThrowsError(try sink.write(w)) { XCTAssertTrue("\($0)".contains("no start time"), "\($0)") }
        w = ClickHouseFixtures.window(start: 1_763_805_600, seed: 1, offCPU: false)
        w.samples[0].locationIDs.append(9999)
        XCTAssertThrowsError(try sink.write(w)) { XCTAssertTrue("\($0)".contains("location 9999"), "\($0)") }
        XCTAssertEqual(sink.currentCounters.windowsAccepted, 0)
    }

    // MARK: - Retention

    func testRetentionDropsOldDayPartitionsOfBothTables() throws {
        let s = try server()
        let now = Date()
        let today = Int64(now.timeIntervalSince1970)
        let old = ClickHouseFixtures.window(start: today - 10 * 86_400, seed: 1, offCPU: false)
        let recent = ClickHouseFixtures.window(start: today - 60, seed: 2, offCPU: false)
        let sink = try ClickHouseSink(sinkConfig(s.url))
        try sink.write(old)
        try sink.write(recent)
        XCTAssertTrue(sink.close(timeout: 30))
        let client = try ClickHouseClient(url: s.url)
        let oldDay = ClickHouseTime.yyyymmdd(day: ClickHouseTime.day(seconds: today - 10 * 86_400))
        XCTAssertEqual(try client.dropPartitions(keepingDays: 3, now: now), ["sprof_samples/\(oldDay)", "sprof_stacks/\(oldDay)"])
        XCTAssertEqual(try client.dropPartitions(keepingDays: 3, now: now), [], "idempotent")
        let q = ClickHouseQuery(since: now.addingTimeInterval(-30 * 86_400), until: now)
        XCTAssertEqual(try client.profile(q).foldedStacks(valueIndex: 0), ClickHouseFixtures.folded([recent], "samples"))
        XCTAssertEqual(try s.text("SELECT count() FROM sprof_stacks WHERE day < today() - 3 FORMAT TSV"), "0\n")
    }

    // MARK: - Errors

    func testBadURLsAndHTTPErrorsGiveClearMessages() throws {
        XCTAssertThrowsError(try ClickHouseClient(url: "ftp://host/")) { XCTAssertTrue("\($0)".contains("must be http or https"), "\($0)") }
        XCTAssertThrowsError(try ClickHouseClient(url: "http://")) { XCTAssertTrue("\($0)".contains("no host"), "\($0)") }
        XCTAssertThrowsError(try ClickHouseClient(url: "http://h:8123/?query=x")) { XCTAssertTrue("\($0)".contains("query="), "\($0)") }
        let password = try ClickHouseClient(url: "http://u:secret@127.0.0.1/?database=prof")
        XCTAssertEqual(password.displayURL, "http://127.0.0.1:8123/?database=prof", "no password in messages, default port")
        XCTAssertEqual(password.database, "prof")

        // Nothing listens.
        let closed = try ClickHouseClient(url: "http://127.0.0.1:\(try ClickHouseTestServer.freePort())", timeout: 5)
        XCTAssertThrowsError(try closed.execute("SELECT 1")) { e in
            guard case .connectionRefused? = e as? ClickHouseError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("refused the connection: is clickhouse-server running"), "\(e)")
        }
        // Something accepts connections and never answers.
        let (listener, port) = try ClickHouseTestServer.silentListener()
        defer { close(listener) }
        let silent = try ClickHouseClient(url: "http://127.0.0.1:\(port)", timeout: 1)
        let start = Date()
        XCTAssertThrowsError(try silent.execute("SELECT 1")) { e in
            guard case .timedOut? = e as? ClickHouseError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("did not answer within 1.0 s"), "\(e)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)

        // ClickHouse's own messages, decoration removed, code kept.
        let s = try server()
        let client = try ClickHouseClient(url: s.url)
        XCTAssertThrowsError(try client.execute("SELEC 1")) { e in
            guard case .server(_, 400, 62?, let m)? = e as? ClickHouseError else { return XCTFail("\(e)") }
            XCTAssertTrue(m.hasPrefix("Code: 62, Syntax error"), m)
            XCTAssertFalse(m.contains("e.what()"), m)
        }
        XCTAssertThrowsError(try client.execute("SELECT * FROM sprof_samples")) { e in
            guard case .server(_, 404, 60?, _)? = e as? ClickHouseError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("Table default.sprof_samples doesn't exist"), "\(e)")
        }
        XCTAssertThrowsError(try ClickHouseClient(url: s.url + "/?database=nosuch").execute("SELECT 1")) { e in
            XCTAssertTrue("\(e)".contains("nosuch") && "\(e)".contains("create the database"), "\(e)")
        }
        XCTAssertThrowsError(try client.profile(ClickHouseQuery(since: Date(timeIntervalSinceNow: -60), until: Date()))) { e in
            XCTAssertEqual(e as? ClickHouseError, .noTables(url: client.displayURL, database: "default"))
            XCTAssertTrue("\(e)".contains("has no sprof tables in database default"), "\(e)")
        }
        XCTAssertEqual(try s.text("SELECT 'a+b&c=d%20 é' FORMAT TSV"), "a+b&c=d%20 é\n")
        // A password with characters a URL's query treats specially ('+', '&', '=', '%')
        // reaches the server intact; a wrong one gets a hint.
        let tester = try ClickHouseClient(url: "http://tester:p%2B%26%3D%25x@127.0.0.1:\(s.port)")
        XCTAssertEqual(String(decoding: try tester.execute("SELECT 'in' FORMAT TSV"), as: UTF8.self), "in\n")
        XCTAssertFalse(tester.displayURL.contains("p%2B") || tester.displayURL.contains("tester"), tester.displayURL)
        XCTAssertThrowsError(try ClickHouseClient(url: "http://tester:wrong@127.0.0.1:\(s.port)").execute("SELECT 1")) { e in
            XCTAssertTrue("\(e)".contains("check the user and password"), "\(e)")
        }
        XCTAssertTrue(client.ping())
    }

    // MARK: - sprof query

    /// The built binary: `sprof query` prints the same folded stacks and top
    /// table as `sprof report` on the windows, and names a bad server.
    func testSprofQueryCommand() throws {
        let sprof = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
        guard FileManager.default.isExecutableFile(atPath: sprof) else {
            throw skipOrFailInCI("no sprof binary at \(sprof) (swift build builds it)")
        }
        let s = try server()
        let sink = try ClickHouseSink(sinkConfig(s.url))
        let now = Int64(Date().timeIntervalSince1970)
        let windows = [ClickHouseFixtures.window(start: now - 600, seed: 4, offCPU: true),
                       ClickHouseFixtures.window(start: now - 300, seed: 5, offCPU: true)]
        for w in windows { try sink.write(w) }
        XCTAssertTrue(sink.close(timeout: 30))
        var r = try runSprofCLI(sprof, ["query", "--clickhouse", s.url, "--since", "1h", "--folded", "--value", "cpu"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, Profile.renderFolded(ClickHouseFixtures.folded(windows, "cpu").filter { $0.value != 0 }))
        r = try runSprofCLI(sprof, ["query", "--clickhouse", s.url, "--since", "1h", "--where", "comm=nginx", "--folded", "--value", "samples"])
        var nginx = windows
        for i in nginx.indices { nginx[i].samples = nginx[i].samples.filter { $0.label("comm")?.string == "nginx" } }
        XCTAssertEqual(r.stdout, Profile.renderFolded(ClickHouseFixtures.folded(nginx, "samples").filter { $0.value != 0 }), r.stderr)
        r = try runSprofCLI(sprof, ["query", "--clickhouse", s.url, "--since", "1h", "--top", "--limit", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("Showing 5 of "), r.stdout)
        let svg = scratch + "/q.svg", pb = scratch + "/q.pb.gz"
        r = try runSprofCLI(sprof, ["query", "--clickhouse", s.url, "--since", "1h", "--flamegraph", svg, "--pprof", pb])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(try String(contentsOfFile: svg, encoding: .utf8).contains("<svg"))
        let pprof = try Pprof.read(path: pb)
        XCTAssertEqual(pprof.foldedStacks(valueIndex: 2), ClickHouseFixtures.folded(windows, "offcpu"))
        r = try runSprofCLI(sprof, ["query", "--clickhouse", s.url, "--since", "1h", "--where", "comm=nosuch", "--folded"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no samples matching --where comm=nosuch"), r.stderr)
        r = try runSprofCLI(sprof, ["query", "--clickhouse", "http://127.0.0.1:\(try ClickHouseTestServer.freePort())", "--folded"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("refused the connection"), r.stderr)
        r = try runSprofCLI(sprof, ["query", "--clickhouse", s.url, "--since", "soon"])
        XCTAssertTrue(r.stderr.contains("--since soon: expected a duration"), r.stderr)
    }

    func runSprofCLI(_ path: String, _ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let out = scratch + "/cli-out", err = scratch + "/cli-err"
        let pid = try ClickHouseTestServer.spawn(path, args, stdout: out, stderr: err)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WEXITSTATUS (sys/wait.h): the exit code is in bits 8-15.
        return ((status >> 8) & 0xff, try String(contentsOfFile: out, encoding: .utf8), try String(contentsOfFile: err, encoding: .utf8))
    }

    // MARK: - Ingest (measured, printed, not asserted)

    /// Samples/s through the sink (write to delivered) and bytes per sample
    /// row on disk (system.parts), for the issue's closing note.
    func testIngestRateAndBytesPerSample() throws {
        let s = try server()
        var config = sinkConfig(s.url)
        config.maxBatchDelay = 10
        let sink = try ClickHouseSink(config)
        let t0 = Int64(Date().timeIntervalSince1970) - 3600
        // 60 windows of one 10 s agent window each: 20 processes x ~25 stacks x threads.
        let windows = (0..<60).map { ClickHouseFixtures.window(start: t0 + 10 * Int64($0), seed: UInt64($0), offCPU: false, processes: 20, threads: 4) }
        let rows = windows.reduce(0) { $0 + $1.samples.count }
        let samples = windows.reduce(Int64(0)) { $0 + $1.samples.reduce(0) { $0 + $1.values[0] } }
        let start = Date()
        var writeTime = 0.0
        for w in windows {
            let t = Date()
            try sink.write(w)
            writeTime = max(writeTime, Date().timeIntervalSince(t))
        }
        XCTAssertTrue(sink.flush(timeout: 120))
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(sink.currentCounters.rowsWritten, UInt64(rows))
        XCTAssertTrue(sink.close(timeout: 5))
        let client = try ClickHouseClient(url: s.url)
        func report(_ when: String) throws {
            let stats = try client.tableStatistics()
            let bytes = stats.reduce(UInt64(0)) { $0 + $1.bytesOnDisk }
            let compressed = stats.reduce(UInt64(0)) { $0 + $1.compressedBytes }
            print(String(format: "clickhouse ingest (%@): %d rows (%lld samples) in %.2f s: %.0f rows/s, %.0f samples/s; longest write() %.1f ms; on disk %llu bytes (%.1f bytes/row, %.2f bytes/sample; column data %.1f bytes/row)",
                         when, rows, samples, elapsed, Double(rows) / elapsed, Double(samples) / elapsed, writeTime * 1000,
                         bytes, Double(bytes) / Double(rows), Double(bytes) / Double(samples), Double(compressed) / Double(rows)))
            for t in stats {
                print("  \(t.table): \(t.rows) rows in \(t.parts) parts, \(t.bytesOnDisk) bytes on disk, \(t.compressedBytes) compressed / \(t.uncompressedBytes) uncompressed")
            }
        }
        try report("as inserted")
        _ = try client.execute("OPTIMIZE TABLE sprof_samples FINAL")
        _ = try client.execute("OPTIMIZE TABLE sprof_stacks FINAL")
        try report("after OPTIMIZE FINAL")
        let columns = try s.text("SELECT name, data_compressed_bytes FROM system.columns WHERE database = 'default' AND table = 'sprof_samples' ORDER BY data_compressed_bytes DESC LIMIT 6 FORMAT TSV")
        print("  largest sample columns (compressed bytes): " + columns.split(separator: "\n").map { $0.replacingOccurrences(of: "\t", with: " ") }.joined(separator: ", "))
    }
}

// MARK: - Fixtures

enum ClickHouseFixtures {
    /// A window as the agent will hand one over: sample types samples and cpu
    /// (plus offcpu and waits), labels of every kind, stacks with kernel, JIT,
    /// inlined and truncated frames and awkward names. Deterministic from `seed`.
    static func window(start: Int64, seed: UInt64, offCPU: Bool, processes: Int = 3, threads: Int = 2) -> Profile {
        var rng = SplitMix64(seed: seed)
        let names = ["main", "run", "compute", "std::vector<int, std::allocator<int> >::push_back(int const&)", "a;b",
                     "tab\there", "quote'\"\\", "ünïcödé_λ", "libc.so.6+0x1f00", "parse", "serve", "write"]
        var pool: [([String], Int64)] = []
        for i in 0..<25 {
            var frames = ["p\(i)"]
            if i % 7 == 3 { frames.append("[truncated: no unwind information]") }
            for _ in 0..<Int.random(in: 2...9, using: &rng) { frames.append(names.randomElement(using: &rng)!) }
            if i % 4 == 1 { frames += ["mix_[i]", "step_[i]"] }
            if i % 5 == 2 { frames += ["write", "entry_SYSCALL_64_after_hwframe_[k]", "do_syscall_64_[k]"] }
            if i % 6 == 4 { frames = [frames[0], "jit_loop_[j]"] + frames.dropFirst() }
            pool.append((frames, 1))
        }
        let base = Profile(folded: pool)
        var p = base
        p.sampleTypes = [.init("samples", "count"), .init("cpu", "nanoseconds")] + (offCPU ? [.init("offcpu", "nanoseconds"), .init("waits", "count")] : [])
        p.timeNanos = start * 1_000_000_000 + 123_456_789
        p.durationNanos = 10_000_000_000
        p.samples = []
        let comms = ["nginx", "redis", "postgres"]
        for proc in 0..<processes {
            let comm = comms[proc % comms.count]
            let pid = Int64(100 + proc)
            for t in 0..<threads {
                for s in base.samples where Int.random(in: 0..<3, using: &rng) > 0 {
                    let n = Int64.random(in: 1...40, using: &rng)
                    var values = [n, n * 52_631_578]
                    if offCPU { values += [Int64.random(in: 0...5_000_000, using: &rng), Int64.random(in: 0...3, using: &rng)] }
                    var labels: [Profile.Label] = [
                        .init(key: "host", string: "web-\(proc % 2 + 1)"), .init(key: "pid", number: pid), .init(key: "tid", number: pid + Int64(t)),
                        .init(key: "comm", string: comm), .init(key: "exe", string: "/usr/sbin/\(comm)"),
                        .init(key: "thread_name", string: t == 0 ? comm : "\(comm)-worker"),
                        .init(key: "cgroup", string: "/system.slice/\(comm).service"),
                        .init(key: "systemd_unit", string: "\(comm).service"),
                        .init(key: "env", string: "prod"),
                    ]
                    if proc == 1 { labels.append(.init(key: "container_id", string: "c0ffee")) }
                    if proc == 2 { labels.append(.init(key: "quote", string: "it's \\ \"odd\"")) }
                    if t == 1 { labels.append(.init(key: "shard", number: 3)) }
                    p.samples.append(Profile.Sample(locationIDs: s.locationIDs, values: values, labels: labels))
                }
            }
        }
        return p
    }

    /// The windows' folded stacks of value `type`, summed (0 where a window lacks the type).
    static func folded(_ windows: [Profile], _ type: String) -> [[String]: Int64] {
        var out: [[String]: Int64] = [:]
        for w in windows {
            guard let i = w.valueIndex(type) else { continue }
            for (k, v) in w.foldedStacks(valueIndex: i) { out[k, default: 0] += v }
        }
        return out
    }

    /// Per folded stack and sorted label set: each value by type name.
    static func byStackAndLabels(_ windows: [Profile]) -> [String: [String: Int64]] {
        var out: [String: [String: Int64]] = [:]
        for w in windows {
            for s in w.samples {
                var one = w
                one.samples = [s]
                let stack = one.foldedStacks(valueIndex: 0).keys.first!.joined(separator: ";")
                let labels = s.labels.map { "\($0.key)=\($0.string ?? "#\($0.number!)")" }.sorted().joined(separator: ",")
                for (i, t) in w.sampleTypes.enumerated() where s.values[i] != 0 {
                    out[stack + " " + labels, default: [:]][t.type, default: 0] += s.values[i]
                }
            }
        }
        return out
    }

    static func byStackAndLabels(_ p: Profile) -> [String: [String: Int64]] { byStackAndLabels([p]) }
}

// MARK: - The server

/// A clickhouse-server of our own on loopback (see ClickHouseTests' comment).
final class ClickHouseTestServer {
    static let binary = "/usr/sbin/clickhouse-server"
    let directory: String
    let port: Int
    private var pid: pid_t = 0
    var url: String { "http://127.0.0.1:\(port)" }

    init(directory: String, port: Int? = nil) throws {
        self.directory = directory
        self.port = try port ?? Self.freePort()
        for sub in ["data", "tmp", "log", "user_files", "format_schemas"] {
            try FileManager.default.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true)
        }
        // Only the HTTP port: no tcp_port, so parallel servers do not fight over 9000.
        try """
            <?xml version="1.0"?>
            <yandex>
              <logger><level>warning</level><log>\(directory)/log/server.log</log><errorlog>\(directory)/log/error.log</errorlog></logger>
              <http_port>\(self.port)</http_port>
              <listen_host>127.0.0.1</listen_host>
              <path>\(directory)/data/</path>
              <tmp_path>\(directory)/tmp/</tmp_path>
              <user_files_path>\(directory)/user_files/</user_files_path>
              <format_schema_path>\(directory)/format_schemas/</format_schema_path>
              <users_config>\(directory)/users.xml</users_config>
              <default_profile>default</default_profile>
              <default_database>default</default_database>
              <timezone>UTC</timezone>
              <mark_cache_size>67108864</mark_cache_size>
              <uncompressed_cache_size>67108864</uncompressed_cache_size>
            </yandex>
            """.write(toFile: directory + "/config.xml", atomically: true, encoding: .utf8)
        try """
            <?xml version="1.0"?>
            <yandex>
              <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
              <users>
                <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
                <tester><password>p+&amp;=%x</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></tester>
              </users>
              <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
            </yandex>
            """.write(toFile: directory + "/users.xml", atomically: true, encoding: .utf8)
    }

    /// posix_spawn, not Foundation's Process: with a Process-started server
    /// alive, a second Process (the sprof CLI) exited without
    /// waitUntilExit() ever returning (corelibs Foundation, Swift 6.3.1).
    func start() throws {
        pid = try Self.spawn(Self.binary, ["--config-file=\(directory)/config.xml"],
                             stdout: directory + "/log/stdout", stderr: directory + "/log/stderr")
        let client = try ClickHouseClient(url: url, timeout: 2)
        let deadline = Date(timeIntervalSinceNow: 30)
        while Date() < deadline {
            if client.ping() { return }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { pid = 0; break }
            usleep(100_000)
        }
        let log = (try? String(contentsOfFile: directory + "/log/error.log", encoding: .utf8)) ?? ""
        stop()
        throw NSError(domain: "ClickHouseTests", code: 1, userInfo: [NSLocalizedDescriptionKey:
            "clickhouse-server on port \(port) did not answer /ping within 30 s: \(log.suffix(2000))"])
    }

    func stop() {
        guard pid > 0 else { return }
        kill(pid, SIGTERM)
        let deadline = Date(timeIntervalSinceNow: 15)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline { kill(pid, SIGKILL); waitpid(pid, &status, 0); break }
            usleep(50_000)
        }
        pid = 0
    }

    /// Starts `path` with `args`, stdout and stderr to files.
    static func spawn(_ path: String, _ args: [String], stdout: String, stderr: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard rc == 0 else { throw NSError(domain: "posix_spawn \(path)", code: Int(rc)) }
        return pid
    }

    /// A statement's text answer (FORMAT TSV).
    func text(_ sql: String) throws -> String {
        String(decoding: try ClickHouseClient(url: url).execute(sql), as: UTF8.self)
    }

    /// A loopback port nothing listens on now: bind port 0, read it, close.
    static func freePort() throws -> Int {
        let (fd, port) = try bound()
        close(fd)
        return port
    }

    /// A socket that listens (the kernel completes connections into its
    /// backlog) and never accepts or answers: a server that hangs.
    static func silentListener() throws -> (Int32, Int) {
        let (fd, port) = try bound()
        guard listen(fd, 4) == 0 else { close(fd); throw NSError(domain: "listen", code: Int(errno)) }
        return (fd, port)
    }

    private static func bound() throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw NSError(domain: "socket", code: Int(errno)) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { close(fd); throw NSError(domain: "bind", code: Int(errno)) }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }
}
