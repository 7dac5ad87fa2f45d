import ArgumentParser
import SprofCapture

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the samples of a raw recording for humans.",
        discussion: """
            A header (what was recorded, on which kernel, samples and lost samples), then one line per
            sample: time since start, pid/tid, command, CPU, flags, ip and the mapping it falls in, sp,
            user-stack bytes copied/requested and kernel frames.

            Examples:
              sprof dump sprof.data --limit 20
              sprof dump sprof.data --pid 1234 --verbose
            """)

    @Argument(help: "A file written by `sprof record`.")
    var file: String

    @Option(help: "Print at most this many samples.")
    var limit: Int?

    @Option(help: "Only samples of this process.")
    var pid: Int32?

    @Flag(name: .shortAndLong, help: "Also print kernel frames and the first words of each user stack.")
    var verbose = false

    func run() throws {
        let reader: RawFileReader
        do {
            reader = try RawFileReader(path: file)
        } catch {
            fail("\(error)")
        }
        var out = StdoutStream()
        RawDump.write(reader, options: .init(limit: limit, pid: pid, verbose: verbose), to: &out)
    }
}

struct StdoutStream: TextOutputStream {
    mutating func write(_ string: String) { print(string, terminator: "") }
}
