import ArgumentParser
import SprofCapture

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Say what this kernel allows sprof to do, and what follows.",
        discussion: "Each feature is tried for real (a tiny program is loaded and attached), not guessed from the version.")

    @Flag(name: .shortAndLong, help: "Also print verifier instruction counts of every variant and libbpf messages.")
    var verbose = false

    func run() throws {
        Sprof.bootstrapLogging(verbose: false)
        let checks = SprofCapture.Doctor.run()
        let width = checks.map(\.name.count).max() ?? 20
        for c in checks {
            let mark: String
            switch c.status {
            case .ok: mark = "ok  "
            case .fallback: mark = "fall"
            case .missing: mark = "no  "
            case .info: mark = "    "
            }
            let pad = String(repeating: " ", count: max(0, width - c.name.count))
            print("[\(mark)] \(c.name)\(pad)  \(c.detail)")
            if !c.consequence.isEmpty { print("       \(String(repeating: " ", count: width))  -> \(c.consequence)") }
            if verbose { for line in c.verbose { print("       \(String(repeating: " ", count: width))     \(line)") } }
        }
    }
}
