import Foundation
import XCTest
@testable import SprofAgent
import SprofProfile
#if canImport(Glibc)
import Glibc
#endif

/// The Pyroscope push (`sprof agent --pyroscope URL`): the `/ingest`
/// request and the background pusher.
///
/// No Pyroscope server runs here (no network to fetch one, and none is
/// packaged for Debian), so the tests check the request against what the
/// server's own code does with it, using the same readers it uses:
/// - a tiny HTTP server on 127.0.0.1 (``PyroscopeTestServer``: a socket
///   accept loop on a thread, one connection at a time) captures each
///   request and answers with the statuses a test scripts;
/// - Go's standard library parses what was captured exactly as
///   grafana/pyroscope's ingest handler does (pkg/ingester/pyroscope/ingest_handler.go,
///   pkg/og/convert/pprof/profile.go, pkg/og/util/form/form.go):
///   `url.ParseQuery`, `mime.ParseMediaType` for the boundary,
///   `multipart.Reader.ReadForm` and the `profile` entry of the form's
///   FILES; a small program of ours, run with `go run`;
/// - the `profile` part goes to `go tool pprof -raw`, which must read it and
///   show our function names.
/// The label-set grammar is checked against the rules of
/// api/model/labelset/labelset.go as documented in Pyroscope.swift.
/// Without go (Debian: apt-get install golang-go) those tests skip, and fail
/// under CI=true.
final class PyroscopeTests: XCTestCase {
    var scratch = ""
    var servers: [PyroscopeTestServer] = []
    var pushers: [PyroscopePusher] = []

    override func setUpWithError() throws {
        scratch = NSTemporaryDirectory() + "sprof-pyro-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        for p in pushers { p.close(timeout: 0) }
        pushers = []
        for s in servers { s.stop() }
        servers = []
        if !scratch.isEmpty { try? FileManager.default.removeItem(atPath: scratch) }
    }

    func server(_ script: [PyroscopeTestServer.Answer] = [], holdFirst: Bool = false) throws -> PyroscopeTestServer {
        let s = try PyroscopeTestServer(script: script, holdFirst: holdFirst)
        servers.append(s)
        return s
    }

    /// Short timeouts: every test takes a few seconds at most.
    func config(_ url: String, app: String = "web.api") -> PyroscopePusher.Configuration {
        var c = PyroscopePusher.Configuration(url: url, appName: app, sampleRate: 99)
        c.requestTimeout = 2
        c.backoffBase = 0.05
        c.backoffCap = 0.2
        c.maxAttempts = 3
        return c
    }

    func pusher(_ c: PyroscopePusher.Configuration, log: Log = Log()) throws -> PyroscopePusher {
        let p = try PyroscopePusher(c, log: { log.add($0) })
        pushers.append(p)
        return p
    }

    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func add(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    }

    /// A window as the agent encodes one: CPU samples and nanoseconds, a
    /// kernel frame, an inlined one, sample labels.
    static func window(start: Int64) throws -> [UInt8] {
        var p = Profile(folded: [(["nginx", "main", "serve_request", "parse_header", "memchr_[i]"], 7),
                                 (["nginx", "main", "serve_request", "write", "ksys_write_[k]"], 3),
                                 (["redis", "main", "aeProcessEvents", "compute"], 5)])
        p.sampleTypes = [.init("samples", "count"), .init("cpu", "nanoseconds")]
        for i in p.samples.indices { p.samples[i].values.append(p.samples[i].values[0] * 10_101_010) }
        p.periodType = .init("cpu", "nanoseconds")
        p.period = 10_101_010
        p.timeNanos = start * 1_000_000_000
        p.durationNanos = 10_000_000_000
        return try Pprof.encode(p)
    }

    // MARK: - The request, without I/O

    func testRequestFormat() throws {
        let server = try PyroscopeServer(url: "http://127.0.0.1:4040/prefix/?keep=me&name=theirs")
        let pprof = try Self.window(start: 1_700_000_000)
        let r = try PyroscopeRequest(server: server, appName: "web.api",
                                     labels: ["host": "web-1", "env": " prod ", "region": "eu,west}1", "empty": "  ", "k8s.pod": "a=b{c"],
                                     from: Date(timeIntervalSince1970: 1_700_000_000.75), until: Date(timeIntervalSince1970: 1_700_000_010.2),
                                     sampleRate: 99, spyName: "ebpfspy", pprof: pprof, boundary: "BOUNDARY42")
        XCTAssertEqual(r.method, "POST")
        // Keys sorted; no escapes in the grammar: ',' and '}' rewritten, '=' and '{' kept, trimmed, empty dropped.
        XCTAssertEqual(r.name, "web.api{env=prod,host=web-1,k8s.pod=a=b{c,region=eu_west_1}")
        XCTAssertEqual(r.url.path, "/prefix/ingest")
        XCTAssertEqual(r.url.query, "keep=me&name=web.api%7Benv%3Dprod%2Chost%3Dweb-1%2Ck8s.pod%3Da%3Db%7Bc%2Cregion%3Deu_west_1%7D"
                       + "&from=1700000000&until=1700000010&spyName=ebpfspy&sampleRate=99")
        XCTAssertEqual(r.headers["Content-Type"], "multipart/form-data; boundary=BOUNDARY42")
        XCTAssertNil(r.headers["Authorization"])
        XCTAssertNil(r.headers["X-Scope-OrgID"])
        let head = "--BOUNDARY42\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n"
            + "Content-Type: application/octet-stream\r\n\r\n"
        XCTAssertEqual(r.body, Array(head.utf8) + pprof + Array("\r\n--BOUNDARY42--\r\n".utf8))

        // The public initializer picks a random boundary that the profile does not contain.
        let a = try PyroscopeRequest(server: server, appName: "a", labels: [:], from: Date(), until: Date(), sampleRate: 1, pprof: pprof)
        let b = try PyroscopeRequest(server: server, appName: "a", labels: [:], from: Date(), until: Date(), sampleRate: 1, pprof: pprof)
        XCTAssertNotEqual(a.boundary, b.boundary)
        XCTAssertTrue(a.boundary.count <= 70 && a.boundary.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }, a.boundary)
        XCTAssertEqual(a.name, "a{}")
        XCTAssertTrue(PyroscopeRequest.contains(a.body, Array("--\(a.boundary)--\r\n".utf8)))
    }

    func testRefusedNamesAndLabels() throws {
        func label(_ key: String, _ value: String = "v") -> AgentError? {
            do { _ = try PyroscopeRequest.labelSet(appName: "app", labels: [key: value]); return nil } catch { return error }
        }
        for key in ["__name__", "__session", "", "bad-name", "1st", "a b", "ünï", "a=b", "a,b", "a}"] {
            guard case .pyroscopeBadLabel(let name, _)? = label(key) else { XCTFail("label name \"\(key)\" accepted"); continue }
            XCTAssertEqual(name, key)
        }
        XCTAssertTrue("\(label("__name__")!)".contains("application name"), "\(label("__name__")!)")
        for key in ["a", "A_1", "_x", "service_name", "k8s.namespace"] { XCTAssertNil(label(key), key) }
        XCTAssertNotNil(label("k", String(repeating: "x", count: 2049)))
        XCTAssertNil(label("k", "ünïcödé λ \"quoted\" / = { ;"))

        for app in ["", "  ", "my app", "a{b}", "a,b", "ü"] {
            XCTAssertThrowsError(try PyroscopeRequest.labelSet(appName: app, labels: [:]), app) { e in
                guard case .pyroscopeBadAppName? = e as? AgentError else { return XCTFail("\(e)") }
            }
        }
        XCTAssertEqual(try PyroscopeRequest.labelSet(appName: " my-team/web.api_2 ", labels: [:]), "my-team/web.api_2{}")
        let many = Dictionary(uniqueKeysWithValues: (0..<27).map { ("l\($0)", "v") })
        XCTAssertThrowsError(try PyroscopeRequest.labelSet(appName: "a", labels: many))
        XCTAssertNoThrow(try PyroscopeRequest.labelSet(appName: "a", labels: many.filter { $0.key != "l0" }))
    }

    func testServerURLAndCredentials() throws {
        var s = try PyroscopeServer(url: "https://12345:glc_p%40ss%3Aword@profiles.example.net")
        XCTAssertEqual(s.displayURL, "https://profiles.example.net")
        XCTAssertEqual(s.authorization, "Basic " + Data("12345:glc_p@ss:word".utf8).base64EncodedString())
        let r = try PyroscopeRequest(server: s, appName: "a", labels: [:], from: Date(), until: Date(), sampleRate: 1, pprof: [1])
        XCTAssertEqual(r.url.absoluteString.components(separatedBy: "?")[0], "https://profiles.example.net/ingest")
        XCTAssertFalse(r.url.absoluteString.contains("glc_"), "no password in the URL sent")

        s = try PyroscopeServer(url: "http://pyro:4040/", bearerToken: "tok", tenantID: "team-a", headers: ["X-Extra": "1"])
        XCTAssertEqual(s.authorization, "Bearer tok")
        let r2 = try PyroscopeRequest(server: s, appName: "a", labels: [:], from: Date(), until: Date(), sampleRate: 1, pprof: [1])
        XCTAssertEqual(r2.headers["Authorization"], "Bearer tok")
        XCTAssertEqual(r2.headers["X-Scope-OrgID"], "team-a")
        XCTAssertEqual(r2.headers["X-Extra"], "1")
        XCTAssertEqual(r2.url.path, "/ingest")
        // Extra headers win, as pyroscope-go's HTTPHeaders.
        s = try PyroscopeServer(url: "http://pyro:4040", bearerToken: "tok", headers: ["Authorization": "Custom x"])
        XCTAssertEqual(try PyroscopeRequest(server: s, appName: "a", labels: [:], from: Date(), until: Date(), sampleRate: 1, pprof: [1])
            .headers["Authorization"], "Custom x")

        for (url, token, why) in [("pyro:4040", nil, "scheme"), ("ftp://pyro", nil, "scheme"), ("http://", nil, "no host"),
                                  ("http://user@pyro", nil, "both a user and a password"),
                                  ("http://u:p@pyro", "tok", "give one")] as [(String, String?, String)] {
            XCTAssertThrowsError(try PyroscopeServer(url: url, bearerToken: token), url) { e in
                guard case .pyroscopeBadURL(let shown, let reason)? = e as? AgentError else { return XCTFail("\(e)") }
                XCTAssertTrue(reason.contains(why), "\(url): \(reason)")
                XCTAssertFalse(shown.contains(":p@"), "the password is not shown: \(shown)")
            }
        }
        XCTAssertThrowsError(try PyroscopeServer(url: "http://pyro", tenantID: "a\nb"))
        XCTAssertThrowsError(try PyroscopeServer(url: "http://pyro", headers: ["Bad Name": "x"]))
        XCTAssertThrowsError(try PyroscopePusher(config("http://pyro", app: "no spaces")), "the app name is checked at start") { e in
            guard case .pyroscopeBadAppName? = e as? AgentError else { return XCTFail("\(e)") }
        }
    }

    // MARK: - Pushing to a capturing server

    /// The whole path: pusher → HTTP → what Pyroscope's parsers read →
    /// `go tool pprof`.
    func testPushIsWhatThePyroscopeHandlerReads() throws {
        let go = try requireGo()
        let s = try server()
        var c = config("http://ingest:s3cr%3Dt@127.0.0.1:\(s.port)/pyro")
        c.labels = ["host": "web-1", "env": "prod,eu"]
        c.tenantID = "team-a"
        let p = try pusher(c)
        let pprof = try Self.window(start: 1_700_000_000)
        try p.enqueue(pprof: pprof, from: Date(timeIntervalSince1970: 1_700_000_000), until: Date(timeIntervalSince1970: 1_700_000_010),
                      labels: ["container_id": "c0ffee"])
        XCTAssertTrue(p.flush(timeout: 10))
        let counters = p.currentCounters
        XCTAssertEqual(counters.pushed, 1, "\(counters)")
        XCTAssertEqual(counters.failed, 0)
        XCTAssertEqual(counters.queued, 0)
        let requests = s.requests
        XCTAssertEqual(requests.count, 1)
        let r = try XCTUnwrap(requests.first)
        XCTAssertEqual(r.method, "POST")
        XCTAssertTrue(r.target.hasPrefix("/pyro/ingest?"), r.target)
        XCTAssertEqual(r.headers["authorization"], "Basic " + Data("ingest:s3cr=t".utf8).base64EncodedString())
        XCTAssertEqual(r.headers["x-scope-orgid"], "team-a")
        let contentType = try XCTUnwrap(r.headers["content-type"])
        XCTAssertTrue(contentType.hasPrefix("multipart/form-data; boundary="), contentType)
        XCTAssertEqual(r.headers["content-length"], String(r.body.count))

        // Go's parsers, as the server's handler uses them.
        let bodyPath = scratch + "/body", partPath = scratch + "/profile.pb.gz"
        try Data(r.body).write(to: URL(fileURLWithPath: bodyPath))
        let query = String(r.target.split(separator: "?", maxSplits: 1)[1])
        let parsed = try go.run(Self.formReader, [contentType, bodyPath, query, partPath])
        XCTAssertEqual(parsed, """
            file profile profile.pprof \(pprof.count)
            query from=1700000000
            query name=web.api{container_id=c0ffee,env=prod_eu,host=web-1}
            query sampleRate=99
            query spyName=ebpfspy
            query until=1700000010

            """)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: partPath)), Data(pprof), "the part is the pprof, byte for byte")

        // The reference reader reads the part.
        let raw = try go.pprof(["-raw", "-symbolize=none", partPath])
        XCTAssertTrue(raw.contains("PeriodType: cpu nanoseconds"), raw)
        for name in ["serve_request", "parse_header", "memchr", "ksys_write", "aeProcessEvents", "compute"] {
            XCTAssertTrue(raw.contains(name), "\(name) in:\n\(raw)")
        }
        let top = try go.pprof(["-top", "-sample_index=samples", partPath])
        XCTAssertTrue(top.contains("of 15 total"), top)
    }

    func testServerErrorIsRetriedThenDelivered() throws {
        let s = try server([.init(status: 500, body: #"{"code":"internal","message":"ingester unavailable"}"#),
                            .init(status: 429, body: "slow down")])
        let log = Log()
        let p = try pusher(config("http://127.0.0.1:\(s.port)"), log: log)
        let pprof = try Self.window(start: 1_700_000_000)
        try p.enqueue(pprof: pprof, from: Date(), until: Date())
        XCTAssertTrue(p.flush(timeout: 10))
        let c = p.currentCounters
        XCTAssertEqual(c.pushed, 1, "\(c)")
        XCTAssertEqual(c.retries, 2)
        XCTAssertEqual(c.failed, 0)
        XCTAssertEqual(c.lastError, "Pyroscope http://127.0.0.1:\(s.port) refused a profile: HTTP 429 slow down; the server's ingestion rate limit for this tenant")
        let requests = s.requests
        XCTAssertEqual(requests.count, 3)
        XCTAssertEqual(Set(requests.map { $0.body }).count, 1, "the same request each time")
        XCTAssertTrue(log.all.contains { $0.contains("HTTP 500 ingester unavailable") && $0.contains("retrying") }, "\(log.all)")
        XCTAssertTrue(log.all.contains { $0.contains("accepts profiles again") }, "\(log.all)")
    }

    func testRefusalIsNotRetried() throws {
        let s = try server([.init(status: 422, body: #"{"code":"invalid_argument","message":"failed to parse pprof"}"#),
                            .init(status: 302, body: "", location: "https://elsewhere/ingest")])
        let p = try pusher(config("http://127.0.0.1:\(s.port)"))
        try p.enqueue(pprof: [1, 2, 3], from: Date(), until: Date())
        XCTAssertTrue(p.flush(timeout: 10))
        var c = p.currentCounters
        XCTAssertEqual(c.failed, 1, "\(c)")
        XCTAssertEqual(c.retries, 0)
        XCTAssertEqual(c.lastError, "Pyroscope http://127.0.0.1:\(s.port) refused a profile: HTTP 422 failed to parse pprof")
        // A redirect is not followed: the credentials would go elsewhere.
        try p.enqueue(pprof: [1, 2, 3], from: Date(), until: Date())
        XCTAssertTrue(p.flush(timeout: 10))
        c = p.currentCounters
        XCTAssertEqual(c.failed, 2, "\(c)")
        XCTAssertEqual(s.requests.count, 2)
        XCTAssertTrue(c.lastError?.contains("HTTP 302") == true && c.lastError?.contains("https://elsewhere/ingest") == true
                      && c.lastError?.contains("redirects are not followed") == true, c.lastError ?? "")
        XCTAssertEqual(c.pushed, 0)
    }

    /// A server that is down: enqueue returns at once, the window is tried
    /// `maxAttempts` times and counted as failed.
    func testDownServerNeverBlocksTheCaller() throws {
        let port = try PyroscopeTestServer.freePort()
        let log = Log()
        var c = config("http://127.0.0.1:\(port)")
        c.backoffBase = 0.1
        c.backoffCap = 0.1
        let p = try pusher(c, log: log)
        let pprof = try Self.window(start: 1_700_000_000)
        let start = Date()
        for i in 0..<3 { try p.enqueue(pprof: pprof, from: Date(timeIntervalSince1970: Double(i)), until: Date()) }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertLessThan(elapsed, 0.1, "enqueue must not wait for the network")
        XCTAssertTrue(p.flush(timeout: 10))
        let counters = p.currentCounters
        XCTAssertEqual(counters.failed, 3, "\(counters)")
        XCTAssertEqual(counters.retries, 6, "3 windows × (3 tries - 1)")
        XCTAssertEqual(counters.pushed, 0)
        XCTAssertTrue(counters.lastError?.contains("connection refused") == true, counters.lastError ?? "")
        XCTAssertTrue(log.all.contains { $0.contains("given up after 3 attempts") }, "\(log.all)")
        let metrics = Metrics()
        p.publish(to: metrics)
        XCTAssertEqual(metrics.value("sprof_pyroscope_failed_total"), 3)
        XCTAssertTrue(metrics.render().contains("# TYPE sprof_pyroscope_queued_windows gauge\nsprof_pyroscope_queued_windows 0\n"))
    }

    /// While the server holds the first request, later windows queue up;
    /// past the bound the OLDEST queued ones are dropped and counted.
    func testQueueBoundDropsTheOldest() throws {
        let s = try server(holdFirst: true)
        var c = config("http://127.0.0.1:\(s.port)")
        c.maxQueuedWindows = 2
        let p = try pusher(c)
        let pprof = try Self.window(start: 1_700_000_000)
        try p.enqueue(pprof: pprof, from: Date(timeIntervalSince1970: 1), until: Date())
        XCTAssertTrue(s.waitForRequests(1, timeout: 5), "the first window is being sent")
        for i in 2...5 { try p.enqueue(pprof: pprof, from: Date(timeIntervalSince1970: Double(i)), until: Date()) }
        var counters = p.currentCounters
        XCTAssertEqual(counters.dropped, 2, "\(counters)")
        XCTAssertEqual(counters.queued, 3, "two queued and one in flight")
        s.release()
        XCTAssertTrue(p.flush(timeout: 10))
        counters = p.currentCounters
        XCTAssertEqual(counters.pushed, 3, "\(counters)")
        XCTAssertEqual(counters.enqueued, 5)
        let froms = s.requests.map { r in r.query["from"] ?? "?" }
        XCTAssertEqual(froms, ["1", "4", "5"], "windows 2 and 3 were dropped")

        // The byte bound: a window larger than the bound is itself dropped.
        c.maxQueuedWindows = 10
        c.maxQueuedBytes = 100
        let small = try pusher(c)
        try small.enqueue(pprof: pprof, from: Date(), until: Date())
        XCTAssertTrue(small.flush(timeout: 5))
        XCTAssertEqual(small.currentCounters.dropped, 1)
        XCTAssertEqual(small.currentCounters.pushed, 0)
    }

    /// close: what cannot be delivered in time is dropped and counted; nothing more is taken.
    func testCloseGivesUpAtTheDeadline() throws {
        let port = try PyroscopeTestServer.freePort()
        var c = config("http://127.0.0.1:\(port)")
        c.maxAttempts = 1000
        c.backoffBase = 0.5
        c.backoffCap = 0.5
        let p = try pusher(c)
        for _ in 0..<3 { try p.enqueue(pprof: [1], from: Date(), until: Date()) }
        let start = Date()
        XCTAssertFalse(p.close(timeout: 0.3))
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.5)
        let counters = p.currentCounters
        XCTAssertEqual(counters.dropped, 3, "\(counters)")
        XCTAssertEqual(counters.queued, 0)
        XCTAssertThrowsError(try p.enqueue(pprof: [1], from: Date(), until: Date())) { e in
            XCTAssertEqual(e as? AgentError, .pyroscopeClosed)
        }
        XCTAssertThrowsError(try p.enqueue(pprof: [1], from: Date(), until: Date(), labels: ["__name__": "x"])) { e in
            guard case .pyroscopeBadLabel? = e as? AgentError else { return XCTFail("\(e)") }
        }
    }

    // MARK: - Go

    struct Go {
        let scratch: String
        var environment: [String: String] {
            var env = ProcessInfo.processInfo.environment
            env["HOME"] = env["HOME"] ?? NSTemporaryDirectory()
            env["PPROF_TMPDIR"] = NSTemporaryDirectory()
            env["GOCACHE"] = NSTemporaryDirectory() + "sprof-gocache"
            env["GOPATH"] = scratch + "/gopath"
            env["GOPROXY"] = "off"
            env["GO111MODULE"] = "off"
            return env
        }

        func tool(_ args: [String]) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/go")
            p.arguments = args
            p.environment = environment
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let text = String(decoding: data, as: UTF8.self)
            guard p.terminationStatus == 0 else { throw FixtureError(description: "go \(args.joined(separator: " ")): \(text)") }
            return text
        }

        func pprof(_ args: [String]) throws -> String { try tool(["tool", "pprof"] + args) }

        func run(_ source: String, _ args: [String]) throws -> String {
            let path = scratch + "/main.go"
            try source.write(toFile: path, atomically: true, encoding: .utf8)
            return try tool(["run", path] + args)
        }
    }

    func requireGo() throws -> Go {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/go") else {
            throw skipOrFailInCI("needs go (Debian: apt-get install golang-go) for its multipart reader and go tool pprof")
        }
        return Go(scratch: scratch)
    }

    /// Reads a captured request the way Pyroscope's handler does: the
    /// boundary from the Content-Type by `mime.ParseMediaType`, the form by
    /// `multipart.Reader.ReadForm`, the pprof from the form's files under
    /// "profile" (a part without a filename would land in `Value` and be
    /// missed), the query by `url.ParseQuery`. Prints the file part's name,
    /// filename and size, writes it to argv[4], then the query sorted.
    static let formReader = """
        package main

        import (
        \t"bytes"
        \t"fmt"
        \t"io"
        \t"mime"
        \t"mime/multipart"
        \t"net/url"
        \t"os"
        \t"sort"
        )

        func fail(err error) {
        \tfmt.Println("error:", err)
        \tos.Exit(1)
        }

        func main() {
        \tcontentType, bodyPath, rawQuery, outPath := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
        \tbody, err := os.ReadFile(bodyPath)
        \tif err != nil {
        \t\tfail(err)
        \t}
        \t_, params, err := mime.ParseMediaType(contentType)
        \tif err != nil {
        \t\tfail(err)
        \t}
        \tform, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(32 << 20)
        \tif err != nil {
        \t\tfail(err)
        \t}
        \tif len(form.Value) != 0 {
        \t\tfmt.Println("value parts:", form.Value)
        \t}
        \tfor name, files := range form.File {
        \t\tfor _, fh := range files {
        \t\t\tf, err := fh.Open()
        \t\t\tif err != nil {
        \t\t\t\tfail(err)
        \t\t\t}
        \t\t\tdata, err := io.ReadAll(f)
        \t\t\tif err != nil {
        \t\t\t\tfail(err)
        \t\t\t}
        \t\t\tfmt.Println("file", name, fh.Filename, len(data))
        \t\t\tif name == "profile" {
        \t\t\t\tif err := os.WriteFile(outPath, data, 0o644); err != nil {
        \t\t\t\t\tfail(err)
        \t\t\t\t}
        \t\t\t}
        \t\t}
        \t}
        \tq, err := url.ParseQuery(rawQuery)
        \tif err != nil {
        \t\tfail(err)
        \t}
        \tkeys := make([]string, 0, len(q))
        \tfor k := range q {
        \t\tkeys = append(keys, k)
        \t}
        \tsort.Strings(keys)
        \tfor _, k := range keys {
        \t\tfor _, v := range q[k] {
        \t\t\tfmt.Printf("query %s=%s\\n", k, v)
        \t\t}
        \t}
        }

        """
}

// MARK: - The capturing server

/// An HTTP/1.1 server on 127.0.0.1 for the tests: accepts one connection at
/// a time, reads one request (Content-Length or chunked body; answers
/// `Expect: 100-continue`, which libcurl under URLSession sends for large
/// bodies), records it, answers from its script (then 200), and closes the
/// connection.
final class PyroscopeTestServer: @unchecked Sendable {
    struct Answer: Sendable {
        var status: Int
        var body: String
        var location: String? = nil
    }

    struct Captured: Sendable {
        var method: String
        var target: String
        /// Lowercased names.
        var headers: [String: String]
        var body: [UInt8]
        var query: [String: String] {
            guard let q = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
            var out: [String: String] = [:]
            for pair in q.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
                out[kv[0]] = kv.count > 1 ? kv[1] : ""
            }
            return out
        }
    }

    let port: Int
    private let fd: Int32
    private let cond = NSCondition()
    private var script: [Answer]
    private var captured: [Captured] = []
    private var held: Bool
    private var stopping = false
    private var finished = false

    init(script: [Answer], holdFirst: Bool) throws {
        self.script = script
        held = holdFirst
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError(description: "socket: \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        port = try Self.bindLoopback(fd)
        guard listen(fd, 16) == 0 else { close(fd); throw FixtureError(description: "listen: \(errno)") }
        let thread = Thread { [self] in self.serve() }
        thread.name = "pyroscope-test-server"
        thread.start()
    }

    var requests: [Captured] { cond.lock(); defer { cond.unlock() }; return captured }

    /// Waits until `n` requests have arrived (a held one counts).
    func waitForRequests(_ n: Int, timeout: Double) -> Bool {
        cond.lock(); defer { cond.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while captured.count < n { if !cond.wait(until: deadline) { break } }
        return captured.count >= n
    }

    /// Lets the held first request be answered.
    func release() { cond.lock(); held = false; cond.broadcast(); cond.unlock() }

    func stop() {
        cond.lock()
        stopping = true
        held = false
        cond.broadcast()
        let deadline = Date(timeIntervalSinceNow: 5)
        while !finished { if !cond.wait(until: deadline) { break } }
        cond.unlock()
        close(fd)
    }

    private func serve() {
        defer { cond.lock(); finished = true; cond.broadcast(); cond.unlock() }
        while true {
            cond.lock()
            let stop = stopping
            cond.unlock()
            if stop { return }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0 else { continue }
            let conn = accept(fd, nil, nil)
            guard conn >= 0 else { continue }
            handle(conn)
            close(conn)
        }
    }

    private func handle(_ conn: Int32) {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer: [UInt8] = []
        func fill() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(conn, &chunk, chunk.count)
            guard n > 0 else { return false }
            buffer += chunk[0..<n]
            return true
        }
        let separator = Array("\r\n\r\n".utf8)
        var headEnd: Int? = nil
        while headEnd == nil {
            guard fill() else { return }
            headEnd = Self.find(separator, in: buffer)
        }
        let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        buffer.removeFirst(headEnd! + 4)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count == 3 else { return }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if headers["expect"]?.lowercased() == "100-continue" { Self.write(conn, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) }
        var body: [UInt8] = []
        if let length = headers["content-length"].flatMap({ Int($0) }) {
            while buffer.count < length { guard fill() else { return } }
            body = Array(buffer[0..<length])
        } else if headers["transfer-encoding"]?.lowercased() == "chunked" {
            while true {
                var lineEnd = Self.find(Array("\r\n".utf8), in: buffer)
                while lineEnd == nil { guard fill() else { return }; lineEnd = Self.find(Array("\r\n".utf8), in: buffer) }
                let size = Int(String(decoding: buffer[0..<lineEnd!], as: UTF8.self).split(separator: ";")[0], radix: 16) ?? 0
                buffer.removeFirst(lineEnd! + 2)
                while buffer.count < size + 2 { guard fill() else { return } }
                if size == 0 { break }
                body += buffer[0..<size]
                buffer.removeFirst(size + 2)
            }
        }
        cond.lock()
        captured.append(Captured(method: String(requestLine[0]), target: String(requestLine[1]), headers: headers, body: body))
        cond.broadcast()
        while held { cond.wait() }
        let answer = script.isEmpty ? Answer(status: 200, body: "") : script.removeFirst()
        cond.unlock()
        var response = "HTTP/1.1 \(answer.status) Scripted\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(answer.body.utf8.count)\r\nConnection: close\r\n"
        if let l = answer.location { response += "Location: \(l)\r\n" }
        Self.write(conn, Array((response + "\r\n" + answer.body).utf8))
    }

    private static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            off += n
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
        return nil
    }

    /// A loopback port nothing listens on now: bind port 0, read it, close.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        return try bindLoopback(fd)
    }

    private static func bindLoopback(_ fd: Int32) throws -> Int {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw FixtureError(description: "bind 127.0.0.1:0: \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
