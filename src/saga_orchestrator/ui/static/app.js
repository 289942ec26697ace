// The dashboard's script: local times, confirmation of actions, bar details, live updates.
// The pages work without it (times then show in UTC, and a reload shows what changed).
"use strict";
(function () {
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) { return; }
      var pad = function (n, w) { return String(n).padStart(w || 2, "0"); };
      el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
        " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) +
        "." + pad(d.getMilliseconds(), 3);
      el.title = el.getAttribute("datetime");
    });
  }

  function barDetails(root) {
    var info = document.getElementById("bar-info");
    if (!info) { return; }
    root.querySelectorAll(".bar").forEach(function (bar) {
      var show = function () { info.textContent = bar.getAttribute("data-info"); };
      bar.addEventListener("focus", show);
      bar.addEventListener("mouseenter", show);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  function busy(region) {
    if (region.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    return Array.prototype.some.call(region.querySelectorAll("input:not([type=hidden]), textarea"),
      function (el) { return (el.type === "checkbox" || el.type === "radio") ? el.checked : el.value; });
  }

  var pending = null;
  var refreshes = 0;
  function refresh() {
    pending = null;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-refresh]").forEach(function (region) {
          var next = region.id && fresh.getElementById(region.id);
          if (next && !busy(region)) {
            region.innerHTML = next.innerHTML;
            localTimes(region);
            barDetails(region);
          }
        });
        refreshes += 1;
        document.body.setAttribute("data-refreshed", String(refreshes));  // for tests and tools
      })
      .catch(function () { /* the next event or reconnect tries again */ });
  }
  // At most one refresh per delay (the sagas page counts: a longer delay than a saga's page).
  var delay = Number(document.body && document.body.getAttribute("data-live-delay")) || 250;
  function later() { if (!pending) { pending = window.setTimeout(refresh, delay); } }

  function live(url) {
    var status = document.getElementById("live-status");
    var say = function (text) { if (status) { status.textContent = text; } };
    var source = new EventSource(url);
    source.addEventListener("open", function () { say("Live: connected."); later(); });
    source.addEventListener("transition", later);
    source.addEventListener("dropped", function () { say("Live: fell behind; reloading."); later(); });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        say("Live: disconnected; retrying.");
        window.setTimeout(function () {
          // Signed out meanwhile (or the service restarted without SECRET_KEY): to sign-in.
          fetch(window.location.href, { credentials: "same-origin" }).then(function (r) {
            if (r.redirected) { window.location.reload(); } else { live(url); }
          }, function () { live(url); });
        }, 3000);
      } else {
        say("Live: reconnecting.");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    barDetails(document);
    var url = document.body.getAttribute("data-live-url");
    if (url && window.EventSource) { live(url); }
  });
})();
