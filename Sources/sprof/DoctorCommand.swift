import ArgumentParser
import Foundation
import SprofCapture
import SprofSymbols

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Say what this kernel allows sprof to do, and what follows.",
        discussion: "Each feature is tried for real (a tiny program is loaded and attached), not guessed from the version.")

    @Flag(name: .shortAndLong, help: "Also print verifier instruction counts of every variant and libbpf messages.")
    var verbose = false

    func run() throws {
        Sprof.bootstrapLogging(verbose: false)
        let checks = SprofCapture.Doctor.run() + symbolChecks()
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

/// What names will look like here: the demanglers, kernel symbols, debug files.
func symbolChecks() -> [DoctorCheck] {
    var out: [DoctorCheck] = []
    let swift = Demangler.swiftDemanglerDescription
    let simplified = swift.hasPrefix("swift_demangle_getSimplifiedDemangledName")
    out.append(DoctorCheck(name: "demangling", status: simplified ? .ok : .fallback,
                           detail: "C++ and Rust: libiberty (as nm -C); Swift: \(swift)",
                           consequence: simplified ? "" : "Swift names are shown in full (or mangled); install the Swift toolchain for the short form"))
    if let k = KernelSymbols.load() {
        let modules = Set(k.indices.lazy.compactMap { k[$0].module }).count
        out.append(DoctorCheck(name: "kernel symbols", status: .ok,
                               detail: "/proc/kallsyms: \(k.count) text symbols, \(modules) modules", consequence: ""))
    } else {
        out.append(DoctorCheck(name: "kernel symbols", status: .missing, detail: "/proc/kallsyms addresses are hidden",
                               consequence: "kernel frames are [kernel.kallsyms]+0xADDRESS: run as root or with CAP_SYSLOG (kernel.kptr_restrict)"))
    }
    let debugRoot = "/usr/lib/debug/.build-id"
    let debugFiles = (try? FileManager.default.contentsOfDirectory(atPath: debugRoot))?.count ?? 0
    out.append(DoctorCheck(name: "debug files", status: .info,
                           detail: debugFiles > 0 ? "\(debugRoot): \(debugFiles) directories" : "\(debugRoot) is empty or absent",
                           consequence: debugFiles > 0 ? "" : "stripped libraries are named from .dynsym only; install their -dbg/-dbgsym packages for local functions, inline frames and lines"))
    if let client = DebuginfodClient.fromEnvironment() {
        out.append(DoctorCheck(name: "debuginfod", status: .ok, detail: "DEBUGINFOD_URLS=\(client.urls)",
                               consequence: "debug files that are not installed are fetched by build-id and cached"))
    } else {
        out.append(DoctorCheck(name: "debuginfod", status: .info, detail: "DEBUGINFOD_URLS is not set",
                               consequence: "missing debug files are not fetched (set DEBUGINFOD_URLS, e.g. https://debuginfod.debian.net)"))
    }
    return out
}
