// A live section (htmx) replaces its tables when new events arrive; a reader who had scrolled a
// wide table sideways keeps their place. Scrolling regions are found by their label.
(function () {
  var kept = {};
  document.addEventListener("htmx:beforeSwap", function (event) {
    var regions = event.target.querySelectorAll(".table-wrap[aria-label]");
    for (var i = 0; i < regions.length; i++) {
      kept[regions[i].getAttribute("aria-label")] = regions[i].scrollLeft;
    }
  });
  // Right after the new content is in, before the browser paints it (not at settle, later).
  document.addEventListener("htmx:afterSwap", function () {
    var regions = document.querySelectorAll(".table-wrap[aria-label]");
    for (var i = 0; i < regions.length; i++) {
      var left = kept[regions[i].getAttribute("aria-label")];
      if (left) { regions[i].scrollLeft = left; }
    }
    kept = {};
  });
})();
