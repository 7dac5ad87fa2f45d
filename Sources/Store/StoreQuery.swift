// What a store query is made of: times (`--since 10m`, `--until 2026-11-22T10:00:00Z`)
// and label filters (`--where comm=nginx`).
import Foundation
import SprofProfile

/// Times and durations as `sprof report --store` takes them.
public enum StoreTime {
    /// Seconds of a duration: a whole number and a unit, `30s`, `10m`, `2h`, `1d`.
    public static func duration(_ text: String) throws(StoreError) -> TimeInterval {
        let units: [Character: TimeInterval] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last, let scale = units[unit], text.count > 1,
              text.dropLast().allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int64(text.dropLast()),
              n <= 100 * 365 else {   // 100 years of days: more is a typo, and past Date's precision for ns
            throw .badTime("\(text): not a duration; durations are a whole number and s, m, h or d: 30s, 10m, 2h, 1d")
        }
        return TimeInterval(n) * scale
    }

    /// A point in time: a duration before `now` (`10m`), an RFC 3339 time
    /// (`2026-11-22T10:00:00Z`, `2026-11-22T11:00:00.5+01:00`), unix
    /// seconds (`1795000000`, `1795000000.25`, or `@1795000000` as `sprof
    /// query` writes them), or `now`.
    public static func parse(_ text: String, now: Date = Date()) throws(StoreError) -> Date {
        // `now` and `@SECONDS`, as `sprof query` takes them too.
        if text == "now" { return now }
        if text.hasPrefix("@"), text.count > 1, text.dropFirst().allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
           let seconds = Double(text.dropFirst()) {
            return Date(timeIntervalSince1970: seconds)
        }
        // Digits then letters (`10m`, and `10x` or `5min`, so the message is about durations).
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        if !digits.isEmpty, digits.count < text.count, text.dropFirst(digits.count).allSatisfy({ $0.isASCII && $0.isLetter }) {
            return now.addingTimeInterval(-(try duration(text)))
        }
        if !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
           text.filter({ $0 == "." }).count <= 1, let seconds = Double(text) {
            return Date(timeIntervalSince1970: seconds)
        }
        if let d = rfc3339(text) { return d }
        throw .badTime("\(text): not a time; give a duration before now (30s, 10m, 2h, 1d), an RFC 3339 time (2026-11-22T10:00:00Z) or unix seconds")
    }

    /// RFC 3339 section 5.6 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`,
    /// `T` and `Z` in either case, or a space for `T` (the section's NOTE).
    /// Parsed here rather than by ISO8601DateFormatter, which hands the text
    /// to ICU and may accept what is not a date (month 13 rolled over).
    static func rfc3339(_ text: String) -> Date? {
        let u = Array(text.utf8)
        guard u.count >= 20 else { return nil }
        func digits(_ at: Int, _ n: Int) -> Int64? {
            guard at + n <= u.count else { return nil }
            var v: Int64 = 0
            for c in u[at..<(at + n)] {
                guard c >= 0x30 && c <= 0x39 else { return nil }
                v = v * 10 + Int64(c - 0x30)
            }
            return v
        }
        func char(_ at: Int, _ c: String) -> Bool { at < u.count && c.utf8.contains(u[at]) }
        guard let year = digits(0, 4), char(4, "-"), let month = digits(5, 2), char(7, "-"), let day = digits(8, 2),
              char(10, "Tt "), let hour = digits(11, 2), char(13, ":"), let minute = digits(14, 2), char(16, ":"),
              let second = digits(17, 2) else { return nil }
        var i = 19
        var fraction = 0.0
        if char(i, ".") {
            var scale = 0.1
            i += 1
            let first = i
            while let d = digits(i, 1) { fraction += Double(d) * scale; scale /= 10; i += 1 }
            guard i > first else { return nil }
        }
        var offset: Int64 = 0
        if char(i, "Zz") {
            i += 1
        } else if char(i, "+-"), let oh = digits(i + 1, 2), char(i + 3, ":"), let om = digits(i + 4, 2), oh < 24, om < 60 {
            offset = (oh * 60 + om) * 60 * (u[i] == UInt8(ascii: "-") ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        // Section 5.7: month 1-12, day within its month, leap second 60 allowed (kept as 60: the next second).
        guard i == u.count, (1...12).contains(month), day >= 1, hour < 24, minute < 60, second <= 60 else { return nil }
        let days = WindowName.days(fromCivil: year, month, day)
        guard WindowName.civil(fromDays: days) == (year, month, day) else { return nil }   // 2026-02-30
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    /// RFC 3339 in UTC, to the second (`2026-11-22T10:00:00Z`).
    public static func format(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: d)
    }
}

/// `--where key=value`: keeps samples with a label `key` whose string is
/// `value`, or whose number is `value` read as an integer (`pid=42`).
public struct LabelMatch: Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var value: String
    private var number: Int64?

    public init(key: String, value: String) {
        self.key = key
        self.value = value
        number = Int64(value)
    }

    /// Parses `key=value` (the first `=` separates; the value may contain more).
    public init(parsing text: String) throws(StoreError) {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex, text.index(after: eq) != text.endIndex else {
            throw .badLabelFilter("--where \(text): expected key=value, e.g. comm=nginx, pid=42, container_id=3f2a9c, systemd_unit=nginx.service")
        }
        self.init(key: String(text[..<eq]), value: String(text[text.index(after: eq)...]))
    }

    public func matches(_ sample: Profile.Sample) -> Bool {
        sample.labels.contains { l in
            l.key == key && (l.string == value || (number != nil && l.number == number))
        }
    }

    public var description: String { "\(key)=\(value)" }

    /// Whether `sample` passes a list of `--where` filters, as `sprof query`
    /// reads them: every key must hold, and a key given more than once means
    /// alternatives (`--where comm=nginx --where comm=envoy --where pid=42`:
    /// nginx or envoy, and pid 42). A sample has one value per label, so
    /// alternatives are the only useful reading of a repeated key.
    public static func matches(_ sample: Profile.Sample, all filters: [LabelMatch]) -> Bool {
        var byKey: [String: Bool] = [:]
        for f in filters { byKey[f.key] = (byKey[f.key] ?? false) || f.matches(sample) }
        return byKey.values.allSatisfy { $0 }
    }
}
