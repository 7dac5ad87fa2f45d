/// Frame colours. Each kind owns a band of hues; within it the hue,
/// saturation and lightness come from a hash of the displayed name mixed
/// with a seed, so a function has the same colour everywhere in a graph and
/// in every run (flamegraph.pl's `--hash`, made seedable as inferno's
/// palettes are), and neighbours rarely share a shade.
struct RGB: Equatable, Sendable {
    var r: UInt8, g: UInt8, b: UInt8
}

struct Palette: Sendable {
    let seed: UInt64

    /// (hue range in degrees, saturation range, lightness range).
    private static func band(_ kind: FrameKind) -> (h: ClosedRange<Double>, s: ClosedRange<Double>, l: ClosedRange<Double>) {
        switch kind {
        // flamegraph.pl's "hot": red through orange to yellow.
        case .user: return (0...50, 0.80...0.95, 0.55...0.65)
        // Blue, clear of every warm user shade.
        case .kernel: return (200...225, 0.55...0.75, 0.62...0.72)
        // Aqua, as flamegraph.pl's java palette marks `_[i]`.
        case .inlined: return (168...185, 0.50...0.70, 0.52...0.62)
        // Green, as flamegraph.pl's java palette marks `_[j]`.
        case .jit: return (95...135, 0.45...0.65, 0.50...0.60)
        // Grey: nothing to read here.
        case .unknown: return (0...0, 0...0, 0.62...0.74)
        }
    }

    func color(kind: FrameKind, displayName: UnsafeRawBufferPointer) -> RGB {
        var x = hashBytes(displayName) ^ seed
        // SplitMix64's finalizer: every seed bit reaches every output bit.
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        x ^= x >> 31
        // Three independent fractions in [0, 1] from 16-bit fields.
        let v1 = Double(x & 0xFFFF) / 65535, v2 = Double((x >> 16) & 0xFFFF) / 65535, v3 = Double((x >> 32) & 0xFFFF) / 65535
        let band = Self.band(kind)
        func pick(_ r: ClosedRange<Double>, _ v: Double) -> Double { r.lowerBound + (r.upperBound - r.lowerBound) * v }
        return Self.hsl(pick(band.h, v1), pick(band.s, v2), pick(band.l, v3))
    }

    /// The middle of a kind's band, for the legend.
    static func representative(_ kind: FrameKind) -> RGB {
        let band = band(kind)
        func mid(_ r: ClosedRange<Double>) -> Double { (r.lowerBound + r.upperBound) / 2 }
        return hsl(mid(band.h), mid(band.s), mid(band.l))
    }

    /// flamegraph.pl's `color_scale`: white for no change; otherwise red
    /// (growth) or blue (shrink), the other two channels falling from 210
    /// towards 0 as |delta| approaches `maxDelta`, so the largest change is
    /// pure rgb(255,0,0) or rgb(0,0,255).
    static func differential(delta: Double, maxDelta: Double) -> RGB {
        guard maxDelta > 0, delta != 0 else { return RGB(r: 255, g: 255, b: 255) }
        let fade = UInt8(max(0, min(210, (210 * (maxDelta - abs(delta)) / maxDelta).rounded(.down))))
        return delta > 0 ? RGB(r: 255, g: fade, b: fade) : RGB(r: fade, g: fade, b: 255)
    }

    /// HSL to sRGB bytes (the CSS Color 3 algorithm), rounded to nearest.
    static func hsl(_ h: Double, _ s: Double, _ l: Double) -> RGB {
        let c = (1 - abs(2 * l - 1)) * s
        let hp = (h.truncatingRemainder(dividingBy: 360)) / 60
        let x = c * (1 - abs(hp.truncatingRemainder(dividingBy: 2) - 1))
        let (r1, g1, b1): (Double, Double, Double)
        switch hp {
        case ..<1: (r1, g1, b1) = (c, x, 0)
        case ..<2: (r1, g1, b1) = (x, c, 0)
        case ..<3: (r1, g1, b1) = (0, c, x)
        case ..<4: (r1, g1, b1) = (0, x, c)
        case ..<5: (r1, g1, b1) = (x, 0, c)
        default: (r1, g1, b1) = (c, 0, x)
        }
        let m = l - c / 2
        func byte(_ v: Double) -> UInt8 { UInt8(max(0, min(255, ((v + m) * 255).rounded()))) }
        return RGB(r: byte(r1), g: byte(g1), b: byte(b1))
    }
}
