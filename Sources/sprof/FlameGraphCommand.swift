import ArgumentParser
import Foundation
import SprofFlameGraph

struct FlameGraphCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flamegraph",
        abstract: "Draw folded stacks from any tool as an interactive SVG flame graph.",
        discussion: """
            Reads Brendan Gregg's folded stacks (`frame;frame;frame COUNT` lines, as stackcollapse-*.pl,
            `perf script | inferno-collapse-perf`, or `sprof report --folded` write them) from FILE or stdin
            and writes an SVG: click a frame to zoom, Ctrl-F or the Search button to highlight a regex (the
            matched share is shown), hover for counts. Frames ending in _[k] are drawn as kernel, _[i] as
            inlined, _[j] as JIT code.

            Examples:
              perf script | stackcollapse-perf.pl | sprof flamegraph -o perf.svg
              sprof flamegraph app.folded --title "app, 30 s" --minwidth 0.5
            """)

    @Argument(help: "Folded stacks; stdin when absent or -.")
    var file: String?

    @Option(name: .shortAndLong, help: "Output SVG.")
    var output = "flamegraph.svg"

    @OptionGroup var look: FlameGraphLook

    @Option(help: "What the counts are (shown in tooltips).")
    var countName = "samples"

    func run() throws {
        let data: Data
        if let file, file != "-" {
            guard let d = FileManager.default.contents(atPath: file) else { fail("\(file): cannot be read") }
            data = d
        } else {
            data = FileHandle.standardInput.readDataToEndOfFile()
        }
        let stacks: FoldedStacks
        do { stacks = try FoldedStacks(parsingUTF8: data) } catch { fail("\(file ?? "stdin"): \(error)") }
        var options = look.options(defaultTitle: nil)
        options.countName = countName
        let svg: String
        do { svg = try renderFlameGraph(stacks, options: options) } catch { fail("\(file ?? "stdin"): \(error)") }
        do { try writeAtomically(Array(svg.utf8), to: output) } catch { fail("\(error)") }
        print(output)
    }
}

/// How a flame graph looks: the options `sprof flamegraph` and
/// `sprof report --flamegraph` share.
struct FlameGraphLook: ParsableArguments {
    @Option(help: "Flame graph title (default: the profile's name; Flame Graph for folded input).")
    var title: String?

    @Option(help: "Flame graph width in pixels.")
    var width = 1200

    @Option(help: ArgumentHelp("Flame graph: frames narrower than this many pixels are merged.", valueName: "px"))
    var minwidth = 0.1

    @Flag(help: "Flame graph upside down (icicle graph).")
    var inverted = false

    func validate() throws {
        if width < 100 { throw ValidationError("--width must be at least 100") }
    }

    func options(defaultTitle: String?) -> FlameGraphOptions {
        var o = FlameGraphOptions()
        o.title = title ?? defaultTitle
        o.width = Double(width)
        o.minWidth = minwidth
        o.inverted = inverted
        return o
    }
}
