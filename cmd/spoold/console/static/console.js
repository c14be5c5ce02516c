// spoold web console: refreshes the live parts of a page, follows a
// sign-in, and selects all rows of the queue. No inline script: the page's
// Content-Security-Policy allows only this file.
"use strict";

(function () {
  // Live parts: <div data-live="/live/..." data-every="5">. A refresh is
  // skipped while the admin is typing in it, so a half-typed recipient is
  // not lost.
  function busy(el) {
    if (el.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    var inputs = el.querySelectorAll("input[type=email], input[type=text], input:not([type])");
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].value !== "") {
        return true;
      }
    }
    return false;
  }

  function live(el) {
    var every = parseInt(el.getAttribute("data-every"), 10) || 5;
    setInterval(function () {
      if (document.hidden || busy(el)) {
        return;
      }
      fetch(el.getAttribute("data-live"), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (r.status === 401) {
            location.reload(); // the session ended: show the login
            return null;
          }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null && !busy(el)) {
            el.innerHTML = html; // server-rendered by html/template
          }
        })
        .catch(function () {});
    }, every * 1000);
  }

  // A sign-in started with Authorize: long-poll until it finishes.
  function follow(el) {
    var url = el.getAttribute("data-login-wait");
    function poll() {
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (w) {
          el.textContent = w.text;
          if (w.done) {
            el.className = w.ok ? "flash ok" : "flash bad";
            return;
          }
          poll();
        })
        .catch(function () { setTimeout(poll, 3000); });
    }
    poll();
  }

  function selectAll(box) {
    box.addEventListener("change", function () {
      var picks = document.querySelectorAll("input.pick");
      for (var i = 0; i < picks.length; i++) {
        picks[i].checked = box.checked;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(live);
    document.querySelectorAll("[data-login-wait]").forEach(follow);
    var all = document.getElementById("all");
    if (all) {
      selectAll(all);
    }
  });
})();
