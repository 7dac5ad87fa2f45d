/// Frame colours. Each kind owns a band of hues; within it the hue,
/// saturation and lightness come from a hash of the displayed name mixed
/// with a seed, so a function has the same colour everywhere in a graph and
/// in every run (flamegraph.pl's `--hash`, made seedable as inferno's
/// palettes are), and neighbours rarely share a shade. Off-CPU subtrees
/// (`FrameKind.offCPUPrefix`) have bands of their own: there a function has
/// one shade too, the same hash placed in the off-CPU band.
struct RGB: Equatable, Sendable {
    var r: UInt8, g: UInt8, b: UInt8
}

/// A band of colours: one per frame kind on the CPU, three for the frames
/// of an off-CPU subtree, whatever their kind. Declared in legend order.
enum Band: Int, CaseIterable, Sendable {
    case user, kernel, inlined, jit, unknown
    /// In an off-CPU subtree: the `[off-cpu…]` frame itself, user, inlined and JIT frames.
    case offCPU
    /// In an off-CPU subtree: `_[k]` frames (the way into `schedule()`, typically).
    case offCPUKernel
    /// In an off-CPU subtree: unresolved frames.
    case offCPUUnknown

    init(kind: FrameKind, offCPU: Bool) {
        switch kind {
        case .user: self = offCPU ? .offCPU : .user
        case .kernel: self = offCPU ? .offCPUKernel : .kernel
        case .inlined: self = offCPU ? .offCPU : .inlined
        case .jit: self = offCPU ? .offCPU : .jit
        case .unknown: self = offCPU ? .offCPUUnknown : .unknown
        // Always in an off-CPU subtree: it is that subtree's root.
        case .offCPU: self = .offCPU
        }
    }

    /// The legend's words.
    var label: String {
        switch self {
        case .user: return "user"
        case .kernel: return "kernel"
        case .inlined: return "inlined"
        case .jit: return "JIT"
        case .unknown: return "unknown"
        case .offCPU: return "off-CPU"
        case .offCPUKernel: return "off-CPU kernel"
        case .offCPUUnknown: return "off-CPU unknown"
        }
    }

    /// One bit per band, for sets of bands drawn.
    var bit: UInt16 { 1 << UInt16(rawValue) }
}

struct Palette: Sendable {
    let seed: UInt64

    /// (hue range in degrees, saturation range, lightness range).
    ///
    /// Off-CPU frames are violet, a hue no on-CPU band uses: at least 30°
    /// from the kernel's blue (≤ 225°) and 10° short of the search
    /// highlight's magenta (rgb(230,0,230), 300°). Inside the violet,
    /// lightness and saturation tell kernel from user code and unresolved
    /// frames, as the hues do on the CPU:
    ///
    /// | band            | hue      | saturation | lightness | looks                  |
    /// |-----------------|----------|------------|-----------|------------------------|
    /// | off-CPU         | 265…290° | 0.45…0.65  | 0.74…0.82 | lavender to orchid     |
    /// | off-CPU kernel  | 255…275° | 0.35…0.50  | 0.60…0.67 | deeper, greyer violet  |
    /// | off-CPU unknown | 265…285° | 0.10…0.20  | 0.66…0.74 | violet grey            |
    ///
    /// Violet has little green, the channel that makes a colour look light,
    /// so lightness stays at 0.60 or more: the darkest corner of the off-CPU
    /// bands has a Rec. 709 luma of 114 of 255 (the user band's deepest red:
    /// 77), and black labels stay readable.
    private static func ranges(_ band: Band) -> (h: ClosedRange<Double>, s: ClosedRange<Double>, l: ClosedRange<Double>) {
        switch band {
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
        case .offCPU: return (265...290, 0.45...0.65, 0.74...0.82)
        case .offCPUKernel: return (255...275, 0.35...0.50, 0.60...0.67)
        case .offCPUUnknown: return (265...285, 0.10...0.20, 0.66...0.74)
        }
    }

    func color(_ band: Band, displayName: UnsafeRawBufferPointer) -> RGB {
        var x = hashBytes(displayName) ^ seed
        // SplitMix64's finalizer: every seed bit reaches every output bit.
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        x ^= x >> 31
        // Three independent fractions in [0, 1] from 16-bit fields.
        let v1 = Double(x & 0xFFFF) / 65535, v2 = Double((x >> 16) & 0xFFFF) / 65535, v3 = Double((x >> 32) & 0xFFFF) / 65535
        let r = Self.ranges(band)
        func pick(_ r: ClosedRange<Double>, _ v: Double) -> Double { r.lowerBound + (r.upperBound - r.lowerBound) * v }
        return Self.hsl(pick(r.h, v1), pick(r.s, v2), pick(r.l, v3))
    }

    /// The middle of a band, for the legend.
    static func representative(_ band: Band) -> RGB {
        let r = ranges(band)
        func mid(_ r: ClosedRange<Double>) -> Double { (r.lowerBound + r.upperBound) / 2 }
        return hsl(mid(r.h), mid(r.s), mid(r.l))
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
