// Folded stacks to an interactive SVG flame graph, after Brendan Gregg's
// flamegraph.pl and jonhoo's inferno: one self-contained file (CSS and JS
// inline, see Assets.swift) that a browser opens directly.
//
// How a graph is made:
//  1. FoldedStacks is already a prefix tree of interned names (Folded.swift).
//  2. Inclusive counts in one backwards pass; frames narrower than
//     `minWidth` pixels are dropped with everything above them (FrameLayout).
//  3. Siblings are sorted by name, laid side by side from their parent's
//     left edge; the root, "all", spans the width.
//  4. One `<g>` per frame: `<title>` (tooltip and the text searched),
//     `<rect>` with the frame's position in samples (`fg:x`, `fg:w`) for the
//     script's exact zoom and search arithmetic, `<text>` with the label
//     fitted to the width (the script refits it after a zoom).
//  5. Colours by kind, hashed by name (Palette.swift), computed once per
//     distinct name; frames in an off-CPU subtree (`FrameKind.offCPUPrefix`)
//     take a second colour per name, from the off-CPU bands, found by one
//     forward pass over the drawn frames (parents come first).
// The output depends only on the input and the options: same bytes every run.

/// How to draw a flame graph. The defaults are flamegraph.pl's.
public struct FlameGraphOptions: Sendable, Equatable {
    /// Defaults to "Flame Graph", "Icicle Graph" (inverted) or
    /// "Differential Flame Graph".
    public var title: String?
    public var subtitle: String?
    /// Image width in pixels.
    public var width: Double
    /// Row height in pixels (a frame is one less: a pixel between rows).
    public var frameHeight: Int
    public var fontSize: Int
    /// Frames narrower than this many pixels are not drawn, nor anything
    /// above them: a profile with a million distinct stacks still draws only
    /// what can be seen. Their samples stay in their parents' widths.
    public var minWidth: Double
    /// An icicle graph: the root at the top, stacks growing down.
    public var inverted: Bool
    /// What a count is, in tooltips: "samples", "nanoseconds", "bytes".
    public var countName: String
    /// Changes every colour at once, deterministically.
    public var paletteSeed: UInt64
    /// For differential graphs: whose counts give the frame widths.
    public var differentialWidths: DifferentialWidths

    public enum DifferentialWidths: Sendable, Equatable {
        /// Widths from the new profile (difffolded.pl's default): what it
        /// looks like now, coloured by what changed. Frames that vanished
        /// are not drawn.
        case new
        /// Widths from the base profile (difffolded.pl's second graph,
        /// `difffolded.pl new base | flamegraph.pl --negate`): frames that
        /// vanished are still there, in blue. Red is still growth.
        case base
    }

    public init(title: String? = nil, subtitle: String? = nil, width: Double = 1200, frameHeight: Int = 16,
                fontSize: Int = 12, minWidth: Double = 0.1, inverted: Bool = false, countName: String = "samples",
                paletteSeed: UInt64 = 0, differentialWidths: DifferentialWidths = .new) {
        self.title = title
        self.subtitle = subtitle
        self.width = width
        self.frameHeight = frameHeight
        self.fontSize = fontSize
        self.minWidth = minWidth
        self.inverted = inverted
        self.countName = countName
        self.paletteSeed = paletteSeed
        self.differentialWidths = differentialWidths
    }
}

public enum FlameGraphError: Error, Equatable, CustomStringConvertible {
    /// No samples at all: nothing to draw (no SVG is made).
    case empty
    /// One side of a differential graph has no samples.
    case emptyProfile(DifferentialSide)
    /// An option out of range; the message says which and why.
    case invalidOption(String)

    public enum DifferentialSide: String, Sendable { case base, new }

    public var description: String {
        switch self {
        case .empty:
            return "nothing to draw: the profile has no samples (no stacks, or every count is 0)"
        case .emptyProfile(let side):
            return "nothing to compare: the \(side.rawValue) profile has no samples (no stacks, or every count is 0)"
        case .invalidOption(let why):
            return "flame graph: \(why)"
        }
    }
}

/// Draws `stacks` as an interactive SVG flame graph: click a frame to zoom
/// (its ancestors stay, faded), "Reset Zoom" or Escape to go back, "Search"
/// or Ctrl-F for a regular expression (matches turn magenta and "Matched:"
/// gives their share of the samples), tooltips with counts and percentages;
/// colours by frame kind (`FrameKind`), violet for off-CPU stacks (see
/// `FrameKind.offCPUPrefix`). `?s=REGEX` in the URL searches on load.
public func renderFlameGraph(_ stacks: FoldedStacks, options: FlameGraphOptions = FlameGraphOptions()) throws(FlameGraphError) -> String {
    try validate(options)
    guard stacks.total > 0 else { throw .empty }
    var renderer = Renderer(shape: stacks, options: options, differential: nil)
    return renderer.render()
}

/// A differential flame graph (flamegraph.pl fed by `difffolded.pl -n`):
/// frames from the new profile (or the base one, see
/// `FlameGraphOptions.differentialWidths`), each coloured by how its own
/// (self) samples changed as a share of each profile's total: red grew, blue
/// shrank, white the same; the largest change is the most saturated. The
/// shares make profiles of different lengths comparable (difffolded.pl's
/// `-n`). Tooltips: `name (N samples, P%; base M samples, Q%; self ±D%)`,
/// N and M inclusive counts in the new and the base profile, D the change in
/// the frame's own share.
public func renderDifferentialFlameGraph(base: FoldedStacks, new: FoldedStacks,
                                         options: FlameGraphOptions = FlameGraphOptions()) throws(FlameGraphError) -> String {
    try validate(options)
    guard new.total > 0 else { throw .emptyProfile(.new) }
    guard base.total > 0 else { throw .emptyProfile(.base) }
    let shapeIsNew = options.differentialWidths == .new
    var renderer = Renderer(shape: shapeIsNew ? new : base, options: options,
                            differential: Renderer.Differential(other: shapeIsNew ? base : new, shapeIsNew: shapeIsNew))
    return renderer.render()
}

private func validate(_ o: FlameGraphOptions) throws(FlameGraphError) {
    if !(o.width >= 100 && o.width <= 1_000_000) { throw .invalidOption("width \(o.width) is not between 100 and 1000000 pixels") }
    if o.frameHeight < 2 || o.frameHeight > 1000 { throw .invalidOption("frame height \(o.frameHeight) is not between 2 and 1000 pixels") }
    if o.fontSize < 1 || o.fontSize > 200 { throw .invalidOption("font size \(o.fontSize) is not between 1 and 200") }
    if !(o.minWidth >= 0) || !o.minWidth.isFinite { throw .invalidOption("minimum width \(o.minWidth) is not a number of pixels >= 0") }
}

/// Layout constants, in pixels. flamegraph.pl's: 10 px side margins, the
/// title on the second text row, the details line in a bottom band of two
/// rows plus 10 px.
private struct Geometry {
    /// Left and right margins.
    static let xpad = 10.0
    let width: Double, innerWidth: Double, xpad = Geometry.xpad
    let fontSize: Double, frameHeight: Double
    let titleY: Double, subtitleY: Double?, legendY: Double
    let top: Double, bottom: Double, height: Double
    let inverted: Bool
    /// Estimated glyph width / font size for Verdana (flamegraph.pl's 0.59).
    static let fontWidth = 0.59

    init(options o: FlameGraphOptions, maxDepth: Int) {
        width = o.width
        innerWidth = width - 2 * xpad
        fontSize = Double(o.fontSize)
        frameHeight = Double(o.frameHeight)
        titleY = fontSize * 2
        var y = titleY
        if o.subtitle != nil { y += fontSize * 2; subtitleY = y } else { subtitleY = nil }
        legendY = y + fontSize * 1.75
        top = legendY + fontSize
        bottom = fontSize * 2 + 10
        height = (top + Double(maxDepth + 1) * frameHeight + bottom).rounded(.up)
        inverted = o.inverted
    }

    func y(depth: Int32) -> Double {
        inverted ? top + Double(depth) * frameHeight : height - bottom - Double(depth + 1) * frameHeight
    }

    /// Text baseline below a frame's top: centred for Verdana's x-height.
    var labelOffset: Double { ((frameHeight - 1) / 2 + fontSize / 3).rounded() }
    var detailsY: Double { height - bottom / 2 }
}

private struct Renderer {
    struct Differential {
        let other: FoldedStacks
        let shapeIsNew: Bool
    }

    let shape: FoldedStacks
    let options: FlameGraphOptions
    let differential: Differential?
    var out = SVGWriter(capacity: 0)

    init(shape: FoldedStacks, options: FlameGraphOptions, differential: Differential?) {
        self.shape = shape
        self.options = options
        self.differential = differential
    }

    /// A drawn name made ready once: repaired UTF-8 (shown), the kind, the
    /// label length, the colours.
    struct Names {
        var bytes: [UInt8] = []
        var start: [Int] = [0]
        var displayLength: [Int] = []
        /// Unicode scalars in the label (what fits is counted in characters).
        var displayScalars: [Int] = []
        var kind: [FrameKind] = []
        /// On the CPU: the kind's band.
        var color: [RGB] = []
        /// In an off-CPU subtree (empty when the graph has none).
        var offCPUColor: [RGB] = []
    }

    mutating func render() -> String {
        let totals = FrameLayout.inclusive(shape.tree)
        let grand = totals[0]
        let samplesPerPixel = Double(grand) / (options.width - 2 * Geometry.xpad)
        let layout = FrameLayout(tree: shape.tree, frames: shape.frames, totals: totals,
                                 minSamples: options.minWidth * samplesPerPixel)
        let g = Geometry(options: options, maxDepth: Int(layout.maxDepth))
        var names = prepareNames(layout)
        let diff = differential.map { differentialValues(layout, totals: totals, diff: $0) }
        // A differential graph colours by change alone.
        let offCPU = diff == nil ? offCPUFrames(layout, names: &names) : []

        out = SVGWriter(capacity: 4096 + layout.count * 190 + names.bytes.count * 2)
        header(g, bands: diff == nil ? bandsDrawn(layout, names: names, offCPU: offCPU) : 0, isDifferential: diff != nil)
        let scale = g.innerWidth / Double(grand)
        let charWidth = Double(options.fontSize) * Geometry.fontWidth
        let labelOffset = g.labelOffset
        let rectHeight = g.frameHeight - 1
        let palette = Palette(seed: options.paletteSeed)
        let rootColor = palette.color(.user, displayName: UnsafeRawBufferPointer(start: nil, count: 0))

        names.bytes.withUnsafeBytes { arena in
            layout.forEachPreOrder { i in
                let r = Int(layout.rank[i])
                let name: UnsafeRawBufferPointer
                if r < 0 {
                    name = UnsafeRawBufferPointer(start: allName.utf8Start, count: allName.utf8CodeUnitCount)
                } else {
                    name = UnsafeRawBufferPointer(rebasing: arena[names.start[r]..<names.start[r + 1]])
                }
                let w = layout.width[i]
                // Tooltip counts: the new profile's first (in a differential
                // graph drawn with base widths too).
                let shown = diff?.newTotal[i] ?? w
                out.raw("  <g><title>")
                out.escaped(name)
                out.raw(" (")
                out.grouped(shown)
                out.byte(UInt8(ascii: " "))
                out.escaped(options.countName)
                out.raw(", ")
                out.fixed2(100 * Double(shown) / Double(diff?.newGrand ?? grand))
                out.byte(UInt8(ascii: "%"))
                if let diff {
                    out.raw("; base ")
                    out.grouped(diff.baseTotal[i])
                    out.byte(UInt8(ascii: " "))
                    out.escaped(options.countName)
                    out.raw(", ")
                    out.fixed2(100 * Double(diff.baseTotal[i]) / Double(diff.baseGrand))
                    out.raw("%; self ")
                    let percent = diff.delta[i] * 100
                    if (percent * 100).rounded() > 0 { out.byte(UInt8(ascii: "+")) }
                    out.fixed2(percent)
                    out.byte(UInt8(ascii: "%"))
                }
                let x = g.xpad + Double(layout.x[i]) * scale
                let width = Double(w) * scale
                let y = g.y(depth: layout.depth[i])
                out.raw(")</title><rect x=\"")
                out.coord(x)
                out.raw("\" y=\"")
                out.coord(y)
                out.raw("\" width=\"")
                out.coord(width)
                out.raw("\" height=\"")
                out.coord(rectHeight)
                out.raw("\" fill=\"")
                let fill = diff.map { Palette.differential(delta: $0.delta[i], maxDelta: $0.maxDelta) }
                    ?? (r < 0 ? rootColor : !offCPU.isEmpty && offCPU[i] ? names.offCPUColor[r] : names.color[r])
                out.rgb(fill)
                out.raw("\" fg:x=\"")
                out.uint(layout.x[i])
                out.raw("\" fg:w=\"")
                out.uint(w)
                out.raw("\"/><text")
                // Black on a differential graph's deepest reds and blues is
                // unreadable (Rec. 709 luma); the palettes' colours are all light enough.
                if diff != nil && 0.2126 * Double(fill.r) + 0.7152 * Double(fill.g) + 0.0722 * Double(fill.b) < 100 {
                    out.raw(" class=\"on-dark\"")
                }
                // The label: flamegraph.pl's rule, mirrored by the script:
                // as many characters as fit, the last two of a cut label "..".
                let chars = Int((width / charWidth).rounded(.down))
                if chars >= 3 {
                    out.raw(" x=\"")
                    out.coord(x + 3)
                    out.raw("\" y=\"")
                    out.coord(y + labelOffset)
                    out.raw("\">")
                    let length = r < 0 ? name.count : names.displayLength[r]
                    let scalars = r < 0 ? name.count : names.displayScalars[r]
                    if scalars <= chars {
                        out.escaped(UnsafeRawBufferPointer(rebasing: name[0..<length]))
                    } else {
                        out.escaped(UnsafeRawBufferPointer(rebasing: name[0..<Self.prefix(name, scalars: chars - 2)]))
                        out.raw("..")
                    }
                } else {
                    out.byte(UInt8(ascii: ">"))
                }
                out.raw("</text></g>\n")
            }
        }
        out.raw("</g>\n</svg>\n")
        return out.string
    }

    /// Byte length of the first `scalars` Unicode scalars of valid UTF-8.
    static func prefix(_ b: UnsafeRawBufferPointer, scalars: Int) -> Int {
        var seen = 0, i = 0
        while i < b.count {
            if b[i] & 0xC0 != 0x80 {
                if seen == scalars { return i }
                seen += 1
            }
            i += 1
        }
        return b.count
    }

    private func prepareNames(_ layout: FrameLayout) -> Names {
        var names = Names()
        let palette = Palette(seed: options.paletteSeed)
        for id in layout.names {
            // Repair invalid UTF-8 (a name from bytes) before it is written.
            let text = shape.frames.string(id)
            var utf8 = text
            utf8.withUTF8 { b in
                let raw = UnsafeRawBufferPointer(b)
                let (kind, length) = FrameKind.classify(raw)
                let display = UnsafeRawBufferPointer(rebasing: raw[0..<length])
                names.bytes.append(contentsOf: raw)
                names.start.append(names.bytes.count)
                names.displayLength.append(length)
                names.displayScalars.append(display.reduce(0) { $0 + ($1 & 0xC0 != 0x80 ? 1 : 0) })
                names.kind.append(kind)
                names.color.append(palette.color(Band(kind: kind, offCPU: false), displayName: display))
            }
        }
        return names
    }

    /// Which drawn frames are in an off-CPU subtree: a frame named
    /// `[off-cpu…` and every frame above it. Empty when there are none, the
    /// usual case, which then costs one scan of the distinct names; otherwise
    /// also fills `names.offCPUColor`, one colour per name (not per frame).
    private func offCPUFrames(_ layout: FrameLayout, names: inout Names) -> [Bool] {
        guard names.kind.contains(.offCPU) else { return [] }
        var off = [Bool](repeating: false, count: layout.count)
        // A frame's parent precedes it (`FrameLayout.nodes` ascends and a
        // tree node's parent has a smaller index): one forward pass.
        for i in 1..<layout.count {
            off[i] = off[Int(layout.parent[i])] || names.kind[Int(layout.rank[i])] == .offCPU
        }
        let palette = Palette(seed: options.paletteSeed)
        names.offCPUColor.reserveCapacity(names.kind.count)
        names.bytes.withUnsafeBytes { arena in
            for r in names.kind.indices {
                let display = UnsafeRawBufferPointer(rebasing: arena[names.start[r]..<names.start[r] + names.displayLength[r]])
                names.offCPUColor.append(palette.color(Band(kind: names.kind[r], offCPU: true), displayName: display))
            }
        }
        return off
    }

    /// The bands of the frames drawn (the root aside), one bit each.
    private func bandsDrawn(_ layout: FrameLayout, names: Names, offCPU: [Bool]) -> UInt16 {
        var bands: UInt16 = 0
        if offCPU.isEmpty {
            for kind in names.kind { bands |= Band(kind: kind, offCPU: false).bit }
        } else {
            for i in 1..<layout.count { bands |= Band(kind: names.kind[Int(layout.rank[i])], offCPU: offCPU[i]).bit }
        }
        return bands
    }

    struct DiffValues {
        /// Inclusive samples of each drawn frame in each profile, whichever
        /// of them gives the widths.
        var newTotal: [UInt64], baseTotal: [UInt64]
        var newGrand: UInt64, baseGrand: UInt64
        /// new self share - base self share, per frame.
        var delta: [Double]
        var maxDelta: Double
    }

    /// Matches each drawn frame to the same stack in the other profile.
    private func differentialValues(_ layout: FrameLayout, totals: [UInt64], diff: Differential) -> DiffValues {
        let other = diff.other
        let otherTotals = FrameLayout.inclusive(other.tree)
        // Drawn names in the other profile's table (-1: absent there).
        var otherName = [Int32](repeating: -1, count: layout.names.count)
        for (r, id) in layout.names.enumerated() {
            otherName[r] = shape.frames.withName(id) { other.frames.find($0) } ?? -1
        }
        let n = layout.count
        var otherNode = [Int32](repeating: -1, count: n)
        otherNode[0] = 0
        var otherTotal = [UInt64](repeating: 0, count: n)
        var delta = [Double](repeating: 0, count: n)
        let shapeGrand = Double(totals[0]), otherGrand = Double(otherTotals[0])
        var maxDelta = 0.0
        for i in 0..<n {
            if i > 0 {
                let p = otherNode[Int(layout.parent[i])]
                let name = otherName[Int(layout.rank[i])]
                if p >= 0 && name >= 0 { otherNode[i] = other.tree.findChild(of: p, name: name) ?? -1 }
            }
            let o = otherNode[i]
            otherTotal[i] = o >= 0 ? otherTotals[Int(o)] : 0
            let shapeSelf = Double(shape.tree.selfCount(Int(layout.nodes[i]))) / shapeGrand
            let otherSelf = o >= 0 ? Double(other.tree.selfCount(Int(o))) / otherGrand : 0
            let d = diff.shapeIsNew ? shapeSelf - otherSelf : otherSelf - shapeSelf
            delta[i] = d
            maxDelta = max(maxDelta, abs(d))
        }
        if diff.shapeIsNew {
            return DiffValues(newTotal: layout.width, baseTotal: otherTotal, newGrand: totals[0], baseGrand: otherTotals[0],
                              delta: delta, maxDelta: maxDelta)
        }
        return DiffValues(newTotal: otherTotal, baseTotal: layout.width, newGrand: otherTotals[0], baseGrand: totals[0],
                          delta: delta, maxDelta: maxDelta)
    }

    private mutating func header(_ g: Geometry, bands: UInt16, isDifferential: Bool) {
        let w = g.width, h = g.height
        out.raw("<?xml version=\"1.0\" standalone=\"no\"?>\n")
        out.raw("<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n")
        out.raw("<svg version=\"1.1\" width=\""); out.coord(w)
        out.raw("\" height=\""); out.coord(h)
        out.raw("\" viewBox=\"0 0 "); out.coord(w); out.byte(UInt8(ascii: " ")); out.coord(h)
        out.raw("\" onload=\"init(evt)\" xmlns=\"http://www.w3.org/2000/svg\" xmlns:fg=\"urn:x-sprof:flamegraph\">\n")
        out.raw("<!-- Drawn by sprof (SprofFlameGraph). Click a frame to zoom, Ctrl-F or Search to search; ?s=REGEX searches on load. -->\n")
        out.raw("<defs>\n  <linearGradient id=\"background\" y1=\"0\" y2=\"1\" x1=\"0\" x2=\"0\">\n")
        out.raw("    <stop stop-color=\"#eeeeee\" offset=\"5%\"/>\n    <stop stop-color=\"#eeeeb0\" offset=\"95%\"/>\n")
        out.raw("  </linearGradient>\n</defs>\n")
        out.raw("<style type=\"text/css\">\n")
        out.raw("  text { font-family: Verdana, sans-serif; font-size: "); out.uint(UInt64(options.fontSize)); out.raw("px; fill: rgb(0,0,0); }\n")
        out.raw("  #title { text-anchor: middle; font-size: "); out.uint(UInt64(options.fontSize + 5)); out.raw("px; }\n")
        out.raw(FlameGraphAssets.css)
        out.raw("</style>\n")
        out.raw("<script type=\"text/ecmascript\"><![CDATA[\n")
        out.raw("var fg_xpad = "); out.coord(g.xpad)
        out.raw(", fg_width = "); out.coord(g.innerWidth)
        out.raw(", fg_charwidth = "); out.coord(Double(options.fontSize) * Geometry.fontWidth)
        out.raw(", fg_labeldy = "); out.coord(g.labelOffset)
        out.raw(", fg_inverted = "); out.raw(options.inverted ? "true" : "false")
        out.raw(";\n")
        out.raw(FlameGraphAssets.script)
        out.raw("]]></script>\n")
        out.raw("<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"url(#background)\"/>\n")
        let title = options.title ?? (isDifferential ? "Differential Flame Graph" : options.inverted ? "Icicle Graph" : "Flame Graph")
        out.raw("<text id=\"title\" x=\""); out.coord(w / 2); out.raw("\" y=\""); out.coord(g.titleY); out.raw("\">")
        out.escaped(title); out.raw("</text>\n")
        if let subtitleY = g.subtitleY, let subtitle = options.subtitle {
            out.raw("<text id=\"subtitle\" x=\""); out.coord(w / 2); out.raw("\" y=\""); out.coord(subtitleY); out.raw("\">")
            out.escaped(subtitle); out.raw("</text>\n")
        }
        legend(g, bands: bands, isDifferential: isDifferential)
        out.raw("<text id=\"details\" x=\""); out.coord(g.xpad); out.raw("\" y=\""); out.coord(g.detailsY); out.raw("\"> </text>\n")
        out.raw("<text id=\"unzoom\" class=\"button hide\" x=\""); out.coord(g.xpad); out.raw("\" y=\""); out.coord(g.titleY)
        out.raw("\">Reset Zoom</text>\n")
        out.raw("<text id=\"search\" class=\"button\" x=\""); out.coord(w - g.xpad - 2 * Double(options.fontSize))
        out.raw("\" y=\""); out.coord(g.titleY); out.raw("\">Search</text>\n")
        out.raw("<text id=\"ignorecase\" class=\"button\" x=\""); out.coord(w - g.xpad); out.raw("\" y=\""); out.coord(g.titleY)
        out.raw("\">ic</text>\n")
        out.raw("<text id=\"matched\" class=\"hide\" x=\""); out.coord(w - g.xpad); out.raw("\" y=\""); out.coord(g.detailsY)
        out.raw("\"> </text>\n")
        out.raw("<g id=\"frames\">\n")
    }

    /// A swatch per band drawn, in `Band` order: the frame kinds on the CPU,
    /// then the off-CPU bands, those only when off-CPU frames are drawn (or
    /// red/blue for a differential graph).
    private mutating func legend(_ g: Geometry, bands: UInt16, isDifferential: Bool) {
        var entries: [(RGB, String)] = []
        var note: String?
        if isDifferential {
            entries = [(RGB(r: 255, g: 0, b: 0), "grew"), (RGB(r: 0, g: 0, b: 255), "shrank"),
                       (RGB(r: 255, g: 255, b: 255), "unchanged")]
            let widths = options.differentialWidths == .new ? "new" : "base"
            note = "each frame's own share of the samples, new against base; widths from the \(widths) profile"
        } else {
            for band in Band.allCases where bands & band.bit != 0 {
                entries.append((Palette.representative(band), band.label))
            }
        }
        if entries.isEmpty { return }
        out.raw("<g id=\"legend\">\n")
        var x = g.xpad
        let size = (g.fontSize * 0.8).rounded()
        let charWidth = g.fontSize * Geometry.fontWidth
        for (color, label) in entries {
            out.raw("  <rect x=\""); out.coord(x); out.raw("\" y=\""); out.coord(g.legendY - size)
            out.raw("\" width=\""); out.coord(size); out.raw("\" height=\""); out.coord(size)
            out.raw("\" fill=\""); out.rgb(color); out.raw("\"/><text x=\""); out.coord(x + size + 4)
            out.raw("\" y=\""); out.coord(g.legendY); out.raw("\">"); out.escaped(label); out.raw("</text>\n")
            x += size + 4 + Double(label.count) * charWidth + 14
        }
        if let note {
            out.raw("  <text class=\"note\" x=\""); out.coord(x); out.raw("\" y=\""); out.coord(g.legendY); out.raw("\">")
            out.escaped(note); out.raw("</text>\n")
        }
        out.raw("</g>\n")
    }
}

private let allName: StaticString = "all"
