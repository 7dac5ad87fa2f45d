import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import SprofAgent
import SprofProfile
import SprofStore

/// The agent's page over a real store: parameters checked and named, `where`
/// read as `sprof report --store --where`, damaged windows listed, an empty
/// range said plainly, process names escaped; then served by a real
/// HTTPEndpoint and driven in headless Chromium (the graph drawn from the
/// nginx windows only, a click zooms, no script errors, no injection).
final class AgentPageTests: XCTestCase {
    typealias Label = Profile.Label
    /// 19 Hz, the agent's default rate: one sample is 1e9 / 19 ns of CPU (as StoreTests).
    static let period: Int64 = 52_631_578
    /// A process name that runs script if the page forgot to escape it.
    static let evil = "<script>window.pwned=1</script>"

    var scratch = ""
    var store: ProfileStore!
    /// The instant the windows are placed before, and the page is asked at.
    var now = Date()
    /// The window that is cut short on disk.
    var damaged = ""

    override func setUpWithError() throws {
        scratch = NSTemporaryDirectory() + "sprof-page-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        store = try ProfileStore(directory: scratch)
        now = Date()
        try fill()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    // MARK: - The store

    /// Every function a stack may use; its address is fixed by its position,
    /// so a frame is the same location in every window (StoreTests' approach).
    static let functionNames = ["main", "ngx_worker_process_cycle", "ngx_http_process_request", "ngx_http_parse_request_line",
                                "ngx_http_send_response", "ngx_epoll_process_events", "ngx_old_config_reload", "ngx_corrupt_only",
                                "aeMain", "processCommand", "aeApiPoll", "evil_function"]

    /// A 10 s window starting `minutesAgo` before `now` (on a 10 s boundary, as
    /// the agent's are), from `(root;...;leaf, samples, comm, pid)`: values are
    /// the sample count and its CPU time (count × period).
    func window(minutesAgo: Int, _ samples: [(String, Int64, String, Int64)]) -> Profile {
        var b = ProfileBuilder(sampleTypes: [.init("samples", "count"), .init("cpu", "nanoseconds")])
        b.setPeriod(.init("cpu", "nanoseconds"), Self.period)
        let start = (Int64(now.timeIntervalSince1970) - Int64(minutesAgo) * 60) / 10 * 10
        b.setTime(startNanos: start * 1_000_000_000, durationNanos: 10_000_000_000)
        let mapping = b.mapping(start: 0x400000, limit: 0x500000, fileOffset: 0, file: "/usr/bin/app", buildID: "abcd")
        var locations: [String: UInt64] = [:]
        for (i, name) in Self.functionNames.enumerated() {
            let f = b.function(name: name, systemName: name, file: "app.c")
            locations[name] = b.location(mappingID: mapping, address: 0x401000 + 0x10 * UInt64(i), lines: [.init(functionID: f, line: 7)])
        }
        for (stack, count, comm, pid) in samples {
            let ids = stack.split(separator: ";").reversed().map { locations[String($0)]! }
            b.addSample(locationIDs: ids, values: [count, count * Self.period],
                        labels: [.init(key: "host", string: "web1"), .init(key: "comm", string: comm), .init(key: "pid", number: pid)])
        }
        return b.profile
    }

    /// Three hours of a host: an old nginx window (outside `since=1h`), two
    /// recent ones shared with redis, a damaged one, and a process with a
    /// hostile name.
    func fill() throws {
        let worker = "main;ngx_worker_process_cycle"
        try store.write(window(minutesAgo: 180, [("\(worker);ngx_old_config_reload", 3, "nginx", 42)]))
        try store.write(window(minutesAgo: 30, [
            ("\(worker);ngx_http_process_request;ngx_http_parse_request_line", 5, "nginx", 42),
            ("\(worker);ngx_epoll_process_events", 3, "nginx", 42),
            ("main;aeMain;processCommand", 7, "redis-server", 7),
        ]))
        try store.write(window(minutesAgo: 20, [
            ("\(worker);ngx_http_process_request;ngx_http_send_response", 4, "nginx", 43),
            ("main;aeMain;aeApiPoll", 2, "redis-server", 7),
        ]))
        damaged = try store.write(window(minutesAgo: 10, [("\(worker);ngx_corrupt_only", 9, "nginx", 42)]))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: damaged))
        try handle.truncate(atOffset: 20)   // the gzip header and a little: cut short, as by a crash
        try handle.close()
        try store.write(window(minutesAgo: 5, [("main;evil_function", 1, Self.evil, 66)]))
    }

    func get(_ path: String, _ query: [String: String] = [:]) throws -> (status: Int, type: String, text: String) {
        let page = AgentPage(store: store, host: "web1")
        let r = try XCTUnwrap(page.handle(.init(method: "GET", path: path, query: query), now: now), "\(path) is the page's")
        return (r.status, r.contentType, String(decoding: r.body, as: UTF8.self))
    }

    /// Folded lines to counts.
    func folded(_ query: [String: String]) throws -> [String: Int64] {
        let r = try get("/folded", query)
        XCTAssertEqual(r.status, 200, r.text)
        var out: [String: Int64] = [:]
        for line in r.text.split(separator: "\n") {
            let cut = try XCTUnwrap(line.lastIndex(of: " "))
            out[String(line[..<cut])] = Int64(line[line.index(after: cut)...])
        }
        return out
    }

    // MARK: - Parameters

    func testOwnsItsPathsOnly() {
        let page = AgentPage(store: store, host: "web1")
        for path in ["/metrics", "/healthz", "/favicon.ico", "/index.html", "/folded/x"] {
            XCTAssertNil(page.handle(.init(method: "GET", path: path, query: [:])), path)
        }
        XCTAssertNotNil(page.handle(.init(method: "HEAD", path: "/", query: [:])))
    }

    func testBadParametersAre400NamingTheParameter() throws {
        let cases: [([String: String], String)] = [
            (["since": "10x"], "since: 10x: not a duration"),
            (["since": "yesterday"], "since: yesterday: not a time"),
            (["since": "1h", "until": "2026-13-01T00:00:00Z"], "until: 2026-13-01T00:00:00Z: not a time"),
            (["since": "1h", "until": "2h"], "until: 2h ("),
            (["since": "1h", "where": "nginx"], "where: nginx is not key=value"),
            (["since": "1h", "where": "comm=nginx, =42"], "where: =42 is not key=value"),
            (["since": "1h", "value": "offcpu"], "value: offcpu is not a value of these windows; they have samples, cpu"),
            (["since": "1h", "value": "bogus"], "value: bogus is not a value"),
        ]
        for (query, message) in cases {
            for path in ["/folded", "/flamegraph.svg"] {
                let r = try get(path, query)
                XCTAssertEqual(r.status, 400, "\(path) \(query)")
                XCTAssertTrue(r.type.hasPrefix("text/plain"), r.type)
                XCTAssertTrue(r.text.hasPrefix(message), "\(path) \(query): \(r.text)")
            }
            // The page says it in the page, with the form as it was filled in.
            let r = try get("/", query)
            XCTAssertEqual(r.status, 400, "\(query)")
            XCTAssertTrue(r.type.hasPrefix("text/html"), r.type)
            XCTAssertTrue(r.text.contains("<p id=\"error\">\(AgentPage.escape(message))"), "\(query): \(r.text)")
            XCTAssertTrue(r.text.contains("<form"), "the form, to fix it")
        }
    }

    func testTimesAreSprofReportsTimes() throws {
        // Relative, unix seconds, RFC 3339: the same windows.
        let base = try folded(["since": "1h"])
        let t = now.timeIntervalSince1970 - 3600
        XCTAssertEqual(try folded(["since": String(Int(t))]), base)
        XCTAssertEqual(try folded(["since": AgentPage.seconds(Date(timeIntervalSince1970: t))]), base)
        XCTAssertEqual(try folded(["since": StoreTime.format(Date(timeIntervalSince1970: t.rounded(.down)))]), base)
        // The old window is 3 hours back; no since at all is the last 10 minutes.
        XCTAssertEqual(try folded(["since": "4h"])["nginx;main;ngx_worker_process_cycle;ngx_old_config_reload"], 3)
        XCTAssertNil(base["nginx;main;ngx_worker_process_cycle;ngx_old_config_reload"])
        XCTAssertEqual(Set(try folded([:]).keys), ["\(Self.evil);main;evil_function"], "the default is since=10m")
        XCTAssertEqual(Set(try folded(["since": "1h", "until": "25m"]).keys),
                       ["nginx;main;ngx_worker_process_cycle;ngx_http_process_request;ngx_http_parse_request_line",
                        "nginx;main;ngx_worker_process_cycle;ngx_epoll_process_events", "redis-server;main;aeMain;processCommand"])
    }

    func testWhereIsReportsWhere() throws {
        let nginx = try folded(["since": "1h", "where": "comm=nginx"])
        XCTAssertEqual(nginx, [
            "nginx;main;ngx_worker_process_cycle;ngx_http_process_request;ngx_http_parse_request_line": 5,
            "nginx;main;ngx_worker_process_cycle;ngx_http_process_request;ngx_http_send_response": 4,
            "nginx;main;ngx_worker_process_cycle;ngx_epoll_process_events": 3,
        ])
        // A repeated key is either; different keys must all hold; commas or spaces separate.
        let both = try folded(["since": "1h", "where": "comm=nginx,comm=redis-server"])
        XCTAssertEqual(both.values.reduce(0, +), 12 + 9)
        XCTAssertEqual(try folded(["since": "1h", "where": " comm=nginx  comm=redis-server "]), both)
        XCTAssertEqual(try folded(["since": "1h", "where": "comm=nginx pid=43"]),
                       ["nginx;main;ngx_worker_process_cycle;ngx_http_process_request;ngx_http_send_response": 4])
        XCTAssertEqual(try folded(["since": "1h", "where": "pid=7"]).values.reduce(0, +), 9, "numbers match number labels")
        XCTAssertEqual(try folded(["since": "1h", "where": "comm=nginx pid=7"]), [:])
        XCTAssertEqual(try folded(["since": "1h", "where": "comm=nginx", "value": "cpu"]).values.reduce(0, +), 12 * Self.period)
        // A value with a space (Firefox's "Web Content") is one filter, not two.
        XCTAssertEqual(try AgentPage.filters("comm=Web Content, pid=3").map(\.description), ["comm=Web Content", "pid=3"])
        XCTAssertEqual(try AgentPage.filters(" , ").count, 0)
    }

    // MARK: - The page

    func testPageShowsWhatWasMergedAndWhatWasSkipped() throws {
        let r = try get("/", ["since": "1h", "where": "comm=nginx"])
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertTrue(r.type.hasPrefix("text/html"), r.type)
        // 30, 20 and 5 minutes ago (the last has no nginx samples, but was read); the 10 minute one is damaged.
        XCTAssertTrue(r.text.contains("<span id=\"windows\">3</span> windows merged"), r.text)
        XCTAssertTrue(r.text.contains("<span id=\"samples\">12</span> samples"), r.text)
        XCTAssertTrue(r.text.contains("<span id=\"skipped-count\">1</span> file skipped"), r.text)
        XCTAssertTrue(r.text.contains("<li><code>\(AgentPage.escape(damaged))</code>: "), "the damaged window is named: \(r.text)")
        func time(_ minutesAgo: Int) -> String {
            StoreTime.format(Date(timeIntervalSince1970: Double((Int64(now.timeIntervalSince1970) - Int64(minutesAgo) * 60) / 10 * 10)))
        }
        XCTAssertTrue(r.text.contains("<span id=\"covered\">\(time(30)) – \(StoreTime.format(Date(timeIntervalSince1970: Double((Int64(now.timeIntervalSince1970) - 300) / 10 * 10 + 10))))</span>"), r.text)
        // The graph is of the instants the page resolved, not "1h" read again later.
        let since = AgentPage.seconds(Date(timeIntervalSince1970: ((now.timeIntervalSince1970 - 3600) * 1000).rounded(.down) / 1000))
        let until = AgentPage.seconds(now)
        let q = "since=\(since)&amp;until=\(until)&amp;where=comm%3Dnginx&amp;value=samples"
        XCTAssertTrue(r.text.contains("<iframe id=\"flamegraph\" title=\"flame graph\" src=\"/flamegraph.svg?\(q)\""), r.text)
        XCTAssertTrue(r.text.contains("<a href=\"/folded?\(q)\">"), r.text)
        // The form keeps what was typed; the value list is the windows' values.
        XCTAssertTrue(r.text.contains("<input name=\"since\" value=\"1h\""), r.text)
        XCTAssertTrue(r.text.contains("<input name=\"where\" value=\"comm=nginx\""), r.text)
        XCTAssertTrue(r.text.contains("<option value=\"samples\" selected>samples</option><option value=\"cpu\">cpu</option></select>"), r.text)
        // Processes: nginx only, a link that keeps the range.
        XCTAssertTrue(r.text.contains("<a href=\"/?since=1h&amp;where=comm%3Dnginx\">nginx</a></td><td class=\"n\">12</td><td class=\"n\">100.0%</td>"), r.text)
        XCTAssertFalse(r.text.contains("redis"), r.text)
        XCTAssertTrue(r.text.contains("<link rel=\"icon\" href=\"data:,\">"))
        XCTAssertFalse(r.text.contains("http://") || r.text.contains("https://"), "no external assets")

        // The CPU time of every process, its share, and the filter links that keep other keys.
        let cpu = try get("/", ["since": "1h", "value": "cpu", "where": "pid=42 pid=7 pid=43"])
        XCTAssertTrue(cpu.text.contains("<option value=\"cpu\" selected>"), cpu.text)
        XCTAssertTrue(cpu.text.contains("cpu \(AgentPage.amount(21 * Self.period, unit: "nanoseconds"))"), cpu.text)
        XCTAssertEqual(AgentPage.amount(21 * Self.period, unit: "nanoseconds"), "1.11 s")
        XCTAssertTrue(cpu.text.contains(">nginx</a></td><td class=\"n\">631.6 ms</td><td class=\"n\">57.1%</td>"), cpu.text)
        XCTAssertTrue(cpu.text.contains("<a href=\"/?since=1h&amp;where=pid%3D42%20pid%3D7%20pid%3D43%20comm%3Dredis-server&amp;value=cpu\">redis-server</a>"), cpu.text)
    }

    func testNothingInRangeIsAMessageNotAnError() throws {
        for (query, message) in [
            (["since": "2h", "until": "90m"], ": the store has no windows in that range"),
            (["since": "1h", "where": "comm=nope"], " matching where comm=nope (3 windows merged)"),
            (["since": "12m", "until": "8m"], ": none of the 1 files in that range could be read"),
        ] {
            let r = try get("/", query)
            XCTAssertEqual(r.status, 200, "\(query): \(r.text)")
            XCTAssertTrue(r.text.contains("<p id=\"message\">no samples between "), "\(query): \(r.text)")
            XCTAssertTrue(r.text.contains(AgentPage.escape(message) + "</p>"), "\(query): \(r.text)")
            XCTAssertFalse(r.text.contains("<iframe"), "no graph of nothing")
            let svg = try get("/flamegraph.svg", query)
            XCTAssertEqual(svg.status, 404)
            XCTAssertTrue(svg.text.hasPrefix("no samples between "), svg.text)
            XCTAssertEqual(try get("/folded", query).text, "", "an empty folded file")
        }
        let r = try get("/", ["since": "2h", "until": "90m"])
        let until = StoreTime.format(now.addingTimeInterval(-5400))
        XCTAssertTrue(r.text.contains("and \(until): the store"), r.text)
        // The damaged file is still listed when it is all there was.
        XCTAssertTrue(try get("/", ["since": "12m", "until": "8m"]).text.contains(AgentPage.escape(damaged)))
    }

    func testProcessNamesAndParametersAreEscaped() throws {
        let r = try get("/", ["since": "1h"])
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertTrue(r.text.contains(">&lt;script&gt;window.pwned=1&lt;/script&gt;</a>"), r.text)
        XCTAssertEqual(r.text.components(separatedBy: "<script").count - 1, 1, "the page's own script only")
        XCTAssertFalse(r.text.contains("pwned=1<"), r.text)
        // In the filter link, percent-encoded, then attribute-escaped.
        XCTAssertTrue(r.text.contains("where=comm%3D%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E"), r.text)
        // Typed into the form: echoed escaped, also when it is an error.
        let hostile = "comm=\"><script>alert(1)</script>"
        for query in [["since": "1h", "where": hostile], ["since": "\"><script>alert(1)</script>"]] {
            let e = try get("/", query)
            XCTAssertEqual(e.text.components(separatedBy: "<script").count - 1, 1, e.text)
            XCTAssertTrue(e.text.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"), e.text)
        }
        // The graph: the name is text in well-formed XML.
        let svg = try get("/flamegraph.svg", ["since": "1h", "where": "comm=\(Self.evil)"])
        XCTAssertEqual(svg.status, 200, svg.text)
        XCTAssertEqual(svg.type, "image/svg+xml; charset=utf-8")
        XCTAssertTrue(svg.text.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"))
        XCTAssertTrue(XMLParser(data: Data(svg.text.utf8)).parse(), "well-formed XML")
        XCTAssertEqual(AgentPage.escape("a&b<c>\"d'"), "a&amp;b&lt;c&gt;&quot;d&#39;")
    }

    // MARK: - Served, and in a browser

    func testServedOverHTTP() throws {
        let page = AgentPage(store: store, host: "web1")
        let endpoint = try HTTPEndpoint(port: 0) { page.handle($0) ?? .init(status: 404, text: "not found\n") }
        endpoint.start()
        defer { endpoint.stop() }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw skipOrFailInCI("curl not installed") }
        let base = "http://\(endpoint.address)"
        var (status, out) = try runTool(["/usr/bin/curl", "-sS", "--max-time", "5", base + "/folded?since=1h&where=comm%3Dnginx+pid%3D43"])
        XCTAssertEqual(status, 0, out)
        XCTAssertEqual(out, "nginx;main;ngx_worker_process_cycle;ngx_http_process_request;ngx_http_send_response 4\n")
        (status, out) = try runTool(["/usr/bin/curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", base + "/flamegraph.svg?since=10x"])
        XCTAssertEqual(out, "since: 10x: not a duration; durations are a whole number and s, m, h or d: 30s, 10m, 2h, 1d\n\n400")
        (status, out) = try runTool(["/usr/bin/curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", base + "/metrics"])
        XCTAssertEqual(out, "404", "not the page's")
    }

    func testInHeadlessChromium() throws {
        let chromium = ProcessInfo.processInfo.environment["CHROMIUM"] ?? "/usr/bin/chromium"
        let driver = ProcessInfo.processInfo.environment["CHROMEDRIVER"] ?? "/usr/bin/chromedriver"
        for (tool, path) in [("chromium", chromium), ("chromium-driver", driver)]
        where !FileManager.default.isExecutableFile(atPath: path) {
            throw skipOrFailInCI("\(tool) is not at \(path) (Debian: apt-get install chromium chromium-driver)")
        }
        if try runTool(["/usr/bin/env", "python3", "-c", "import selenium"]).0 != 0 {
            throw skipOrFailInCI("python3 cannot import selenium (pip install selenium)")
        }
        let page = AgentPage(store: store, host: "web1")
        let endpoint = try HTTPEndpoint(port: 0) { page.handle($0) ?? .init(status: 404, text: "not found\n") }
        endpoint.start()
        defer { endpoint.stop() }
        let script = scratch + "/page_browser.py", png = scratch + "/page.png"
        try Self.browserScript.write(toFile: script, atomically: true, encoding: .utf8)
        let base = "http://127.0.0.1:\(endpoint.port)"
        let (status, output) = try runTool(["/usr/bin/env", "CHROMIUM=\(chromium)", "CHROMEDRIVER=\(driver)", "python3", script,
                                            base + "/?since=1h&where=comm%3Dnginx", base + "/?since=1h",
                                            "ngx_http_process_request", png])
        if status == 77 { throw skipOrFailInCI("page_browser.py: \(output)") }
        XCTAssertEqual(status, 0, output)
        let json = try XCTUnwrap(output.split(separator: "\n").last { $0.hasPrefix("{") }, output)
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], output)
        let filtered = try XCTUnwrap(result["filtered"] as? [String: Any]), all = try XCTUnwrap(result["all"] as? [String: Any])

        // The page, as the browser laid it out.
        let summary = try XCTUnwrap(filtered["summary"] as? String)
        XCTAssertTrue(summary.hasPrefix("3 windows merged · covering "), summary)
        XCTAssertTrue(summary.contains(" · 12 samples · 1 file skipped"), summary)
        XCTAssertTrue((filtered["skipped"] as? String ?? "").contains(damaged), "\(filtered)")
        // The graph: the nginx windows' frames, no other process's, none from outside the range.
        let frames = Set(try XCTUnwrap(filtered["frames"] as? [String]))
        for name in ["all", "nginx", "main", "ngx_worker_process_cycle", "ngx_http_process_request", "ngx_http_parse_request_line",
                     "ngx_http_send_response", "ngx_epoll_process_events"] {
            XCTAssertTrue(frames.contains(name), "\(name) in \(frames.sorted())")
        }
        for name in ["redis-server", "aeMain", "processCommand", "aeApiPoll", "ngx_old_config_reload", "ngx_corrupt_only",
                     "evil_function", Self.evil] {
            XCTAssertFalse(frames.contains(name), "\(name) in \(frames.sorted())")
        }
        XCTAssertEqual(filtered["subtitleHasFilter"] as? Bool, true, "\(filtered)")
        // The frame was sized to the SVG: nothing cut off, no scroll bars.
        let frameSize = try XCTUnwrap(filtered["iframe"] as? [Double]), svgSize = try XCTUnwrap(filtered["svg"] as? [Double])
        XCTAssertEqual(frameSize, svgSize.map { $0.rounded(.up) }, "the iframe fits the graph")
        // A click zooms: the frame fills the width (1180 px inside the margins of 1200),
        // its sibling outside is hidden, Reset Zoom appears.
        let zoom = try XCTUnwrap(filtered["zoom"] as? [String: Any])
        let before = try XCTUnwrap(zoom["before"] as? Double), after = try XCTUnwrap(zoom["after"] as? Double)
        XCTAssertLessThan(before, 1170, "ngx_http_process_request is 9 of 12 samples wide before")
        XCTAssertEqual(after, 1180, accuracy: 0.02)
        XCTAssertEqual(zoom["x"] as? Double ?? 0, 10, accuracy: 0.02)
        XCTAssertEqual(zoom["outsideHidden"] as? Bool, true, "\(zoom)")
        XCTAssertEqual(zoom["unzoomShown"] as? Bool, true, "\(zoom)")
        XCTAssertEqual(filtered["errors"] as? [String], [], "script errors")

        // Every process: the hostile name is text, in the table and in the graph, and ran nothing.
        XCTAssertTrue((all["processes"] as? String ?? "").contains(Self.evil), "\(all)")
        XCTAssertTrue((all["frames"] as? [String] ?? []).contains(Self.evil), "\(all)")
        XCTAssertEqual(all["pwned"] as? Bool, false, "no script of a process name ran")
        XCTAssertEqual(all["errors"] as? [String], [], "script errors")
        let size = (try? FileManager.default.attributesOfItem(atPath: png)[.size] as? Int) ?? 0
        XCTAssertGreaterThan(size, 10_000, "a screenshot of a drawn page, not a blank one")
        if let keep = ProcessInfo.processInfo.environment["SPROF_KEEP_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: png, toPath: keep)
        }
    }

    /// Drives the page in headless Chromium and prints what it saw as JSON
    /// (the test judges it). Exit 77: something it needs is missing.
    ///
    ///     page_browser.py FILTERED_URL ALL_URL ZOOM_FRAME SCREENSHOT.png
    static let browserScript = #"""
        import json, os, shutil, sys
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import WebDriverWait
        except ImportError:
            print("selenium is not installed (pip install selenium)", file=sys.stderr)
            sys.exit(77)

        filtered_url, all_url, zoom, png = sys.argv[1:5]
        chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
        chromedriver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--window-size=1400,1000", "--force-device-scale-factor=1"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)

        # Uncaught errors of every document (the page and the graph's frame), from their first script on.
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
            window.__errors = [];
            window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
            window.addEventListener('unhandledrejection', function (e) { window.__errors.push(String(e.reason)); });
        """})

        def text(css):
            found = driver.find_elements(By.CSS_SELECTOR, css)
            return found[0].get_attribute("textContent") if found else None

        def visit(url, do_zoom):
            out = {}
            driver.get(url)
            WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
            out["summary"] = " ".join((text("#summary") or "").split())
            out["skipped"] = text("#skipped") or ""
            out["processes"] = text("#processes") or ""
            frame = driver.find_element(By.ID, "flamegraph")
            # The frame is resized by the page's script once the graph has loaded.
            WebDriverWait(driver, 10).until(lambda d: frame.get_attribute("height") != "600")
            out["iframe"] = [float(frame.get_attribute("width")), float(frame.get_attribute("height"))]
            errors = driver.execute_script("return window.__errors")
            out["pwned"] = driver.execute_script("return window.pwned !== undefined")
            driver.switch_to.frame(frame)
            # In the SVG document `frames` is the graph's list (in the page it is window.frames).
            WebDriverWait(driver, 10).until(lambda d: d.execute_script(
                "return Array.isArray(window.frames) && frames.length > 0"))
            out["svg"] = driver.execute_script(
                "var s = document.documentElement; return [+s.getAttribute('width'), +s.getAttribute('height')]")
            out["frames"] = driver.execute_script("return frames.map(function (f) { return f.name; })")
            out["subtitleHasFilter"] = "where comm=nginx" in (text("#subtitle") or "")
            out["pwned"] = out["pwned"] or driver.execute_script("return window.pwned !== undefined")
            if do_zoom:
                def attrs(name):
                    return driver.execute_script("""
                        var name = arguments[0], f = frames.filter(function (f) { return f.name === name; })[0];
                        return [+f.rect.getAttribute('x'), +f.rect.getAttribute('width'), f.g.getAttribute('class') || ''];
                        """, name)
                target = None
                for g in driver.find_elements(By.CSS_SELECTOR, "#frames > g"):
                    t = g.find_element(By.TAG_NAME, "title").get_attribute("textContent")
                    if t[: t.rindex(" (")] == zoom:
                        target = g.find_element(By.TAG_NAME, "rect")
                before = attrs(zoom)
                target.click()   # a real click, where the frame is drawn
                after = attrs(zoom)
                out["zoom"] = {"before": before[1], "after": after[1], "x": after[0],
                               "outsideHidden": "hide" in attrs("ngx_epoll_process_events")[2],
                               "unzoomShown": "hide" not in (driver.find_element(By.ID, "unzoom").get_attribute("class") or "")}
            errors += driver.execute_script("return window.__errors")
            driver.switch_to.default_content()
            # The console too: failed loads (a 404 asset) and errors before the hook.
            errors += [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            out["errors"] = errors
            return out

        try:
            result = {"filtered": visit(filtered_url, True)}
            driver.save_screenshot(png)
            result["all"] = visit(all_url, False)
            print(json.dumps(result))
        finally:
            driver.quit()
        """#
}
