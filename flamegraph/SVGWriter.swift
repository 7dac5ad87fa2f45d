/// The output buffer: UTF-8 bytes appended in place, numbers formatted by
/// hand (fixed decimals, thousands separators) so that writing a frame
/// allocates nothing and no locale can change a byte of the output.
struct SVGWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    @inline(__always) mutating func byte(_ b: UInt8) { bytes.append(b) }

    mutating func raw(_ s: StaticString) {
        s.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func raw(_ s: String) {
        var s = s
        s.withUTF8 { bytes.append(contentsOf: $0) }
    }

    /// Text or attribute content: `&`, `<`, `>` and `"` escaped; control
    /// characters, which XML 1.0 forbids, become U+FFFD. The input must be
    /// valid UTF-8 (names are repaired before they get here).
    mutating func escaped(_ b: UnsafeRawBufferPointer) {
        for c in b {
            switch c {
            case UInt8(ascii: "&"): raw("&amp;")
            case UInt8(ascii: "<"): raw("&lt;")
            case UInt8(ascii: ">"): raw("&gt;")
            case UInt8(ascii: "\""): raw("&quot;")
            case 0x09: byte(c)
            case 0..<0x20, 0x7F: byte(0xEF); byte(0xBF); byte(0xBD)
            default: byte(c)
            }
        }
    }

    mutating func escaped(_ s: String) {
        var s = s
        s.withUTF8 { escaped(UnsafeRawBufferPointer($0)) }
    }

    mutating func uint(_ v: UInt64) {
        var divisor: UInt64 = 1
        while v / divisor >= 10 { divisor *= 10 }
        var x = v
        while divisor > 0 {
            byte(UInt8(ascii: "0") + UInt8(x / divisor))
            x %= divisor
            divisor /= 10
        }
    }

    mutating func int(_ v: Int) {
        if v < 0 { byte(UInt8(ascii: "-")); uint(UInt64(-v)) } else { uint(UInt64(v)) }
    }

    /// `1234567` as `1,234,567`, as flamegraph.pl prints sample counts.
    mutating func grouped(_ v: UInt64) {
        if v < 1000 { uint(v); return }
        grouped(v / 1000)
        byte(UInt8(ascii: ","))
        let r = v % 1000
        if r < 100 { byte(UInt8(ascii: "0")) }
        if r < 10 { byte(UInt8(ascii: "0")) }
        uint(r)
    }

    /// `v` rounded to two decimals, trailing zeros kept (`12.50`), `-0.00` never.
    mutating func fixed2(_ v: Double) {
        let scaled = (v * 100).rounded()
        guard scaled.isFinite, abs(scaled) < 9e15 else { raw("0.00"); return }
        var hundredths = Int64(scaled)
        if hundredths < 0 { byte(UInt8(ascii: "-")); hundredths = -hundredths }
        uint(UInt64(hundredths / 100))
        byte(UInt8(ascii: "."))
        let f = hundredths % 100
        byte(UInt8(ascii: "0") + UInt8(f / 10))
        byte(UInt8(ascii: "0") + UInt8(f % 10))
    }

    /// Pixel coordinates: two decimals, trailing zeros dropped (`12.5`, `3`),
    /// to keep large graphs small.
    mutating func coord(_ v: Double) {
        let scaled = (v * 100).rounded()
        guard scaled.isFinite, abs(scaled) < 9e15 else { byte(UInt8(ascii: "0")); return }
        var hundredths = Int64(scaled)
        if hundredths < 0 { byte(UInt8(ascii: "-")); hundredths = -hundredths }
        uint(UInt64(hundredths / 100))
        let f = hundredths % 100
        if f == 0 { return }
        byte(UInt8(ascii: "."))
        byte(UInt8(ascii: "0") + UInt8(f / 10))
        if f % 10 != 0 { byte(UInt8(ascii: "0") + UInt8(f % 10)) }
    }

    mutating func rgb(_ c: RGB) {
        raw("rgb(")
        uint(UInt64(c.r)); byte(UInt8(ascii: ","))
        uint(UInt64(c.g)); byte(UInt8(ascii: ","))
        uint(UInt64(c.b)); byte(UInt8(ascii: ")"))
    }

    var string: String { String(decoding: bytes, as: UTF8.self) }
}
