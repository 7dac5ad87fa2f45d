import Foundation
import XCTest
@testable import SprofProfile
@testable import SprofStore
#if canImport(Glibc)
import Glibc
#endif

/// The agent's local store (issue 9): windows written atomically and named
/// by time, listed by range, merged (`go tool pprof`, which merges the
/// profiles it is given, is the oracle), damaged files skipped and named,
/// retention, a full disk, and `sprof report --store` end to end.
final class StoreTests: XCTestCase {
    typealias Label = Profile.Label
    static let types: [Profile.ValueType] = [.init("samples", "count"), .init("cpu", "nanoseconds")]
    /// 19 Hz, the agent's default rate: one sample is 1e9 / 19 ns of CPU.
    static let period: Int64 = 52_631_578
    /// Every function a test stack may use; its address is fixed by its
    /// position, so the same frame has the same location content in every window.
    static let functionNames = ["main", "serve", "parse", "write", "loop", "read", "compute", "_start"]

    var scratch = ""
    var mounted: String?

    override func setUpWithError() throws {
        scratch = NSTemporaryDirectory() + "sprof-store-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let mounted { _ = try? runTool("/bin/umount", [mounted]) }
        try? FileManager.default.removeItem(atPath: scratch)
    }

    // MARK: - Building windows

    /// A window from `(root;...;leaf, samples, labels)`: values are the
    /// sample count and its CPU time (count × period). `order` reverses the
    /// order functions and locations are created in, so ids differ from one
    /// window to the next while contents are the same.
    func window(start: Int64, seconds: Int64 = 10, reversed: Bool = false, comments: [String] = [],
                _ samples: [(String, Int64, [Label])]) -> Profile {
        var b = ProfileBuilder(sampleTypes: Self.types)
        b.setPeriod(.init("cpu", "nanoseconds"), Self.period)
        b.setTime(startNanos: start, durationNanos: seconds * 1_000_000_000)
        for c in comments { b.addComment(c) }
        let mapping = b.mapping(start: 0x400000, limit: 0x500000, fileOffset: 0, file: "/usr/bin/app", buildID: "abcd")
        var locations: [String: UInt64] = [:]
        let names = reversed ? Self.functionNames.reversed() : Self.functionNames
        for name in names {
            let f = b.function(name: name, systemName: name, file: "app.c")
            let address = 0x401000 + 0x10 * UInt64(Self.functionNames.firstIndex(of: name)!)
            locations[name] = b.location(mappingID: mapping, address: address, lines: [.init(functionID: f, line: 7)])
        }
        for (stack, count, labels) in samples {
            let ids = stack.split(separator: ";").reversed().map { locations[String($0)]! }
            b.addSample(locationIDs: ids, values: [count, count * Self.period], labels: labels)
        }
        return b.profile
    }

    func labels(_ comm: String, _ pid: Int64, host: String = "web1") -> [Label] {
        [.init(key: "host", string: host), .init(key: "comm", string: comm), .init(key: "pid", number: pid)]
    }

    /// Folded stacks with the process name first, as `sprof report --folded` prints them.
    func folded(_ p: Profile, _ index: Int = 0) -> [String: Int64] {
        var out: [String: Int64] = [:]
        for (k, v) in p.foldedStacks(valueIndex: index) where v != 0 { out[k.joined(separator: ";")] = v }
        return out
    }

    static let t0: Int64 = 1_795_341_600 * 1_000_000_000   // 2026-11-22T10:00:00Z

    // MARK: - Merging

    func testMergeSumsIdenticalSamplesAndReinternsIDs() throws {
        let a = window(start: Self.t0, comments: ["sprof agent", "rate 19 Hz"], [
            ("main;serve;parse", 5, labels("nginx", 42)),
            ("main;serve;write", 2, labels("nginx", 42)),
            ("main;loop", 4, labels("redis", 7)),
        ])
        // Same contents, other ids; labels of the first sample in another order.
        let b = window(start: Self.t0 + 10_000_000_000, reversed: true, comments: ["sprof agent"], [
            ("main;serve;parse", 3, labels("nginx", 42).reversed()),
            ("main;serve;parse", 1, labels("nginx", 43)),
            ("main;read", 6, labels("redis", 7)),
        ])
        XCTAssertNotEqual(a.location(a.samples[0].locationIDs[0])?.id, b.location(b.samples[0].locationIDs[0])?.id,
                          "the two windows must number their locations differently for this test to mean anything")
        let m = try Profile.merging([a, b])

        XCTAssertEqual(m.sampleTypes, Self.types)
        // Per stack and process: the sum of both windows, for both values.
        XCTAssertEqual(folded(m), ["nginx;main;serve;parse": 9, "nginx;main;serve;write": 2, "redis;main;loop": 4, "redis;main;read": 6])
        XCTAssertEqual(folded(m, 1).values.reduce(0, +), 21 * Self.period)
        // Same stack and same label set (in any order): one sample; pid 43 stays apart.
        XCTAssertEqual(m.samples.count, 5)
        func leaf(_ s: Profile.Sample) -> String? {
            guard let line = m.location(s.locationIDs[0])?.lines.first else { return nil }
            return m.function(line.functionID)?.name
        }
        let parse42 = m.samples.filter { $0.label("pid")?.number == 42 && leaf($0) == "parse" }
        XCTAssertEqual(parse42.map(\.values), [[8, 8 * Self.period]])
        // Interned by content: one mapping, one function per name, one location per frame; ids dense from 1.
        XCTAssertEqual(m.mappings.count, 1)
        XCTAssertEqual(Set(m.functions.map(\.name)), Set(Self.functionNames))
        XCTAssertEqual(m.functions.count, Self.functionNames.count)
        XCTAssertEqual(m.locations.count, Self.functionNames.count)
        XCTAssertEqual(m.mappings.map(\.id), [1])
        XCTAssertEqual(m.functions.map(\.id), (1...UInt64(m.functions.count)).map { $0 })
        XCTAssertEqual(m.locations.map(\.id), (1...UInt64(m.locations.count)).map { $0 })
        for s in m.samples { for id in s.locationIDs { XCTAssertNotNil(m.location(id)) } }
        // Header: earliest start, to the latest end; comments once each; the period kept.
        XCTAssertEqual(m.timeNanos, Self.t0)
        XCTAssertEqual(m.durationNanos, 20_000_000_000)
        XCTAssertEqual(m.comments, ["sprof agent", "rate 19 Hz"])
        XCTAssertEqual(m.period, Self.period)
        // It survives pprof encoding as it is.
        XCTAssertEqual(try Pprof.decode(try Pprof.encode(m), path: "mem"), m)
    }

    /// A window without off-CPU values merges with one that has them (its
    /// samples get 0); the same type in another unit is refused and leaves
    /// the merger as it was.
    func testMergeSampleTypesUnionAndConflict() throws {
        let cpuOnly = window(start: Self.t0, [("main;compute", 3, labels("app", 1))])
        var withOff = window(start: Self.t0 + 10_000_000_000, [("main;read", 1, labels("app", 1))])
        withOff = withOff.addingSum(of: [1], as: .init("offcpu", "nanoseconds"))
        var merger = ProfileMerger()
        try merger.add(cpuOnly)
        try merger.add(withOff)
        XCTAssertEqual(merger.profile.sampleTypes.map(\.type), ["samples", "cpu", "offcpu"])
        let off = merger.profile.valueIndex("offcpu")!
        XCTAssertEqual(folded(merger.profile, off), ["app;main;read": Self.period], "the CPU-only window contributes 0 off-CPU")
        XCTAssertEqual(merger.profile.samples.map(\.values.count), [3, 3])

        var bad = window(start: Self.t0, [("main;compute", 1, labels("app", 1))])
        bad.sampleTypes[1].unit = "count"
        let before = merger.profile
        XCTAssertThrowsError(try merger.add(bad)) { e in
            guard case ProfileError.incompatible(let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("cpu") && why.contains("count") && why.contains("nanoseconds"), why)
        }
        XCTAssertEqual(merger.profile, before)
        XCTAssertEqual(merger.count, 2)
        var dangling = cpuOnly
        dangling.samples[0].locationIDs.append(99)
        XCTAssertThrowsError(try merger.add(dangling))
        XCTAssertEqual(merger.profile, before)
    }

    /// `go tool pprof` given both windows merges them itself; its tables of
    /// our merged file must be the same, for each value and for the labels.
    func testMergedProfileMatchesGoToolPprof() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/go") else {
            throw skipOrFailInCI("needs go (Debian: apt-get install golang-go) for go tool pprof")
        }
        let store = try ProfileStore(directory: scratch + "/store")
        let a = window(start: Self.t0, [
            ("_start;main;serve;parse", 5, labels("nginx", 42)), ("_start;main;serve;write", 2, labels("nginx", 42)),
            ("_start;main;loop", 4, labels("redis", 7)),
        ])
        let b = window(start: Self.t0 + 10_000_000_000, reversed: true, [
            ("_start;main;serve;parse", 3, labels("nginx", 42)), ("_start;main;compute", 11, labels("nginx", 43)),
            ("_start;main;read", 6, labels("redis", 7)),
        ])
        let pa = try store.write(a), pb = try store.write(b)
        let loaded = try store.load()
        XCTAssertEqual(loaded.windows.map(\.path), [pa, pb])
        let merged = scratch + "/merged.pb.gz"
        try Data(try Pprof.encode(loaded.profile)).write(to: URL(fileURLWithPath: merged))
        // The tables without the legend (file names, times) that must differ.
        func tail(_ text: String) -> String {
            text.components(separatedBy: "\n").drop { !$0.hasPrefix("Showing nodes") }.joined(separator: "\n")
        }
        func body(_ text: String) -> String {
            text.components(separatedBy: "\n").filter { l in !["File:", "Type:", "Time:", "Duration:"].contains { l.hasPrefix($0) } }
                .joined(separator: "\n")
        }
        for index in ["samples", "cpu"] {
            let args = ["-top", "-nodecount=100", "-symbolize=none", "-sample_index=\(index)"]
            let theirs = try goPprof(args + [pa, pb]), ours = try goPprof(args + [merged])
            XCTAssertFalse(tail(ours).isEmpty, ours)
            XCTAssertEqual(tail(ours), tail(theirs), "go tool pprof -top of our merge vs its own, \(index)")
        }
        let top = try goPprof(["-top", "-symbolize=none", "-sample_index=samples", merged])
        XCTAssertTrue(top.contains("Showing nodes accounting for 31, 100% of 31 total"), top)
        let tags = body(try goPprof(["-tags", "-symbolize=none", merged]))
        XCTAssertTrue(tags.contains("nginx") && tags.contains("redis"), tags)
        XCTAssertEqual(tags, body(try goPprof(["-tags", "-symbolize=none", pa, pb])))
    }

    // MARK: - Writing and listing

    func testWindowsAreNamedByTimeAndListedByRange() throws {
        let store = try ProfileStore(directory: scratch + "/a/b/store")   // parents created
        var paths: [String] = []
        for i in 0..<4 {
            paths.append(try store.write(window(start: Self.t0 + Int64(i) * 10_000_000_000, [("main;loop", 1, labels("x", 1, host: "web-1.example"))])))
        }
        XCTAssertEqual(paths[0], store.directory + "/2026-11-22/1795341600000000000-1795341610000000000-web-1.example.pb.gz")
        // A window crossing midnight is in its start's day, and found from the next day.
        let lastOfDay = Self.t0 + 14 * 3_600_000_000_000 - 5_000_000_000   // 23:59:55
        let crossing = try store.write(window(start: lastOfDay, [("main;loop", 1, [])]), host: "db/2 x")
        XCTAssertEqual(crossing, store.directory + "/2026-11-22/1795391995000000000-1795392005000000000-db_2_x.pb.gz")

        func date(_ n: Int64) -> Date { Date(timeIntervalSince1970: Double(n) / 1e9) }
        XCTAssertEqual(try store.windows().map(\.path), paths + [crossing])
        // Overlap with [since, until): the 2nd and 3rd windows.
        let some = try store.windows(since: date(Self.t0 + 12_000_000_000), until: date(Self.t0 + 30_000_000_000))
        XCTAssertEqual(some.map(\.path), [paths[1], paths[2]])
        XCTAssertEqual(some.first?.startNanos, Self.t0 + 10_000_000_000)
        XCTAssertEqual(some.first?.host, "web-1.example")
        let nextDay = try store.windows(since: date(Self.t0 + 14 * 3_600_000_000_000))
        XCTAssertEqual(nextDay.map(\.path), [crossing])
        XCTAssertEqual(try store.windows(since: date(Self.t0 + 15 * 3_600_000_000_000)), [])

        // The same window again is refused, not overwritten; bad windows say why.
        XCTAssertThrowsError(try store.write(window(start: Self.t0, [("main;loop", 1, labels("x", 1, host: "web-1.example"))]))) { e in
            XCTAssertEqual(e as? StoreError, .windowExists(path: paths[0]))
        }
        XCTAssertThrowsError(try store.write(Profile())) { e in
            XCTAssertTrue("\(e)".contains("no start time"), "\(e)")
        }
        XCTAssertThrowsError(try store.write(window(start: Self.t0, seconds: 2 * 86_400, []))) { e in
            XCTAssertTrue("\(e)".contains("one day"), "\(e)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: store.directory + "/2026-11-22").filter { $0.hasPrefix(".") }, [],
                       "no temporary file left behind")
    }

    /// Day names against Foundation's calendar, leap days and centuries included.
    func testDayNamesMatchTheGregorianCalendar() {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withFullDate]
        var rng = SplitMix64(seed: 9)
        var seconds: [Int64] = [0, 951_782_400, 951_868_799, 1_709_251_199, 1_709_251_200, 4_107_542_400, 1_795_341_600]
        for _ in 0..<2000 { seconds.append(Int64(rng.next() % 8_000_000_000)) }
        for s in seconds {
            let day = WindowName.day(ofNanos: s * 1_000_000_000)
            let name = WindowName.dayName(day)
            XCTAssertEqual(name, f.string(from: Date(timeIntervalSince1970: Double(s))), "\(s)")
            XCTAssertEqual(WindowName.day(ofName: name), day)
        }
        XCTAssertNil(WindowName.day(ofName: "2026-02-30"))
        XCTAssertNil(WindowName.day(ofName: "notes.txt"))
        XCTAssertNil(WindowName.parse(".1795341600000000000-1795341610000000000-h.pb.gz"))
        XCTAssertNil(WindowName.parse("1795341610000000000-1795341600000000000-h.pb.gz"), "end before start")
        XCTAssertEqual(WindowName.parseTemporary(".1795341600000000000-1795341610000000000-h.pb.gz.tmp-12-ab")?.start, 1_795_341_600_000_000_000)
    }

    // MARK: - Damaged files

    /// kill -9 in the middle of a write, or a damaged file: the report goes
    /// on with the other windows, and names what it left out.
    func testTruncatedWindowAndStrayTemporaryFileAreSkippedAndNamed() throws {
        let store = try ProfileStore(directory: scratch + "/store")
        let good1 = try store.write(window(start: Self.t0, [("main;serve;parse", 5, labels("nginx", 42))]))
        let bad = try store.write(window(start: Self.t0 + 10_000_000_000, [("main;serve;write", 7, labels("nginx", 42))]))
        let good2 = try store.write(window(start: Self.t0 + 20_000_000_000, [("main;loop", 4, labels("redis", 7))]))
        let size = try FileManager.default.attributesOfItem(atPath: bad)[.size] as! Int
        XCTAssertEqual(truncate(bad, off_t(size / 2)), 0)
        let day = (bad as NSString).deletingLastPathComponent
        let stray = day + "/.1795341630000000000-1795341640000000000-web1.pb.gz.tmp-4242-dead"
        try Data([0x1f, 0x8b, 0x08]).write(to: URL(fileURLWithPath: stray))
        try Data("not a window".utf8).write(to: URL(fileURLWithPath: day + "/README"))
        // A name with no content (a crash on a file system that kept the rename, not the data).
        let empty = day + "/1795341650000000000-1795341660000000000-web1.pb.gz"
        try Data().write(to: URL(fileURLWithPath: empty))

        let loaded = try store.load()
        XCTAssertEqual(loaded.windows.map(\.path), [good1, good2])
        XCTAssertEqual(folded(loaded.profile), ["nginx;main;serve;parse": 5, "redis;main;loop": 4])
        XCTAssertEqual(Set(loaded.skipped.map(\.path)), [bad, stray, empty], "\(loaded.skipped)")
        XCTAssertTrue(loaded.skipped.first(where: { $0.path == empty })?.reason.contains("empty") == true)
        let badReason = loaded.skipped.first { $0.path == bad }?.reason ?? ""
        XCTAssertTrue(badReason.contains("truncated"), badReason)
        XCTAssertTrue(loaded.skipped.first(where: { $0.path == stray })?.reason.contains("temporary file") == true)
        XCTAssertFalse(badReason.hasPrefix("/"), "the reason does not repeat the path: \(badReason)")
    }

    // MARK: - Label filters and times

    func testWhereFiltersByStringAndNumberLabels() throws {
        let store = try ProfileStore(directory: scratch + "/store")
        try store.write(window(start: Self.t0, [
            ("main;serve;parse", 5, labels("nginx", 42) + [.init(key: "container_id", string: "3f2a9c")]),
            ("main;serve;write", 2, labels("nginx", 43)),
            ("main;loop", 4, labels("redis", 42)),
        ]))
        func sum(_ filters: [String]) throws -> [String: Int64] {
            folded(try store.load(where: filters.map { try LabelMatch(parsing: $0) }).profile)
        }
        XCTAssertEqual(try sum(["comm=nginx"]), ["nginx;main;serve;parse": 5, "nginx;main;serve;write": 2])
        XCTAssertEqual(try sum(["pid=42"]), ["nginx;main;serve;parse": 5, "redis;main;loop": 4])
        XCTAssertEqual(try sum(["comm=nginx", "pid=42"]), ["nginx;main;serve;parse": 5], "different keys: all must hold")
        XCTAssertEqual(try sum(["comm=nginx", "comm=redis", "pid=42"]), ["nginx;main;serve;parse": 5, "redis;main;loop": 4],
                       "a repeated key: alternatives, as sprof query reads it")
        XCTAssertEqual(try sum(["pid=43", "pid=42", "comm=redis"]), ["redis;main;loop": 4])
        XCTAssertEqual(try sum(["container_id=3f2a9c"]), ["nginx;main;serve;parse": 5])
        XCTAssertEqual(try sum(["comm=nobody"]), [:])
        for bad in ["comm", "=nginx", "comm="] {
            XCTAssertThrowsError(try LabelMatch(parsing: bad)) { e in XCTAssertTrue("\(e)".contains("expected key=value"), "\(e)") }
        }
        XCTAssertEqual(try LabelMatch(parsing: "systemd_unit=a=b.service").value, "a=b.service")
    }

    func testTimesAndDurations() throws {
        let now = Date(timeIntervalSince1970: 1_795_341_600)
        XCTAssertEqual(try StoreTime.duration("30s"), 30)
        XCTAssertEqual(try StoreTime.duration("10m"), 600)
        XCTAssertEqual(try StoreTime.duration("2h"), 7200)
        XCTAssertEqual(try StoreTime.duration("1d"), 86_400)
        XCTAssertEqual(try StoreTime.parse("10m", now: now), now.addingTimeInterval(-600))
        XCTAssertEqual(try StoreTime.parse("2026-11-22T10:00:00Z", now: .distantPast), now)
        XCTAssertEqual(try StoreTime.parse("2026-11-22t11:00:00.5+01:00", now: .distantPast), now.addingTimeInterval(0.5))
        XCTAssertEqual(try StoreTime.parse("2026-11-22 10:00:00Z", now: .distantPast), now)
        XCTAssertEqual(try StoreTime.parse("1795341600", now: .distantPast), now)
        XCTAssertEqual(try StoreTime.parse("1795341600.25", now: .distantPast), now.addingTimeInterval(0.25))
        // As `sprof query` takes them too.
        XCTAssertEqual(try StoreTime.parse("@1795341600", now: .distantPast), now)
        XCTAssertEqual(try StoreTime.parse("now", now: now), now)
        XCTAssertEqual(StoreTime.format(now), "2026-11-22T10:00:00Z")
        for bad in ["10x", "5min", "m", "-5m", "1.5h", "yesterday", "", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                    "2026-11-22T10:00:00", "99999999999d", "@10m", "@"] {
            XCTAssertThrowsError(try StoreTime.parse(bad, now: now), bad) { e in
                guard case StoreError.badTime(let why) = e else { return XCTFail("\(bad): \(e)") }
                XCTAssertTrue(why.contains("30s, 10m, 2h, 1d"), why)
                if ["10x", "5min"].contains(bad) { XCTAssertTrue(why.hasPrefix("\(bad): not a duration"), why) }
            }
        }
    }

    // MARK: - Retention

    func testRetentionByAgeAndBySize() throws {
        let store = try ProfileStore(directory: scratch + "/store")
        let now = Date(timeIntervalSince1970: 1_795_341_600)
        func at(_ secondsAgo: Int64) -> Int64 { (1_795_341_600 - secondsAgo) * 1_000_000_000 }
        let ages: [Int64] = [3 * 86_400, 2 * 86_400, 86_400, 3600, 60]
        var paths: [String] = []
        for age in ages { paths.append(try store.write(window(start: at(age), [("main;loop", age, labels("x", 1))]))) }
        // Temporary files: one left by a crash an hour ago, one being written now.
        let today = (paths[4] as NSString).deletingLastPathComponent
        let stale = today + "/.1795337000000000000-1795337010000000000-web1.pb.gz.tmp-1-a"
        let live = today + "/.1795341590000000000-1795341600000000000-web1.pb.gz.tmp-2-b"
        try Data(count: 100).write(to: URL(fileURLWithPath: stale))
        try Data(count: 100).write(to: URL(fileURLWithPath: live))
        try FileManager.default.setAttributes([.modificationDate: now.addingTimeInterval(-3600)], ofItemAtPath: stale)
        try FileManager.default.setAttributes([.modificationDate: now], ofItemAtPath: live)
        func size(_ p: String) throws -> Int { try FileManager.default.attributesOfItem(atPath: p)[.size] as! Int }
        let sizes = try paths.map(size)
        let all = sizes.reduce(0, +) + 200
        XCTAssertEqual(try store.totalBytes(), all)

        // By age: the windows that ended more than 36 h ago, and the stale temporary file.
        let byAge = try store.enforceRetention(maxAge: 36 * 3600, now: now)
        XCTAssertEqual(byAge.removedWindows, 2)
        XCTAssertEqual(byAge.removedTemporaryFiles, 1)
        XCTAssertEqual(byAge.freedBytes, sizes[0] + sizes[1] + 100)
        XCTAssertEqual(try store.totalBytes(), all - byAge.freedBytes)
        XCTAssertEqual(try store.windows().map(\.path), Array(paths[2...]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        XCTAssertTrue(FileManager.default.fileExists(atPath: live), "a temporary file being written is left alone")
        XCTAssertFalse(FileManager.default.fileExists(atPath: (paths[0] as NSString).deletingLastPathComponent),
                       "an emptied day directory is removed")
        XCTAssertEqual(byAge.remainingBytes, try store.totalBytes())

        // By size: oldest first until the files fit.
        let limit = sizes[3] + sizes[4] + 100
        let bySize = try store.enforceRetention(maxBytes: limit, now: now)
        XCTAssertEqual(bySize.removedWindows, 1)
        XCTAssertEqual(try store.windows().map(\.path), [paths[3], paths[4]])
        XCTAssertEqual(try store.totalBytes(), limit)
        XCTAssertLessThanOrEqual(bySize.remainingBytes, limit)
        // Nothing more to do: nothing removed.
        XCTAssertEqual(try store.enforceRetention(maxAge: 36 * 3600, maxBytes: limit, now: now).removedWindows, 0)
    }

    // MARK: - Atomicity

    /// One thread writes windows while another lists and decodes everything
    /// listed: a `.pb.gz` is never seen half-written.
    func testReadersNeverSeeAHalfWrittenWindow() throws {
        let store = try ProfileStore(directory: scratch + "/store")
        // Large windows (~1,500 distinct stacks), so a write takes long enough to be caught in the middle.
        var stacks: [(String, Int64, [Label])] = []
        for i in 0..<1500 {
            let names = Self.functionNames
            stacks.append(("\(names[i % 8]);\(names[(i / 8) % 8]);\(names[(i / 64) % 8])", Int64(i + 1), labels("p\(i)", Int64(i))))
        }
        let template = window(start: Self.t0, stacks)
        let count = 60
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var done = false
            var writeError: String?
        }
        let shared = Shared()
        let t0 = Self.t0
        let writer = Thread {
            for i in 0..<count {
                var w = template
                w.timeNanos = t0 + Int64(i) * 10_000_000_000
                do { try store.write(w) } catch { shared.lock.withLock { shared.writeError = "\(error)" }; break }
            }
            shared.lock.withLock { shared.done = true }
        }
        writer.start()
        var concurrentRounds = 0, decoded = 0
        while true {
            let finished = shared.lock.withLock { shared.done }
            if try store.windows().isEmpty {   // before the first write (none is ever removed here)
                if finished { break } else { continue }
            }
            let loaded = try store.load()
            for s in loaded.skipped {
                XCTAssertTrue(s.reason.contains("temporary file"), "a listed window failed to decode: \(s)")
            }
            decoded += loaded.windows.count
            if !finished && loaded.windows.count < count { concurrentRounds += 1 }
            if finished { break }
        }
        XCTAssertNil(shared.writeError)
        XCTAssertEqual(try store.windows().count, count)
        XCTAssertGreaterThan(concurrentRounds, 0, "the reader read while the writer wrote")
        let last = try store.load()
        XCTAssertEqual(last.skipped, [])
        XCTAssertEqual(folded(last.profile).values.reduce(0, +), Int64(count) * (1...1500).reduce(0, +))
        XCTAssertGreaterThan(decoded, count)
    }

    // MARK: - A full disk

    /// ENOSPC on a 64 KiB tmpfs: a clear error naming the directory, no
    /// partial file, and the next write after space returns succeeds.
    func testFullDiskIsAClearErrorAndRecovers() throws {
        guard geteuid() == 0 else { throw skipOrFailInCI("mounting a small tmpfs to fill needs root") }
        let dir = scratch + "/small"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // mode=700: a tmpfs root is 1777 otherwise, which the store refuses (SafeFile: not writable by others).
        let mount = try runTool("/bin/mount", ["-t", "tmpfs", "-o", "size=64k,mode=700", "tmpfs", dir])
        guard mount.status == 0 else { throw skipOrFailInCI("mount -t tmpfs -o size=64k tmpfs \(dir) failed: \(mount.output)") }
        mounted = dir
        let store = try ProfileStore(directory: dir)
        // Windows of ~20 KB that gzip cannot shrink much: function names of random letters.
        var rng = SplitMix64(seed: 64)
        func bigWindow(_ i: Int64) -> Profile {
            var b = ProfileBuilder(sampleTypes: Self.types)
            b.setTime(startNanos: Self.t0 + i * 10_000_000_000, durationNanos: 10_000_000_000)
            let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
            for _ in 0..<400 {
                let name = String((0..<60).map { _ in letters[Int(rng.next() % UInt64(letters.count))] })
                let f = b.function(name: name, systemName: name, file: "")
                let l = b.location(mappingID: 0, address: rng.next() >> 16, lines: [.init(functionID: f, line: 0)])
                b.addSample(locationIDs: [l], values: [1, Self.period], labels: labels("x", 1))
            }
            return b.profile
        }
        var written: [String] = []
        var failure: StoreError?
        for i in 0..<10 {
            do { written.append(try store.write(bigWindow(Int64(i)))) } catch {
                failure = error
                break
            }
        }
        XCTAssertGreaterThan(written.count, 0, "the first window fits in 64 KiB")
        guard let failure else { return XCTFail("10 windows of ~20 KB fit in a 64 KiB tmpfs?") }
        guard case .diskFull(let d, let bytes) = failure else { return XCTFail("\(failure)") }
        XCTAssertEqual(d, dir)
        XCTAssertGreaterThan(bytes, 10_000)
        XCTAssertTrue("\(failure)".contains(dir) && "\(failure)".contains("no space left"), "\(failure)")
        // Nothing partial: only whole windows, no temporary file.
        let files = try FileManager.default.subpathsOfDirectory(atPath: dir)
        XCTAssertEqual(files.filter { $0.contains(".tmp-") }, [], "\(files)")
        let loaded = try store.load()
        XCTAssertEqual(loaded.windows.map(\.path), written)
        XCTAssertEqual(loaded.skipped, [])
        // Space returns (retention removes the oldest): the next write works.
        let freed = try store.enforceRetention(maxBytes: try store.totalBytes() - 1)
        XCTAssertGreaterThan(freed.removedWindows, 0)
        let again = try store.write(bigWindow(100))
        XCTAssertEqual(try Pprof.read(path: again).samples.count, 400)
    }

    // MARK: - Opening

    func testOpeningAndDefaultDirectory() throws {
        XCTAssertThrowsError(try ProfileStore(directory: scratch + "/missing", create: false)) { e in
            XCTAssertEqual(e as? StoreError, .missingDirectory(scratch + "/missing"))
            XCTAssertTrue("\(e)".contains("no such store directory"), "\(e)")
        }
        try Data().write(to: URL(fileURLWithPath: scratch + "/file"))
        XCTAssertThrowsError(try ProfileStore(directory: scratch + "/file")) { e in
            XCTAssertEqual(e as? StoreError, .notADirectory(scratch + "/file"))
        }
        XCTAssertThrowsError(try ProfileStore(directory: scratch + "/file/store")) { e in
            XCTAssertEqual(e as? StoreError, .notADirectory(scratch + "/file"))
        }
        XCTAssertEqual(try ProfileStore(directory: scratch + "/s//").directory, scratch + "/s")
        let empty = try ProfileStore(directory: scratch + "/empty")
        XCTAssertThrowsError(try empty.load(since: Date(timeIntervalSince1970: 1_795_341_600))) { e in
            XCTAssertEqual("\(e)", "no windows between 2026-11-22T10:00:00Z and the end in \(scratch)/empty")
        }

        XCTAssertEqual(ProfileStore.defaultDirectory(environment: ["HOME": "/home/u"], effectiveUserID: 0), "/var/lib/sprof/store")
        XCTAssertEqual(ProfileStore.defaultDirectory(environment: ["HOME": "/home/u", "XDG_STATE_HOME": "/st"], effectiveUserID: 1000),
                       "/st/sprof/store")
        XCTAssertEqual(ProfileStore.defaultDirectory(environment: ["HOME": "/home/u", "XDG_STATE_HOME": "rel"], effectiveUserID: 1000),
                       "/home/u/.local/state/sprof/store", "a relative XDG_STATE_HOME is ignored (XDG Base Directory spec)")
        XCTAssertEqual(ProfileStore.defaultDirectory(environment: ["HOME": "/home/u"], effectiveUserID: 1000), "/home/u/.local/state/sprof/store")
    }

    // MARK: - sprof report --store

    /// The built `sprof` binary merges a range of windows and prints the usual outputs.
    func testReportStoreEndToEnd() throws {
        let sprof = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
        guard FileManager.default.isExecutableFile(atPath: sprof) else {
            throw skipOrFailInCI("no sprof binary at \(sprof) (swift build builds it)")
        }
        let store = try ProfileStore(directory: scratch + "/store")
        let now = Int64(Date().timeIntervalSince1970) * 1_000_000_000
        let minute: Int64 = 60_000_000_000
        try store.write(window(start: now - 20 * minute, [("main;serve;parse", 5, labels("nginx", 42))]))
        try store.write(window(start: now - 8 * minute, [("main;serve;parse", 3, labels("nginx", 42)), ("main;loop", 4, labels("redis", 7))]))
        try store.write(window(start: now - 3 * minute, [("main;serve;write", 2, labels("nginx", 43))]))
        let damaged = try store.write(window(start: now - 2 * minute, [("main;read", 50, labels("nginx", 42))]))
        XCTAssertEqual(truncate(damaged, 20), 0)
        let d = store.directory

        var r = try runTool(sprof, ["report", "--store", d, "--since", "10m", "--folded"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.stdout, "nginx;main;serve;parse 3\nnginx;main;serve;write 2\nredis;main;loop 4\n")
        XCTAssertTrue(r.stderr.contains("skipped \(damaged)") && r.stderr.contains("truncated"), r.stderr)

        r = try runTool(sprof, ["report", "--store", d, "--since", "10m", "--where", "comm=nginx", "--where", "pid=42", "--folded"])
        XCTAssertEqual(r.stdout, "nginx;main;serve;parse 3\n", r.output)
        r = try runTool(sprof, ["report", "--store", d, "--since", "30m", "--until", "5m", "--folded"])
        XCTAssertEqual(r.stdout, "nginx;main;serve;parse 8\nredis;main;loop 4\n", r.output)
        r = try runTool(sprof, ["report", "--store", d, "--since", "30m", "--value", "cpu", "--top"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("parse"), r.stdout)
        let out = scratch + "/merged.pb.gz"
        r = try runTool(sprof, ["report", "--store", d, "--since", "1h", "--pprof", out])
        XCTAssertEqual(r.status, 0, r.output)
        let merged = try Pprof.read(path: out)
        XCTAssertEqual(merged.samples.map { $0.values[0] }.reduce(0, +), 14)
        XCTAssertEqual(merged.timeNanos, now - 20 * minute)
        let svg = scratch + "/store.svg"
        r = try runTool(sprof, ["report", "--store", d, "--flamegraph", svg])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(try String(contentsOfFile: svg, encoding: .utf8).contains("parse"))

        for (args, needle) in [
            (["--since", "10x"], "10x: not a duration"),
            (["--since", "1000d", "--until", "999d"], "no windows between"),
            (["--where", "comm"], "expected key=value"),
            (["--since", "10m", "--where", "comm=nobody"], "no samples match --where comm=nobody"),
        ] {
            r = try runTool(sprof, ["report", "--store", d] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
        r = try runTool(sprof, ["report", "--store", scratch + "/nope", "--top"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("\(scratch)/nope: no such store directory"), r.stderr)
        r = try runTool(sprof, ["report", "--since", "10m"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("add --store DIR"), r.stderr)
    }

    // MARK: - Helpers

    struct ToolRun {
        var status: Int32, stdout: String, stderr: String
        var output: String { stdout + stderr }
    }

    func runTool(_ path: String, _ args: [String], environment: [String: String]? = nil) throws -> ToolRun {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read stderr on another thread so a full pipe cannot stall the tool.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        p.waitUntilExit()
        return ToolRun(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: errBox.data, as: UTF8.self))
    }

    func goPprof(_ args: [String]) throws -> String {
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = env["HOME"] ?? NSTemporaryDirectory()
        env["PPROF_TMPDIR"] = scratch
        env["GOCACHE"] = NSTemporaryDirectory() + "sprof-gocache"
        let r = try runTool("/usr/bin/go", ["tool", "pprof"] + args, environment: env)
        XCTAssertEqual(r.status, 0, r.output)
        return r.stdout
    }
}
