import SprofBase
import SprofELF
#if canImport(Glibc)
import Glibc
#endif

/// Everything that can go wrong reading symbols. Each case names the file and
/// says what is wrong; offsets in hex (as `readelf` prints them), sizes in
/// decimal.
public enum SymbolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The ELF reader refused a structure the symbols live in (a section
    /// outside the file, a bad section index, ...).
    case elf(ELFError)
    /// A symbol table (`.symtab`/`.dynsym`) or its string table is not what
    /// the gABI ("Symbol Table", "String Table") says it must be.
    case badSymbolTable(path: String, section: String, problem: String)
    /// `dlopen`/`dlsym` of libdebuginfod failed; `reason` is `dlerror()`.
    case debuginfodUnavailable(library: String, reason: String)
    /// `debuginfod_begin` returned NULL (out of memory, or libcurl could not
    /// make its multi handle).
    case debuginfodClientFailed(urls: String)
    /// `debuginfod_find_debuginfo` failed other than "not found". `errno`
    /// is the library's negated result; it maps libcurl failures to errnos
    /// (debuginfod-client.c: couldn't connect → `ECONNREFUSED`, couldn't
    /// resolve → `EHOSTUNREACH`, timed out → `ETIME`, HTTP 406 → `EFBIG`).
    case debuginfodFailed(buildID: BuildID, urls: String, errno: Int32)

    public var path: String {
        switch self {
        case .elf(let e): return e.path
        case .badSymbolTable(let p, _, _): return p
        case .debuginfodUnavailable(let library, _): return library
        case .debuginfodClientFailed, .debuginfodFailed: return ""
        }
    }

    public var description: String {
        switch self {
        case .elf(let e):
            return e.description
        case .badSymbolTable(let p, let section, let problem):
            return "\(p): corrupt symbol table \(section): \(problem); the file is corrupt (symbols from it cannot be used)"
        case .debuginfodUnavailable(let library, let reason):
            return "debuginfod: cannot load \(library) (\(reason)); install libdebuginfod1 "
                + "(Debian, Ubuntu) or elfutils-debuginfod-client (Fedora), or unset DEBUGINFOD_URLS "
                + "to symbolize without debuginfod"
        case .debuginfodClientFailed(let urls):
            return "debuginfod: cannot start a client for \(urls) (debuginfod_begin failed: out of memory?)"
        case .debuginfodFailed(let buildID, let urls, let code):
            let text = strerror(code).map { String(cString: $0) } ?? "errno \(code)"
            var hint: String
            switch code {
            case ETIME:
                hint = "the servers sent less than 100 KiB in DEBUGINFOD_TIMEOUT seconds (or took longer "
                    + "than DEBUGINFOD_MAXTIME); raise it or check the network"
            case EFBIG:
                hint = "the file is larger than DEBUGINFOD_MAXSIZE; raise or unset it"
            default:
                hint = "check DEBUGINFOD_URLS and that the servers are reachable (DEBUGINFOD_VERBOSE=1 shows the exchange)"
            }
            return "debuginfod: cannot fetch the debug info of build-id \(buildID) from \(urls): \(text); \(hint)"
        }
    }
}
