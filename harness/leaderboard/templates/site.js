// Leaderboard page behaviour: sortable tables and the cutoff (K) and measure switches. Plain ES5-level DOM code, no
// library: the page must work from file:// with no network. Without this script every table is still
// complete and readable: headers are plain text and every cutoff's table is listed one after another.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function sortKey(row, col) {
    var cell = row.querySelectorAll("th, td")[col];
    return cell ? cell.getAttribute("data-sort") || "" : "";
  }

  // Sort every row group (<tbody class="rows">) of a table on its own, so blocks (generative models,
  // baselines) stay apart as in the paper's Table 5. Empty keys ("n/a", "—") always go last; ties keep
  // the page's original order. Text compares digits as numbers ("5%" before "50%", "sim2" before "sim10").
  function sortTable(table, col, dir, numeric) {
    var bodies = table.querySelectorAll("tbody.rows");
    for (var b = 0; b < bodies.length; b++) {
      var rows = Array.prototype.slice.call(bodies[b].rows);
      rows.forEach(function (row, i) { if (!row.hasAttribute("data-order")) row.setAttribute("data-order", i); });
      rows.sort(function (x, y) {
        var a = sortKey(x, col), c = sortKey(y, col), order;
        if (a === "" || c === "") order = (a === "") - (c === "");
        else {
          order = numeric ? parseFloat(a) - parseFloat(c) : a.localeCompare(c, undefined, {numeric: true});
          if (dir === "descending") order = -order;
        }
        return order || (+x.getAttribute("data-order") - +y.getAttribute("data-order"));
      });
      rows.forEach(function (row) { bodies[b].appendChild(row); });
    }
  }

  function makeSortable(table) {
    var headers = table.querySelectorAll("thead th[data-col]");
    Array.prototype.forEach.call(headers, function (th) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      var count = th.querySelector(".n");  // the column's "n = 500" line stays below the button
      Array.prototype.slice.call(th.childNodes).forEach(function (node) { if (node !== count) button.appendChild(node); });
      th.insertBefore(button, th.firstChild);
      button.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") !== "text";
        var current = th.getAttribute("aria-sort");
        // first click: best first for numbers, A-Z for names; a second click reverses
        var dir = current ? (current === "descending" ? "ascending" : "descending") : (numeric ? "descending" : "ascending");
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir);
        sortTable(table, +th.getAttribute("data-col"), dir, numeric);
      });
    });
  }

  // The one panel of a group shown: its cutoff K and its measure (Recall, or a secondary one such as nDCG). Either
  // left out keeps the group's current one (the pressed button). False when the group has no such table.
  function pressed(selector, group, attr) {
    var button = document.querySelector(selector + '[data-group="' + group + '"] button[aria-pressed="true"]');
    return button ? button.getAttribute(attr) : null;
  }

  function showPanel(group, k, measure) {
    k = String(k || pressed(".k-switch", group, "data-k"));
    measure = measure || pressed(".measure-switch", group, "data-measure") || "R";
    var panels = document.querySelectorAll('.k-panel[data-group="' + group + '"]');
    function isShown(p) { return p.getAttribute("data-k") === k && (p.getAttribute("data-measure") || "R") === measure; }
    if (!Array.prototype.some.call(panels, isShown)) return false;
    Array.prototype.forEach.call(panels, function (p) { p.classList.toggle("active", isShown(p)); });
    [[".k-switch", "data-k", k], [".measure-switch", "data-measure", measure]].forEach(function (sw) {
      var buttons = document.querySelectorAll(sw[0] + '[data-group="' + group + '"] button');
      Array.prototype.forEach.call(buttons, function (btn) { btn.setAttribute("aria-pressed", String(btn.getAttribute(sw[1]) === sw[2])); });
    });
    return true;
  }

  function setUpSwitch(sw) {
    sw.hidden = false;
    var group = sw.getAttribute("data-group");
    Array.prototype.forEach.call(sw.querySelectorAll("button"), function (btn) {
      btn.addEventListener("click", function () { showPanel(group, btn.getAttribute("data-k"), btn.getAttribute("data-measure")); });
    });
  }

  // Links may carry a state in the fragment: "#k=10" shows R@10 wherever it exists, "#measure=nDCG" the nDCG tables
  // (at the current or the given K), and
  // "#sort=TABLE_ID:COLUMN[:ascending|descending]" clicks that column's header (as a reader would) until
  // the table is sorted that way. Tests use this to check sorting in a headless browser.
  // A fragment is typed by anyone: a part that cannot be decoded or read (bad escapes, a K that is not a number,
  // an unknown table, column, measure or direction) is ignored, and so is any error while applying one, so the
  // page always works and always becomes ready.
  function decode(text) {
    try { return decodeURIComponent(text); } catch (e) { return null; }  // "%E0%A4%A" throws a URIError
  }

  function readFragment(hash) {
    var state = {};
    String(hash || "").replace(/^#/, "").split("&").forEach(function (part) {
      var eq = part.indexOf("=");
      if (eq <= 0) return;
      var key = decode(part.slice(0, eq)), value = decode(part.slice(eq + 1));
      if (key !== null && value !== null && value !== "") state[key] = value;
    });
    return {
      k: /^[0-9]{1,6}$/.test(state.k || "") ? String(+state.k) : null,
      measure: /^[A-Za-z0-9_]{1,32}$/.test(state.measure || "") ? state.measure : null,
      sort: readSort(state.sort || "")
    };
  }

  // "TABLE_ID:COLUMN[:DIRECTION]" as {table, col, dir}, or null when any part of it is not what it should be.
  function readSort(text) {
    var spec = text.split(":");
    if (spec.length < 2 || spec.length > 3 || !/^[0-9]{1,3}$/.test(spec[1])) return null;
    if (spec.length === 3 && spec[2] !== "ascending" && spec[2] !== "descending") return null;
    var table = spec[0] && document.getElementById(spec[0]);
    if (!table || !table.classList.contains("sortable")) return null;
    var th = table.querySelector('thead th[data-col="' + (+spec[1]) + '"]');
    return th && th.querySelector("button.sort") ? {table: table, th: th, dir: spec[2] || null} : null;
  }

  function applyFragment() {
    var state = readFragment(location.hash);
    if (state.k || state.measure) {
      Array.prototype.forEach.call(document.querySelectorAll(".k-switch"), function (sw) { showPanel(sw.getAttribute("data-group"), state.k, state.measure); });
    }
    var sort = state.sort;
    if (sort) {
      var panel = sort.table.closest(".k-panel");
      if (panel) showPanel(panel.getAttribute("data-group"), panel.getAttribute("data-k"), panel.getAttribute("data-measure"));
      for (var i = 0; i < 2 && (!sort.th.getAttribute("aria-sort") || (sort.dir && sort.th.getAttribute("aria-sort") !== sort.dir)); i++) {
        sort.th.querySelector("button.sort").click();
      }
    }
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
    Array.prototype.forEach.call(document.querySelectorAll(".k-switch, .measure-switch"), setUpSwitch);
    try { applyFragment(); } catch (e) { /* a fragment never stops the page (see readFragment) */ }
    document.body.setAttribute("data-ready", "true");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
