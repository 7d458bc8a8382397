// proxyq console: live updates without a reload. Every 2 s the page's #live part is fetched
// again (?fragment=1) and replaced, unless paused, hidden, or the keyboard is inside it.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var pause = document.getElementById("pause");
  var state = document.getElementById("live-state");
  if (!live || live.dataset.live !== "1") { return; }
  var paused = false;
  if (pause) {
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", paused ? "true" : "false");
      pause.textContent = paused ? "Resume live updates" : "Pause live updates";
      state.textContent = paused ? "Paused" : "Live: updates every 2 s";
    });
  }
  function url() {
    var u = new URL(window.location.href);
    u.searchParams.set("fragment", "1");
    return u.toString();
  }
  function busy() {
    var a = document.activeElement;
    return a && live.contains(a) && a !== document.body;
  }
  function tick() {
    if (paused || document.hidden || busy()) { return; }
    fetch(url(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null && !paused && !busy()) {
          live.innerHTML = html;
          state.textContent = "Live: updated " + new Date().toLocaleTimeString();
        }
      })
      .catch(function () { state.textContent = "Live: offline, retrying"; });
  }
  window.setInterval(tick, 2000);
})();
