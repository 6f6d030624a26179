// zsclip review page: keyboard-first confirm/fix of pseudo-labels, export as CSV. No network.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("review-data").textContent);
  var classes = data.classes, items = data.items;
  var storageKey = "zsclip-review:" + location.pathname + ":" + data.run;
  var decisions = {};  // item id -> {label, status}
  var cards = [], current = 0;

  function className(index) { return index >= 0 && index < classes.length ? classes[index] : "?"; }

  function load() {
    try { decisions = JSON.parse(localStorage.getItem(storageKey) || "{}") || {}; } catch (e) { decisions = {}; }
  }
  function save() {
    try { localStorage.setItem(storageKey, JSON.stringify(decisions)); } catch (e) { /* storage may be off for file:// */ }
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function render() {
    var main = document.getElementById("groups"), group = null, grid = null;
    items.forEach(function (item, position) {
      if (item.label !== group) {
        group = item.label;
        var count = items.filter(function (it) { return it.label === group; }).length;
        main.appendChild(el("h2", null, group + ": " + className(group) + " (" + count + ")"));
        grid = el("div", "grid");
        main.appendChild(grid);
      }
      var card = el("div", "card" + (item.problem ? " problem" : ""));
      card.tabIndex = -1;
      card.dataset.id = item.id;
      card.dataset.position = position;
      if (item.thumb) {
        var img = el("img");
        img.src = item.thumb; img.alt = item.file; img.loading = "lazy";
        card.appendChild(img);
      } else {
        card.appendChild(el("div", "noimg", "no preview"));
      }
      card.appendChild(el("div", "file", item.file));
      card.appendChild(el("div", "pred", "→ " + item.label + ": " + className(item.label) + " (" + item.confidence.toFixed(2) + ")"));
      if (item.problem) {
        var views = item.views[0] < 0 ? "" : " (kNN: " + item.views[1] + " " + className(item.views[1]) +
          ", k-means: " + item.views[2] + " " + className(item.views[2]) + ")";
        card.appendChild(el("div", "reason", "problem: " + item.reason + views));
      }
      card.appendChild(el("div", "status"));
      card.addEventListener("click", function () { select(position); });
      grid.appendChild(card);
      cards.push(card);
    });
    var list = document.getElementById("class-list");
    classes.forEach(function (name, index) {
      var option = el("option");
      option.value = index + ": " + name;
      list.appendChild(option);
    });
    items.forEach(function (_, position) { paint(position); });
    select(0);
  }

  function paint(position) {
    var item = items[position], card = cards[position], d = decisions[item.id];
    card.classList.toggle("confirmed", !!d && d.status === "confirmed");
    card.classList.toggle("fixed", !!d && d.status === "fixed");
    card.querySelector(".status").textContent = !d ? "" :
      d.status === "confirmed" ? "✓ confirmed" : "✎ fixed → " + d.label + ": " + className(d.label);
    var done = Object.keys(decisions).length;
    var problems = items.filter(function (it) { return it.problem; }).length;
    document.getElementById("summary").textContent =
      items.length + " images, " + problems + " problems, " + done + " reviewed";
  }

  function select(position) {
    if (!cards.length) return;
    current = Math.max(0, Math.min(cards.length - 1, position));
    cards.forEach(function (c) { c.classList.remove("current"); });
    cards[current].classList.add("current");
    cards[current].focus({ preventScroll: true });
    cards[current].scrollIntoView({ block: "nearest" });
  }

  function decide(label, status) {
    var item = items[current];
    decisions[item.id] = { label: label, status: status };
    save(); paint(current); select(current + 1);
  }

  function undo() { delete decisions[items[current].id]; save(); paint(current); }

  function parseClass(text) {
    text = text.trim();
    var match = /^(\d+)(?::.*)?$/.exec(text);
    if (match) { var index = parseInt(match[1], 10); return index < classes.length ? index : -1; }
    var lower = text.toLowerCase(), exact = -1, prefix = [];
    classes.forEach(function (name, index) {
      if (name.toLowerCase() === lower) exact = index;
      else if (lower && name.toLowerCase().indexOf(lower) === 0) prefix.push(index);
    });
    if (exact >= 0) return exact;
    return prefix.length === 1 ? prefix[0] : -1;
  }

  var fixBar = document.getElementById("fix-bar"), fixInput = document.getElementById("fix-input");
  function openFix() {
    document.getElementById("fix-file").textContent = items[current].file;
    document.getElementById("fix-error").textContent = "";
    fixInput.value = "";
    fixBar.classList.add("open");
    fixInput.focus();
  }
  function closeFix() { fixBar.classList.remove("open"); select(current); }
  fixInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      var label = parseClass(fixInput.value);
      if (label < 0) { document.getElementById("fix-error").textContent = "no such class (index or unique name)"; return; }
      fixBar.classList.remove("open");
      decide(label, label === items[current].label ? "confirmed" : "fixed");
    } else if (event.key === "Escape") {
      event.preventDefault(); closeFix();
    }
    event.stopPropagation();
  });

  function csvField(value) {
    value = String(value);
    if (/^[=+\-@\t\r]/.test(value)) value = "'" + value;  // no formula injection in spreadsheets
    return /[",\n\r]/.test(value) ? '"' + value.replace(/"/g, '""') + '"' : value;
  }

  function exportCsv() {
    var lines = ["file,predicted,label,class_name,status"];
    items.forEach(function (item) {
      var d = decisions[item.id];
      if (!d) return;
      lines.push([item.file, item.label, d.label, className(d.label), d.status].map(csvField).join(","));
    });
    var text = lines.join("\n") + "\n";
    var area = document.getElementById("export-csv");
    area.value = text; area.classList.add("shown");
    var link = el("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
    link.download = "corrections.csv";
    document.body.appendChild(link); link.click(); link.remove();
    return text;
  }
  document.getElementById("export-button").addEventListener("click", exportCsv);

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || fixBar.classList.contains("open")) return;
    var key = event.key, handled = true;
    if (key === "ArrowRight" || key === "ArrowDown" || key === "j") select(current + 1);
    else if (key === "ArrowLeft" || key === "ArrowUp" || key === "k") select(current - 1);
    else if (key === "Enter" || key === "y") decide(items[current].label, "confirmed");
    else if (key === "f") openFix();
    else if (key === "u") undo();
    else if (key === "e") exportCsv();
    else handled = false;
    if (handled) event.preventDefault();
  });

  window.zsclipReview = { exportCsv: exportCsv, decisions: function () { return decisions; } };
  load();
  render();
})();
