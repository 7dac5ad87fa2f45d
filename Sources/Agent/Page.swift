// The agent's page (issue 9): the local store's windows, merged over a time
// range and filtered by labels, as a flame graph in a browser, served by the
// agent's loopback endpoint beside /metrics and /healthz.
//
//   GET /                 an HTML page: the form, what was merged, the graph
//   GET /flamegraph.svg   the interactive flame graph alone
//   GET /folded           folded stacks as text, for curl and scripts
//
// All three take `since`, `until`, `where` and `value`, read as
// `sprof report --store` reads `--since`, `--until`, `--where` and `--value`
// (StoreTime, LabelMatch): the page and the command show the same thing.
import Foundation
import SprofFlameGraph
import SprofProfile
import SprofStore

/// The agent's page over its store.
///
/// The page is self-contained: its style and its one script are inline, and
/// the graph is the SVG SprofFlameGraph draws, in an `<iframe>` of its own:
/// the graph's script (zoom, search, tooltips) runs in its own document, as
/// when the file is opened directly, with none of the page's globals (it
/// declares `frames`, which in an HTML page is `window.frames`).
///
/// The page resolves `since` and `until` against one clock reading and gives
/// the iframe those instants, so the graph is of exactly the windows the
/// page counts, even when a new window arrives between the two requests.
/// Each request reads the store anew (the page's and the graph's both: the
/// store keeps no cache, and a range of an hour is 360 windows of 10 s).
///
/// Everything shown is HTML-escaped: process names, label values and paths
/// come from whatever runs on the host, and a process may call itself
/// `<script>`.
public struct AgentPage: Sendable {
    public let store: ProfileStore
    /// The host the page is about, in its title and the graph's.
    public let host: String

    /// The range when `since` is absent or empty: the last ten minutes
    /// (sixty 10 s windows: a quick first look; widen it in the form).
    public static let defaultSince = "10m"

    public init(store: ProfileStore, host: String) {
        self.store = store
        self.host = host
    }

    /// The answer to `request`, or nil for a path the page does not serve
    /// (the endpoint's `/metrics`, `/healthz`, and anything else).
    public func handle(_ request: HTTPEndpoint.Request) -> HTTPEndpoint.Response? {
        handle(request, now: Date())
    }

    /// ``handle(_:)`` at `now` (relative times count back from it).
    func handle(_ request: HTTPEndpoint.Request, now: Date) -> HTTPEndpoint.Response? {
        switch request.path {
        case "/": return page(request.query, now: now)
        case "/flamegraph.svg": return flameGraph(request.query, now: now)
        case "/folded": return folded(request.query, now: now)
        default: return nil
        }
    }

    // MARK: - Parameters

    /// What a request asks for: the parameters as given, and resolved
    /// against one `now`.
    struct Selection {
        /// `since` as given, or ``AgentPage/defaultSince``.
        var sinceText: String
        /// `until` as given; empty for now.
        var untilText: String
        /// `where` as given.
        var whereText: String
        /// `value` as given; nil for the default (``Chosen``).
        var value: String?
        var since: Date
        var until: Date?
        var filters: [LabelMatch]

        init(_ query: [String: String], now: Date) throws(AgentError) {
            func text(_ key: String) -> String { (query[key] ?? "").trimmingCharacters(in: .whitespaces) }
            let given = text("since")
            sinceText = given.isEmpty ? AgentPage.defaultSince : given
            untilText = text("until")
            whereText = text("where")
            let v = text("value")
            value = v.isEmpty ? nil : v
            // To the millisecond, so the instants handed to the iframe as unix
            // seconds (AgentPage.seconds) read back as the same ones.
            func ms(_ d: Date) -> Date { Date(timeIntervalSince1970: (d.timeIntervalSince1970 * 1000).rounded(.down) / 1000) }
            do { since = ms(try StoreTime.parse(sinceText, now: now)) } catch {
                throw .badPageParameter(name: "since", reason: error.description)
            }
            if untilText.isEmpty {
                until = nil
            } else {
                let u: Date
                do { u = ms(try StoreTime.parse(untilText, now: now)) } catch {
                    throw .badPageParameter(name: "until", reason: error.description)
                }
                guard u > since else {
                    throw .badPageParameter(name: "until", reason: "\(untilText) (\(StoreTime.format(u))) is not after since "
                                            + "\(sinceText) (\(StoreTime.format(since))): the range is empty")
                }
                until = u
            }
            filters = try AgentPage.filters(whereText)
        }
    }

    /// `where`: `key=value` filters separated by spaces or commas, read as
    /// `--where` flags (``LabelMatch/matches(_:all:)``: different keys must
    /// all hold, a repeated key means alternatives). A piece without `=`
    /// continues the value before it, so `comm=Web Content` (a process name
    /// with a space, as Firefox's) is one filter.
    static func filters(_ text: String) throws(AgentError) -> [LabelMatch] {
        func separator(_ c: Character) -> Bool { c == "," || c.isWhitespace }
        var pieces: [Range<String.Index>] = []
        var i = text.startIndex
        while i < text.endIndex {
            while i < text.endIndex, separator(text[i]) { i = text.index(after: i) }
            guard i < text.endIndex else { break }
            let start = i
            while i < text.endIndex, !separator(text[i]) { i = text.index(after: i) }
            if !text[start..<i].contains("="), let last = pieces.last {
                pieces[pieces.count - 1] = last.lowerBound..<i
            } else {
                pieces.append(start..<i)
            }
        }
        var out: [LabelMatch] = []
        for p in pieces {
            do { out.append(try LabelMatch(parsing: String(text[p]))) } catch {
                throw .badPageParameter(name: "where", reason: "\(text[p]) is not key=value; write comm=nginx, pid=42, "
                                        + "container_id=3f2a9c or systemd_unit=nginx.service, several separated by spaces or commas")
            }
        }
        return out
    }

    /// The values a graph can show (the agent's windows' sample types) and
    /// `both`, on- plus off-CPU time, as `sprof report --value` has them.
    static let knownValues = ["samples", "cpu", "offcpu", "waits", "both"]

    // MARK: - Loading

    /// What the page shows: the windows merged and the value chosen.
    struct Merged {
        var loaded: ProfileStore.Loaded
        /// The merged profile with the chosen value at `valueIndex`
        /// (for `both`, a column added: cpu + offcpu).
        var profile: Profile
        var valueIndex: Int
        /// The value's name (`samples`, `cpu`, `both`, …).
        var value: String
        /// The values these windows have, for the form.
        var choices: [String]
        /// The sum of the chosen value over every sample.
        var total: Int64
    }

    enum Failure: Error {
        case parameter(AgentError)
        case store(StoreError)
    }

    /// The windows of the selection merged, nil if the range has none.
    func merge(_ s: Selection) throws(Failure) -> Merged? {
        let loaded: ProfileStore.Loaded
        do { loaded = try store.load(since: s.since, until: s.until, where: s.filters) } catch {
            if case .noWindows = error { return nil }
            throw .store(error)
        }
        let p = loaded.profile
        var choices = p.sampleTypes.map(\.type)
        if p.valueIndex("cpu") != nil && p.valueIndex("offcpu") != nil { choices.append("both") }
        // sprof report's default: on- and off-CPU time together when there are waits.
        let value = s.value ?? (choices.contains("both") ? "both" : choices.contains("samples") ? "samples" : choices.first ?? "samples")
        var profile = p, index = 0
        if loaded.windows.isEmpty {
            // Nothing was read (every file skipped): no types to check against.
            guard Self.knownValues.contains(value) else { throw .parameter(Self.unknownValue(value, choices: Self.knownValues)) }
        } else if value == "both", let cpu = p.valueIndex("cpu"), let off = p.valueIndex("offcpu") {
            profile = p.addingSum(of: [cpu, off], as: .init("wall", "nanoseconds"))
            index = p.sampleTypes.count
        } else if let i = p.valueIndex(value), value != "both" {
            index = i
        } else {
            throw .parameter(Self.unknownValue(value, choices: choices))
        }
        let total = profile.samples.reduce(Int64(0)) { $0 &+ (index < $1.values.count ? $1.values[index] : 0) }
        return Merged(loaded: loaded, profile: profile, valueIndex: index, value: value, choices: choices, total: total)
    }

    static func unknownValue(_ value: String, choices: [String]) -> AgentError {
        let hint = value == "offcpu" || value == "waits" || value == "both" ? " (off-CPU waits are only in windows recorded with them)" : ""
        return .badPageParameter(name: "value", reason: "\(value) is not a value of these windows; they have \(choices.joined(separator: ", "))\(hint)")
    }

    /// The folded stacks of the chosen value, as `sprof report --flamegraph` draws them.
    static func stacks(_ m: Merged) -> FoldedStacks {
        var stacks = FoldedStacks()
        for (stack, v) in m.profile.foldedStacks(valueIndex: m.valueIndex) where v > 0 {
            stacks.add(stack, count: UInt64(v))
        }
        return stacks
    }

    /// "no samples between A and B …": why there is nothing to draw.
    static func noSamples(_ s: Selection, _ m: Merged?, now: Date) -> String {
        let until = s.until.map(StoreTime.format) ?? "now (\(StoreTime.format(now)))"
        var text = "no samples between \(StoreTime.format(s.since)) and \(until)"
        if !s.filters.isEmpty { text += " matching where \(s.filters.map(\.description).joined(separator: " "))" }
        guard let m else { return text + ": the store has no windows in that range" }
        if m.loaded.windows.isEmpty {
            return text + ": none of the \(m.loaded.skipped.count) files in that range could be read"
        }
        let windows = m.loaded.windows.count == 1 ? "1 window" : "\(m.loaded.windows.count) windows"
        if m.profile.samples.isEmpty { return text + " (\(windows) merged)" }
        return text + " with \(m.value) values (\(windows) merged)"
    }

    // MARK: - /flamegraph.svg and /folded

    func flameGraph(_ query: [String: String], now: Date) -> HTTPEndpoint.Response {
        let s: Selection, merged: Merged?
        do { s = try Selection(query, now: now) } catch { return Self.plain(400, error.description) }
        do { merged = try merge(s) } catch { return Self.plain(error) }
        guard let m = merged, m.total > 0 else { return Self.plain(404, Self.noSamples(s, merged, now: now)) }
        var options = FlameGraphOptions(title: "sprof agent on \(host)", subtitle: Self.subtitle(s, m))
        options.countName = ["cpu", "offcpu", "both"].contains(m.value) ? "ns" : m.value == "waits" ? "waits" : "samples"
        do {
            return .init(status: 200, contentType: "image/svg+xml; charset=utf-8", text: try renderFlameGraph(Self.stacks(m), options: options))
        } catch {
            return Self.plain(500, "drawing the flame graph: \(error)")
        }
    }

    func folded(_ query: [String: String], now: Date) -> HTTPEndpoint.Response {
        let s: Selection, merged: Merged?
        do { s = try Selection(query, now: now) } catch { return Self.plain(400, error.description) }
        do { merged = try merge(s) } catch { return Self.plain(error) }
        // No samples is an empty folded file, which tools read as such.
        guard let m = merged else { return .init(status: 200, text: "") }
        return .init(status: 200, text: Profile.renderFolded(m.profile.foldedStacks(valueIndex: m.valueIndex).filter { $0.value > 0 }))
    }

    /// The graph's subtitle: the time the windows cover, the filter, the value.
    static func subtitle(_ s: Selection, _ m: Merged) -> String {
        var parts = [covered(m.loaded.windows)]
        if !s.filters.isEmpty { parts.append("where " + s.filters.map(\.description).joined(separator: " ")) }
        parts.append(m.value == "both" ? "cpu + offcpu" : m.value)
        return parts.joined(separator: " · ")
    }

    /// The first window's start to the last one's end.
    static func covered(_ windows: [WindowFile]) -> String {
        guard let first = windows.first, let last = windows.last else { return "" }
        func time(_ nanos: Int64) -> String { StoreTime.format(Date(timeIntervalSince1970: Double(nanos) / 1e9)) }
        return "\(time(first.startNanos)) – \(time(windows.map(\.endNanos).max() ?? last.endNanos))"
    }

    static func plain(_ status: Int, _ message: String) -> HTTPEndpoint.Response {
        .init(status: status, text: message + "\n")
    }

    static func plain(_ failure: Failure) -> HTTPEndpoint.Response {
        switch failure {
        case .parameter(let e): return plain(400, e.description)
        case .store(let e): return plain(500, "store: \(e)")
        }
    }

    // MARK: - The page

    func page(_ query: [String: String], now: Date) -> HTTPEndpoint.Response {
        let s: Selection
        do { s = try Selection(query, now: now) } catch {
            return html(400, form(query, choices: Self.knownValues, chosen: query["value"]) + Self.paragraph("error", error.description))
        }
        let merged: Merged?
        do { merged = try merge(s) } catch {
            switch error {
            case .parameter(let e):
                return html(400, form(query, choices: Self.knownValues, chosen: query["value"]) + Self.paragraph("error", e.description))
            case .store(let e):
                return html(500, form(query, choices: Self.knownValues, chosen: query["value"]) + Self.paragraph("error", "store: \(e)"))
            }
        }
        var body = form(query, choices: merged?.choices ?? Self.knownValues, chosen: merged?.value ?? s.value)
        guard let m = merged, m.total > 0 else {
            body += Self.paragraph("message", Self.noSamples(s, merged, now: now))
            if let m = merged { body += Self.skippedList(m.loaded.skipped) }
            return html(200, body)
        }
        body += summary(m)
        body += Self.skippedList(m.loaded.skipped)
        // The instants this page resolved, so the graph is of the same windows.
        var params = [("since", Self.seconds(s.since)), ("until", Self.seconds(s.until ?? now))]
        if !s.whereText.isEmpty { params.append(("where", s.whereText)) }
        params.append(("value", m.value))
        let q = Self.queryString(params)
        body += """
            <iframe id="flamegraph" title="flame graph" src="/flamegraph.svg?\(Self.escape(q))" width="1200" height="600" onload="fit(this)"></iframe>
            <p class="links"><a href="/flamegraph.svg?\(Self.escape(q))">flamegraph.svg</a> · <a href="/folded?\(Self.escape(q))">folded stacks</a></p>

            """
        body += processes(s, m)
        return html(200, body)
    }

    /// The form, filled with the parameters as given.
    func form(_ query: [String: String], choices: [String], chosen: String?) -> String {
        func field(_ name: String, _ label: String, placeholder: String, size: Int) -> String {
            let value = Self.escape(query[name] ?? (name == "since" ? Self.defaultSince : ""))
            return "<label>\(label) <input name=\"\(name)\" value=\"\(value)\" placeholder=\"\(Self.escape(placeholder))\" size=\"\(size)\"></label>\n"
        }
        var options = ""
        for c in choices {
            let shown = c == "both" ? "both (cpu + offcpu)" : c
            options += "<option value=\"\(Self.escape(c))\"\(c == chosen ? " selected" : "")>\(Self.escape(shown))</option>"
        }
        return """
            <form method="get" action="/">
            \(field("since", "since", placeholder: Self.defaultSince, size: 22))\
            \(field("until", "until", placeholder: "now", size: 22))\
            \(field("where", "where", placeholder: "comm=nginx pid=42", size: 30))\
            <label>value <select name="value">\(options)</select></label>
            <button type="submit">Show</button>
            </form>
            <p class="hint">since, until: a duration before now (30s, 10m, 2h, 1d), an RFC 3339 time (2026-11-22T10:00:00Z) or unix seconds.
            where: key=value (comm, pid, container_id, systemd_unit, …), several separated by spaces or commas;
            different keys must all hold, a repeated key means either.</p>

            """
    }

    /// Windows merged, the time they cover, the sample count, the value's total.
    func summary(_ m: Merged) -> String {
        let p = m.loaded.profile
        let samples = p.valueIndex("samples").map { i in p.samples.reduce(Int64(0)) { $0 &+ (i < $1.values.count ? $1.values[i] : 0) } }
            ?? Int64(p.samples.count)
        var parts = [
            "<span id=\"windows\">\(m.loaded.windows.count)</span> window\(m.loaded.windows.count == 1 ? "" : "s") merged",
            "covering <span id=\"covered\">\(Self.escape(Self.covered(m.loaded.windows)))</span>",
            "<span id=\"samples\">\(samples)</span> samples",
        ]
        if m.value != "samples" {
            parts.append("\(Self.escape(m.value == "both" ? "cpu + offcpu" : m.value)) \(Self.escape(Self.amount(m.total, unit: m.profile.sampleTypes[m.valueIndex].unit)))")
        }
        if !m.loaded.skipped.isEmpty {
            parts.append("<span id=\"skipped-count\">\(m.loaded.skipped.count)</span> file\(m.loaded.skipped.count == 1 ? "" : "s") skipped")
        }
        return "<p id=\"summary\">" + parts.joined(separator: " · ") + "</p>\n"
    }

    /// Files the store left out of the merge, and why.
    static func skippedList(_ skipped: [ProfileStore.Skipped]) -> String {
        guard !skipped.isEmpty else { return "" }
        return "<div id=\"skipped\"><p>Skipped (damaged or unfinished; the rest is shown):</p><ul>\n"
            + skipped.map { "<li><code>\(escape($0.path))</code>: \(escape($0.reason))</li>\n" }.joined()
            + "</ul></div>\n"
    }

    /// The processes with the most of the value, each a link that narrows
    /// `where` to it (keeping the filters on other keys).
    func processes(_ s: Selection, _ m: Merged) -> String {
        var byComm: [String: Int64] = [:]
        for sample in m.profile.samples where m.valueIndex < sample.values.count {
            byComm[sample.label("comm")?.string ?? "", default: 0] &+= sample.values[m.valueIndex]
        }
        // The ten largest: the head of the list is what a look at a host is for.
        let top = byComm.filter { $0.value > 0 }.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(10)
        let unit = m.profile.sampleTypes[m.valueIndex].unit
        var rows = ""
        for (comm, v) in top {
            let share = String(format: "%.1f%%", 100 * Double(v) / Double(max(m.total, 1)))
            let name: String
            if comm.isEmpty {
                name = "(no comm label)"
            } else {
                let others = s.filters.filter { $0.key != "comm" }.map(\.description)
                var params = [("since", s.sinceText), ("until", s.untilText), ("where", (others + ["comm=\(comm)"]).joined(separator: " "))]
                if let v = s.value { params.append(("value", v)) }
                name = "<a href=\"/?\(Self.escape(Self.queryString(params)))\">\(Self.escape(comm))</a>"
            }
            rows += "<tr><td>\(name)</td><td class=\"n\">\(Self.escape(Self.amount(v, unit: unit)))</td><td class=\"n\">\(share)</td></tr>\n"
        }
        return "<table id=\"processes\"><tr><th>process</th><th>\(Self.escape(m.value == "both" ? "cpu + offcpu" : m.value))</th><th>share</th></tr>\n"
            + rows + "</table>\n"
    }

    func html(_ status: Int, _ body: String) -> HTTPEndpoint.Response {
        let title = Self.escape("sprof agent on \(host)")
        // The icon is an empty data: URL so the browser asks for no /favicon.ico.
        let page = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>\(title)</title>
            <link rel="icon" href="data:,">
            <style>
            body { font: 14px system-ui, sans-serif; margin: 1em 2em; color: #222; }
            h1 { font-size: 1.3em; }
            form label { margin-right: 1em; }
            input { font-family: ui-monospace, monospace; }
            .hint, .links { color: #666; font-size: 0.9em; }
            #error { color: #b00; font-weight: bold; }
            #message { font-size: 1.1em; }
            #skipped { color: #a60; }
            iframe { border: 1px solid #ccc; display: block; max-width: 100%; }
            table { border-collapse: collapse; margin-top: 1em; }
            td, th { padding: 2px 10px; text-align: left; }
            td.n { text-align: right; font-variant-numeric: tabular-nums; }
            </style>
            <script>
            // Size the graph's frame to the SVG it holds (same origin, so its document is readable).
            function fit(f) {
              try {
                var svg = f.contentDocument.documentElement;
                if (svg.getAttribute("width")) f.width = Math.ceil(+svg.getAttribute("width"));
                if (svg.getAttribute("height")) f.height = Math.ceil(+svg.getAttribute("height"));
              } catch (e) {}
            }
            </script>
            </head>
            <body>
            <h1>\(title)</h1>
            \(body)</body>
            </html>

            """
        return .init(status: status, contentType: "text/html; charset=utf-8", text: page)
    }

    static func paragraph(_ id: String, _ text: String) -> String {
        "<p id=\"\(id)\">\(escape(text))</p>\n"
    }

    // MARK: - Text

    /// HTML escaping for text and attribute values (double-quoted): the five
    /// characters HTML gives meaning to.
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// `a=1&b=2`, each value percent-encoded (RFC 3986 §2.1: every byte but
    /// the unreserved ones, §2.3), empty ones left out.
    static func queryString(_ pairs: [(String, String)]) -> String {
        func encode(_ s: String) -> String {
            var out = ""
            for b in s.utf8 {
                switch b {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                    out.unicodeScalars.append(Unicode.Scalar(b))
                default:
                    out += String(format: "%%%02X", b)
                }
            }
            return out
        }
        return pairs.filter { !$0.1.isEmpty }.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }

    /// Unix seconds to the millisecond, as StoreTime.parse reads them.
    static func seconds(_ d: Date) -> String { String(format: "%.3f", d.timeIntervalSince1970) }

    /// A value for people: nanoseconds in the largest unit that keeps it
    /// at least 1, counts as they are.
    static func amount(_ v: Int64, unit: String) -> String {
        guard unit == "nanoseconds" else { return "\(v)" }
        let d = Double(v)
        if d >= 1e9 { return String(format: "%.2f s", d / 1e9) }
        if d >= 1e6 { return String(format: "%.1f ms", d / 1e6) }
        if d >= 1e3 { return String(format: "%.1f µs", d / 1e3) }
        return "\(v) ns"
    }
}
