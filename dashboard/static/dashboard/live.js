// Swap in the dashboard's changing parts every few seconds, without reloading the page.
// The fragment comes from the database (the guard's last read), never from the exchange.
(function () {
  "use strict";
  function start() {
    var live = document.getElementById("live");
    if (!live) { return; }
    var seconds = parseInt(live.dataset.refreshSeconds, 10) || 5;
    var busy = false;
    function refresh() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(live.dataset.url + window.location.search, {
        credentials: "same-origin", cache: "no-store", headers: {"X-Requested-With": "fetch"}
      }).then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      }).then(function (html) {
        live.innerHTML = html;
        live.dataset.refreshedAt = new Date().toISOString();
        live.classList.remove("is-unreachable");
      }).catch(function () {
        live.classList.add("is-unreachable");
      }).finally(function () { busy = false; });
    }
    window.setInterval(refresh, seconds * 1000);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
