import Foundation
import XCTest
@testable import SprofAgent
import SprofStore
import Synchronization

/// The agent's HTTP endpoint and metrics, against real clients: curl for
/// HTTP, and the Prometheus project's own Python parser
/// (`prometheus_client.parser`, PyPI prometheus-client, installed by
/// .ci/setup) for the exposition format.
final class AgentEndpointTests: XCTestCase {
    func curl(_ args: [String]) throws -> (status: Int32, out: String) {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw skipOrFailInCI("curl not installed") }
        return try runTool(["/usr/bin/curl", "-sS", "--max-time", "5"] + args)
    }

    func testServesHealthMetricsAndErrors() throws {
        let metrics = Metrics()
        metrics.declare("sprof_samples_total", .counter, help: "Samples received.")
        metrics.add("sprof_samples_total", 41)
        metrics.add("sprof_samples_total")
        let endpoint = try HTTPEndpoint(port: 0) { request in
            switch request.path {
            case "/healthz": return .init(status: 200, text: "ok\n")
            case "/metrics": return .init(status: 200, contentType: "text/plain; version=0.0.4", text: metrics.render())
            case "/echo": return .init(status: 200, text: request.query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n"))
            default: return .init(status: 404, text: "not found\n")
            }
        }
        endpoint.start()
        defer { endpoint.stop() }
        XCTAssertTrue(endpoint.address.hasPrefix("127.0.0.1:"))
        let base = "http://\(endpoint.address)"

        var r = try curl(["-i", base + "/healthz"])
        XCTAssertEqual(r.status, 0, r.out)
        XCTAssertTrue(r.out.hasPrefix("HTTP/1.1 200 OK\r\n"), r.out)
        XCTAssertTrue(r.out.contains("Content-Length: 3\r\n"), r.out)
        XCTAssertTrue(r.out.hasSuffix("\r\n\r\nok\n"), r.out)

        r = try curl([base + "/metrics"])
        XCTAssertTrue(r.out.contains("sprof_samples_total 42\n"), r.out)

        r = try curl(["-o", "/dev/null", "-w", "%{http_code}", base + "/nope"])
        XCTAssertEqual(r.out, "404")
        r = try curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-d", "x", base + "/metrics"])
        XCTAssertEqual(r.out, "405", "only GET and HEAD")
        r = try curl(["-I", base + "/healthz"])
        XCTAssertTrue(r.out.contains("Content-Length: 3"), "HEAD: the length of what GET would send, no body: \(r.out)")
        r = try curl([base + "/echo?comm=my%20app&where=pid%3D42&plus=a+b&empty"])
        XCTAssertEqual(r.out, "comm=my app\nempty=\nplus=a b\nwhere=pid=42")

        // A request line that is not HTTP, over a raw connection.
        let (st, raw) = try runTool(["/bin/sh", "-c", "printf 'hello\\r\\n\\r\\n' | /usr/bin/curl -sS --max-time 5 telnet://\(endpoint.address) 2>&1 || true"])
        XCTAssertEqual(st, 0)
        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 400 Bad Request"), raw)
        // Still serving after the bad request.
        XCTAssertEqual(try curl([base + "/healthz"]).out, "ok\n")
    }

    func testListensOnLoopbackUnlessAllowed() throws {
        XCTAssertThrowsError(try HTTPEndpoint(host: "0.0.0.0", port: 0) { _ in .init(status: 200, text: "") }) { e in
            XCTAssertEqual(e as? AgentError, .remoteBindRefused(host: "0.0.0.0"))
            XCTAssertTrue("\(e)".contains("--http-allow-remote"), "\(e)")
        }
        XCTAssertThrowsError(try HTTPEndpoint(host: "localhost", port: 0) { _ in .init(status: 200, text: "") }) { e in
            XCTAssertEqual(e as? AgentError, .badListenAddress("localhost"))
        }
        let anywhere = try HTTPEndpoint(host: "0.0.0.0", port: 0, allowRemote: true) { _ in .init(status: 200, text: "") }
        anywhere.stop()
        let v6 = try HTTPEndpoint(host: "::1", port: 0) { _ in .init(status: 200, text: "six\n") }
        v6.start()
        defer { v6.stop() }
        XCTAssertTrue(v6.address.hasPrefix("[::1]:"), v6.address)
        let r = try curl(["-g", "http://\(v6.address)/"])
        XCTAssertEqual(r.status, 0, r.out)  // bind(::1) succeeded, so the address exists
        XCTAssertEqual(r.out, "six\n")

        // The same port twice: the second bind says who to blame.
        let first = try HTTPEndpoint(port: 0) { _ in .init(status: 200, text: "") }
        defer { first.stop() }
        XCTAssertThrowsError(try HTTPEndpoint(port: first.port) { _ in .init(status: 200, text: "") }) { e in
            XCTAssertTrue("\(e)".contains("another process has that port"), "\(e)")
        }
    }

    /// The exposition text, parsed by the Prometheus client library's own
    /// parser: names, types, help, label values with `\`, `"` and newline,
    /// and numbers come back as they went in.
    func testMetricsParseWithPrometheusClient() throws {
        let m = Metrics()
        m.declare("sprof_samples_total", .counter, help: "Samples received, by sink.\nSecond line with \\ backslash.")
        m.declare("sprof_agent_rss_bytes", .gauge, help: "Resident memory.")
        m.add("sprof_samples_total", 3, labels: ["sink": "store"])
        m.add("sprof_samples_total", 2.5, labels: ["sink": "click\"house\\\nx"])
        m.set("sprof_agent_rss_bytes", 123_456_789)
        XCTAssertEqual(m.value("sprof_samples_total", labels: ["sink": "store"]), 3)
        let text = m.render()
        let path = NSTemporaryDirectory() + "sprof-metrics-\(getpid()).txt"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let script = """
            import json, sys
            try:
                from prometheus_client.parser import text_string_to_metric_families
            except ImportError:
                print("NO-PROMETHEUS-CLIENT"); sys.exit(0)
            out = []
            for f in text_string_to_metric_families(open(sys.argv[1]).read()):
                out.append({"name": f.name, "type": f.type, "help": f.documentation,
                            "samples": sorted(([s.name, s.labels, s.value] for s in f.samples), key=lambda x: json.dumps(x, sort_keys=True))})
            print(json.dumps(out, sort_keys=True))
            """
        let (status, out) = try runTool(["/usr/bin/env", "python3", "-c", script, path])
        XCTAssertEqual(status, 0, out)
        if out.contains("NO-PROMETHEUS-CLIENT") { throw skipOrFailInCI("python3 -m pip install prometheus-client (.ci/setup does)") }
        let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]], out)
        XCTAssertEqual(parsed.count, 2)
        let samples = try XCTUnwrap(parsed.first { $0["name"] as? String == "sprof_samples" })
        XCTAssertEqual(samples["type"] as? String, "counter")
        XCTAssertEqual(samples["help"] as? String, "Samples received, by sink.\nSecond line with \\ backslash.")
        let rows = try XCTUnwrap(samples["samples"] as? [[Any]])
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(rows.compactMap { ($0[1] as? [String: String])?["sink"] }.sorted(), ["click\"house\\\nx", "store"])
        XCTAssertEqual(rows.compactMap { $0[2] as? Double }.sorted(), [2.5, 3])
        let rss = try XCTUnwrap(parsed.first { $0["name"] as? String == "sprof_agent_rss_bytes" })
        XCTAssertEqual(rss["type"] as? String, "gauge")
        XCTAssertEqual(((rss["samples"] as? [[Any]])?.first?[2] as? Double), 123_456_789)
    }

    // MARK: - Request targets that look like files

    /// One raw request over a TCP connection (curl's telnet:// sends the
    /// bytes as they are, where an HTTP client would normalize `..`).
    func rawRequest(_ address: String, target: String) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw skipOrFailInCI("curl not installed") }
        let (_, out) = try runTool(["/bin/sh", "-c", "printf 'GET %s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' \"$1\" | /usr/bin/curl -sS --max-time 5 telnet://\(address) 2>&1 || true",
                                    "sh", target])
        return out
    }

    /// The endpoint serves only what the agent generates: no request path
    /// reaches the file system. Traversals, encoded or not, and NUL are
    /// answered 400 before any handler runs; an absolute-form target is read
    /// as its path (RFC 9112 §3.2.2) and is then just an unknown page (404).
    /// The handler is the agent's own page over a real store, wrapped to
    /// record every path it is given.
    func testPathsThatLookLikeFilesNeverReachTheFileSystem() throws {
        let storeDir = NSTemporaryDirectory() + "sprof-endpoint-store-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: storeDir) }
        let page = AgentPage(store: try ProfileStore(directory: storeDir), host: "test")
        let seen = Mutex<[String]>([])
        let endpoint = try HTTPEndpoint(port: 0) { request in
            seen.withLock { $0.append(request.path) }
            if request.path == "/healthz" { return .init(status: 200, text: "ok\n") }
            return page.handle(request) ?? .init(status: 404, text: "not found\n")
        }
        endpoint.start()
        defer { endpoint.stop() }
        let passwd = (try? String(contentsOfFile: "/etc/passwd", encoding: .utf8))?.split(separator: "\n").first.map(String.init) ?? "root:x:0:0"

        let refused = ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/windows/..%2f..%2fetc%2fpasswd", "/%2E%2E%2Fetc%2Fpasswd",
                       "/./healthz", "//etc/passwd", "/healthz%00.svg", "/..\\..\\etc\\passwd", "/%5c..%5cetc%5cpasswd",
                       "etc/passwd", "*", "/flamegraph.svg/../../../etc/passwd"]
        for target in refused {
            let out = try rawRequest(endpoint.address, target: target)
            XCTAssertTrue(out.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(target): \(out)")
            XCTAssertFalse(out.contains(passwd), target)
        }
        for target in ["http://x/etc/passwd", "HTTP://x/../../etc/passwd?a=b", "/etc/passwd", "/windows/etc%2fpasswd"] {
            let out = try rawRequest(endpoint.address, target: target)
            XCTAssertTrue(out.hasPrefix("HTTP/1.1 404 Not Found\r\n") || out.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(target): \(out)")
            XCTAssertFalse(out.contains(passwd), target)
        }
        // What is generated is still served, absolute-form included.
        XCTAssertTrue(try rawRequest(endpoint.address, target: "http://127.0.0.1/healthz").hasSuffix("\r\n\r\nok\n"))
        XCTAssertTrue(try rawRequest(endpoint.address, target: "/folded?since=1h").hasPrefix("HTTP/1.1 "))

        let paths = seen.withLock { $0 }
        XCTAssertFalse(paths.contains { $0.contains("..") || $0.contains("\\") || $0.contains("\0") || $0.contains("//") }, "\(paths)")
        XCTAssertEqual(paths.filter { $0.hasSuffix("passwd") }, ["/etc/passwd", "/etc/passwd", "/windows/etc/passwd"],
                       "only the absolute-form and plain ones reach the handler, as paths it does not serve: \(paths)")
    }

    /// The target checks on their own: decoded first, so encodings cannot hide a segment.
    func testSafePathAndOriginForm() {
        XCTAssertEqual(HTTPEndpoint.safePath("/"), "/")
        XCTAssertEqual(HTTPEndpoint.safePath("/flamegraph.svg"), "/flamegraph.svg")
        XCTAssertEqual(HTTPEndpoint.safePath("/a%20b"), "/a b")
        for bad in ["", "x", "/..", "/.", "/a/../b", "/%2e%2e", "/%2E%2e/x", "/a%2f..%2fb", "/a//b", "/a/", "/a%00", "/a%0d%0aX: y", "/a\\b", "/%5c"] {
            XCTAssertNil(HTTPEndpoint.safePath(Substring(bad)), bad)
        }
        XCTAssertEqual(HTTPEndpoint.originForm("http://x/etc/passwd"), "/etc/passwd")
        XCTAssertEqual(HTTPEndpoint.originForm("https://x:1?since=1h"), "/?since=1h")
        XCTAssertEqual(HTTPEndpoint.originForm("http://x"), "/")
        XCTAssertEqual(HTTPEndpoint.originForm("/folded"), "/folded")
    }
}
