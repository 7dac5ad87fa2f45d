// How a window is named in the store, so that listing by time reads
// directory entries only and never decodes a file:
//
//     <store>/<YYYY-MM-DD>/<start>-<end>-<host>.pb.gz
//
// - `YYYY-MM-DD`: the UTC day of the window's start. A day directory holds
//   8,640 windows of 10 s (the agent's default), where one flat directory
//   would hold millions after a year; a query reads only the days it covers
//   (plus the day before, for a window that crosses midnight: the store
//   refuses windows longer than a day, so one day before is enough).
// - `start`, `end`: nanoseconds since the Unix epoch (the pprof header's
//   `time_nanos` and `time_nanos + duration_nanos`), zero-padded to 19 digits
//   (Int64.max has 19), so names sort as times do and `ls` shows them in order.
// - `host`: the host that recorded it, so that several agents can share one
//   directory (a network file system) without two windows of the same
//   instant colliding. Characters other than letters, digits, `.`, `_` and
//   `-` become `_`; the host is everything after the second `-`.
//
// A window being written is a hidden temporary file beside it,
// `.<name>.tmp-<pid>-<random>`, renamed to `<name>` once it is complete and
// on disk: a name that ends in `.pb.gz` is always a whole file.

/// A stored window, known from its file name alone.
public struct WindowFile: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var path: String
    /// Nanoseconds since the Unix epoch.
    public var startNanos: Int64
    public var endNanos: Int64
    public var host: String

    public var description: String { path }
}

enum WindowName {
    static let suffix = ".pb.gz"
    static let temporaryMarker = ".pb.gz.tmp-"
    static let nanosPerDay: Int64 = 86_400 * 1_000_000_000

    static func file(start: Int64, end: Int64, host: String) -> String {
        pad(start) + "-" + pad(end) + "-" + host + suffix
    }

    /// (start, end, host) of a window's file name; nil for any other name.
    static func parse(_ name: String) -> (start: Int64, end: Int64, host: String)? {
        guard name.hasSuffix(suffix), !name.hasPrefix(".") else { return nil }
        let stem = name.dropLast(suffix.count)
        let parts = stem.split(separator: "-", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 19, parts[1].count == 19, !parts[2].isEmpty,
              parts[0].allSatisfy(\.isASCIIDigit), parts[1].allSatisfy(\.isASCIIDigit),
              let start = Int64(parts[0]), let end = Int64(parts[1]), end >= start else { return nil }
        return (start, end, String(parts[2]))
    }

    /// The window a temporary file was to become: `.<name>.tmp-…` → parse(name).
    static func parseTemporary(_ name: String) -> (start: Int64, end: Int64, host: String)? {
        guard name.hasPrefix("."), let r = name.range(of: temporaryMarker) else { return nil }
        return parse(String(name[name.index(after: name.startIndex)..<r.lowerBound]) + suffix)
    }

    static func isTemporary(_ name: String) -> Bool { name.hasPrefix(".") && name.contains(temporaryMarker) }

    static func temporary(for name: String, pid: Int32) -> String {
        "." + name + ".tmp-\(pid)-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    }

    static func pad(_ n: Int64) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, 19 - digits.count)) + digits
    }

    static func sanitizeHost(_ host: String) -> String {
        let cleaned = String(String.UnicodeScalarView(host.unicodeScalars.prefix(64).map { c -> Unicode.Scalar in
            switch c.value {
            case 0x30...0x39, 0x41...0x5a, 0x61...0x7a: return c   // 0-9 A-Z a-z
            case 0x2e, 0x5f, 0x2d: return c                        // . _ -
            default: return "_"
            }
        }))
        return cleaned.isEmpty ? "unknown" : cleaned
    }

    // MARK: Days

    /// Days since 1970-01-01 of a time in nanoseconds (floor division, so a
    /// time before the epoch is in the day before).
    static func day(ofNanos n: Int64) -> Int64 {
        n >= 0 ? n / nanosPerDay : -((-(n + 1)) / nanosPerDay) - 1
    }

    /// "YYYY-MM-DD" of a day number.
    static func dayName(_ day: Int64) -> String {
        let (y, m, d) = civil(fromDays: day)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let year = String(y)
        return String(repeating: "0", count: max(0, 4 - year.count)) + year + "-" + two(m) + "-" + two(d)
    }

    /// The day number of a "YYYY-MM-DD" directory name; nil for any other name.
    static func day(ofName name: String) -> Int64? {
        let u = Array(name.utf8)
        guard u.count == 10, u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-") else { return nil }
        guard let y = Int64(name.prefix(4)), let m = Int64(name.dropFirst(5).prefix(2)), let d = Int64(name.suffix(2)),
              (1...12).contains(m), (1...31).contains(d) else { return nil }
        let n = days(fromCivil: y, m, d)
        return dayName(n) == name ? n : nil   // rejects 2026-02-30
    }

    /// Howard Hinnant's `days_from_civil` (proleptic Gregorian calendar),
    /// http://howardhinnant.github.io/date_algorithms.html#days_from_civil:
    /// eras of 400 years (146,097 days), years starting in March so the
    /// leap day is the last of the year; 719,468 = days from 0000-03-01 to 1970-01-01.
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400                                            // [0, 399]
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1  // [0, 365]
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy                    // [0, 146096]
        return era * 146_097 + doe - 719_468
    }

    /// Its inverse, `civil_from_days` (same page).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097                                        // [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365   // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)                  // [0, 365]
        let mp = (5 * doy + 2) / 153                                       // [0, 11], March = 0
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
