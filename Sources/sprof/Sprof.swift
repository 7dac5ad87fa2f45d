import ArgumentParser
import Logging
#if canImport(Glibc)
import Glibc
#endif

@main
struct Sprof: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sprof",
        abstract: "An eBPF sampling profiler for Linux: exact user and kernel stacks without frame pointers.",
        discussion: """
            Examples:
              sudo sprof record -- ./my-app --flag                 profile a command until it exits (-> sprof.pb.gz)
              sprof report                                           top functions of sprof.pb.gz
              sprof report --flamegraph                              an interactive flamegraph.svg
              sudo sprof record -p 1234 -d 10 -o app.pb.gz          profile process 1234 for 10 s
              sudo sprof record -a -d 5                              every process, 5 s
              sprof dump app.raw | head                              a raw recording's samples (record --raw)
              sprof symbolize -e ./my-app 0x1139                     name an address (addr2line -f -i -C)
              sudo sprof agent                                       profile the whole machine continuously
              sprof report --store /var/lib/sprof/store --since 10m  what the agent saw in the last 10 minutes
              sudo sprof doctor                                      what this kernel allows
            """,
        subcommands: [Record.self, Report.self, AgentCommand.self, Query.self, FlameGraphCommand.self, Symbolize.self, Dump.self, Doctor.self])

    /// `--flamegraph` takes an optional value (`sprof report --flamegraph`
    /// writes flamegraph.svg), which ArgumentParser has no notion of: a
    /// `--flamegraph` not followed by a name ending in .svg gets the default.
    static func main() {
        var args = Array(CommandLine.arguments.dropFirst())
        if args.first == "report" || args.first == "query" {
            var i = 1
            while i < args.count {
                if args[i] == "--flamegraph" {
                    let next = i + 1 < args.count ? args[i + 1] : nil
                    if next == nil || !(next!.hasSuffix(".svg") || next!.hasSuffix(".html")) {
                        args.insert("flamegraph.svg", at: i + 1)
                    }
                }
                i += 1
            }
        }
        Self.main(args)
    }

    static func bootstrapLogging(verbose: Bool) {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = verbose ? .debug : .warning
            return h
        }
    }
}

/// Exits with a message on stderr: for errors the user can act on.
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandleStderr.write("sprof: \(message)\n")
    exit(code)
}

enum FileHandleStderr {
    static func write(_ s: String) {
        var s = s
        s.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(2, buf.baseAddress! + off, buf.count - off)
                if n < 0 { if errno == EINTR { continue } else { return } }
                off += n
            }
        }
    }
}
