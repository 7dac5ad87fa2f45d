/// The stylesheet and script inlined into every graph, so one SVG file is
/// the whole viewer. The renderer writes the few numbers the script needs
/// (`fg_xpad`, `fg_width`, `fg_charwidth`, `fg_labeldy`, `fg_inverted`)
/// just before it.
///
/// The script reads each frame's name from its `<title>` (everything before
/// the last " (") and its extent in samples from `fg:x`/`fg:w`, so zoom and
/// the matched percentage are exact, not computed from rounded pixels.
enum FlameGraphAssets {
    static let css = #"""
      #subtitle, #legend .note { fill: rgb(110,110,110); }
      #subtitle { text-anchor: middle; }
      #legend rect { stroke: rgb(150,150,150); stroke-width: 0.5; }
      #search, #ignorecase, #matched { text-anchor: end; }
      .button { cursor: pointer; opacity: 0.35; }
      .button:hover, .button.show { opacity: 1; }
      #unzoom { opacity: 1; }
      #frames > g { cursor: pointer; }
      #frames > g:hover > rect { stroke: rgb(0,0,0); stroke-width: 0.5; }
      #frames rect { rx: 2px; ry: 2px; }
      #frames text { pointer-events: none; }
      #frames text.on-dark { fill: rgb(255,255,255); }
      .hide { display: none; }
      .parent { opacity: 0.5; }

    """#

    static let script = #"""
    "use strict";
    var fg_searchcolor = "rgb(230,0,230)";
    var frames = [], total = 0, zoomed = null, searchTerm = null, ignoreCase = false;
    var framesG, details, unzoomBtn, searchBtn, icBtn, matchedText;

    function init(evt) {
      framesG = document.getElementById("frames");
      details = document.getElementById("details").firstChild;
      unzoomBtn = document.getElementById("unzoom");
      searchBtn = document.getElementById("search");
      icBtn = document.getElementById("ignorecase");
      matchedText = document.getElementById("matched");
      var groups = framesG.children;
      for (var i = 0; i < groups.length; i++) {
        var g = groups[i], title = g.children[0].textContent, rect = g.children[1];
        var cut = title.lastIndexOf(" (");
        var name = cut >= 0 ? title.substring(0, cut) : title;
        g.fgIndex = i;
        frames.push({ g: g, rect: rect, text: g.children[2], name: name,
                      label: name.replace(/_\[[kij]\]$/, ""),
                      x: +rect.getAttribute("fg:x"), w: +rect.getAttribute("fg:w"),
                      y: +rect.getAttribute("y"), fill: rect.getAttribute("fill"), state: 0 });
      }
      total = frames.length ? frames[0].w : 0;  // frames[0] is "all"
      window.addEventListener("click", onClick, false);
      window.addEventListener("mouseover", function (e) {
        var f = frameOf(e.target);
        if (f) details.nodeValue = "Function: " + f.g.children[0].textContent;
      }, false);
      window.addEventListener("mouseout", function (e) {
        if (frameOf(e.target)) details.nodeValue = " ";
      }, false);
      window.addEventListener("keydown", function (e) {
        if (e.keyCode === 114 || ((e.ctrlKey || e.metaKey) && e.keyCode === 70)) {  // F3, Ctrl-F
          e.preventDefault();
          promptSearch();
        } else if (e.keyCode === 27) {  // Escape
          unzoom();
          resetSearch();
        }
      }, false);
      var s = param("s");
      if (s) search(s);
    }

    function param(key) {
      var pairs = window.location.search.substring(1).split("&");
      for (var i = 0; i < pairs.length; i++) {
        var kv = pairs[i].split("=");
        if (kv[0] === key && kv.length > 1) return decodeURIComponent(kv[1].replace(/\+/g, " "));
      }
      return null;
    }

    function frameOf(node) {
      while (node && node.parentNode !== framesG) {
        if (node === document.documentElement) return null;
        node = node.parentNode;
      }
      return node ? frames[node.fgIndex] : null;
    }

    function onClick(e) {
      var f = frameOf(e.target);
      if (f) { zoom(f); return; }
      var id = e.target.id;
      if (id === "unzoom") unzoom();
      else if (id === "search") { if (searchTerm !== null) resetSearch(); else promptSearch(); }
      else if (id === "ignorecase") {
        ignoreCase = !ignoreCase;
        if (ignoreCase) icBtn.classList.add("show"); else icBtn.classList.remove("show");
        if (searchTerm !== null) search(searchTerm);
      }
    }

    function fmt(v) { return String(Math.round(v * 100) / 100); }

    // Draws f at x..x+w pixels (inside the margins); state 0 shown, 1 a faded ancestor.
    function place(f, x, w, state) {
      f.state = state;
      f.g.setAttribute("class", state === 1 ? "parent" : "");
      f.rect.setAttribute("x", fmt(fg_xpad + x));
      f.rect.setAttribute("width", fmt(w));
      // flamegraph.pl's label rule, as the renderer applies it.
      var chars = Math.floor(w / fg_charwidth), s = "";
      if (chars >= 3) s = f.label.length <= chars ? f.label : f.label.substring(0, chars - 2) + "..";
      f.text.setAttribute("x", fmt(fg_xpad + x + 3));
      f.text.setAttribute("y", fmt(f.y + fg_labeldy));
      if (f.text.textContent !== s) f.text.textContent = s;
    }

    function hide(f) {
      f.state = 2;
      f.g.setAttribute("class", "hide");
    }

    // z fills the width; its descendants scale with it; its ancestors stay,
    // faded, full width; everything else is hidden.
    function zoom(z) {
      zoomed = z;
      unzoomBtn.classList.remove("hide");
      for (var i = 0; i < frames.length; i++) {
        var f = frames[i];
        var below = fg_inverted ? f.y < z.y : f.y > z.y;
        if (below) {
          if (f.x <= z.x && f.x + f.w >= z.x + z.w) place(f, 0, fg_width, 1); else hide(f);
        } else if (f.x >= z.x && f.x < z.x + z.w) {
          place(f, (f.x - z.x) / z.w * fg_width, f.w / z.w * fg_width, 0);
        } else {
          hide(f);
        }
      }
      if (searchTerm !== null) search(searchTerm);
    }

    function unzoom() {
      if (zoomed === null) return;
      zoomed = null;
      unzoomBtn.classList.add("hide");
      for (var i = 0; i < frames.length; i++) {
        var f = frames[i];
        place(f, f.x / total * fg_width, f.w / total * fg_width, 0);
      }
      if (searchTerm !== null) search(searchTerm);
    }

    function promptSearch() {
      var term = prompt("Search frames for a regular expression (e.g. ^ext4_ or _\\[k\\]$)",
                        searchTerm === null ? "" : searchTerm);
      if (term !== null && term !== "") search(term);
    }

    // Highlights the shown frames whose name matches; "Matched:" is their
    // share of the samples (of the zoomed frame's, when zoomed), each sample
    // counted once however many matching frames it is under.
    function search(term) {
      var re;
      try { re = new RegExp(term, ignoreCase ? "i" : ""); } catch (err) { alert("Not a regular expression: " + term); return; }
      searchTerm = term;
      var hits = [];
      for (var i = 0; i < frames.length; i++) {
        var f = frames[i];
        if (f.state === 0 && re.test(f.name)) {
          f.rect.setAttribute("fill", fg_searchcolor);
          hits.push(f);
        } else {
          f.rect.setAttribute("fill", f.fill);
        }
      }
      hits.sort(function (a, b) { return a.x - b.x || b.w - a.w; });
      var matched = 0, end = -1;
      for (var j = 0; j < hits.length; j++) {
        var h = hits[j];
        if (h.x >= end) { matched += h.w; end = h.x + h.w; }
        else if (h.x + h.w > end) { matched += h.x + h.w - end; end = h.x + h.w; }
      }
      var of = zoomed !== null ? zoomed.w : total;
      matchedText.textContent = "Matched: " + (of > 0 ? 100 * matched / of : 0).toFixed(1) + "%";
      matchedText.classList.remove("hide");
      searchBtn.textContent = "Reset Search";
      searchBtn.classList.add("show");
    }

    function resetSearch() {
      if (searchTerm === null) return;
      searchTerm = null;
      for (var i = 0; i < frames.length; i++) frames[i].rect.setAttribute("fill", frames[i].fill);
      matchedText.classList.add("hide");
      matchedText.textContent = " ";
      searchBtn.textContent = "Search";
      searchBtn.classList.remove("show");
    }

    """#
}
