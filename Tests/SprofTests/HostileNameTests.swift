import XCTest
@testable import SprofProfile

/// Names are any bytes but NUL (a symbol in a crafted ELF file, a line of a
/// perf map, a thread name): in text output they must stay one field of one
/// line and send nothing to a terminal.
final class HostileNameTests: XCTestCase {
    /// A name that, printed raw, would end its folded line, start a forged
    /// one, and clear the terminal (ESC [ 2 J).
    let hostile = "evil\n999999 forged;stack\u{1B}[2J\u{7F}"

    func testFoldedOutputKeepsAHostileNameOnItsLine() throws {
        let profile = Profile(folded: [(["app", "main", hostile], 3)])
        let text = Profile.renderFolded(profile.foldedStacks())
        XCTAssertEqual(text.split(separator: "\n").count, 1, text)
        XCTAssertFalse(text.utf8.contains(0x1B), text)
        XCTAssertFalse(text.contains("forged;stack"), text)
        XCTAssertTrue(text.hasSuffix(" 3\n"), text)
        XCTAssertTrue(text.hasPrefix("app;main;evil\u{FFFD}999999 forged:stack\u{FFFD}[2J\u{FFFD}"), text)
    }

    func testTopOutputSendsNoControlCharacters() throws {
        let profile = Profile(folded: [(["app", "main", hostile], 3)])
        let (rows, total) = profile.top()
        let text = Profile.renderTop(rows, total: total, limit: 10, unit: "samples")
        XCTAssertFalse(text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" || $0.value == 0x7F }, text)
        // Header, column names, and one line per function (main and the
        // hostile one; "app" is the process, not a function).
        XCTAssertEqual(text.split(separator: "\n").count, 2 + 2, text)
    }

    func testCleanLeavesOrdinaryNamesAlone() {
        for name in ["main", "std::vector<int>::push_back(int const&)", "$s4main3fooyyF", "py::f:/a b.py", "ünïcødé"] {
            XCTAssertEqual(Profile.clean(name), name)
        }
    }
}
