import SprofELF

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

    public var path: String {
        switch self {
        case .elf(let e): return e.path
        case .badSymbolTable(let p, _, _): return p
        }
    }

    public var description: String {
        switch self {
        case .elf(let e):
            return e.description
        case .badSymbolTable(let p, let section, let problem):
            return "\(p): corrupt symbol table \(section): \(problem); the file is corrupt (symbols from it cannot be used)"
        }
    }
}
