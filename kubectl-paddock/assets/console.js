// Paddock console: the little the pages do in the browser. Loaded from /assets/ (CSP
// script-src 'self'); no inline script anywhere. It renders diffs with diff2html, copies YAML,
// counts gate expiries down, and stamps each new timeline entry with the time it appeared
// (data-seen, ms since the epoch) so the e2e test can measure the live lag.
(function () {
  "use strict";

  function renderDiffs(root) {
    if (typeof Diff2HtmlUI === "undefined") return;
    root.querySelectorAll("[data-diff-source]").forEach(function (src) {
      var target = src.nextElementSibling;
      if (!target || !target.classList.contains("diff-view") || target.dataset.rendered === src.textContent.length + "") return;
      var section = src.closest("section, .inline-diff");
      var mode = (section && section.dataset.mode) || "line-by-line";
      var ui = new Diff2HtmlUI(target, src.textContent, {
        drawFileList: true, fileListToggle: false, fileContentToggle: false, matching: "lines",
        outputFormat: mode, highlight: true, synchronisedScroll: true, stickyFileHeaders: false
      });
      ui.draw();
      ui.highlightCode();
      target.dataset.rendered = src.textContent.length + "";
      src.hidden = true;
    });
  }

  function stampTimeline(root) {
    var now = Date.now();
    root.querySelectorAll("#timeline li:not([data-seen])").forEach(function (li) {
      li.setAttribute("data-seen", String(now));
    });
  }

  function countdowns() {
    var now = Date.now() / 1000;
    document.querySelectorAll(".countdown[data-expires]").forEach(function (el) {
      var s = Math.max(0, Math.round(Number(el.dataset.expires) - now));
      var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
      el.textContent = (h ? h + "h" : "") + (h || m ? m + "m" : "") + r + "s";
    });
  }

  function refresh() {
    renderDiffs(document);
    stampTimeline(document);
  }

  document.addEventListener("DOMContentLoaded", function () {
    refresh();
    setInterval(countdowns, 1000);
    new MutationObserver(function () { stampTimeline(document); })
      .observe(document.body, { childList: true, subtree: true });
  });
  document.addEventListener("htmx:afterSettle", refresh);
  document.addEventListener("htmx:oobAfterSwap", refresh);

  document.addEventListener("click", function (e) {
    var t = e.target;
    if (!(t instanceof Element)) return;
    var mode = t.closest("[data-diff-mode]");
    if (mode) {
      var section = mode.closest("section");
      if (section) {
        section.dataset.mode = mode.dataset.diffMode;
        section.querySelectorAll(".diff-view").forEach(function (v) { v.dataset.rendered = ""; });
        renderDiffs(section);
      }
    }
    var copy = t.closest("[data-copy]");
    if (copy) {
      var src = document.querySelector(copy.dataset.copy);
      if (src && navigator.clipboard) {
        navigator.clipboard.writeText(src.textContent).then(function () { copy.textContent = "Copied"; });
      }
    }
  });
})();
