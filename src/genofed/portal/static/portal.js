// genofed portal: small progressive enhancements. Every page works without this file.
"use strict";
(function () {
  // Charts: a <canvas data-chart="ID"> draws the JSON in <script type="application/json" id="ID">.
  function drawCharts(root) {
    if (!window.Chart) { return; }
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) { return; }
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) { return; }
      canvas.dataset.drawn = "1";
      var config = JSON.parse(source.textContent);
      new window.Chart(canvas, config);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSwap", function (event) { drawCharts(event.target); });
  window.genofedPortal = { drawCharts: drawCharts };
})();
