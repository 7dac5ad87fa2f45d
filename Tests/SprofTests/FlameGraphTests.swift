import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import SprofFlameGraph
import XCTest

/// The flame graph renderer: golden SVGs (re-record with SPROF_RECORD_GOLDEN=1, see
/// Tests/Fixtures/flamegraph/README.md), determinism, frame kinds, off-CPU colours and legend,
/// XML escaping, the minimum width, differential colours, parse and render errors, and a real
/// browser driving the result.
final class FlameGraphTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/flamegraph")

    func fixture(_ name: String) throws -> String {
        try String(contentsOf: Self.fixtures.appendingPathComponent(name), encoding: .utf8)
    }

    func small() throws -> FoldedStacks { try FoldedStacks(parsing: fixture("small.folded")) }
    func offCPU() throws -> FoldedStacks { try FoldedStacks(parsing: fixture("offcpu.folded")) }

    static var recording: Bool { ProcessInfo.processInfo.environment["SPROF_RECORD_GOLDEN"] == "1" }

    /// Compares with the golden file, or rewrites it when SPROF_RECORD_GOLDEN=1.
    func assertGolden(_ actual: String, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let url = Self.fixtures.appendingPathComponent(name)
        if Self.recording {
            try actual.write(to: url, atomically: true, encoding: .utf8)
            print("recorded \(url.path)")
            return
        }
        guard let expected = try? String(contentsOf: url, encoding: .utf8) else {
            XCTFail("no golden file \(url.path): record it with SPROF_RECORD_GOLDEN=1", file: file, line: line)
            return
        }
        if actual == expected { return }
        let a = actual.split(separator: "\n", omittingEmptySubsequences: false)
        let e = expected.split(separator: "\n", omittingEmptySubsequences: false)
        let first = zip(a, e).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, e.count)
        let got = FileManager.default.temporaryDirectory.appendingPathComponent("actual-" + name)
        try? actual.write(to: got, atomically: true, encoding: .utf8)
        XCTFail("""
            \(name) differs from the golden file at line \(first + 1):
              expected: \(first < e.count ? String(e[first]) : "<end of file>")
              actual:   \(first < a.count ? String(a[first]) : "<end of file>")
            the whole output is in \(got.path); if the change is intended, re-record with SPROF_RECORD_GOLDEN=1
            """, file: file, line: line)
    }

    // MARK: Golden files

    func testGoldenFlameGraph() throws {
        let svg = try renderFlameGraph(small(), options: FlameGraphOptions(subtitle: "user, kernel, inlined, JIT and unknown frames"))
        try assertGolden(svg, "small.svg")
        try assertWellFormed(svg)
    }

    func testGoldenDifferential() throws {
        let base = try FoldedStacks(parsing: fixture("small-base.folded"))
        let svg = try renderDifferentialFlameGraph(base: base, new: small())
        try assertGolden(svg, "small-diff.svg")
        try assertWellFormed(svg)
    }

    func testGoldenOffCPU() throws {
        let svg = try renderFlameGraph(offCPU(), options: FlameGraphOptions(subtitle: "on-CPU and off-CPU stacks of two processes"))
        try assertGolden(svg, "offcpu.svg")
        try assertWellFormed(svg)
    }

    // MARK: Determinism and layout

    func testSameInputSameBytes() throws {
        let a = try renderFlameGraph(small()), b = try renderFlameGraph(small())
        XCTAssertEqual(a, b)
        // Line order does not matter either: the tree is the same, siblings are sorted.
        var lines = try fixture("small.folded").split(separator: "\n").map(String.init)
        var rng = SplitMix64(seed: 7)
        lines.shuffle(using: &rng)
        let shuffled = try FoldedStacks(parsing: lines.joined(separator: "\n"))
        XCTAssertEqual(try renderFlameGraph(shuffled), a)
        // Stacks added one by one, as `sprof report` does, draw the same graph.
        var added = FoldedStacks()
        for line in lines {
            let space = line.lastIndex(of: " ")!
            added.add(line[..<space].split(separator: ";").map(String.init), count: UInt64(line[line.index(after: space)...])!)
        }
        XCTAssertEqual(try renderFlameGraph(added), a)
    }

    func testSiblingsSortedAlphabeticallyAndTooltips() throws {
        let stacks = try FoldedStacks(parsing: "p;zeta 1\np;alpha 2\np;Mu 3\np;beta 4\n")
        let titles = frameTitles(try renderFlameGraph(stacks))
        XCTAssertEqual(titles, ["all (10 samples, 100.00%)", "p (10 samples, 100.00%)",
                                "Mu (3 samples, 30.00%)", "alpha (2 samples, 20.00%)",
                                "beta (4 samples, 40.00%)", "zeta (1 samples, 10.00%)"])
        let many = try FoldedStacks(parsing: "a 1234567\n")
        let svg = try renderFlameGraph(many, options: FlameGraphOptions(countName: "ns"))
        XCTAssertTrue(svg.contains("<title>a (1,234,567 ns, 100.00%)</title>"), svg)
    }

    func testPaletteSeedChangesColoursOnly() throws {
        let a = try renderFlameGraph(small(), options: FlameGraphOptions(paletteSeed: 1))
        let b = try renderFlameGraph(small(), options: FlameGraphOptions(paletteSeed: 2))
        XCTAssertNotEqual(a, b)
        let strip = { (s: String) in s.replacingOccurrences(of: #"rgb\(\d+,\d+,\d+\)"#, with: "C", options: .regularExpression) }
        XCTAssertEqual(strip(a), strip(b))
    }

    func testInvertedPutsTheRootOnTop() throws {
        let svg = try renderFlameGraph(small(), options: FlameGraphOptions(inverted: true))
        XCTAssertTrue(svg.contains(">Icicle Graph</text>"))
        let rows = frameRects(svg)
        let root = try XCTUnwrap(rows.first { $0.title.hasPrefix("all (") })
        XCTAssertTrue(rows.allSatisfy { $0.y >= root.y }, "the root is the top row")
        XCTAssertTrue(svg.contains("fg_inverted = true"))
    }

    func testFrameKindsColoursAndLabels() throws {
        let cases: [(String, FrameKind, String)] = [
            ("main", .user, "main"), ("do_syscall_64_[k]", .kernel, "do_syscall_64"),
            ("memcpy_[i]", .inlined, "memcpy"), ("trace_42_[j]", .jit, "trace_42"),
            ("libfoo.so+0x1f00", .unknown, "libfoo.so+0x1f00"), ("[unknown]", .unknown, "[unknown]"),
            ("[truncated: bad CFI]", .unknown, "[truncated: bad CFI]"), ("0x7f001234", .unknown, "0x7f001234"),
            ("[unknown]_[k]", .unknown, "[unknown]"), ("a+b", .user, "a+b"), ("x_[q]", .user, "x_[q]"),
            ("operator+0x", .user, "operator+0x"), ("std::vector<int>::at", .user, "std::vector<int>::at"),
        ]
        for (name, kind, display) in cases {
            let c = FrameKind.classify(name)
            XCTAssertEqual(c.kind, kind, name)
            XCTAssertEqual(String(name.utf8.prefix(c.displayLength))!, display, name)
        }
        // Each kind gets its own band: the fixture's kernel frames are blue, inlined aqua, JIT green, unknown grey.
        let rects = frameRects(try renderFlameGraph(small()))
        func fill(_ name: String) throws -> RGB { try XCTUnwrap(rects.first { $0.title.hasPrefix(name + " (") }).fill }
        let k = try fill("do_syscall_64_[k]"), i = try fill("memcpy_[i]"), j = try fill("compute_hash_[j]")
        let u = try fill("[unknown]"), user = try fill("parse_json")
        XCTAssertTrue(k.b > k.r && k.b > k.g, "kernel blue: \(k)")
        XCTAssertTrue(i.g > i.r && i.b > i.r, "inlined aqua: \(i)")
        XCTAssertTrue(j.g > j.r && j.g > j.b, "JIT green: \(j)")
        XCTAssertTrue(u.r == u.g && u.g == u.b, "unknown grey: \(u)")
        XCTAssertTrue(user.r > user.b && user.r >= 200, "user warm: \(user)")
        // The suffix is cut from the label but kept in the tooltip (the text searched).
        let svg = try renderFlameGraph(small())
        XCTAssertTrue(svg.contains("<title>do_syscall_64_[k] ("))
        XCTAssertTrue(svg.contains(">do_syscall_64</text>"))
    }

    func testEscapingCppNamesAndControlCharacters() throws {
        let stacks = try FoldedStacks(parsing: "a<b>;std::map<K, V&>::operator[] 3\n\"q\" & 'x' 2\nbad\u{1}name 1\n")
        let svg = try renderFlameGraph(stacks)
        try assertWellFormed(svg)
        XCTAssertTrue(svg.contains("std::map&lt;K, V&amp;&gt;::operator[]"))
        XCTAssertTrue(svg.contains("&quot;q&quot; &amp; 'x'"))
        XCTAssertTrue(svg.contains("bad\u{FFFD}name"))
        // Invalid UTF-8 from bytes is repaired where shown.
        let bytes: [UInt8] = Array("ok;".utf8) + [0xFF, 0xFE] + Array(" 1\n".utf8)
        try assertWellFormed(try renderFlameGraph(FoldedStacks(parsingUTF8: bytes)))
    }

    // MARK: Off-CPU

    func testOffCPUMarkerIsAKindOfItsOwn() {
        XCTAssertEqual(FrameKind.offCPUPrefix, "[off-cpu")
        XCTAssertEqual(FrameKind.offCPU.description, "off-CPU")
        // Bracketed, but not unknown; shown whole, even with a suffix.
        for name in ["[off-cpu]", "[off-cpu: runnable]", "[off-cpu: uninterruptible]", "[off-cpu]_[k]"] {
            let c = FrameKind.classify(name)
            XCTAssertEqual(c.kind, .offCPU, name)
            XCTAssertEqual(c.displayLength, name.utf8.count, name)
        }
        // The prefix, exactly, at the start.
        for (name, kind) in [("[off-cp]", FrameKind.unknown), ("[Off-CPU]", .unknown), ("[unknown]", .unknown),
                             ("off-cpu", .user), ("x[off-cpu]", .user), ("schedule_[k]", .kernel)] {
            XCTAssertEqual(FrameKind.classify(name).kind, kind, name)
        }
    }

    func testOffCPUSubtreesAreViolet() throws {
        let rects = frameRects(try renderFlameGraph(offCPU()))
        let off = inOffCPUSubtree(rects)
        // 20 frames under myproc's [off-cpu], 3 under runnable, 9 under uninterruptible, 2 under logger's.
        XCTAssertEqual(off.filter { $0 }.count, 34)
        var offFills: [String: Set<String>] = [:], onFills: [String: Set<String>] = [:]
        for (rect, isOff) in zip(rects, off) where rect.name != "all" {
            let kind = FrameKind.classify(rect.name).kind
            let (h, s, l) = rect.fill.hsl
            if isOff {
                offFills[rect.name, default: []].insert(rect.fill.description)
                // Rounding to bytes moves the hue of the greyest shades by a few degrees.
                XCTAssertTrue((250...295).contains(h) && s > 0.05, "\(rect.name) off-CPU violet: \(rect.fill) h=\(h) s=\(s)")
                switch kind {
                case .kernel: XCTAssertTrue(l <= 0.68 && s >= 0.3, "\(rect.name) off-CPU kernel, deeper violet: \(rect.fill) l=\(l)")
                case .unknown: XCTAssertTrue(s <= 0.22, "\(rect.name) off-CPU unknown, violet grey: \(rect.fill) s=\(s)")
                case .user, .inlined, .jit, .offCPU: XCTAssertTrue(l >= 0.73 && s >= 0.4, "\(rect.name) off-CPU, light violet: \(rect.fill) l=\(l)")
                }
            } else {
                onFills[rect.name, default: []].insert(rect.fill.description)
                XCTAssertNotEqual(kind, .offCPU, rect.name)
                XCTAssertFalse((250...295).contains(h) && s > 0.05, "\(rect.name) on the CPU is not violet: \(rect.fill)")
            }
        }
        // The markers themselves are violet, not unknown's grey.
        for marker in ["[off-cpu]", "[off-cpu: runnable]", "[off-cpu: uninterruptible]"] {
            XCTAssertEqual(offFills[marker]?.count, 1, marker)
            XCTAssertNil(onFills[marker], marker)
        }
        // One shade per name on each side; the two sides never share one.
        for (name, fills) in offFills {
            XCTAssertEqual(fills.count, 1, "\(name) has one off-CPU shade: \(fills)")
            if let on = onFills[name] { XCTAssertTrue(on.isDisjoint(with: fills), "\(name): \(on) on, \(fills) off") }
        }
        for (name, fills) in onFills { XCTAssertEqual(fills.count, 1, "\(name) has one on-CPU shade: \(fills)") }
        for name in ["main", "worker", "read", "compute", "memcpy_[i]", "trace_7_[j]", "do_syscall_64_[k]", "libfoo.so+0x1f00"] {
            XCTAssertNotNil(offFills[name], name)
            XCTAssertNotNil(onFills[name], name)
        }
        // On the CPU, the same functions keep their kinds' bands.
        func on(_ name: String) throws -> FrameRect { try XCTUnwrap(rects.enumerated().first { !off[$0.offset] && $0.element.name == name }?.element) }
        let main = try on("main").fill, k = try on("do_syscall_64_[k]").fill, u = try on("libfoo.so+0x1f00").fill
        XCTAssertTrue(main.r > main.b && main.r >= 200, "user warm: \(main)")
        XCTAssertTrue(k.b > k.r && k.b > k.g, "kernel blue: \(k)")
        XCTAssertTrue(u.r == u.g && u.g == u.b, "unknown grey: \(u)")

        // Wherever the marker stands, and only above it.
        let deep = frameRects(try renderFlameGraph(FoldedStacks(parsing: "[off-cpu];a;b 3\nx;y;[off-cpu: runnable];a 2\nx;y;a 4\n")))
        let deepOff = inOffCPUSubtree(deep)
        XCTAssertEqual(zip(deep, deepOff).filter { $0.1 }.map(\.0.name).sorted(), ["[off-cpu: runnable]", "[off-cpu]", "a", "a", "b"])
        let a = zip(deep, deepOff).filter { $0.0.name == "a" }
        XCTAssertEqual(a.count, 3)
        XCTAssertEqual(Set(a.filter { $0.1 }.map(\.0.fill.description)).count, 1, "one off-CPU shade for a")
        XCTAssertNotEqual(a.first { !$0.1 }?.0.fill, a.first { $0.1 }?.0.fill)

        // Same colours upside down, and the same bytes every run.
        let inverted = frameRects(try renderFlameGraph(offCPU(), options: FlameGraphOptions(inverted: true)))
        XCTAssertEqual(inverted.map { "\($0.title) \($0.fill)" }.sorted(), rects.map { "\($0.title) \($0.fill)" }.sorted())
        XCTAssertEqual(try renderFlameGraph(offCPU()), try renderFlameGraph(offCPU()))
    }

    func testLegendMentionsOffCPUOnlyWhenDrawn() throws {
        let onCPU = try renderFlameGraph(small())
        XCTAssertEqual(legendLabels(onCPU), ["user", "kernel", "inlined", "JIT", "unknown"])
        XCTAssertFalse(onCPU.contains("off-CPU"))
        XCTAssertEqual(legendLabels(try renderFlameGraph(offCPU())),
                       ["user", "kernel", "inlined", "JIT", "unknown", "off-CPU", "off-CPU kernel", "off-CPU unknown"])
        // Only what is drawn: the marker is not "unknown", frames above it are not "user".
        XCTAssertEqual(legendLabels(try renderFlameGraph(FoldedStacks(parsing: "[off-cpu];main 5\n"))), ["off-CPU"])
        XCTAssertEqual(legendLabels(try renderFlameGraph(FoldedStacks(parsing: "p;[off-cpu: runnable];main;schedule_[k] 5\np;main 3\n"))),
                       ["user", "off-CPU", "off-CPU kernel"])
        // An off-CPU stack too narrow to draw adds nothing.
        let narrow = try renderFlameGraph(FoldedStacks(parsing: "p;main 1000000\np;[off-cpu];main 1\n"))
        XCTAssertEqual(legendLabels(narrow), ["user"])
        XCTAssertFalse(narrow.contains("off-cpu"))
        // A differential graph stays red and blue.
        let diff = try renderDifferentialFlameGraph(base: small(), new: offCPU())
        try assertWellFormed(diff)
        XCTAssertEqual(legendLabels(diff), ["grew", "shrank", "unchanged"])
        XCTAssertFalse(diff.contains(">off-CPU"))
        let diffRects = frameRects(diff)
        XCTAssertTrue(diffRects.contains { $0.name == "[off-cpu]" })
        for r in diffRects {
            let f = r.fill
            XCTAssertTrue((f.r == 255 && f.g == f.b) || (f.b == 255 && f.r == f.g), "\(r.name): red, blue or white, not \(f)")
        }
    }

    func testGraphsWithoutOffCPUAreUnchanged() throws {
        // The golden file as committed, whatever the record switch says.
        if !Self.recording {
            let svg = try renderFlameGraph(small(), options: FlameGraphOptions(subtitle: "user, kernel, inlined, JIT and unknown frames"))
            XCTAssertEqual(svg, try fixture("small.svg"), "small.svg must not change: off-CPU colours are for off-CPU stacks only")
        }
        // Off-CPU stacks beside them leave the on-CPU frames' colours alone.
        let onFill = Dictionary(frameRects(try renderFlameGraph(small())).map { ($0.name, $0.fill) }) { a, _ in a }
        var both = try small()
        both.merge(try offCPU())
        let rects = frameRects(try renderFlameGraph(both))
        let off = inOffCPUSubtree(rects)
        var compared = 0
        for (rect, isOff) in zip(rects, off) where !isOff {
            guard let fill = onFill[rect.name] else { continue }
            XCTAssertEqual(rect.fill, fill, rect.name)
            compared += 1
        }
        XCTAssertGreaterThan(compared, 30)
        XCTAssertTrue(off.contains(true))
    }

    // MARK: Minimum width

    func testMinWidthKeepsHugeProfilesSmall() throws {
        // One wide stack and 20,000 tiny ones, each far below 0.1 px.
        var text = "app;main;hot 1000000\n"
        for i in 0..<20_000 { text += "app;main;cold;f\(i % 997);g\(i) 1\n" }
        let stacks = try FoldedStacks(parsing: text)
        let svg = try renderFlameGraph(stacks)
        XCTAssertLessThan(svg.utf8.count, 20_000, "only the frames at least 0.1 px wide are drawn")
        XCTAssertEqual(frameTitles(svg).count, 5, "all, app, main, hot, and cold (20,000 samples: 23 px)")
        XCTAssertTrue(svg.contains("<title>main (1,020,000 samples, 100.00%)"), "dropped frames stay in their parents' counts")
        let everything = try renderFlameGraph(stacks, options: FlameGraphOptions(minWidth: 0))
        XCTAssertEqual(frameTitles(everything).count, 4 + 1 + 997 + 20_000)
        XCTAssertGreaterThan(everything.utf8.count, 100 * svg.utf8.count)
    }

    // MARK: Differential

    func testDifferentialColoursAndTooltips() throws {
        let base = try FoldedStacks(parsing: fixture("small-base.folded")), new = try small()
        let rects = frameRects(try renderDifferentialFlameGraph(base: base, new: new))
        func frame(_ name: String) -> FrameRect? { rects.first { $0.title.hasPrefix(name + " (") } }
        // push_back: 60 of 615 -> 120 of 580 samples, the largest change: pure red.
        let grew = try XCTUnwrap(frame("std::vector<std::pair<int, Foo&>>::push_back"))
        XCTAssertEqual(grew.fill.r, 255)
        XCTAssertEqual(grew.title, "std::vector<std::pair<int, Foo&>>::push_back (120 samples, 20.69%; base 60 samples, 9.76%; self +10.93%)")
        // vfs_write: 160 of 615 -> 80 of 580: blue.
        let shrank = try XCTUnwrap(frame("vfs_write_[k]"))
        XCTAssertEqual(shrank.fill.b, 255)
        XCTAssertEqual(shrank.title, "vfs_write_[k] (80 samples, 13.79%; base 160 samples, 26.02%; self -12.22%)")
        XCTAssertEqual(shrank.fill, RGB(0, 0, 255), "the largest change, a shrink, is pure blue")
        // No own samples in either: white.
        XCTAssertEqual(try XCTUnwrap(frame("main")).fill, RGB(255, 255, 255))
        // Only in the new profile: all growth. Only in the base profile: not drawn with new widths...
        XCTAssertEqual(try XCTUnwrap(frame("[unknown]")).fill.r, 255)
        XCTAssertNil(frame("legacy_template_engine"))
        // ...but drawn, blue, with base widths (difffolded.pl's --negate graph), red still growth.
        let baseShaped = frameRects(try renderDifferentialFlameGraph(
            base: base, new: new, options: FlameGraphOptions(differentialWidths: .base)))
        let gone = try XCTUnwrap(baseShaped.first { $0.title.hasPrefix("legacy_template_engine (") })
        XCTAssertEqual(gone.title, "legacy_template_engine (0 samples, 0.00%; base 50 samples, 8.13%; self -8.13%)")
        XCTAssertEqual(gone.fill.b, 255)
        XCTAssertEqual(try XCTUnwrap(baseShaped.first { $0.title.hasPrefix("std::vector") }).fill.r, 255)
        XCTAssertNil(baseShaped.first { $0.title.hasPrefix("[unknown] (") })
        // Identical profiles: all white.
        let same = frameRects(try renderDifferentialFlameGraph(base: new, new: new))
        XCTAssertTrue(same.allSatisfy { $0.fill == RGB(255, 255, 255) })
    }

    // MARK: Errors

    func testEmptyProfilesAreErrorsNotBrokenSVG() throws {
        for empty in [FoldedStacks(), try FoldedStacks(parsing: ""), try FoldedStacks(parsing: "\n\n  \n"),
                      try FoldedStacks(parsing: "a;b 0\n")] {
            XCTAssertThrowsError(try renderFlameGraph(empty)) { error in
                XCTAssertEqual(error as? FlameGraphError, .empty)
                XCTAssertTrue("\(error)".contains("no samples"), "\(error)")
            }
        }
        XCTAssertThrowsError(try renderDifferentialFlameGraph(base: FoldedStacks(), new: small())) {
            XCTAssertEqual($0 as? FlameGraphError, .emptyProfile(.base))
        }
        XCTAssertThrowsError(try renderDifferentialFlameGraph(base: small(), new: FoldedStacks())) {
            XCTAssertEqual($0 as? FlameGraphError, .emptyProfile(.new))
        }
        XCTAssertThrowsError(try renderFlameGraph(small(), options: FlameGraphOptions(width: 10))) {
            guard case .invalidOption(let why)? = $0 as? FlameGraphError else { return XCTFail("\($0)") }
            XCTAssertTrue(why.contains("width 10.0"), why)
        }
        XCTAssertThrowsError(try renderFlameGraph(small(), options: FlameGraphOptions(minWidth: -1)))
    }

    func testMalformedLinesNameTheLine() {
        let cases: [(String, FoldedStacks.ParseError)] = [
            ("a;b 1\nc;d\n", .missingCount(line: 2)),
            ("a;b 1\n\nc;d -3\n", .badCount(line: 3, count: "-3")),
            ("a 1\r\nb 2\r\nc 1.5\r\n", .badCount(line: 3, count: "1.5")),
            ("a one\n", .badCount(line: 1, count: "one")),
            ("a 99999999999999999999\n", .badCount(line: 1, count: "99999999999999999999")),
            ("a 1\n;; 4\n", .noFrames(line: 2)),
            ("a 18446744073709551615\nb 1\n", .totalOverflow(line: 2)),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try FoldedStacks(parsing: text), text) { error in
                XCTAssertEqual(error as? FoldedStacks.ParseError, expected, text)
                XCTAssertTrue("\(error)".hasPrefix("folded stacks line \(expected.line): "), "\(error)")
            }
        }
    }

    // MARK: FoldedStacks

    func testFoldedStacksParseMergeRender() throws {
        let text = "b;c 2\na 1\nb;c 3\n  b  5  \nb;;c\t1\r\n"
        let s = try FoldedStacks(parsing: text)
        XCTAssertEqual(s.total, 12)
        XCTAssertEqual(s.counts, [["a"]: 1, ["b", "c"]: 6, ["b"]: 5])
        XCTAssertEqual(s.rendered(), "a 1\nb 5\nb;c 6\n")
        XCTAssertEqual(try FoldedStacks(parsingUTF8: Array(text.utf8)), s)
        XCTAssertEqual(try FoldedStacks(parsing: s.rendered()), s)
        var m = FoldedStacks()
        m.add(["a"], count: 1)
        m.add(["x", "y"])
        m.merge(s)
        XCTAssertEqual(m.counts, [["a"]: 2, ["b", "c"]: 6, ["b"]: 5, ["x", "y"]: 1])
        XCTAssertEqual(m.total, 14)
        XCTAssertNotEqual(m, s)
        // A stack ending inside another, and zero counts, survive.
        let z = try FoldedStacks(parsing: "p;q 0\np 0\n")
        XCTAssertEqual(z.counts, [["p", "q"]: 0, ["p"]: 0])
    }

    // MARK: A real browser

    func testInHeadlessChromium() throws {
        let chromium = ProcessInfo.processInfo.environment["CHROMIUM"] ?? "/usr/bin/chromium"
        let driver = ProcessInfo.processInfo.environment["CHROMEDRIVER"] ?? "/usr/bin/chromedriver"
        for (tool, path) in [("chromium", chromium), ("chromium-driver", driver)]
        where !FileManager.default.isExecutableFile(atPath: path) {
            throw skipOrFailInCI("\(tool) is not at \(path) (Debian: apt-get install chromium chromium-driver)")
        }
        if run(["python3", "-c", "import selenium"]).status != 0 {
            throw skipOrFailInCI("python3 cannot import selenium (pip install selenium)")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sprof-flamegraph-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let svg = dir.appendingPathComponent("small.svg"), png = dir.appendingPathComponent("small.png")
        try renderFlameGraph(small()).write(to: svg, atomically: true, encoding: .utf8)
        let script = Self.fixtures.appendingPathComponent("browser_test.py").path
        let folded = Self.fixtures.appendingPathComponent("small.folded").path
        let result = run(["python3", script, svg.path, png.path, "--folded", folded])
        if result.status == 77 { throw skipOrFailInCI("browser_test.py: \(result.output)") }
        XCTAssertEqual(result.status, 0, result.output)
        let size = (try? FileManager.default.attributesOfItem(atPath: png.path)[.size] as? Int) ?? 0
        XCTAssertGreaterThan(size, 10_000, "a screenshot of a drawn graph, not a blank page")
        let header = try Data(contentsOf: png).prefix(8)
        XCTAssertEqual(Array(header), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "a PNG file")
        if let keep = ProcessInfo.processInfo.environment["SPROF_KEEP_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: png.path, toPath: keep)
        }
    }

    // MARK: Helpers

    func run(_ argv: [String]) -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (-1, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func assertWellFormed(_ svg: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "not well-formed XML: \(String(describing: parser.parserError))", file: file, line: line)
    }

    struct FrameRect {
        var title: String
        var y: Double
        var fill: RGB
        /// Position and width in samples (`fg:x`, `fg:w`).
        var x: UInt64, width: UInt64
        /// The title without its counts.
        var name: String { String(title[..<(title.range(of: " (", options: .backwards)?.lowerBound ?? title.endIndex)]) }
    }

    struct RGB: Equatable, CustomStringConvertible {
        var r, g, b: Int
        init(_ r: Int, _ g: Int, _ b: Int) { (self.r, self.g, self.b) = (r, g, b) }
        var description: String { "rgb(\(r),\(g),\(b))" }
        /// Hue in degrees, saturation and lightness in [0, 1] (CSS Color 3).
        var hsl: (h: Double, s: Double, l: Double) {
            let r = Double(self.r) / 255, g = Double(self.g) / 255, b = Double(self.b) / 255
            let hi = max(r, g, b), lo = min(r, g, b), c = hi - lo, l = (hi + lo) / 2
            guard c > 0 else { return (0, 0, l) }
            let s = c / (1 - abs(2 * l - 1))
            var h: Double
            if hi == r { h = ((g - b) / c).truncatingRemainder(dividingBy: 6) } else if hi == g { h = (b - r) / c + 2 } else { h = (r - g) / c + 4 }
            h *= 60
            if h < 0 { h += 360 }
            return (h, s, l)
        }
    }

    /// Each frame's tooltip (unescaped), rect y, fill and position, in file order.
    func frameRects(_ svg: String) -> [FrameRect] {
        let pattern = #"<g><title>([^<]*)</title><rect x="[^"]*" y="([^"]*)"[^>]* fill="rgb\((\d+),(\d+),(\d+)\)" fg:x="(\d+)" fg:w="(\d+)""#
        let re = try! NSRegularExpression(pattern: pattern)
        let ns = svg as NSString
        return re.matches(in: svg, range: NSRange(location: 0, length: ns.length)).map { m in
            let s = { (i: Int) in ns.substring(with: m.range(at: i)) }
            let title = s(1).replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
                .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
            return FrameRect(title: title, y: Double(s(2))!, fill: RGB(Int(s(3))!, Int(s(4))!, Int(s(5))!),
                             x: UInt64(s(6))!, width: UInt64(s(7))!)
        }
    }

    /// Whether each frame is a `[off-cpu…` frame or above one, found from the
    /// drawing alone: inside its span of samples, on its row or further from
    /// the root (flame graphs only; icicles grow the other way).
    func inOffCPUSubtree(_ rects: [FrameRect]) -> [Bool] {
        let markers = rects.filter { $0.name.hasPrefix("[off-cpu") }
        return rects.map { f in
            markers.contains { m in f.x >= m.x && f.x + f.width <= m.x + m.width && f.y <= m.y }
        }
    }

    /// The words of the legend, in order (the differential note aside).
    func legendLabels(_ svg: String) -> [String] {
        guard let start = svg.range(of: "<g id=\"legend\">"), let end = svg.range(of: "</g>", range: start.upperBound..<svg.endIndex)
        else { return [] }
        let legend = String(svg[start.upperBound..<end.lowerBound])
        let re = try! NSRegularExpression(pattern: #"<rect [^>]*/><text [^>]*>([^<]*)</text>"#)
        let ns = legend as NSString
        return re.matches(in: legend, range: NSRange(location: 0, length: ns.length)).map { ns.substring(with: $0.range(at: 1)) }
    }

    func frameTitles(_ svg: String) -> [String] { frameRects(svg).map(\.title) }
}
