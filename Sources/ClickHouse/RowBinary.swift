/// ClickHouse's RowBinary format (https://clickhouse.com/docs/en/interfaces/formats#rowbinary):
/// rows one after another, columns in the order the statement names them,
/// no separators. Integers little-endian in their width; `Date` a UInt16 of
/// days since 1970-01-01; `DateTime` a UInt32 of seconds since the epoch;
/// `String` a LEB128 length then the bytes (no escaping, so any frame name
/// goes through unchanged); `Array(T)` a LEB128 count then the elements.
struct RowBinaryWriter {
    var bytes: [UInt8] = []

    mutating func uint16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func uint32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func uint64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func int32(_ v: Int32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func int64(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }

    /// Unsigned LEB128 (ClickHouse's `writeVarUInt`, IO/VarInt.h).
    mutating func varUInt(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            varUInt(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func strings(_ a: [String]) {
        varUInt(UInt64(a.count))
        for s in a { string(s) }
    }

    mutating func int64s(_ a: [Int64]) {
        varUInt(UInt64(a.count))
        for v in a { int64(v) }
    }
}

/// Reads what ``RowBinaryWriter`` writes (and what ClickHouse answers with
/// `FORMAT RowBinary`); truncated or oversized input is an error, never a crash.
struct RowBinaryReader {
    let bytes: [UInt8]
    private(set) var offset = 0
    /// Names the source in errors.
    let source: String

    init(_ bytes: [UInt8], source: String) { self.bytes = bytes; self.source = source }

    var isAtEnd: Bool { offset >= bytes.count }

    private mutating func take(_ n: Int, _ what: String) throws(ClickHouseError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - offset else {
            throw .badAnswer(url: source, reason: "\(what) at byte \(offset) runs past the end (\(bytes.count) bytes)")
        }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    private mutating func fixed<T: FixedWidthInteger>(_: T.Type, _ what: String) throws(ClickHouseError) -> T {
        let s = try take(MemoryLayout<T>.size, what)
        var v: T = 0
        for (i, b) in s.enumerated() { v |= T(truncatingIfNeeded: b) << (8 * i) }
        return v
    }

    mutating func uint16() throws(ClickHouseError) -> UInt16 { try fixed(UInt16.self, "a UInt16") }
    mutating func uint32() throws(ClickHouseError) -> UInt32 { try fixed(UInt32.self, "a UInt32") }
    mutating func uint64() throws(ClickHouseError) -> UInt64 { try fixed(UInt64.self, "a UInt64") }
    mutating func int32() throws(ClickHouseError) -> Int32 { try fixed(Int32.self, "an Int32") }
    mutating func int64() throws(ClickHouseError) -> Int64 { try fixed(Int64.self, "an Int64") }

    mutating func varUInt() throws(ClickHouseError) -> UInt64 {
        var v: UInt64 = 0
        // At most 10 bytes: 64 bits in 7-bit groups.
        for i in 0..<10 {
            let one = try take(1, "a length")
            let b = one[one.startIndex]
            v |= UInt64(b & 0x7f) << (7 * UInt64(i))
            if b & 0x80 == 0 { return v }
        }
        throw .badAnswer(url: source, reason: "a length at byte \(offset) is longer than 10 bytes")
    }

    mutating func string() throws(ClickHouseError) -> String {
        let n = try varUInt()
        guard n <= UInt64(bytes.count - offset) else {
            throw .badAnswer(url: source, reason: "a string of \(n) bytes at byte \(offset) runs past the end (\(bytes.count) bytes)")
        }
        return String(decoding: try take(Int(n), "a string"), as: UTF8.self)
    }

    mutating func strings() throws(ClickHouseError) -> [String] {
        let n = try varUInt()
        // Each element takes at least one byte: a bound that stops a bad count from allocating.
        guard n <= UInt64(bytes.count - offset) else {
            throw .badAnswer(url: source, reason: "an array of \(n) strings at byte \(offset) runs past the end")
        }
        var out: [String] = []
        out.reserveCapacity(Int(n))
        for _ in 0..<n { out.append(try string()) }
        return out
    }

    mutating func int64s() throws(ClickHouseError) -> [Int64] {
        let n = try varUInt()
        guard n <= UInt64(bytes.count - offset) / 8 else {
            throw .badAnswer(url: source, reason: "an array of \(n) Int64 at byte \(offset) runs past the end")
        }
        var out: [Int64] = []
        out.reserveCapacity(Int(n))
        for _ in 0..<n { out.append(try int64()) }
        return out
    }
}
