import ArgumentParser
import Foundation
import SprofAgent
import SprofCapture
import SprofProfile
import SprofUnwind
#if canImport(Glibc)
import Glibc
#endif

struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample on-CPU (and with --off-cpu, off-CPU) stacks of processes and write them to a file.",
        discussion: """
            Exactly one target: -p PID[,PID...], -a (every process), or -- CMD ARGS (start CMD and
            profile it until it exits; sprof then exits with CMD's status). Ctrl-C or SIGTERM stops
            the recording and still writes the file; a target that exits ends it. The file is written
            atomically: it appears complete or not at all.

            --off-cpu also records every wait of the target threads longer than --off-cpu-min-us:
            where each thread left the CPU (user and kernel stack), for how long, and whether it
            blocked or was preempted while runnable. Shorter waits are counted in the summary.

            Examples:
              sudo sprof record -- ./app --input big.txt      then: sprof report --flamegraph
              sudo sprof record -p 1234,1240 -F 499 -d 30
              sudo sprof record -a -d 5 --stack-size 64k
              sudo sprof record --off-cpu -p 1234 -d 10      then: sprof report --value offcpu
            """)

    @Option(name: .shortAndLong, help: ArgumentHelp("Profile these processes (comma-separated pids).", valueName: "pid,..."))
    var pid: String?

    @Flag(name: .shortAndLong, help: "Profile every process on the system.")
    var all = false

    @Option(name: .customShort("F"), help: "Samples per second of CPU time, per CPU.")
    var frequency = 999

    @Option(name: .shortAndLong, help: ArgumentHelp("Stop after this many seconds.", valueName: "seconds"))
    var duration: Double?

    @Option(name: .shortAndLong, help: ArgumentHelp("Output file (default sprof.pb.gz, gzipped pprof; sprof.raw with --raw).", valueName: "file"))
    var output: String?

    @Option(name: .long, help: ArgumentHelp("Bytes of user stack copied per sample, 4k to 64k.", valueName: "bytes"))
    var stackSize = "32k"

    @Flag(help: "Also record where threads wait off the CPU, and for how long.")
    var offCPU = false

    @Option(name: .customLong("off-cpu-min-us"), help: ArgumentHelp("With --off-cpu: record waits of at least this many microseconds; shorter ones are only counted.", valueName: "us"))
    var offCPUMinMicroseconds: Double = 1000

    @Option(name: .customLong("off-cpu-attach"), help: .hidden)
    var offCPUAttach: String?

    @Flag(name: .customLong("off-cpu-kernel-threads"), help: "With --off-cpu -a: include kernel threads' waits (left out by default: they mostly idle).")
    var offCPUKernelThreads = false

    @Flag(help: "Write a raw recording that keeps the user-stack bytes instead of a profile (much larger; `sprof report` unwinds and names it later, with the binaries).")
    var raw = false

    @Option(name: .long, help: .hidden)
    var forceFallback: String?

    @Option(name: .long, help: .hidden)
    var ringBufferSize: Int?

    @Flag(name: .shortAndLong, help: "Log libbpf and loader details.")
    var verbose = false

    @Argument(parsing: .postTerminator, help: ArgumentHelp("Command to start and profile.", valueName: "command"))
    var command: [String] = []

    func validate() throws {
        let chosen = [pid != nil, all, !command.isEmpty].filter { $0 }.count
        if chosen != 1 { throw ValidationError("choose exactly one target: -p PID, -a, or -- CMD") }
        if parseSize(stackSize) == nil { throw ValidationError("--stack-size \(stackSize): expected bytes, e.g. 32768 or 32k") }
        if !(offCPUMinMicroseconds >= 0 && offCPUMinMicroseconds <= 3_600_000_000) {
            throw ValidationError("--off-cpu-min-us \(offCPUMinMicroseconds): expected microseconds from 0 to an hour")
        }
        if let a = offCPUAttach, OffCPUAttachPoint(shortName: a) == nil {
            throw ValidationError("--off-cpu-attach \(a): expected one of " + OffCPUAttachPoint.allCases.map(\.shortName).joined(separator: ", "))
        }
        if !offCPU && (offCPUAttach != nil || offCPUKernelThreads) { throw ValidationError("--off-cpu-attach and --off-cpu-kernel-threads need --off-cpu") }
    }

    func run() throws {
        Sprof.bootstrapLogging(verbose: verbose)
        let target: RecordTarget
        if let pid {
            var pids: [Int32] = []
            for part in pid.split(separator: ",") {
                guard let p = Int32(part.trimmingCharacters(in: .whitespaces)), p > 0 else { fail("-p \(pid): expected process ids like 1234,5678") }
                pids.append(p)
            }
            target = .pids(pids)
        } else if all {
            target = .all
        } else {
            target = .command(command)
        }
        let destination = output ?? (raw ? "sprof.raw" : defaultProfilePath)
        // A profile is converted from a raw recording written beside it, then removed.
        let dir = (destination as NSString).deletingLastPathComponent
        let rawPath = raw ? destination : (dir.isEmpty ? "" : dir + "/") + ".sprof-record-\(getpid()).raw"
        var settings = RecordSettings(target: target, output: rawPath)
        settings.frequency = frequency
        settings.duration = duration
        settings.userStackSize = parseSize(stackSize)!
        settings.forcedFallbacks = CaptureVariants.environmentFallbacks.union(
            (forceFallback ?? "").split(separator: ",").map(String.init))
        if let r = ringBufferSize { settings.ringBufferBytes = r }
        settings.statusLine = true
        if offCPU {
            var off = OffCPUSettings(minimumNanoseconds: UInt64(offCPUMinMicroseconds * 1000), includeKernelThreads: offCPUKernelThreads)
            let forced = offCPUAttach ?? ProcessInfo.processInfo.environment["SPROF_OFFCPU_ATTACH"]
            if let forced {
                guard let p = OffCPUAttachPoint(shortName: forced) else { fail("SPROF_OFFCPU_ATTACH=\(forced): expected one of " + OffCPUAttachPoint.allCases.map(\.shortName).joined(separator: ", ")) }
                off.forcedAttachPoint = p
            }
            settings.offCPU = off
        }
        if !raw { settings.makeUnwinder = { SampleUnwinder(source: .live) } }
        settings.makeSymbolization = { RecordingSymbolizer() }

        signal(SIGINT) { sig in recordStopRequested.store(sig, ordering: .relaxed) }
        signal(SIGTERM) { sig in recordStopRequested.store(sig, ordering: .relaxed) }

        var summary: RecordSummary
        do {
            summary = try Recorder(settings: settings).run()
        } catch {
            fail("\(error)")
        }
        if !raw {
            do {
                let reader = try RawFileReader(path: rawPath)
                let profile = RecordingConverter(reader: reader).profile()
                let bytes = try Pprof.encode(profile)
                try writeAtomically(bytes, to: destination)
                summary.bytesWritten = UInt64(bytes.count)
                unlink(rawPath)
            } catch {
                // Lose nothing: the raw recording stays, and says how to finish the job.
                fail("\(error)\nsprof: the recording is kept at \(rawPath); once the problem is fixed: "
                     + "sprof report \(rawPath) --pprof \(destination)")
            }
        }
        FileHandleStderr.write("sprof: \(summary.line) -> \(destination)\n")
        if let line = summary.offCPULine { FileHandleStderr.write("sprof: \(line)\n") }
        if summary.lost > 0 {
            FileHandleStderr.write("sprof: \(summary.lost) samples were lost (buffer full); try a lower -F or a smaller --stack-size\n")
        }
        if let status = summary.commandExitStatus, status != 0 { throw ExitCode(status) }
    }
}

/// "32768", "32k", "32K", "32KiB", "64kb" -> bytes (binary units, as the
/// agent's configuration reads them: one parser for both).
func parseSize(_ text: String) -> Int? { AgentConfig.parseSize(text) }
