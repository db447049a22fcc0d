// Times in the reader's own time zone. The server writes each <time data-time> in UTC (what shows
// without JavaScript) with that UTC form as its title; here its text becomes local time, or
// "3 minutes ago" for data-time="relative", and the title keeps the exact moment. Pages that
// refresh a part of themselves (htmx) get their new times rewritten too.
(function () {
  if (typeof Intl !== "object" || !Intl.DateTimeFormat) { return; }
  var formats = {
    minute: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }),
    second: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" })
  };
  var relative = Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  var units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
    ["hour", 3600], ["minute", 60], ["second", 1]];

  function ago(date) {
    var seconds = (date.getTime() - Date.now()) / 1000;
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(seconds) >= units[i][1] || units[i][0] === "second") {
        return relative.format(Math.round(seconds / units[i][1]), units[i][0]);
      }
    }
  }

  function localize(root) {
    var times = root.querySelectorAll ? root.querySelectorAll("time[data-time]") : [];
    for (var i = 0; i < times.length; i++) {
      var element = times[i];
      var date = new Date(element.getAttribute("datetime"));
      if (isNaN(date.getTime())) { continue; }
      var style = element.getAttribute("data-time");
      // The first pass keeps the server's UTC text; later passes (the timer) reuse it.
      var utc = element.getAttribute("data-utc") || element.textContent;
      element.setAttribute("data-utc", utc);
      if (style === "relative" && relative) {
        element.textContent = ago(date);
        element.title = formats.second.format(date) + " (" + utc + ")";
      } else {
        element.textContent = (formats[style] || formats.minute).format(date);
        element.title = utc;
      }
    }
  }

  localize(document);
  document.addEventListener("htmx:afterSettle", function (event) { localize(event.target); });
  // "3 minutes ago" moves on while the page stays open.
  setInterval(function () { localize(document); }, 30000);
})();
