#if canImport(Glibc)
import Glibc
#endif
import SprofBase

/// The configuration of `sprof agent`: a TOML file (see `TOML.swift` for
/// the subset read), every key optional, defaults as below.
///
/// ```toml
/// frequency = 19          # samples per second per CPU
/// window = "10s"
/// off_cpu = false
/// off_cpu_min_us = 1000
/// stack_size = "16KiB"
/// cpu_budget = 0.01
/// host = ""
/// keep_root = false
/// [store]
/// enabled = true
/// directory = ""
/// max_age = "7d"
/// max_size = "2GiB"
/// [http]
/// listen = "127.0.0.1:7070"
/// allow_remote = false
/// [clickhouse]
/// url = ""
/// spool_directory = ""
/// spool_max = "256MiB"
/// retention_days = 30
/// [pyroscope]
/// url = ""
/// app_name = "sprof"
/// [labels]
/// team = "infra"          # any name = "value": added to every sample
/// ```
///
/// Durations are seconds (`Double`), sizes bytes (`Int`). Unknown keys and
/// tables are errors, with the closest known key suggested; every error
/// names the file, the line and the key. The CLI sets fields from its flags
/// after ``load(path:)``; ``validate(source:)`` checks them again, and
/// ``rendered()`` prints what is in effect (`--print-config`).
public struct AgentConfig: Sendable, Equatable {
    /// On-CPU samples per second per CPU. 19 Hz, prime, so it does not beat
    /// with timers at round frequencies.
    public var frequency = 19
    /// Length of a window (seconds): samples are summed and written out once per window.
    public var window: Double = 10
    public var offCPU = false
    /// With ``offCPU``: waits shorter than this are counted, not recorded with their stacks.
    public var offCPUMinMicroseconds = 1000
    /// Bytes of user stack copied per sample.
    public var stackSize = 16 << 10
    /// The CPU the agent may use, in cores (0.01: 1% of one core).
    public var cpuBudget = 0.01
    /// The `host` label; "" means this machine's hostname.
    public var host = ""
    /// Run with every capability root has: no drop after loading
    /// (PrivilegePlan in Sources/Capture/Privileges.swift says what is kept otherwise).
    public var keepRoot = false

    public var storeEnabled = true
    /// "" means the default state directory, chosen by the caller.
    public var storeDirectory = ""
    /// Seconds.
    public var storeMaxAge: Double = 7 * 86_400
    public var storeMaxBytes = 2 << 30

    /// `host:port` or `[v6]:port`; "" disables the endpoint.
    public var httpListen = "127.0.0.1:7070"
    public var httpAllowRemote = false

    /// "" disables the ClickHouse sink.
    public var clickhouseURL = ""
    /// "" means the default, chosen by the caller.
    public var clickhouseSpoolDirectory = ""
    public var clickhouseSpoolMaxBytes = 256 << 20
    public var clickhouseRetentionDays = 30

    /// "" disables the Pyroscope push.
    public var pyroscopeURL = ""
    public var pyroscopeAppName = "sprof"

    /// Static labels added to every sample.
    public var labels: [String: String] = [:]

    public init() {}

    /// Labels every sample has already (the capture, /proc and cgroup
    /// ones); a static label may not take their names.
    public static let builtInLabels: Set<String> = [
        "host", "pid", "tid", "comm", "exe", "thread_name", "cgroup", "container_id", "systemd_unit", "offcpu_state",
    ]

    /// The tables, in the order ``rendered()`` writes them ("" is the top
    /// level), each with the comment on its header line.
    static let tables: [(name: String, comment: String)] = [
        ("", ""),
        ("store", "windows kept on local disk, for sprof report --store"),
        ("http", "the agent's page, /metrics and /healthz"),
        ("clickhouse", "samples written to ClickHouse, for sprof query"),
        ("pyroscope", "each window pushed to a Pyroscope server"),
        ("labels", "static labels added to every sample: name = \"value\""),
    ]
}

// MARK: - Reading

extension AgentConfig {
    /// Parses a configuration file's text. `source` names it in errors
    /// (its path).
    public static func parse(_ text: String, source: String) throws(AgentError) -> AgentConfig {
        let doc: TOMLDocument
        do {
            doc = try TOMLDocument(parsing: text)
        } catch {
            throw .config(source: source, line: error.line, key: error.key, message: error.message)
        }
        // Headers and keys in the order of the file, so the first error reported is the first in it.
        var items: [(line: Int, table: String, key: String?, value: TOMLValue?)] = doc.tableLines.map { ($0.value, $0.key, nil, nil) }
        for (table, keys) in doc.tables {
            for (key, entry) in keys { items.append((entry.line, table, key, entry.value)) }
        }
        items.sort { ($0.line, $0.key != nil ? 1 : 0) < ($1.line, $1.key != nil ? 1 : 0) }

        let settings = Self.settings
        var config = AgentConfig()
        for item in items {
            guard let key = item.key, let value = item.value else {
                if !tables.contains(where: { $0.name == item.table }) {
                    throw .config(source: source, line: item.line, key: item.table, message: unknownTableMessage(item.table))
                }
                continue
            }
            let shown = displayKey(table: item.table, key: key)
            if item.table == "labels" {
                guard case .string(let s) = value else {
                    throw .config(source: source, line: item.line, key: shown, message: "expected a string, got \(value.tomlText)")
                }
                if let problem = labelNameProblem(key) {
                    throw .config(source: source, line: item.line, key: shown, message: problem)
                }
                config.labels[key] = s
                continue
            }
            guard let setting = settings.first(where: { $0.table == item.table && $0.name == key }) else {
                throw .config(source: source, line: item.line, key: shown,
                              message: unknownKeyMessage(key, table: item.table, settings: settings))
            }
            guard setting.set(&config, value) else {
                throw .config(source: source, line: item.line, key: shown, message: "expected \(setting.expected), got \(value.tomlText)")
            }
        }
        return config
    }

    /// The largest configuration file read: 1 MiB, some 500 times the
    /// example with every key (docs/agent.toml, 2 KB).
    static let maxFileSize = 1 << 20

    /// Reads and parses a configuration file (UTF-8, as TOML requires).
    public static func load(path: String) throws(AgentError) -> AgentConfig {
        var bytes = [UInt8](repeating: 0, count: maxFileSize + 1)
        var used = 0
        do throws(POSIX.Errno) {
            let fd = try POSIX.open(path, O_RDONLY | O_CLOEXEC)
            defer { try? POSIX.close(fd) }
            // At most one byte past the limit: `/dev/zero` or a huge file
            // given by mistake is an error, not a read without end.
            while used < bytes.count {
                let n = try bytes.withUnsafeMutableBytes { b in
                    Result { () throws(POSIX.Errno) in try POSIX.read(fd, b.baseAddress! + used, b.count - used) }
                }.get()
                if n == 0 { break }
                used += n
            }
        } catch {
            throw .configUnreadable(path: path, errno: error.code)
        }
        guard used <= maxFileSize else {
            throw .config(source: path, line: nil, key: nil,
                          message: "larger than \(maxFileSize >> 20) MiB: not a configuration file (see docs/agent.toml)")
        }
        bytes.removeSubrange(used...)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            // A line feed is never part of a multi-byte sequence: split there to find the line.
            let bad = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
                .firstIndex { String(validating: $0, as: UTF8.self) == nil } ?? 0
            throw .config(source: path, line: bad + 1, key: nil, message: "not valid UTF-8 (a TOML file must be UTF-8)")
        }
        return try parse(text, source: path)
    }

    /// Checks every field as the file's values are checked: for fields the
    /// CLI set from flags. `source` names them in the error.
    public func validate(source: String) throws(AgentError) {
        for setting in Self.settings {
            var scratch = self
            let value = setting.get(self)
            guard setting.set(&scratch, value) else {
                throw .config(source: source, line: nil, key: Self.displayKey(table: setting.table, key: setting.name),
                              message: "expected \(setting.expected), got \(value.tomlText)")
            }
        }
        for name in labels.keys.sorted() {
            if let problem = Self.labelNameProblem(name) {
                throw .config(source: source, line: nil, key: Self.displayKey(table: "labels", key: name), message: problem)
            }
        }
    }

    /// Why `name` cannot be a static label's name, nil if it can.
    static func labelNameProblem(_ name: String) -> String? {
        let u = Array(name.utf8)
        func letter(_ c: UInt8) -> Bool { (c | 0x20 >= UInt8(ascii: "a") && c | 0x20 <= UInt8(ascii: "z")) || c == UInt8(ascii: "_") }
        guard let first = u.first, letter(first), u.allSatisfy({ letter($0) || ($0 >= 0x30 && $0 <= 0x39) }) else {
            return "'\(name)' is not a label name: use letters, digits and '_', not starting with a digit"
        }
        // Prometheus and Pyroscope keep names starting with "__" for themselves.
        if name.hasPrefix("__") { return "'\(name)': names starting with __ are reserved" }
        if name == "host" { return "'host' is built in: set host = \"…\" at the top level instead" }
        if builtInLabels.contains(name) {
            return "'\(name)' is a built-in label (\(builtInLabels.sorted().joined(separator: ", "))): choose another name"
        }
        return nil
    }

    /// `key`, `table.key`, quoted where TOML needs it.
    static func displayKey(table: String, key: String) -> String {
        table.isEmpty ? TOMLValue.key(key) : TOMLValue.key(table) + "." + TOMLValue.key(key)
    }

    static func unknownTableMessage(_ name: String) -> String {
        let known = tables.map(\.name).filter { !$0.isEmpty }
        var m = "unknown table [\(name)]"
        if let near = closest(to: name, in: known) { m += "; did you mean [\(near)]?" }
        return m + " (the tables are " + known.map { "[\($0)]" }.joined(separator: ", ") + ")"
    }

    static func unknownKeyMessage(_ key: String, table: String, settings: [ConfigKey]) -> String {
        let here = settings.filter { $0.table == table }.map(\.name)
        var m = "unknown key '\(key)' " + (table.isEmpty ? "at the top level" : "in [\(table)]")
        if let near = closest(to: key, in: here) {
            m += "; did you mean '\(near)'?"
        } else if let near = closest(to: key, in: settings.map(\.name)), let other = settings.first(where: { $0.name == near }) {
            m += "; '\(near)' is " + (other.table.isEmpty ? "a top-level key: put it before any [table] line" : "in [\(other.table)]")
        } else if table.isEmpty, tables.contains(where: { $0.name == key }) {
            m += "; [\(key)] is a table: write its keys below a [\(key)] line"
        }
        return m + " (the keys " + (table.isEmpty ? "at the top level" : "of [\(table)]") + " are " + here.joined(separator: ", ") + ")"
    }

    /// The candidate within edit distance 2 of `word`, the nearest first.
    static func closest(to word: String, in candidates: [String]) -> String? {
        candidates.map { ($0, editDistance(word, $0)) }.filter { $0.1 <= 2 }.min { $0.1 < $1.1 }?.0
    }

    /// Levenshtein distance: insertions, deletions, substitutions.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        // row[j]: the distance from a's first i characters to b's first j.
        var row = Array(0...b.count)
        for i in a.indices {
            var diagonal = row[0]
            row[0] = i + 1
            for j in b.indices {
                let above = row[j + 1]
                row[j + 1] = min(above + 1, row[j] + 1, diagonal + (a[i] == b[j] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}

// MARK: - Writing

extension AgentConfig {
    /// The configuration as a TOML file that ``parse(_:source:)`` reads
    /// back to an equal value, a comment on each key; labels sorted.
    public func rendered() -> String {
        let settings = Self.settings
        var sections: [(header: String?, rows: [(text: String, comment: String)])] = []
        for (table, comment) in Self.tables {
            var rows = settings.filter { $0.table == table }.map { s in
                (TOMLValue.key(s.name) + " = " + s.get(self).tomlText, s.comment)
            }
            if table == "labels" {
                rows = labels.sorted { $0.key < $1.key }.map { (TOMLValue.key($0.key) + " = " + TOMLValue.quoted($0.value), "") }
            }
            sections.append((table.isEmpty ? nil : "[\(table)]  # \(comment)", rows))
        }
        // Comments start in one column, unless a long value pushes its own further.
        let column = min(sections.flatMap { $0.rows.map(\.text.count) }.max() ?? 0, 36) + 2
        var out = "# sprof agent configuration: the values in effect.\n"
        for section in sections {
            if let header = section.header { out += "\n" + header + "\n" }
            for row in section.rows {
                out += row.text
                if !row.comment.isEmpty {
                    out += String(repeating: " ", count: max(column - row.text.count, 2)) + "# " + row.comment
                }
                out += "\n"
            }
        }
        return out
    }
}

// MARK: - Values

extension AgentConfig {
    /// A duration: a number with a unit, `ms`, `s`, `m`, `h` or `d`
    /// ("500ms", "10s", "1.5h", "7d"), or a bare number of seconds ("10").
    /// Seconds; nil if not that. Also for command-line flags.
    public static func parseDuration(_ text: String) -> Double? {
        let unit = String(text.reversed().prefix { $0.isLetter }.reversed())
        guard let number = decimal(text.dropLast(unit.count), exponent: true) else { return nil }
        let seconds: Double
        switch unit {
        case "ms": seconds = number / 1000
        case "", "s": seconds = number
        case "m": seconds = number * 60
        case "h": seconds = number * 3600
        case "d": seconds = number * 86_400
        default: return nil
        }
        return seconds.isFinite ? seconds : nil
    }

    /// A size in bytes: a number with an optional binary unit, any case:
    /// `k`/`KB`/`KiB` 1024, `M`/`MiB` 1024², `G`/`GiB` 1024³, `T`/`TiB`
    /// 1024⁴, `B` 1 ("16384", "16k", "16KiB", "1.5GiB"). Nil if not that,
    /// not a whole number of bytes, or too large. Also for command-line flags.
    public static func parseSize(_ text: String) -> Int? {
        let unit = String(text.reversed().prefix { $0.isLetter }.reversed()).lowercased()
        let shift: Int
        switch unit {
        case "", "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        case "t", "tb", "tib": shift = 40
        default: return nil
        }
        let digits = text.dropLast(unit.count)
        if let n = Int(digits), digits.allSatisfy(\.isWholeNumber) {
            let (bytes, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
            return overflow ? nil : bytes
        }
        // 1.5GiB: a power of two times the decimal is exact in a Double;
        // accepted when it is a whole number below 2^63.
        guard let d = decimal(digits, exponent: false) else { return nil }
        let bytes = d * Double(1 << shift)
        guard bytes == bytes.rounded(), bytes < 0x1p63 else { return nil }
        return Int(bytes)
    }

    /// `[0-9]+(.[0-9]+)?`, with an exponent `e[+-]?[0-9]+` if allowed.
    static func decimal(_ s: Substring, exponent: Bool) -> Double? {
        var rest = s[...]
        func digits() -> Bool {
            let n = rest.prefix { $0.isASCII && $0.isWholeNumber }.count
            rest = rest.dropFirst(n)
            return n > 0
        }
        guard digits() else { return nil }
        if rest.first == "." { rest = rest.dropFirst(); guard digits() else { return nil } }
        if exponent, let e = rest.first, e == "e" || e == "E" {
            rest = rest.dropFirst()
            if let c = rest.first, c == "+" || c == "-" { rest = rest.dropFirst() }
            guard digits() else { return nil }
        }
        return rest.isEmpty ? Double(s) : nil
    }

    /// The shortest of "7d", "12h", "5m", "10s", "500ms" that reads back
    /// exactly as `seconds`; else the seconds in full ("0.0001s").
    static func formatDuration(_ seconds: Double) -> String {
        if seconds.isFinite && seconds >= 0 && seconds < 0x1p53 {
            for (unit, factor) in [("d", 86_400.0), ("h", 3600), ("m", 60), ("s", 1), ("ms", 0.001)] {
                let n = unit == "ms" ? seconds * 1000 : seconds / factor
                if n == n.rounded() && n < 0x1p53 && (n > 0 || unit == "s") {
                    let text = "\(Int(n))\(unit)"
                    if parseDuration(text) == seconds { return text }
                }
            }
        }
        return "\(seconds)s"
    }

    /// "2GiB", "256MiB", "16KiB" when a whole number of the unit, else bytes.
    static func formatSize(_ bytes: Int) -> String {
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] where bytes > 0 && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(unit)"
        }
        return "\(bytes)"
    }

    /// `127.0.0.1:7070` or `[::1]:7070`: an IPv4 or IPv6 literal (what
    /// ``HTTPEndpoint`` binds; no names to resolve) and a port, 0 for any
    /// free one. Nil if not that. Also for command-line flags.
    public static func parseListenAddress(_ text: String) -> (host: String, port: UInt16)? {
        let host: Substring, port: Substring, family: Int32
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
            family = AF_INET6
        } else {
            guard let colon = text.firstIndex(of: ":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            family = AF_INET
        }
        guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isWholeNumber }), let p = UInt16(port) else { return nil }
        var buffer = in6_addr()
        guard inet_pton(family, String(host), &buffer) == 1 else { return nil }
        return (String(host), p)
    }

    static func isHTTPURL(_ s: String) -> Bool {
        let lower = s.lowercased()
        for scheme in ["http://", "https://"] where lower.hasPrefix(scheme) {
            return lower.count > scheme.count && !s.contains { $0.isWhitespace }
        }
        return false
    }
}

// MARK: - The schema

/// One key of the file: where it is, what it is for, how it reads and writes.
struct ConfigKey {
    var table: String
    var name: String
    /// What it is for: the comment ``AgentConfig/rendered()`` writes.
    var comment: String
    /// What a valid value is, for "expected …, got …".
    var expected: String
    var get: (AgentConfig) -> TOMLValue
    /// Stores a valid value; false, storing nothing, if not valid.
    var set: (inout AgentConfig, TOMLValue) -> Bool
}

extension AgentConfig {
    /// Every key but the labels', in the order ``rendered()`` writes them.
    static var settings: [ConfigKey] {
        [
            // DEFAULT_MAX_SAMPLE_RATE in kernel/events/core.c, the default of
            // kernel.perf_event_max_sample_rate (the kernel lowers it when
            // sampling costs too much; capture checks the current value).
            integer("", "frequency", \.frequency, 1...100_000, "an integer from 1 to 100000",
                    "samples per second per CPU"),
            duration("", "window", \.window, 1...3600, "a duration from 1s to 1h, like \"10s\" or \"1m\"",
                     "samples are summed and written out once per window"),
            boolean("", "off_cpu", \.offCPU, "also record where threads wait off the CPU"),
            integer("", "off_cpu_min_us", \.offCPUMinMicroseconds, 0...3_600_000_000,
                    "microseconds from 0 to 3600000000 (an hour)",
                    "shorter waits are counted, not recorded with their stacks"),
            // SPROF_USTACK_MAX in bpf/include/sprof_abi.h; below a page the
            // copy misses most frames; the BPF side copies 8-byte words.
            size("", "stack_size", \.stackSize, 4096...65536, multiple: 8,
                 "a size from 4KiB to 64KiB, a multiple of 8, like \"16k\" or \"16384\"",
                 "user-stack bytes copied per sample (4KiB to 64KiB)"),
            ConfigKey(table: "", name: "cpu_budget",
                    comment: "cores the agent may use (0.01 = 1% of one); it samples less to stay under",
                    expected: "a number of cores above 0 and at most 1, like 0.01",
                    get: { .float($0.cpuBudget) },
                    set: { c, v in
                        let x: Double
                        switch v {
                        case .float(let d): x = d
                        case .integer(let n): x = Double(n)
                        default: return false
                        }
                        guard x > 0 && x <= 1 else { return false }
                        c.cpuBudget = x
                        return true
                    }),
            string("", "host", \.host, "a string", "the host label; \"\" = this machine's hostname"),
            boolean("", "keep_root", \.keepRoot, "keep all of root's capabilities (false: only those it needs after loading)"),

            boolean("store", "enabled", \.storeEnabled, "keep every window on local disk"),
            string("store", "directory", \.storeDirectory, "a string (a directory path)", "\"\" = the default state directory"),
            // Ten years: beyond any use, and far from Date arithmetic's limits.
            duration("store", "max_age", \.storeMaxAge, 1...(3650 * 86_400), "a duration from 1s to 3650d, like \"7d\" or \"12h\"",
                     "windows older than this are deleted"),
            size("store", "max_size", \.storeMaxBytes, 1...Int.max, "a size like \"2GiB\" or \"500MiB\"",
                 "the oldest windows are deleted beyond this"),

            string("http", "listen", \.httpListen,
                   "\"\" or an IP address and port, like \"127.0.0.1:7070\" or \"[::1]:7070\"",
                   "address:port, [IPv6]:port; \"\" disables",
                   valid: { $0.isEmpty || parseListenAddress($0) != nil }),
            boolean("http", "allow_remote", \.httpAllowRemote, "allow an address other than loopback (the page shows what runs here)"),

            string("clickhouse", "url", \.clickhouseURL, "\"\" or a URL starting with http:// or https://",
                   "ClickHouse's HTTP interface, like \"http://localhost:8123\"; \"\" disables",
                   valid: { $0.isEmpty || isHTTPURL($0) }),
            string("clickhouse", "spool_directory", \.clickhouseSpoolDirectory, "a string (a directory path)",
                   "batches not yet written; \"\" = the default"),
            size("clickhouse", "spool_max", \.clickhouseSpoolMaxBytes, 1...Int.max, "a size like \"256MiB\"",
                 "the oldest batches are dropped beyond this"),
            // A century: ClickHouse's Date (UInt16 days since 1970) ends in 2149.
            integer("clickhouse", "retention_days", \.clickhouseRetentionDays, 1...36_500, "a number of days from 1 to 36500",
                    "days of samples kept (older days are dropped)"),

            string("pyroscope", "url", \.pyroscopeURL, "\"\" or a URL starting with http:// or https://",
                   "the server, like \"http://localhost:4040\"; \"\" disables",
                   valid: { $0.isEmpty || isHTTPURL($0) }),
            // What the pusher will send: one rule, PyroscopeRequest's.
            string("pyroscope", "app_name", \.pyroscopeAppName, "a name of letters, digits and _ . / -",
                   "the application name in Pyroscope",
                   valid: { (try? PyroscopeRequest.labelSet(appName: $0, labels: [:])) != nil }),
        ]
    }

    private static func integer(_ table: String, _ name: String, _ path: WritableKeyPath<AgentConfig, Int>,
                                _ range: ClosedRange<Int>, _ expected: String, _ comment: String) -> ConfigKey {
        ConfigKey(table: table, name: name, comment: comment, expected: expected,
                get: { .integer($0[keyPath: path]) },
                set: { c, v in
                    guard case .integer(let n) = v, range.contains(n) else { return false }
                    c[keyPath: path] = n
                    return true
                })
    }

    private static func boolean(_ table: String, _ name: String, _ path: WritableKeyPath<AgentConfig, Bool>,
                                _ comment: String) -> ConfigKey {
        ConfigKey(table: table, name: name, comment: comment, expected: "true or false",
                get: { .boolean($0[keyPath: path]) },
                set: { c, v in
                    guard case .boolean(let b) = v else { return false }
                    c[keyPath: path] = b
                    return true
                })
    }

    private static func string(_ table: String, _ name: String, _ path: WritableKeyPath<AgentConfig, String>,
                               _ expected: String, _ comment: String, valid: @escaping (String) -> Bool = { _ in true }) -> ConfigKey {
        ConfigKey(table: table, name: name, comment: comment, expected: expected,
                get: { .string($0[keyPath: path]) },
                set: { c, v in
                    guard case .string(let s) = v, valid(s) else { return false }
                    c[keyPath: path] = s
                    return true
                })
    }

    /// A duration string, or a number of seconds.
    private static func duration(_ table: String, _ name: String, _ path: WritableKeyPath<AgentConfig, Double>,
                                 _ range: ClosedRange<Double>, _ expected: String, _ comment: String) -> ConfigKey {
        ConfigKey(table: table, name: name, comment: comment, expected: expected,
                get: { .string(formatDuration($0[keyPath: path])) },
                set: { c, v in
                    let seconds: Double?
                    switch v {
                    case .string(let s): seconds = parseDuration(s)
                    case .integer(let n): seconds = Double(n)
                    case .float(let d): seconds = d
                    default: seconds = nil
                    }
                    guard let seconds, range.contains(seconds) else { return false }
                    c[keyPath: path] = seconds
                    return true
                })
    }

    /// A size string, or a number of bytes.
    private static func size(_ table: String, _ name: String, _ path: WritableKeyPath<AgentConfig, Int>,
                             _ range: ClosedRange<Int>, multiple: Int = 1, _ expected: String, _ comment: String) -> ConfigKey {
        ConfigKey(table: table, name: name, comment: comment, expected: expected,
                get: { .string(formatSize($0[keyPath: path])) },
                set: { c, v in
                    let bytes: Int?
                    switch v {
                    case .string(let s): bytes = parseSize(s)
                    case .integer(let n): bytes = n
                    default: bytes = nil
                    }
                    guard let bytes, range.contains(bytes), bytes % multiple == 0 else { return false }
                    c[keyPath: path] = bytes
                    return true
                })
    }
}
