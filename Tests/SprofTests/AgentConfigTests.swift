import Foundation
import XCTest
@testable import SprofAgent

/// `sprof agent`'s configuration: the schema's defaults, checks and
/// messages, the round trip through ``AgentConfig/rendered()``, and the
/// TOML subset held to Python's `tomllib` (the standard library's TOML
/// v1.0.0 parser) on hand-written documents, on invalid ones and on
/// seeded mutations of both.
final class AgentConfigTests: XCTestCase {
    // MARK: The schema

    func testDefaults() throws {
        let d = AgentConfig()
        XCTAssertEqual(d.frequency, 19)
        XCTAssertEqual(d.window, 10)
        XCTAssertFalse(d.offCPU)
        XCTAssertEqual(d.offCPUMinMicroseconds, 1000)
        XCTAssertEqual(d.stackSize, 16384)
        XCTAssertEqual(d.cpuBudget, 0.01)
        XCTAssertEqual(d.host, "")
        XCTAssertTrue(d.storeEnabled)
        XCTAssertEqual(d.storeDirectory, "")
        XCTAssertEqual(d.storeMaxAge, 7 * 86_400)
        XCTAssertEqual(d.storeMaxBytes, 2 * 1024 * 1024 * 1024)
        XCTAssertEqual(d.httpListen, "127.0.0.1:7070")
        XCTAssertFalse(d.httpAllowRemote)
        XCTAssertEqual(d.clickhouseURL, "")
        XCTAssertEqual(d.clickhouseSpoolDirectory, "")
        XCTAssertEqual(d.clickhouseSpoolMaxBytes, 256 * 1024 * 1024)
        XCTAssertEqual(d.clickhouseRetentionDays, 30)
        XCTAssertEqual(d.pyroscopeURL, "")
        XCTAssertEqual(d.pyroscopeAppName, "sprof")
        XCTAssertEqual(d.labels, [:])
        XCTAssertEqual(try AgentConfig.parse("", source: "empty"), d)
        XCTAssertEqual(try AgentConfig.parse("# nothing set\n\n[store]\n[http]\n[labels]\n", source: "tables only"), d)
        XCTAssertNoThrow(try d.validate(source: "defaults"))
    }

    func testFullFile() throws {
        let text = """
            # every key, none at its default
            frequency = 99
            window = "1m"
            off_cpu = true
            off_cpu_min_us = 250
            stack_size = "32KiB"
            cpu_budget = 0.05   # 5% of one core
            host = 'web-1'

            [store]
            enabled = false
            directory = "/var/lib/sprof/windows"
            max_age = "36h"
            max_size = "1.5GiB"

            [ http ]
            listen = "[::1]:9090"
            allow_remote = true

            [clickhouse]
            url = "https://ch.example:8443/?database=prof"
            spool_directory = "/var/cache/sprof/spool"
            spool_max = 1_048_576
            retention_days = 90

            [pyroscope]
            url = "http://pyroscope:4040"
            app_name = "fleet/web"

            [labels]
            team = "infra"
            "region" = "eu-west-1"
            escaped = "tab\\there \\u00e9"
            """
        let c = try AgentConfig.parse(text, source: "full.toml")
        XCTAssertEqual(c.frequency, 99)
        XCTAssertEqual(c.window, 60)
        XCTAssertTrue(c.offCPU)
        XCTAssertEqual(c.offCPUMinMicroseconds, 250)
        XCTAssertEqual(c.stackSize, 32768)
        XCTAssertEqual(c.cpuBudget, 0.05)
        XCTAssertEqual(c.host, "web-1")
        XCTAssertFalse(c.storeEnabled)
        XCTAssertEqual(c.storeDirectory, "/var/lib/sprof/windows")
        XCTAssertEqual(c.storeMaxAge, 36 * 3600)
        XCTAssertEqual(c.storeMaxBytes, 3 << 29)
        XCTAssertEqual(c.httpListen, "[::1]:9090")
        XCTAssertTrue(c.httpAllowRemote)
        XCTAssertEqual(c.clickhouseURL, "https://ch.example:8443/?database=prof")
        XCTAssertEqual(c.clickhouseSpoolDirectory, "/var/cache/sprof/spool")
        XCTAssertEqual(c.clickhouseSpoolMaxBytes, 1 << 20)
        XCTAssertEqual(c.clickhouseRetentionDays, 90)
        XCTAssertEqual(c.pyroscopeURL, "http://pyroscope:4040")
        XCTAssertEqual(c.pyroscopeAppName, "fleet/web")
        XCTAssertEqual(c.labels, ["team": "infra", "region": "eu-west-1", "escaped": "tab\there é"])

        // The other spellings: seconds and bytes as numbers, CRLF line ends.
        let other = try AgentConfig.parse("window = 30\r\nstack_size = 4096\r\ncpu_budget = 1\r\n[store]\r\nmax_age = 0.5e1\r\n", source: "crlf")
        XCTAssertEqual(other.window, 30)
        XCTAssertEqual(other.stackSize, 4096)
        XCTAssertEqual(other.cpuBudget, 1)
        XCTAssertEqual(other.storeMaxAge, 5)
    }

    func testLoad() throws {
        let dir = NSTemporaryDirectory() + "sprof-config-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/agent.toml"
        try Data("frequency = 7\n[labels]\nteam = \"a\"\n".utf8).write(to: URL(fileURLWithPath: path))
        var expected = AgentConfig()
        expected.frequency = 7
        expected.labels = ["team": "a"]
        XCTAssertEqual(try AgentConfig.load(path: path), expected)

        XCTAssertThrowsError(try AgentConfig.load(path: dir + "/missing.toml")) { e in
            XCTAssertEqual(e as? AgentError, .configUnreadable(path: dir + "/missing.toml", errno: ENOENT))
            XCTAssertTrue("\(e)".contains("No such file"), "\(e)")
        }
        // Not UTF-8 on line 2 (a Latin-1 é).
        try Data([UInt8]("host = \"a\"\n".utf8) + [0x23, 0xE9, 0x0A]).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try AgentConfig.load(path: path)) { e in
            guard case .config(let source, let line, _, let message)? = e as? AgentError else { return XCTFail("\(e)") }
            XCTAssertEqual(source, path)
            XCTAssertEqual(line, 2)
            XCTAssertTrue(message.contains("UTF-8"), message)
        }
    }

    /// Every kind of error names the line and, where there is one, the key,
    /// and says what would be right.
    func testErrorsNameLineAndKey() {
        let cases: [(text: String, line: Int, key: String?, says: [String])] = [
            // Unknown names, with the nearest known one.
            ("frequncy = 5", 1, "frequncy", ["unknown key 'frequncy' at the top level", "did you mean 'frequency'?"]),
            ("[store]\nenabeld = false", 2, "store.enabeld", ["unknown key 'enabeld' in [store]", "did you mean 'enabled'?", "max_age"]),
            ("[store]\nfrequncy = 5", 2, "store.frequncy", ["'frequency' is a top-level key"]),
            ("[http]\nmax_age = \"1d\"", 2, "http.max_age", ["'max_age' is in [store]"]),
            ("window = \"10s\"\n\n[stroe]\nenabled = true", 3, "stroe", ["unknown table [stroe]", "did you mean [store]?"]),
            ("[zzz]", 1, "zzz", ["unknown table [zzz]", "[clickhouse]"]),
            ("store = true", 1, "store", ["[store] is a table"]),
            // Wrong types and values out of range: what was expected, what was there.
            ("\n\n\nwindow = \"3.5x\"", 4, "window", ["expected a duration from 1s to 1h", "got \"3.5x\""]),
            ("window = \"2h\"", 1, "window", ["got \"2h\""]),
            ("window = true", 1, "window", ["got true"]),
            ("frequency = \"19\"", 1, "frequency", ["expected an integer from 1 to 100000", "got \"19\""]),
            ("frequency = 0", 1, "frequency", ["got 0"]),
            ("frequency = 19.0", 1, "frequency", ["got 19.0"]),
            ("off_cpu = \"yes\"", 1, "off_cpu", ["expected true or false"]),
            ("off_cpu_min_us = -1", 1, "off_cpu_min_us", ["got -1"]),
            ("stack_size = \"3k\"", 1, "stack_size", ["from 4KiB to 64KiB", "got \"3k\""]),
            ("stack_size = 4100", 1, "stack_size", ["a multiple of 8", "got 4100"]),
            ("stack_size = \"16 KiB\"", 1, "stack_size", ["got \"16 KiB\""]),
            ("cpu_budget = 0", 1, "cpu_budget", ["above 0 and at most 1"]),
            ("cpu_budget = 1.5", 1, "cpu_budget", ["got 1.5"]),
            ("cpu_budget = \"1%\"", 1, "cpu_budget", ["got \"1%\""]),
            ("host = 1", 1, "host", ["expected a string"]),
            ("[store]\nmax_size = \"2GB!\"", 2, "store.max_size", ["expected a size"]),
            ("[store]\nmax_age = \"-1d\"", 2, "store.max_age", ["expected a duration"]),
            ("[http]\nlisten = \"localhost:7070\"", 2, "http.listen", ["an IP address and port", "[::1]:7070"]),
            ("[http]\nlisten = \"127.0.0.1:70000\"", 2, "http.listen", ["got \"127.0.0.1:70000\""]),
            ("[clickhouse]\nurl = \"localhost:8123\"", 2, "clickhouse.url", ["http:// or https://"]),
            ("[clickhouse]\nretention_days = 0", 2, "clickhouse.retention_days", ["from 1 to 36500"]),
            ("[pyroscope]\napp_name = \"my app{x}\"", 2, "pyroscope.app_name", ["letters, digits"]),
            // Labels.
            ("[labels]\n\"1abc\" = \"x\"", 2, "labels.1abc", ["not a label name"]),
            ("[labels]\n\"a b\" = \"x\"", 2, "labels.\"a b\"", ["not a label name"]),
            ("[labels]\npid = \"x\"", 2, "labels.pid", ["built-in label", "container_id"]),
            ("[labels]\nhost = \"x\"", 2, "labels.host", ["set host = "]),
            ("[labels]\n__name__ = \"x\"", 2, "labels.__name__", ["reserved"]),
            ("[labels]\nteam = 3", 2, "labels.team", ["expected a string, got 3"]),
            // TOML itself.
            ("frequency = 1\nfrequency = 2", 2, "frequency", ["duplicate key", "line 1"]),
            ("[store]\n[http]\n[store]", 3, "store", ["defined twice", "line 1"]),
            ("host = \"abc\nwindow = 1", 1, "host", ["not closed"]),
            ("host = 'abc", 1, "host", ["not closed"]),
            ("host = \"a\\qb\"", 1, "host", ["invalid escape \\q"]),
            ("host = \"\\uD800\"", 1, "host", ["not a Unicode scalar"]),
            ("host = \"\\u00\"", 1, "host", ["4 hexadecimal digits"]),
            ("host = \"a\u{01}b\"", 1, "host", ["control character"]),
            ("frequency 19", 1, "frequency", ["expected '='"]),
            ("frequency = 1 2", 1, "frequency", ["end of the line"]),
            ("frequency = 019", 1, "frequency", ["019 is not a value"]),
            ("frequency = 1__9", 1, "frequency", ["is not a value"]),
            ("frequency = 99999999999999999999", 1, "frequency", ["64-bit"]),
            ("frequency =", 1, "frequency", ["expected a value"]),
            ("[labels]\nx = [\n  1,\n  2,\n", 5, "x", ["the array opened at line 2 is not closed"]),
            ("[labels]\nx = [\n  1,\n  2\n  3]", 5, "x", ["expected ',' or ']'"]),
            ("[labels]\nx = [\n  \"1\",\n  \"2\",\n]", 2, "labels.x", ["expected a string, got [\"1\", \"2\"]"]),
            ("[store\n", 1, "store", ["expected ']'"]),
            ("[store] enabled = true", 1, "store", ["end of the line"]),
            // Valid TOML the agent's files do not use: refused by name.
            ("store.enabled = true", 1, "store", ["dotted keys are not supported"]),
            ("[store.x]", 1, "store", ["nested tables"]),
            ("[labels]\nx = { a = 1 }", 2, "x", ["inline tables"]),
            ("host = \"\"\"a\"\"\"", 1, "host", ["multi-line strings"]),
            ("[labels]\nx = 1979-05-27", 2, "x", ["dates"]),
        ]
        for c in cases {
            do {
                _ = try AgentConfig.parse(c.text, source: "/etc/sprof/agent.toml")
                XCTFail("accepted: \(c.text)")
            } catch {
                guard case .config(let source, let line, let key, let message) = error else { XCTFail("\(error)"); continue }
                XCTAssertEqual(source, "/etc/sprof/agent.toml")
                XCTAssertEqual(line, c.line, "\(c.text): \(error)")
                XCTAssertEqual(key, c.key, "\(c.text): \(error)")
                for s in c.says { XCTAssertTrue(message.contains(s), "\(c.text): \(message) lacks \(s)") }
                XCTAssertTrue(error.description.hasPrefix("/etc/sprof/agent.toml line \(c.line): "), error.description)
            }
        }
        // Without a key.
        XCTAssertThrowsError(try AgentConfig.parse("frequency = 1\n= 5", source: "f")) { e in
            XCTAssertEqual(e as? AgentError, .config(source: "f", line: 2, key: nil, message: "expected a key, found '='"))
            XCTAssertEqual("\(e)", "f line 2: expected a key, found '='")
        }
        // The first error in the file is the one reported.
        XCTAssertThrowsError(try AgentConfig.parse("[stroe]\nx = 1\n[store]\nmax_age = 1\n[labels]\npid = \"1\"", source: "f")) { e in
            guard case .config(_, let line, _, _)? = e as? AgentError else { return XCTFail("\(e)") }
            XCTAssertEqual(line, 1)
        }
        XCTAssertEqual(AgentError.config(source: "/etc/sprof/agent.toml", line: 3, key: "store.max_age", message: "expected x").description,
                       "/etc/sprof/agent.toml line 3: store.max_age: expected x")
    }

    /// Lines are counted through arrays over several lines, comments and CRLF.
    func testLines() throws {
        let d = try TOMLDocument(parsing: "# 1\r\nx = [\r\n  1, # 3\n\n  2,\n]\ny = 1\n[t]\n\nz = 'a'\n")
        XCTAssertEqual(d.tables[""]?["x"], .init(value: .array([.integer(1), .integer(2)]), line: 2))
        XCTAssertEqual(d.tables[""]?["y"]?.line, 7)
        XCTAssertEqual(d.tableLines, ["t": 8])
        XCTAssertEqual(d.tables["t"]?["z"], .init(value: .string("a"), line: 10))
    }

    /// Fields set by the CLI after the file are checked by the same rules.
    func testValidate() {
        var c = AgentConfig()
        c.window = 0.25
        XCTAssertThrowsError(try c.validate(source: "the command line")) { e in
            XCTAssertEqual(e as? AgentError, .config(source: "the command line", line: nil, key: "window",
                                                     message: "expected a duration from 1s to 1h, like \"10s\" or \"1m\", got \"250ms\""))
        }
        c = AgentConfig()
        c.labels["comm"] = "x"
        XCTAssertThrowsError(try c.validate(source: "flags")) { e in
            guard case .config(_, nil, "labels.comm", _)? = e as? AgentError else { return XCTFail("\(e)") }
        }
        c = AgentConfig()
        c.storeMaxBytes = -1
        XCTAssertThrowsError(try c.validate(source: "flags"))
    }

    // MARK: Round trip

    /// A configuration with every field changed, strings that need escapes.
    static var unusual: AgentConfig {
        var c = AgentConfig()
        c.frequency = 4999
        c.window = 1.5
        c.offCPU = true
        c.offCPUMinMicroseconds = 0
        c.stackSize = 4104
        c.cpuBudget = 0.125
        c.host = "quote\" backslash\\ tab\t nl\n cr\r ctl\u{01} del\u{7F} é ☃ 😀"
        c.storeEnabled = false
        c.storeDirectory = "/tmp/dir with spaces/'single'"
        c.storeMaxAge = 90_061
        c.storeMaxBytes = 1_234_567
        c.httpListen = ""
        c.httpAllowRemote = true
        c.clickhouseURL = "http://user:p%40ss@ch:8123/"
        c.clickhouseSpoolDirectory = "spool"
        c.clickhouseSpoolMaxBytes = 3 << 40
        c.clickhouseRetentionDays = 1
        c.pyroscopeURL = "https://p.example"
        c.pyroscopeAppName = "a.b/c-d_e"
        c.labels = ["zone": "b", "a_b": "\"x\"\n", "Team": "", "_x9": "ünïcode"]
        return c
    }

    func testRoundTrip() throws {
        for c in [AgentConfig(), Self.unusual] {
            let text = c.rendered()
            XCTAssertEqual(try AgentConfig.parse(text, source: "rendered"), c, text)
            // A comment on every key but the labels.
            var table = ""
            for line in text.split(separator: "\n") {
                if line.hasPrefix("[") { table = String(line.dropFirst().prefix { $0 != "]" }); continue }
                if line.hasPrefix("#") || table == "labels" { continue }
                XCTAssertTrue(line.contains(" = ") && line.contains("  # "), "no comment: \(line)")
            }
        }
        let text = Self.unusual.rendered()
        XCTAssertTrue(text.contains("window = \"1500ms\""), text)
        XCTAssertTrue(text.contains("max_age = \"90061s\""), text)
        XCTAssertTrue(text.contains("max_size = \"1234567\""), text)
        XCTAssertTrue(text.contains("spool_max = \"3TiB\""), text)
        // Labels sorted.
        let labelLines = text.components(separatedBy: "[labels]")[1].split(separator: "\n").dropFirst().filter { !$0.hasPrefix("#") && $0.contains("=") }
        XCTAssertEqual(labelLines.map { String($0.prefix { $0 != " " }) }, ["Team", "_x9", "a_b", "zone"])
        let defaults = AgentConfig().rendered()
        for line in ["frequency = 19", "window = \"10s\"", "stack_size = \"16KiB\"", "cpu_budget = 0.01", "max_age = \"7d\"",
                     "max_size = \"2GiB\"", "listen = \"127.0.0.1:7070\"", "spool_max = \"256MiB\"", "app_name = \"sprof\""] {
            XCTAssertTrue(defaults.contains("\n" + line + " "), "\(line) in\n\(defaults)")
        }
    }

    func testHelpers() {
        let durations: [(String, Double?)] = [
            ("10s", 10), ("1m", 60), ("500ms", 0.5), ("1.5h", 5400), ("7d", 604_800), ("10", 10), ("0", 0), ("2.5", 2.5),
            ("1e3ms", 1), ("", nil), ("s", nil), ("10x", nil), ("-1s", nil), ("1 s", nil), (".5s", nil), ("5.s", nil),
            ("inf", nil), ("nan", nil), ("10S", nil), ("1h30m", nil), ("0x10s", nil),
        ]
        for (text, seconds) in durations { XCTAssertEqual(AgentConfig.parseDuration(text), seconds, text) }
        let sizes: [(String, Int?)] = [
            ("16384", 16384), ("16k", 16384), ("16K", 16384), ("16KiB", 16384), ("16kb", 16384), ("2GiB", 2 << 30),
            ("256MiB", 256 << 20), ("256m", 256 << 20), ("1T", 1 << 40), ("100B", 100), ("1.5k", 1536), ("0.5GiB", 1 << 29),
            ("1.1k", nil), ("", nil), ("k", nil), ("-1k", nil), ("+1", nil), ("16 KiB", nil), ("16KiBs", nil), ("1e3", nil),
            ("99999999999T", nil), ("9223372036854775807", Int.max), ("9223372036854775808", nil),
        ]
        for (text, bytes) in sizes { XCTAssertEqual(AgentConfig.parseSize(text), bytes, text) }
        for seconds in [0.001, 0.5, 1, 1.5, 59, 60, 61, 3600, 86_400, 90_061, 0.0001, 1e-7, 1e9, 123.456] {
            let text = AgentConfig.formatDuration(seconds)
            XCTAssertEqual(AgentConfig.parseDuration(text), seconds, text)
        }
        XCTAssertEqual(AgentConfig.formatDuration(604_800), "7d")
        XCTAssertEqual(AgentConfig.formatDuration(0), "0s")
        for bytes in [1, 1023, 1024, 4104, 16384, 3 << 29, 2 << 30, Int.max] {
            XCTAssertEqual(AgentConfig.parseSize(AgentConfig.formatSize(bytes)), bytes)
        }
        let listens: [(String, String?, UInt16?)] = [
            ("127.0.0.1:7070", "127.0.0.1", 7070), ("[::1]:7070", "::1", 7070), ("0.0.0.0:0", "0.0.0.0", 0),
            ("[fe80::1]:65535", "fe80::1", 65535), ("localhost:7070", nil, nil), ("127.0.0.1", nil, nil), ("::1:7070", nil, nil),
            ("[::1]7070", nil, nil), ("127.0.0.1:65536", nil, nil), ("127.0.0.1:", nil, nil), ("127.0.0.1:+80", nil, nil), ("", nil, nil),
        ]
        for (text, host, port) in listens {
            let a = AgentConfig.parseListenAddress(text)
            XCTAssertEqual(a?.host, host, text)
            XCTAssertEqual(a?.port, port, text)
        }
        XCTAssertEqual(AgentConfig.editDistance("frequncy", "frequency"), 1)
        XCTAssertEqual(AgentConfig.editDistance("", "abc"), 3)
        XCTAssertEqual(AgentConfig.editDistance("kitten", "sitting"), 3)
    }

    // MARK: Python's tomllib as the oracle

    /// Valid TOML within the subset: escapes, literal strings, arrays over
    /// several lines with comments and trailing commas, every integer and
    /// float form, quoted keys, CRLF.
    static let validDocuments: [String] = [
        "",
        "# only a comment",
        "a = \"quote \\\" backslash \\\\ nl \\n tab \\t cr \\r bs \\b ff \\f \\u00E9 \\U0001F600 \\u0000\"",
        "a = 'C:\\Users\\nobody\\\"raw\"'\nb = ''\nc = \"\"",
        "a = \"tab\tinside\" # comment with \t tab and ünicode ☃",
        "n = [\n  1,   # first\n  2,\n\n  # between\n  3,\n]\nm = [ ]\nk = [[1, 2], ['x', \"y\"], [], [true, 1.5]]",
        "i = [0, +0, -0, 1_000, -17, 0xDEAD_beef, 0o755, 0b1101, 9223372036854775807, -9223372036854775808, 0x7fffffffffffffff]",
        "f = [0.0, -0.0, +1.5, 3.1415, -0.01, 5e+22, 1e06, -2E-2, 6.626e-34, 224_617.445_991_228, 1e1_0, inf, -inf, +inf, 1e999]",
        "b = [true, false]",
        "\"quoted key\" = 1\n'literal key' = 2\n\"\" = 3\n\"é\" = 4\nbare-key_1 = 5\n1234 = 6\n-dash = 7",
        "[a]\n[b]\nx = 1\n[ c ]\ny = 2\n[\"d.e\"]\nz = 3\n['f']",
        "a = 1\r\nb = [\r\n  2,\r\n]\r\n[t]\r\nc = 'x' # c\r\n",
        "a=1\nb= 2\nc =3\n\t d\t=\t4\t",
        "[t]\nk = 1\n[u]\nk = 2",
        "a = \"#not a comment\"\nb = '=' # ok\nc = [\"[\", ']', ',']",
        "x = [1\n,2\n,\n]",
        "x = 1#comment right after\ny = \"s\"#c\nz = true#c",
    ]

    /// Invalid TOML: tomllib and this parser both refuse them.
    static let invalidDocuments: [String] = [
        "a = 1\na = 2",
        "[t]\nk = 1\nk = 2",
        "[t]\n[t]",
        "a = 1\n[a]",
        "\"a\" = 1\na = 2",
        "a = \"unterminated",
        "a = 'unterminated",
        "a = \"line\nbreak\"",
        "a = \"\\q\"",
        "a = \"\\u12\"",
        "a = \"\\uD800\"",
        "a = \"\\U00110000\"",
        "a = \"ctl\u{01}\"",
        "a = 'ctl\u{7F}'",
        "# ctl \u{01} in a comment",
        "a = 1\rb = 2",
        "a = 01",
        "a = 1__0",
        "a = 1_",
        "a = _1",
        "a = +0x10",
        "a = 0x",
        "a = 0X10",
        "a = 0b102",
        "a = 1.",
        "a = .5",
        "a = 1e",
        "a = 1.e5",
        "a = 01.5",
        "a = 1.5.5",
        "a = True",
        "a = truex",
        "a = inf1",
        "a = ",
        "a =\n1",
        "= 1",
        "a",
        "a = 1 b = 2",
        "a = [1 2]",
        "a = [1,,2]",
        "a = [,]",
        "a = [1,",
        "a = [1",
        "[t",
        "[t] x = 1",
        "[]",
        "a = 'x' 'y'",
        "a b = 1",
        "a = -",
        "a = 1,",
        "a = \"x\"y",
    ]

    func testTomllibAcceptsWhatWeAccept() throws {
        let documents = Self.validDocuments + [AgentConfig().rendered(), Self.unusual.rendered()]
        let oracle = try Self.tomllib(documents)
        for (doc, answer) in zip(documents, oracle) {
            guard case .document(let theirs) = answer else { XCTFail("tomllib refused \(doc): \(answer)"); continue }
            do {
                let ours = try TOMLDocument(parsing: doc)
                XCTAssertEqual(Self.comparable(ours), theirs, doc)
            } catch {
                XCTFail("refused \(doc): \(error)")
            }
        }
    }

    func testTomllibRefusesWhatWeRefuse() throws {
        let oracle = try Self.tomllib(Self.invalidDocuments)
        for (doc, answer) in zip(Self.invalidDocuments, oracle) {
            if case .document(let d) = answer { XCTFail("tomllib accepted \(doc): \(d)") }
            do {
                let ours = try TOMLDocument(parsing: doc)
                XCTFail("accepted \(doc): \(ours)")
            } catch {
                XCTAssertFalse(error.unsupported, "\(doc): \(error)")
            }
        }
    }

    /// Seeded mutations of the documents above (a character deleted,
    /// inserted, replaced; a line repeated or dropped): wherever this parser
    /// does not refuse a construct on purpose, it accepts exactly what
    /// tomllib accepts, with the same values.
    func testMutationsAgreeWithTomllib() throws {
        var rng = SplitMix64(seed: 0x5EED_70D1)
        let seeds = (Self.validDocuments + Self.invalidDocuments + [AgentConfig().rendered(), Self.unusual.rendered()])
            .map { Array($0.unicodeScalars) }
        let alphabet = Array("\"'\\\n\r\t #=[],._0129eExob+-uUtfn".unicodeScalars) + ["\u{01}", "\u{7F}", "é", "{", "}"]
        var documents: [String] = []
        for _ in 0..<3000 {
            var s = seeds[Int(rng.next() % UInt64(seeds.count))]
            for _ in 0...(rng.next() % 3) {
                let at = s.isEmpty ? 0 : Int(rng.next() % UInt64(s.count))
                let c = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                switch rng.next() % 5 {
                case 0: if !s.isEmpty { s.remove(at: at) }
                case 1: s.insert(c, at: at)
                case 2: if !s.isEmpty { s[at] = c }
                default:
                    var lines = String(String.UnicodeScalarView(s)).components(separatedBy: "\n")
                    let i = Int(rng.next() % UInt64(lines.count))
                    if rng.next() % 2 == 0 { lines.insert(lines[i], at: i) } else { lines.remove(at: i) }
                    s = Array(lines.joined(separator: "\n").unicodeScalars)
                }
            }
            documents.append(String(String.UnicodeScalarView(s)))
        }
        let oracle = try Self.tomllib(documents)
        var compared = 0, accepted = 0
        for (doc, answer) in zip(documents, oracle) {
            let ours: Result<TOMLDocument, TOMLError>
            do { ours = .success(try TOMLDocument(parsing: doc)) } catch { ours = .failure(error) }
            if case .failure(let e) = ours, e.unsupported { continue }
            compared += 1
            switch (ours, answer) {
            case (.success(let d), .document(let theirs)):
                accepted += 1
                XCTAssertEqual(Self.comparable(d), theirs, "values differ: \(doc.debugDescription)")
            case (.failure, .error): break
            case (.success, .error(let why)):
                XCTFail("accepted what tomllib refuses (\(why)): \(doc.debugDescription)")
            case (.failure(let e), .document):
                XCTFail("refused what tomllib accepts (\(e)): \(doc.debugDescription)")
            }
        }
        // Enough of each to mean something.
        XCTAssertGreaterThan(compared, 2000)
        XCTAssertGreaterThan(accepted, 500)
        XCTAssertGreaterThan(compared - accepted, 500)
    }

    struct OracleError: Error, CustomStringConvertible { var description: String }

    enum Oracle: Equatable {
        /// Table ("" the root) to key to value as TOML text.
        case document([String: [String: String]])
        case error(String)
    }

    /// Our document in the form ``Oracle/document`` holds.
    static func comparable(_ d: TOMLDocument) -> [String: [String: String]] {
        d.tables.mapValues { $0.mapValues(\.value.tomlText) }
    }

    /// Each document through `tomllib.loads`, in one python3 run. Values
    /// come back tagged with their TOML type (as toml-test's JSON does)
    /// and are turned into TOML text as ours are, so integers, floats and
    /// strings cannot be mistaken for one another.
    static func tomllib(_ documents: [String]) throws -> [Oracle] {
        let script = """
            import json, sys
            try:
                import tomllib
            except ImportError:
                print("NO-TOMLLIB"); sys.exit(0)
            def tag(v):
                if isinstance(v, bool): return {"t": "bool", "v": "true" if v else "false"}
                if isinstance(v, int): return {"t": "int", "v": str(v)}
                if isinstance(v, float): return {"t": "float", "v": repr(v)}
                if isinstance(v, str): return {"t": "str", "v": v}
                if isinstance(v, list): return {"t": "array", "v": [tag(x) for x in v]}
                if isinstance(v, dict): return {"t": "table", "v": {k: tag(x) for k, x in v.items()}}
                return {"t": type(v).__name__, "v": str(v)}
            out = []
            for doc in json.load(open(sys.argv[1], encoding="utf-8")):
                try:
                    out.append({"doc": tag(tomllib.loads(doc))["v"]})
                except tomllib.TOMLDecodeError as e:
                    out.append({"error": str(e)})
            json.dump(out, sys.stdout)
            """
        let input = NSTemporaryDirectory() + "sprof-toml-\(getpid()).json"
        try JSONSerialization.data(withJSONObject: documents).write(to: URL(fileURLWithPath: input))
        defer { try? FileManager.default.removeItem(atPath: input) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, input]
        let out = Pipe()
        p.standardOutput = out
        do { try p.run() } catch { throw skipOrFailInCI("python3 not found (\(error))") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if String(decoding: data, as: UTF8.self).hasPrefix("NO-TOMLLIB") { throw skipOrFailInCI("python3 has no tomllib (needs Python 3.11+)") }
        guard p.terminationStatus == 0, let answers = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw OracleError(description: "python3 tomllib failed: status \(p.terminationStatus)")
        }
        return try answers.map { a in
            if let e = a["error"] as? String { return .error(e) }
            guard let root = a["doc"] as? [String: Any] else { throw OracleError(description: "unexpected answer \(a)") }
            var tables: [String: [String: String]] = ["": [:]]
            for (k, v) in root {
                let v = v as! [String: Any]
                if v["t"] as? String == "table" {
                    tables[k] = try (v["v"] as! [String: Any]).mapValues { try tomlText($0) }
                } else {
                    tables[""]![k] = try tomlText(v)
                }
            }
            return .document(tables)
        }
    }

    /// A tagged tomllib value as ``TOMLValue/tomlText`` writes it.
    static func tomlText(_ tagged: Any) throws -> String {
        guard let d = tagged as? [String: Any], let t = d["t"] as? String else { throw OracleError(description: "\(tagged)") }
        let value: TOMLValue
        switch t {
        case "bool": value = .boolean(d["v"] as? String == "true")
        case "int":
            guard let n = Int(d["v"] as! String) else { return "integer beyond 64 bits: \(d["v"]!)" }
            value = .integer(n)
        case "float": value = .float(Double(d["v"] as! String)!)
        case "str": value = .string(d["v"] as! String)
        case "array": return "[" + (try (d["v"] as! [Any]).map { try tomlText($0) }).joined(separator: ", ") + "]"
        default: return "\(t): \(d["v"]!)"   // a nested table or a date: never equal to ours
        }
        return value.tomlText
    }
}
