// ras serve: keeps the page's <main> up to date without a reload. Every few seconds it
// asks the server for the same page's fragment, sending the version it shows; the server
// answers 204 when nothing changed, else the new fragment and its version.
(function () {
  "use strict";
  var main = document.getElementById("page");
  var live = document.getElementById("live");
  var every = parseInt(main.getAttribute("data-refresh-ms") || "0", 10);
  if (!every) { return; }
  var etag = main.getAttribute("data-etag") || "";
  var busy = false;
  function say(text, bad) {
    live.textContent = text;
    live.className = bad ? "live bad" : "live";
  }
  function checked() {
    var on = {};
    var boxes = main.querySelectorAll("input[type=checkbox]");
    for (var i = 0; i < boxes.length; i++) {
      if (boxes[i].checked) { on[boxes[i].name + "=" + boxes[i].value] = true; }
    }
    return on;
  }
  function recheck(on) {
    var boxes = main.querySelectorAll("input[type=checkbox]");
    for (var i = 0; i < boxes.length; i++) {
      if (on[boxes[i].name + "=" + boxes[i].value]) { boxes[i].checked = true; }
    }
  }
  function tick() {
    if (busy) { return; }
    busy = true;
    var q = location.search ? location.search + "&" : "?";
    fetch(location.pathname + q + "fragment=1&since=" + encodeURIComponent(etag),
          { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 204) { say("live: up to date " + new Date().toLocaleTimeString(), false); return null; }
        if (!r.ok) { say("live: server answered " + r.status, true); return null; }
        etag = r.headers.get("X-Ras-Version") || "";
        return r.text();
      })
      .then(function (html) {
        busy = false;
        if (html === null || html === undefined) { return; }
        var on = checked();
        main.innerHTML = html;
        main.setAttribute("data-etag", etag);
        recheck(on);
        say("live: updated " + new Date().toLocaleTimeString(), false);
      })
      .catch(function () { busy = false; say("live: server not answering", true); });
  }
  say("live", false);
  setInterval(tick, every);
})();
