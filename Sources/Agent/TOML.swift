// The part of TOML v1.0.0 (https://toml.io/en/v1.0.0) the agent's
// configuration file needs: comments, one level of `[table]`, `key = value`
// with bare or quoted keys, and values that are strings (basic and literal,
// one line), integers (decimal, 0x, 0o, 0b, `_` between digits), floats,
// booleans and arrays of them (over several lines, trailing comma allowed).
//
// What the spec has and the configuration does not need is refused by name
// rather than misread: dotted keys, `[a.b]`, `[[array.of.tables]]`, inline
// tables, multi-line strings, dates and times. Everything else the spec
// calls invalid is an error here too; the tests hold this parser to
// Python's `tomllib` on hand-written and mutated documents.
//
// Reads UTF-8 bytes: every token that matters is ASCII, and a multi-byte
// sequence only occurs inside strings and comments, where it is copied.

/// A value of the subset.
enum TOMLValue: Equatable, Sendable {
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])

    /// The value as TOML text: what the file said, for messages, and what
    /// ``AgentConfig/rendered()`` writes.
    var tomlText: String {
        switch self {
        case .string(let s): return TOMLValue.quoted(s)
        case .integer(let n): return String(n)
        case .float(let d):
            if d.isNaN { return "nan" }
            if d.isInfinite { return d < 0 ? "-inf" : "inf" }
            // Swift's shortest round-trip form ("0.01", "100.0", "1e-05") is
            // a TOML float: digits, a fraction or an exponent or both.
            return "\(d)"
        case .boolean(let b): return b ? "true" : "false"
        case .array(let items): return "[" + items.map(\.tomlText).joined(separator: ", ") + "]"
        }
    }

    /// A basic string (spec "String"): `"` and `\` escaped, control
    /// characters as their short escapes or `\uXXXX`.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{08}": out += "\\b"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\u{0C}": out += "\\f"
            case "\r": out += "\\r"
            case "\u{00}"..."\u{1F}", "\u{7F}":
                let hex = String(u.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// A key as TOML writes it: bare when it can be (`A-Za-z0-9_-`), else quoted.
    static func key(_ k: String) -> String {
        !k.isEmpty && k.utf8.allSatisfy(isBareKeyByte) ? k : quoted(k)
    }
}

/// What is wrong with a document, and where.
struct TOMLError: Error, Equatable {
    /// 1-based.
    var line: Int
    /// The key being read, when there is one.
    var key: String?
    var message: String
    /// Valid TOML this parser refuses on purpose (dotted keys, inline
    /// tables, dates, integers beyond 64 bits…), as opposed to invalid TOML.
    var unsupported = false
}

/// A parsed document: each table's keys with their values and lines.
struct TOMLDocument: Equatable, Sendable {
    struct Entry: Equatable, Sendable {
        var value: TOMLValue
        /// The line of the key (1-based).
        var line: Int
    }

    /// Table name to its keys; the root table (keys before any header) is "".
    var tables: [String: [String: Entry]] = ["": [:]]
    /// The line of each `[name]` header.
    var tableLines: [String: Int] = [:]

    init(parsing text: String) throws(TOMLError) {
        var p = TOMLParser(bytes: Array(text.utf8))
        self = try p.document()
    }

    init() {}
}

/// `A-Za-z0-9_-` (spec "Keys": bare keys).
private func isBareKeyByte(_ c: UInt8) -> Bool {
    switch c {
    case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
         UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"): return true
    default: return false
    }
}

/// Control characters TOML forbids unescaped in strings and comments:
/// U+0000 to U+001F except tab, and U+007F (spec "Comment", "String").
private func isForbiddenControl(_ c: UInt8) -> Bool {
    (c < 0x20 && c != 0x09) || c == 0x7F
}

private struct TOMLParser {
    let b: [UInt8]
    var i = 0
    var line = 1

    init(bytes: [UInt8]) { b = bytes }

    /// Arrays nest at most this deep: far more than a configuration uses,
    /// and it bounds the recursion on hostile input such as `a = [[[[…`.
    static let maxDepth = 64

    private static let quote = UInt8(ascii: "\""), apostrophe = UInt8(ascii: "'"), backslash = UInt8(ascii: "\\")
    private static let lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r"), space = UInt8(ascii: " "), tab = UInt8(ascii: "\t")

    var atEnd: Bool { i >= b.count }
    func peek(_ offset: Int = 0) -> UInt8? { i + offset < b.count ? b[i + offset] : nil }

    func error(_ message: String, key: String? = nil, line: Int? = nil, unsupported: Bool = false) -> TOMLError {
        TOMLError(line: line ?? self.line, key: key, message: message, unsupported: unsupported)
    }

    /// How a byte is shown in a message.
    func shown(_ c: UInt8?) -> String {
        guard let c else { return "the end of the file" }
        if c == Self.lf || c == Self.cr { return "the end of the line" }
        if c >= 0x20 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x" + String(c, radix: 16, uppercase: true)
    }

    mutating func skipSpaces() {
        while let c = peek(), c == Self.space || c == Self.tab { i += 1 }
    }

    /// Consumes a newline (LF or CRLF) if one is next.
    mutating func newline() throws(TOMLError) -> Bool {
        if peek() == Self.lf { i += 1; line += 1; return true }
        if peek() == Self.cr {
            guard peek(1) == Self.lf else { throw error("a carriage return must be followed by a line feed") }
            i += 2; line += 1; return true
        }
        return false
    }

    /// From `#` to the end of the line (the newline is left).
    mutating func comment() throws(TOMLError) {
        i += 1
        while let c = peek(), c != Self.lf {
            if c == Self.cr && peek(1) == Self.lf { return }
            if isForbiddenControl(c) { throw error("control character \(shown(c)) in a comment") }
            i += 1
        }
    }

    /// Spaces, then an optional comment, then a newline or the end.
    mutating func endOfLine(after what: String, key: String? = nil) throws(TOMLError) {
        skipSpaces()
        if peek() == UInt8(ascii: "#") { try comment() }
        if atEnd { return }
        if try !newline() { throw error("expected the end of the line after \(what), found \(shown(peek()))", key: key) }
    }

    mutating func document() throws(TOMLError) -> TOMLDocument {
        var doc = TOMLDocument()
        var table = ""
        while true {
            skipSpaces()
            guard let c = peek() else { return doc }
            if try newline() { continue }
            if c == UInt8(ascii: "#") { try comment(); continue }
            if c == UInt8(ascii: "[") {
                let start = line
                let name = try header()
                if let first = doc.tableLines[name] {
                    throw error("table [\(name)] is defined twice (first at line \(first))", key: name)
                }
                if let entry = doc.tables[""]?[name] {
                    throw error("[\(name)] redefines the key '\(name)' set at line \(entry.line)", key: name)
                }
                doc.tableLines[name] = start
                doc.tables[name] = [:]
                table = name
                try endOfLine(after: "[\(name)]", key: name)
                continue
            }
            let start = line
            let key = try self.key()
            skipSpaces()
            if peek() == UInt8(ascii: ".") {
                throw error("dotted keys are not supported: write [table] on a line of its own, then the key",
                            key: key, unsupported: true)
            }
            guard peek() == UInt8(ascii: "=") else { throw error("expected '=' after the key, found \(shown(peek()))", key: key) }
            i += 1
            skipSpaces()
            if let first = doc.tables[table]?[key] {
                throw error("duplicate key (first set at line \(first.line))", key: key)
            }
            let value = try self.value(key: key, depth: 0)
            doc.tables[table, default: [:]][key] = TOMLDocument.Entry(value: value, line: start)
            try endOfLine(after: "the value", key: key)
        }
    }

    /// `[name]`, at the `[`.
    mutating func header() throws(TOMLError) -> String {
        i += 1
        if peek() == UInt8(ascii: "[") {
            throw error("arrays of tables ([[name]]) are not supported", unsupported: true)
        }
        skipSpaces()
        let name = try key()
        skipSpaces()
        if peek() == UInt8(ascii: ".") {
            throw error("nested tables ([a.b]) are not supported", key: name, unsupported: true)
        }
        guard peek() == UInt8(ascii: "]") else { throw error("expected ']' to close the table header, found \(shown(peek()))", key: name) }
        i += 1
        if name.isEmpty { throw error("a table named \"\" is not supported", key: name, unsupported: true) }
        return name
    }

    /// A bare or quoted key (spec "Keys").
    mutating func key() throws(TOMLError) -> String {
        switch peek() {
        case Self.quote: return try basicString(key: nil)
        case Self.apostrophe: return try literalString(key: nil)
        default:
            let start = i
            while let c = peek(), isBareKeyByte(c) { i += 1 }
            guard i > start else { throw error("expected a key, found \(shown(peek()))") }
            return String(decoding: b[start..<i], as: UTF8.self)
        }
    }

    mutating func value(key: String, depth: Int) throws(TOMLError) -> TOMLValue {
        switch peek() {
        case Self.quote:
            if peek(1) == Self.quote && peek(2) == Self.quote {
                throw error("multi-line strings (\"\"\") are not supported", key: key, unsupported: true)
            }
            return .string(try basicString(key: key))
        case Self.apostrophe:
            if peek(1) == Self.apostrophe && peek(2) == Self.apostrophe {
                throw error("multi-line literal strings (''') are not supported", key: key, unsupported: true)
            }
            return .string(try literalString(key: key))
        case UInt8(ascii: "["):
            return try array(key: key, depth: depth + 1)
        case UInt8(ascii: "{"):
            throw error("inline tables ({ … }) are not supported: use a [table]", key: key, unsupported: true)
        default:
            return try scalar(key: key)
        }
    }

    /// `[ v, v, … ]` over any number of lines, comments between values,
    /// a trailing comma allowed (spec "Array").
    mutating func array(key: String, depth: Int) throws(TOMLError) -> TOMLValue {
        guard depth <= Self.maxDepth else {
            throw error("arrays nested deeper than \(Self.maxDepth) are not supported", key: key, unsupported: true)
        }
        let opened = line
        i += 1
        var items: [TOMLValue] = []
        while true {
            try skipBlank(key: key, opened: opened)
            if peek() == UInt8(ascii: "]") { i += 1; return .array(items) }
            items.append(try value(key: key, depth: depth))
            try skipBlank(key: key, opened: opened)
            switch peek() {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "]"): i += 1; return .array(items)
            default: throw error("expected ',' or ']' in the array, found \(shown(peek()))", key: key)
            }
        }
    }

    /// Spaces, newlines and comments inside an array.
    mutating func skipBlank(key: String, opened: Int) throws(TOMLError) {
        while true {
            skipSpaces()
            if atEnd { throw error("the array opened at line \(opened) is not closed", key: key) }
            if peek() == UInt8(ascii: "#") { try comment(); continue }
            if try !newline() { return }
        }
    }

    /// `"…"` with escapes (spec "String": basic strings).
    mutating func basicString(key: String?) throws(TOMLError) -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek(), c != Self.lf, c != Self.cr || peek(1) != Self.lf else {
                throw error("the string is not closed on this line", key: key)
            }
            i += 1
            if c == Self.quote { return String(decoding: out, as: UTF8.self) }
            if isForbiddenControl(c) { throw error("control character \(shown(c)) in a string: write it as an escape (\\t, \\n, \\u0001)", key: key) }
            guard c == Self.backslash else { out.append(c); continue }
            let e = peek()
            i += 1
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "r"): out.append(0x0D)
            case Self.quote: out.append(Self.quote)
            case Self.backslash: out.append(Self.backslash)
            case UInt8(ascii: "u"), UInt8(ascii: "U"):
                let n = e == UInt8(ascii: "u") ? 4 : 8
                guard i + n <= b.count, let v = UInt32(String(decoding: b[i..<i + n], as: UTF8.self), radix: 16),
                      b[i..<i + n].allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) })
                else { throw error("\\\(Character(Unicode.Scalar(e!))) needs \(n) hexadecimal digits", key: key) }
                // "Any Unicode scalar value": not a surrogate, at most U+10FFFF.
                guard let scalar = Unicode.Scalar(v) else {
                    throw error("\\\(Character(Unicode.Scalar(e!)))\(String(decoding: b[i..<i + n], as: UTF8.self)) is not a Unicode scalar value", key: key)
                }
                i += n
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                let seen = e.flatMap { $0 > 0x20 && $0 < 0x7F ? "\\" + String(Character(Unicode.Scalar($0))) : nil }
                    ?? "\\ before \(shown(e))"
                throw error("invalid escape \(seen) in a string: the escapes are \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX", key: key)
            }
        }
    }

    /// `'…'`, no escapes (spec "String": literal strings).
    mutating func literalString(key: String?) throws(TOMLError) -> String {
        i += 1
        let start = i
        while true {
            guard let c = peek(), c != Self.lf, c != Self.cr || peek(1) != Self.lf else {
                throw error("the string is not closed on this line", key: key)
            }
            if c == Self.apostrophe { i += 1; return String(decoding: b[start..<i - 1], as: UTF8.self) }
            if isForbiddenControl(c) { throw error("control character \(shown(c)) in a literal string", key: key) }
            i += 1
        }
    }

    /// A boolean, integer or float: the token up to the next delimiter.
    mutating func scalar(key: String) throws(TOMLError) -> TOMLValue {
        let start = i
        while let c = peek(), isBareKeyByte(c) || c == UInt8(ascii: "+") || c == UInt8(ascii: ".") || c == UInt8(ascii: ":") { i += 1 }
        let token = String(decoding: b[start..<i], as: UTF8.self)
        guard !token.isEmpty else { throw error("expected a value, found \(shown(peek()))", key: key) }
        switch token {
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan", "-nan": return .float(.nan)
        default: break
        }
        let t = Array(token.utf8)
        func digit(_ k: Int) -> Bool { k < t.count && t[k] >= 0x30 && t[k] <= 0x39 }
        // 1979-05-27 or 07:32:00 (spec "Offset Date-Time" … "Local Time").
        if (t.count >= 5 && (0..<4).allSatisfy(digit) && t[4] == UInt8(ascii: "-"))
            || (t.count >= 3 && digit(0) && digit(1) && t[2] == UInt8(ascii: ":")) {
            throw error("dates and times are not supported", key: key, unsupported: true)
        }
        if let v = Self.number(token) { return v }
        if Self.isInteger(token) {
            throw error("\(token) does not fit in a 64-bit integer", key: key, unsupported: true)
        }
        throw error("\(token) is not a value: expected a string in quotes, a number, true, false or an array", key: key)
    }

    /// Digits with single `_` between them (spec "Integer": "underscores
    /// … must be surrounded by at least one digit on each side"), without
    /// the underscores; nil if not that.
    static func digits(_ s: Substring, radix: Int = 10) -> String? {
        guard let first = s.first, let last = s.last, first != "_", last != "_", !s.contains("__") else { return nil }
        let d = s.filter { $0 != "_" }
        guard d.allSatisfy({ $0.isASCII && $0.hexDigitValue.map { $0 < radix } == true }) else { return nil }
        return d
    }

    /// An integer or float token (spec "Integer", "Float"), nil if it is
    /// neither or an integer out of range.
    static func number(_ token: String) -> TOMLValue? {
        let s = Substring(token)
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where s.hasPrefix(prefix) {
            guard let d = digits(s.dropFirst(2), radix: radix) else { return nil }
            return Int(d, radix: radix).map(TOMLValue.integer)
        }
        var rest = s
        var sign = ""
        if let c = rest.first, c == "+" || c == "-" { sign = c == "-" ? "-" : ""; rest = rest.dropFirst() }
        let intEnd = rest.firstIndex { $0 == "." || $0 == "e" || $0 == "E" } ?? rest.endIndex
        // "Leading zeros are not allowed" (integers and a float's integer part).
        guard let whole = digits(rest[..<intEnd]), whole == "0" || !whole.hasPrefix("0") else { return nil }
        rest = rest[intEnd...]
        if rest.isEmpty { return Int(sign + whole).map(TOMLValue.integer) }
        var text = sign + whole
        if rest.first == "." {
            let fracEnd = rest.firstIndex { $0 == "e" || $0 == "E" } ?? rest.endIndex
            guard let frac = digits(rest.dropFirst()[..<fracEnd]) else { return nil }
            text += "." + frac
            rest = rest[fracEnd...]
        }
        if let e = rest.first, e == "e" || e == "E" {
            var exp = rest.dropFirst()
            var expSign = ""
            if let c = exp.first, c == "+" || c == "-" { expSign = String(c); exp = exp.dropFirst() }
            // "an integer part (which follows the same rules as decimal integer values but may include leading zeros)"
            guard let d = digits(exp) else { return nil }
            text += "e" + expSign + d
            rest = rest[rest.endIndex...]
        }
        guard rest.isEmpty, let v = Double(text) else { return nil }
        return .float(v)
    }

    /// A well-formed integer token, whatever its size.
    static func isInteger(_ token: String) -> Bool {
        let s = Substring(token)
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where s.hasPrefix(prefix) {
            return digits(s.dropFirst(2), radix: radix) != nil
        }
        let body = s.first == "+" || s.first == "-" ? s.dropFirst() : s
        guard let d = digits(body) else { return false }
        return d == "0" || !d.hasPrefix("0")
    }
}
