import Synchronization

/// The agent's numbers for `/metrics`, in the Prometheus text exposition
/// format, version 0.0.4 (prometheus.io/docs/instrumenting/exposition_formats):
/// per metric a `# HELP name text` and a `# TYPE name counter|gauge` line,
/// then `name{label="value",...} number` lines. Names match
/// `[a-zA-Z_:][a-zA-Z0-9_:]*`; counters end in `_total`; label values escape
/// `\`, `"` and newline; help text escapes `\` and newline.
///
/// Thread-safe: samplers, sinks and the HTTP thread update and read it at
/// once. Values are Doubles, as the format's numbers are.
public final class Metrics: Sendable {
    public enum Kind: String, Sendable { case counter, gauge }

    struct Family {
        var help: String
        var kind: Kind
        /// Label sets (sorted key=value pairs) to values, in insertion order.
        var series: [(labels: [(String, String)], value: Double)]
    }

    private let families = Mutex<[(name: String, family: Family)]>([])

    public init() {}

    /// Declares a metric (once; a second declaration is ignored).
    public func declare(_ name: String, _ kind: Kind, help: String) {
        precondition(Self.isValidName(name), "metric name \(name)")
        families.withLock { f in
            if !f.contains(where: { $0.name == name }) { f.append((name, Family(help: help, kind: kind, series: []))) }
        }
    }

    /// Sets a gauge (or a counter kept elsewhere) for a label set.
    public func set(_ name: String, _ value: Double, labels: [String: String] = [:]) {
        update(name, labels) { _ in value }
    }

    /// Adds to a counter for a label set.
    public func add(_ name: String, _ delta: Double = 1, labels: [String: String] = [:]) {
        update(name, labels) { $0 + delta }
    }

    /// The current value, nil if never set.
    public func value(_ name: String, labels: [String: String] = [:]) -> Double? {
        let key = labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return families.withLock { f in
            f.first { $0.name == name }?.family.series.first { $0.labels.elementsEqual(key, by: ==) }?.value
        }
    }

    private func update(_ name: String, _ labels: [String: String], _ change: (Double) -> Double) {
        let key = labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        families.withLock { f in
            guard let i = f.firstIndex(where: { $0.name == name }) else {
                preconditionFailure("metric \(name) used before it was declared")
            }
            if let j = f[i].family.series.firstIndex(where: { $0.labels.elementsEqual(key, by: ==) }) {
                f[i].family.series[j].value = change(f[i].family.series[j].value)
            } else {
                f[i].family.series.append((key, change(0)))
            }
        }
    }

    /// The exposition text (`Content-Type: text/plain; version=0.0.4`).
    public func render() -> String {
        var out = ""
        families.withLock { f in
            for (name, family) in f {
                out += "# HELP \(name) \(Self.escapeHelp(family.help))\n"
                out += "# TYPE \(name) \(family.kind.rawValue)\n"
                for s in family.series {
                    out += name
                    if !s.labels.isEmpty {
                        out += "{" + s.labels.map { "\($0.0)=\"\(Self.escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
                    }
                    out += " \(Self.format(s.value))\n"
                }
            }
        }
        return out
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(48...57).contains(first) else { return false }
        return name.utf8.allSatisfy { c in
            (65...90).contains(c) || (97...122).contains(c) || (48...57).contains(c) || c == 95 || c == 58
        }
    }

    static func escapeLabel(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Integers without a fraction; others as Swift prints them (which the
    /// format's Go-style float parsing accepts); infinities as `+Inf`/`-Inf`.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}

extension String {
    fileprivate func replacingOccurrences(of a: String, with b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}
