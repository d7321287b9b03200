// Leaderboard page behaviour: sortable tables and the cutoff (K) switch. Plain ES5-level DOM code, no
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
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
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

  function showK(group, k) {
    var panels = document.querySelectorAll('.k-panel[data-group="' + group + '"]');
    var found = false;
    Array.prototype.forEach.call(panels, function (p) { if (p.getAttribute("data-k") === String(k)) found = true; });
    if (!found) return false;
    Array.prototype.forEach.call(panels, function (p) { p.classList.toggle("active", p.getAttribute("data-k") === String(k)); });
    var buttons = document.querySelectorAll('.k-switch[data-group="' + group + '"] button');
    Array.prototype.forEach.call(buttons, function (btn) { btn.setAttribute("aria-pressed", String(btn.getAttribute("data-k") === String(k))); });
    return true;
  }

  function setUpSwitch(sw) {
    sw.hidden = false;
    Array.prototype.forEach.call(sw.querySelectorAll("button"), function (btn) {
      btn.addEventListener("click", function () { showK(sw.getAttribute("data-group"), btn.getAttribute("data-k")); });
    });
  }

  // Links may carry a state in the fragment: "#k=10" shows R@10 wherever it exists, and
  // "#sort=TABLE_ID:COLUMN[:ascending|descending]" clicks that column's header (as a reader would) until
  // the table is sorted that way. Tests use this to check sorting in a headless browser.
  function applyFragment() {
    var state = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var eq = part.indexOf("=");
      if (eq > 0) state[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1));
    });
    if (state.k) {
      Array.prototype.forEach.call(document.querySelectorAll(".k-switch"), function (sw) { showK(sw.getAttribute("data-group"), state.k); });
    }
    if (state.sort) {
      var spec = state.sort.split(":");
      var table = document.getElementById(spec[0]);
      if (!table) return;
      var panel = table.closest(".k-panel");
      if (panel) showK(panel.getAttribute("data-group"), panel.getAttribute("data-k"));
      var th = table.querySelector('thead th[data-col="' + spec[1] + '"]');
      if (!th) return;
      for (var i = 0; i < 2 && (!th.getAttribute("aria-sort") || (spec[2] && th.getAttribute("aria-sort") !== spec[2])); i++) {
        th.querySelector("button.sort").click();
      }
    }
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
    Array.prototype.forEach.call(document.querySelectorAll(".k-switch"), setUpSwitch);
    applyFragment();
    document.body.setAttribute("data-ready", "true");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
