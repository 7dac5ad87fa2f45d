extension Profile {
    /// One row of a `pprof -top` table.
    public struct TopRow: Sendable, Equatable {
        public var name: String
        /// Value of samples whose innermost frame is this function.
        public var flat: Int64
        /// Value of samples with this function anywhere in their stack (once per sample).
        public var cumulative: Int64
    }

    /// Flat and cumulative values per function (inlined functions count as
    /// functions of their own, as in pprof), sorted by flat then cumulative,
    /// descending, then by name; and the total.
    public func top(valueIndex: Int = 0, mangled: Bool = false, filter: SampleFilter = SampleFilter()) -> (rows: [TopRow], total: Int64) {
        var flat: [String: Int64] = [:]
        var cumulative: [String: Int64] = [:]
        var total: Int64 = 0
        var names: [UInt64: [String]] = [:]  // location -> frame names, innermost first
        var seen = Set<String>()
        for s in samples where filter.isEmpty || matches(s, filter) {
            guard valueIndex < s.values.count else { continue }
            let v = s.values[valueIndex]
            total = total.saturatingAdd(v)
            seen.removeAll(keepingCapacity: true)
            for (i, id) in s.locationIDs.enumerated() {
                let frames: [String]
                if let known = names[id] {
                    frames = known
                } else {
                    frames = location(id).map { self.frames(of: $0, mangled: mangled).reversed().map(\.name) } ?? []
                    names[id] = frames
                }
                if i == 0, let leaf = frames.first { flat[leaf] = (flat[leaf] ?? 0).saturatingAdd(v) }
                for f in frames where seen.insert(f).inserted { cumulative[f] = (cumulative[f] ?? 0).saturatingAdd(v) }
            }
        }
        let rows = cumulative.map { TopRow(name: $0.key, flat: flat[$0.key] ?? 0, cumulative: $0.value) }
            .sorted { ($0.flat, $0.cumulative, $1.name) > ($1.flat, $1.cumulative, $0.name) }
        return (rows, total)
    }

    /// The table as `pprof -top` prints it: flat, flat%, sum%, cum, cum%, name.
    public static func renderTop(_ rows: [TopRow], total: Int64, limit: Int, unit: String) -> String {
        func pct(_ v: Int64) -> String {
            guard total != 0 else { return "0.00%" }
            // Rounded half up in integers; in floating point when the
            // integers would overflow (values near Int64.max, from a file).
            let hundredths: Int64
            let (scaled, o1) = v.multipliedReportingOverflow(by: 10_000)
            let (biased, o2) = scaled.addingReportingOverflow(total / 2)
            let (q, o3) = biased.dividedReportingOverflow(by: total)
            if !(o1 || o2 || o3) {
                hundredths = q
            } else {
                // Finite (total ≠ 0); clamped into Int64 (a mixed-sign total can be tiny).
                hundredths = Int64(min(max((Double(v) * 10_000 / Double(total)).rounded(), -9e18), 9e18))
            }
            let frac = hundredths % 100
            return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)%"
        }
        func pad(_ s: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
        let shown = rows.prefix(limit)
        let shownFlat = shown.reduce(Int64(0)) { $0.saturatingAdd($1.flat) }
        var out = "Showing \(shown.count) of \(rows.count) functions, \(shownFlat) of \(total) \(unit) (\(pct(shownFlat)))\n"
        out += [pad("flat", 10), pad("flat%", 7), pad("sum%", 7), pad("cum", 10), pad("cum%", 7)].joined(separator: " ") + "  function\n"
        var sum: Int64 = 0
        for r in shown {
            sum = sum.saturatingAdd(r.flat)
            out += [pad(String(r.flat), 10), pad(pct(r.flat), 7), pad(pct(sum), 7), pad(String(r.cumulative), 10),
                    pad(pct(r.cumulative), 7)].joined(separator: " ") + "  " + clean(r.name) + "\n"
        }
        return out
    }
}
