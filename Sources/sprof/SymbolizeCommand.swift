import ArgumentParser
import Foundation
import SprofBase
import SprofSymbols

struct Symbolize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Name addresses of a binary, as addr2line -f -i -C does.",
        discussion: """
            Prints, for each address (hex, as the binary states it: `nm` and `objdump` addresses), its
            frames innermost first: the function on one line, FILE:LINE on the next (`??:0` when unknown),
            inlined functions first. The same output as `addr2line -f -i -C -e BINARY`, except for Swift,
            whose names are demangled here too. Addresses are read from the arguments, or from stdin, one
            per line. Separate debug files are found as `sprof report` finds them (by build-id,
            .gnu_debuglink, then debuginfod when DEBUGINFOD_URLS is set).

            Examples:
              sprof symbolize -e ./app 0x1139 0x11e0
              nm ./app | awk '{print $1}' | sprof symbolize -e ./app -a
            """)

    @Option(name: .shortAndLong, help: "The binary (executable or shared library).")
    var exe: String

    @Flag(name: .shortAndLong, help: "Print each address (0x%016x) before its frames, as addr2line -a does.")
    var addresses = false

    @Flag(help: "Show names as the binary states them.")
    var noDemangle = false

    @Option(help: ArgumentHelp("Look every address up this many times and print timing instead (benchmarks: a warm cache).", visibility: .hidden))
    var repeatCount: Int?

    @Argument(help: "Addresses in hex (0x optional).")
    var input: [String] = []

    func run() throws {
        let symbolizer = makeSymbolizer()
        let module: SymbolizedModule
        do { module = try symbolizer.module(path: exe) } catch { fail("\(error)") }
        var list: [UInt64] = []
        let words = input.isEmpty ? AnySequence(StandardInputLines()) : AnySequence(input)
        for word in words {
            let text = word.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            let hex = text.hasPrefix("0x") || text.hasPrefix("0X") ? text.dropFirst(2) : Substring(text)
            guard let a = UInt64(hex, radix: 16) else { fail("\(text): not a hex address") }
            list.append(a)
        }
        if let repeatCount {
            let t0 = DispatchTime.now().uptimeNanoseconds
            var frames = 0
            for a in list { frames += module.frames(at: StatedAddress(a)).count }
            let t1 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<repeatCount { for a in list { frames &+= module.frames(at: StatedAddress(a)).count } }
            let t2 = DispatchTime.now().uptimeNanoseconds
            let lookups = Double(list.count * repeatCount)
            print(String(format: "cold    %d addresses in %.3f s (%.0f addresses/s)", list.count,
                         Double(t1 - t0) / 1e9, Double(list.count) / (Double(t1 - t0) / 1e9)))
            print(String(format: "warm    %.0f lookups in %.3f s (%.0f lookups/s)", lookups,
                         Double(t2 - t1) / 1e9, lookups / (Double(t2 - t1) / 1e9)))
            print("memory  \(module.memoryBytes) bytes of tables and cache (\(module.symbols?.count ?? 0) symbols, \(module.plt.stubs.count) PLT stubs, DWARF \(module.hasDWARF ? "yes" : "no"))")
            return
        }
        var out = ""
        for a in list {
            if addresses { out += String(format: "0x%016llx\n", a) }
            let frames = module.frames(at: StatedAddress(a))
            if frames.isEmpty { out += "??\n??:0\n" }
            for f in frames {
                out += (noDemangle ? f.systemName : f.function) + "\n"
                out += (f.file ?? "??") + ":" + (f.line == 0 ? "?" : String(f.line)) + "\n"
            }
            if out.utf8.count > 1 << 16 { print(out, terminator: ""); out = "" }
        }
        print(out, terminator: "")
    }
}

/// stdin, line by line.
struct StandardInputLines: Sequence, IteratorProtocol {
    mutating func next() -> String? { readLine() }
}
