// libFuzzer entry point for the agent's configuration file: compiled into
// module SprofAgent together with Sources/Agent (and the modules it imports)
// by bench/fuzz.sh (target `toml`).
//
// Input: a configuration file's bytes (`sprof agent --config FILE`). As
// `AgentConfig.load(path:)` does, bytes that are not UTF-8 are refused
// before parsing; the rest is parsed as a TOML document and as a
// configuration. Everything must end in a value or a TOMLError / AgentError
// — never a trap, and no recursion deeper than `TOMLParser.maxDepth`.
//
// Checked, not only survived: every value's `tomlText` reads back as a
// document, and a configuration that parses writes (`rendered()`) a file
// that parses back as the same configuration.

@_cdecl("LLVMFuzzerTestOneInput")
public func tomlFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    if let doc = try? TOMLDocument(parsing: text) {
        for (_, keys) in doc.tables {
            for (key, entry) in keys {
                let line = TOMLValue.key(key) + " = " + entry.value.tomlText
                do { _ = try TOMLDocument(parsing: line) } catch { fatalError("\(line) does not read back: \(error)") }
            }
        }
    }
    guard let config = try? AgentConfig.parse(text, source: "fuzz") else { return 0 }
    let written = config.rendered()
    let again: AgentConfig
    do { again = try AgentConfig.parse(written, source: "rendered") } catch { fatalError("rendered() does not read back: \(error)\n\(written)") }
    precondition(again == config, "rendered() reads back as another configuration:\n\(written)")
    return 0
}
