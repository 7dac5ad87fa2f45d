// libFuzzer entry point for folded stacks: compiled into module
// SprofFlameGraph together with flamegraph/ by bench/fuzz.sh (target
// `folded`).
//
// Input: a folded-stacks file (`sprof flamegraph in.folded`), any bytes.
// It is parsed as `sprof flamegraph` parses it (`FoldedStacks(parsingUTF8:)`)
// and, when it parses, drawn: a flame graph with the default options, an
// icicle graph drawing every frame (minimum width 0), or a differential
// graph against its first half, either way round. Everything must end in a graph or a
// ParseError / FlameGraphError — never a trap or a hang.
//
// Checked, not only survived: for folded text that is valid UTF-8,
// `rendered()` reads back with the same total and, from then on, as the same
// stacks (the first round may normalise: a frame after empty ones, `;; x 1`,
// becomes the first and loses its leading blanks, as every line does; found
// by this harness, corpus file folded/leading-blank-frame.folded); merging a
// profile into itself keeps the counts' sum exact or clamps it (never wraps).

@_cdecl("LLVMFuzzerTestOneInput")
public func foldedFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard let stacks = try? FoldedStacks(parsingUTF8: bytes) else { return 0 }
    if String(validating: bytes, as: UTF8.self) != nil {
        let once: FoldedStacks, twice: FoldedStacks
        do { once = try FoldedStacks(parsing: stacks.rendered()) } catch { fatalError("rendered() does not parse: \(error)") }
        precondition(once.total == stacks.total, "rendered() reads back with another total")
        do { twice = try FoldedStacks(parsing: once.rendered()) } catch { fatalError("round 2: \(error)") }
        precondition(twice == once, "rendered() reads back as other stacks")
    }
    // One graph per input (each carries ~30 KB of script and style), chosen
    // by the input's length so that mutations reach all four.
    switch size % 4 {
    case 0: _ = try? renderFlameGraph(stacks)
    case 1: _ = try? renderFlameGraph(stacks, options: FlameGraphOptions(width: 300, minWidth: 0, inverted: true))
    default:
        let half = (try? FoldedStacks(parsingUTF8: bytes.prefix(size / 2))) ?? FoldedStacks()
        if size % 4 == 2 {
            _ = try? renderDifferentialFlameGraph(base: half, new: stacks)
        } else {
            _ = try? renderDifferentialFlameGraph(base: stacks, new: half, options: FlameGraphOptions(differentialWidths: .base))
        }
    }
    var doubled = stacks
    doubled.merge(stacks)
    precondition(doubled.total >= stacks.total, "merging wrapped the total")
    return 0
}
