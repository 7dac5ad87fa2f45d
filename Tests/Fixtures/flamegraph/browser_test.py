#!/usr/bin/env python3
"""Drives a flame graph SVG in headless Chromium, as a person would, and checks what changed.

    python3 browser_test.py GRAPH.svg SCREENSHOT.png [--folded IN.folded]
                            [--zoom FRAME] [--search REGEX]

1. Opens GRAPH.svg (file://) and waits for the script's init.
2. Clicks the frame named FRAME (default handle_request): it must fill the width (1180 px at the
   default 1200), a child must scale by the same factor, an ancestor must stay full width and
   faded (class "parent"), a frame outside the zoomed subtree must be hidden, "Reset Zoom" shown.
3. Clicks "Reset Zoom": every rect is back where the file drew it.
4. Clicks "Search", types REGEX into the prompt (default `_\\[k\\]$|^memcpy`): exactly the
   frames whose name matches are magenta, the others keep their colour, and "Matched: NN.N%"
   equals the share of samples under a matching frame, computed here from the folded input
   itself (--folded, default small.folded beside this script), not from the SVG.
5. Escape clears the search; Ctrl-F opens the prompt again, REGEX in upper case matches nothing
   until "ic" (ignore case) is clicked, then gives the same share.
6. Hovers a frame (the details line must name it) and saves SCREENSHOT.png.

Needs: selenium (pip install selenium), Debian's chromium and chromium-driver (or $CHROMIUM and
$CHROMEDRIVER). Exit status: 0 passed, 1 a check failed, 77 something needed is missing.
"""
import argparse, os, re, shutil, sys, time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
SEARCH_FILL = "rgb(230,0,230)"
FG = "{urn:x-sprof:flamegraph}"
SVG = "{http://www.w3.org/2000/svg}"


def missing(why):
    print(f"browser_test: SKIP: {why}", file=sys.stderr)
    sys.exit(77)


def check(cond, what):
    if not cond:
        print(f"browser_test: FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"browser_test: ok: {what}")


def expected_match_percent(folded_path, regex):
    """Share of samples whose stack has a frame matching regex (the root, "all", included)."""
    rx = re.compile(regex)
    total = matched = 0
    with open(folded_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            stack, count = line.rsplit(None, 1)
            count = int(count)
            total += count
            frames = ["all"] + [x for x in stack.split(";") if x]
            if any(rx.search(x) for x in frames):
                matched += count
    return 100.0 * matched / total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("svg")
    ap.add_argument("png")
    ap.add_argument("--folded", default=os.path.join(HERE, "small.folded"))
    ap.add_argument("--zoom", default="handle_request")
    ap.add_argument("--search", default=r"_\[k\]$|^memcpy")
    args = ap.parse_args()

    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait
        from selenium.webdriver.support import expected_conditions
    except ImportError:
        missing("selenium is not installed (pip install selenium)")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    chromedriver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    for tool, path in (("chromium", chromium), ("chromium-driver", chromedriver)):
        if not os.access(path, os.X_OK):
            missing(f"{tool} not found at {path} (Debian: apt-get install chromium chromium-driver)")

    # What the file says, read independently of the browser.
    root = ET.parse(args.svg).getroot()
    width, height = float(root.get("width")), float(root.get("height"))
    drawn = {}
    for g in root.find(f"{SVG}g[@id='frames']"):
        title = g.find(f"{SVG}title").text
        name = title[: title.rindex(" (")]
        rect = g.find(f"{SVG}rect")
        drawn.setdefault(name, []).append({k: rect.get(k) for k in ("x", "width", "y", "fill")} |
                                          {"fg:x": int(rect.get(f"{FG}x")), "fg:w": int(rect.get(f"{FG}w"))})
    check(args.zoom in drawn and len(drawn[args.zoom]) == 1, f"the file draws one frame named {args.zoom}")
    inner = width - 20

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--hide-scrollbars", f"--window-size={int(width)},{int(height)}", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    try:
        driver.set_window_size(int(width), int(height) + 200)
        # The viewport, not the window, must hold the graph: grow the window by the difference.
        inner_h = driver.execute_script("return window.innerHeight")
        driver.set_window_size(int(width), int(height) + 200 + (int(height) - inner_h))
        driver.get("file://" + os.path.abspath(args.svg))
        WebDriverWait(driver, 10).until(lambda d: d.execute_script(
            "return typeof frames !== 'undefined' && frames.length > 0"))
        n = driver.execute_script("return frames.length")
        check(n == sum(len(v) for v in drawn.values()), f"the script found all {n} frames")

        def rows():
            """Every frame as the page has it now, in one round trip: [name, x, width, fill, class]."""
            return driver.execute_script("""
                return Array.from(document.querySelectorAll('#frames > g')).map(function (g) {
                  var t = g.querySelector('title').textContent, r = g.querySelector('rect');
                  return [t.substring(0, t.lastIndexOf(' (')), r.getAttribute('x'), r.getAttribute('width'),
                          r.getAttribute('fill'), g.getAttribute('class') || ''];
                });""")

        def state():
            """Frames by name (for names drawn once): x, width, fill, class."""
            return {n: {"x": x, "width": w, "fill": f, "class": c} for n, x, w, f, c in rows()}

        def rect_attrs(name):
            return state()[name]

        def rect(name):
            """The frame's <rect> element, to click or hover like a person."""
            for g in driver.find_elements(By.CSS_SELECTOR, "#frames > g"):
                t = g.find_element(By.TAG_NAME, "title").get_attribute("textContent")
                if t[: t.rindex(" (")] == name:
                    return g.find_element(By.TAG_NAME, "rect")
            raise AssertionError(f"no frame {name}")

        # 2. Zoom.
        z = drawn[args.zoom][0]
        child = next(n for n, v in drawn.items() if len(v) == 1 and v[0]["fg:x"] >= z["fg:x"]
                     and v[0]["fg:x"] + v[0]["fg:w"] <= z["fg:x"] + z["fg:w"] and float(v[0]["y"]) < float(z["y"]))
        ancestor = next(n for n, v in drawn.items() if len(v) == 1 and n != "all" and v[0]["fg:x"] <= z["fg:x"]
                        and v[0]["fg:x"] + v[0]["fg:w"] >= z["fg:x"] + z["fg:w"] and float(v[0]["y"]) > float(z["y"]))
        outside = next(n for n, v in drawn.items() if len(v) == 1 and (v[0]["fg:x"] + v[0]["fg:w"] <= z["fg:x"]
                       or v[0]["fg:x"] >= z["fg:x"] + z["fg:w"]))
        before = rect_attrs(args.zoom)
        check(abs(float(before["width"]) - inner) > 1, f"{args.zoom} starts narrower than the graph ({before['width']} px)")
        rect(args.zoom).click()
        after = rect_attrs(args.zoom)
        check(abs(float(after["width"]) - inner) < 0.02 and abs(float(after["x"]) - 10) < 0.02,
              f"clicked {args.zoom}: it fills the width ({before['width']} -> {after['width']} px at x={after['x']})")
        c = drawn[child][0]
        want = c["fg:w"] / z["fg:w"] * inner
        check(abs(float(rect_attrs(child)["width"]) - want) < 0.02, f"its child {child} scaled to {want:.2f} px")
        a = rect_attrs(ancestor)
        check("parent" in a["class"] and abs(float(a["width"]) - inner) < 0.02,
              f"its ancestor {ancestor} is full width and faded (class {a['class']!r})")
        check("hide" in rect_attrs(outside)["class"], f"{outside}, outside the zoomed frame, is hidden")
        unzoom = driver.find_element(By.ID, "unzoom")
        check("hide" not in (unzoom.get_attribute("class") or ""), "Reset Zoom is shown")

        # 3. Reset.
        unzoom.click()
        now = state()
        for name, v in drawn.items():
            if len(v) != 1:
                continue
            r = now[name]
            if abs(float(r["x"]) - float(v[0]["x"])) > 0.02 or abs(float(r["width"]) - float(v[0]["width"])) > 0.02 \
                    or "hide" in r["class"] or "parent" in r["class"]:
                check(False, f"after Reset Zoom {name} is back at x={v[0]['x']} width={v[0]['width']} (is {r})")
        check(True, "Reset Zoom put every frame back where the file drew it")
        check("hide" in (unzoom.get_attribute("class") or ""), "Reset Zoom is hidden again")

        # 4. Search through the prompt, as a person would.
        driver.find_element(By.ID, "search").click()
        alert = WebDriverWait(driver, 5).until(expected_conditions.alert_is_present())
        alert.send_keys(args.search)
        alert.accept()
        rx = re.compile(args.search)
        highlighted = 0
        for name, _, _, fill, _ in rows():
            if rx.search(name):
                highlighted += 1
                if fill != SEARCH_FILL:
                    check(False, f"{name} matches {args.search} and is highlighted (fill {fill})")
            elif fill == SEARCH_FILL:
                check(False, f"{name} does not match {args.search} but is highlighted")
        check(highlighted > 0, f"{highlighted} frames matching {args.search!r} are {SEARCH_FILL}, no others")
        want = f"Matched: {expected_match_percent(args.folded, args.search):.1f}%"
        got = driver.find_element(By.ID, "matched").get_attribute("textContent")
        check(got == want, f"the matched share reads {got!r} (expected {want!r}, from the folded input)")
        check(driver.find_element(By.ID, "search").get_attribute("textContent") == "Reset Search",
              "the Search button became Reset Search")

        # 5. Escape clears the search; Ctrl-F searches again, "ic" makes it case-insensitive.
        ActionChains(driver).send_keys(Keys.ESCAPE).perform()
        fills = [r[3] for r in rows()]
        check(SEARCH_FILL not in fills and "hide" in (driver.find_element(By.ID, "matched").get_attribute("class") or ""),
              "Escape cleared the highlight and the matched share")
        ActionChains(driver).key_down(Keys.CONTROL).send_keys("f").key_up(Keys.CONTROL).perform()
        alert = WebDriverWait(driver, 5).until(expected_conditions.alert_is_present())
        alert.send_keys(args.search.upper())
        alert.accept()
        got = driver.find_element(By.ID, "matched").get_attribute("textContent")
        check(got == "Matched: 0.0%", f"Ctrl-F searched {args.search.upper()!r}, case-sensitive: {got!r}")
        driver.find_element(By.ID, "ignorecase").click()
        got = driver.find_element(By.ID, "matched").get_attribute("textContent")
        check(got == want, f"with ic, {args.search.upper()!r} matches as {args.search!r} did: {got!r}")

        # 6. Hover for the details line, then the screenshot.
        ActionChains(driver).move_to_element(rect(args.zoom)).perform()
        d = driver.find_element(By.ID, "details").get_attribute("textContent")
        check(d.startswith(f"Function: {args.zoom} ("), f"hovering shows {d!r}")
        time.sleep(0.2)
        driver.save_screenshot(args.png)
        check(os.path.getsize(args.png) > 10_000, f"screenshot saved to {args.png} ({os.path.getsize(args.png)} bytes)")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
