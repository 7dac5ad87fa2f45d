import Foundation
import XCTest
@testable import SprofAgent

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
}
