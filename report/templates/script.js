(function () {
  function key(td) {
    var v = td.getAttribute("data-v");
    if (v === null) { v = td.textContent.trim(); }
    var n = parseFloat(v.replace(/[$,%\u2212+h ]/g, "").replace("\u2013", ""));
    return isNaN(n) ? v.toLowerCase() : n;
  }
  document.querySelectorAll("table.sortable").forEach(function (t) {
    var body = t.tBodies[0];
    t.querySelectorAll("th").forEach(function (th, i) {
      th.title = "click to sort";
      th.addEventListener("click", function () {
        var up = th.getAttribute("data-up") !== "1";
        th.setAttribute("data-up", up ? "1" : "0");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[i]), y = key(b.cells[i]);
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll("input.filter").forEach(function (box) {
    var t = document.getElementById(box.getAttribute("data-table"));
    var count = document.getElementById(box.getAttribute("data-count"));
    box.addEventListener("input", function () {
      var q = box.value.toLowerCase(), shown = 0;
      Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {
        var hit = r.textContent.toLowerCase().indexOf(q) >= 0;
        r.style.display = hit ? "" : "none";
        shown += hit ? 1 : 0;
      });
      if (count) { count.textContent = shown + " shown"; }
    });
  });
})();
