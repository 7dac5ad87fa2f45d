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
              sudo sprof record -o app.sprof -- ./my-app --flag   profile a command until it exits
              sudo sprof record -p 1234 -d 10 -o app.sprof         profile process 1234 for 10 s
              sudo sprof record -a -d 5                              every process, 5 s
              sprof dump app.sprof | head                            the raw samples
              sprof symbolize -e ./my-app 0x1139                     name an address (addr2line -f -i -C)
              sudo sprof doctor                                      what this kernel allows
            """,
        subcommands: [Record.self, Report.self, Symbolize.self, Dump.self, Doctor.self])

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
