// Sortable tables: click (or Enter on) a column heading. Cells with data-sort sort numerically, others by
// text; cells without a value sort last in both directions. No data is read from the page into HTML.
(function () {
  "use strict";
  function cellKey(row, col) {
    var cell = row.cells[col];
    if (!cell) return { missing: true };
    if (cell.hasAttribute("data-sort")) {
      var v = parseFloat(cell.getAttribute("data-sort"));
      return isNaN(v) ? { missing: true } : { num: v };
    }
    var t = cell.textContent.trim();
    return t === "" ? { missing: true } : { text: t };
  }
  function compare(a, b) {
    if (a.num !== undefined && b.num !== undefined) return a.num - b.num;
    var x = a.num !== undefined ? String(a.num) : a.text, y = b.num !== undefined ? String(b.num) : b.text;
    return x.localeCompare(y, undefined, { numeric: true, sensitivity: "base" });
  }
  function sortTable(table, col, th) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (r, i) {
      return { row: r, key: cellKey(r, col), index: i };
    });
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      if (a.key.missing || b.key.missing) {
        if (a.key.missing && b.key.missing) return a.index - b.index;
        return a.key.missing ? 1 : -1;
      }
      return sign * compare(a.key, b.key) || a.index - b.index;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortTable(table, col, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, col, th); }
      });
    });
  });
  window.robustOfaSort = sortTable;
})();
