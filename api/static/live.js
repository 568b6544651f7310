/*
 * Live pages: listens to the server's events (GET /events, server-sent events) and refreshes the
 * page's <main> in place when something it shows moves, without a reload.
 *
 * A page opts in on its <main>: data-live lists the events it cares about ("change",
 * "resource"), data-live-change narrows "change" to one change, data-live-kind narrows
 * "resource" to one kind, and data-live-url says which page to fetch again (default: this one). A refresh fetches that page and swaps the inner HTML
 * of <main>; folded sections keep their state, and a form someone is typing in is never swapped
 * away (the refresh waits). The dot in the header says whether the page is live.
 *
 * No framework and no build step: without JavaScript every page works the same, only not live.
 */
(function () {
  "use strict";

  var main = document.querySelector("main[data-live]");
  var indicator = document.getElementById("live");
  var url = document.body.dataset.events;
  if (!main || !url || !window.EventSource || !window.fetch || !window.DOMParser) return;
  var wanted = (main.dataset.live || "").split(/\s+/).filter(Boolean);
  if (wanted.length === 0) return;
  var onlyChange = main.dataset.liveChange || null;
  var onlyKind = main.dataset.liveKind || null;
  var page = main.dataset.liveUrl || window.location.href;

  // A change is worth showing at once; resources move in bursts while a sync applies.
  var DELAY = { change: 150, resource: 800, resync: 150, open: 0 };
  var WAIT_WHILE_TYPING = 1500;
  var timer = null;
  var fetching = false;
  var again = false;

  function show(state, text, title) {
    if (!indicator) return;
    indicator.hidden = false;
    indicator.className = "live " + state;
    indicator.textContent = text;
    indicator.title = title;
  }

  // True while someone types in a form of <main>: swapping it would throw their words away.
  function typing() {
    var fields = main.querySelectorAll("input:not([type=hidden]), textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field === document.activeElement) return true;
      if ("defaultValue" in field && field.value !== field.defaultValue) return true;
    }
    return false;
  }

  // Throttled: the first event arms the timer, those that follow ride along with it.
  function soon(delay) {
    if (timer !== null) return;
    timer = window.setTimeout(function () {
      timer = null;
      refresh();
    }, delay);
  }

  // What a part of the page shows, leaving out what differs on every render (CSRF tokens are
  // masked anew each time) or is the reader's own doing (folded sections).
  function shown(root) {
    var copy = root.cloneNode(true);
    copy.querySelectorAll("input[name=csrf_token]").forEach(function (input) {
      input.removeAttribute("value");
    });
    copy.querySelectorAll("details").forEach(function (details) {
      details.removeAttribute("open");
    });
    return copy.innerHTML;
  }

  function swap(text) {
    var fresh = new DOMParser().parseFromString(text, "text/html");
    var next = fresh.querySelector("main#main");
    // Nothing moved: leave the page alone (no flicker, selection and focus kept).
    if (!next || shown(next) === shown(main)) return;
    var folded = {};
    main.querySelectorAll("details[id]").forEach(function (details) {
      folded[details.id] = details.open;
    });
    main.innerHTML = next.innerHTML;
    main.querySelectorAll("details[id]").forEach(function (details) {
      if (details.id in folded) details.open = folded[details.id];
    });
    if (fresh.title) document.title = fresh.title;
    main.dispatchEvent(new CustomEvent("nebula:refreshed", { bubbles: true }));
  }

  function refresh() {
    if (fetching) {
      again = true;
      return;
    }
    if (typing()) {
      soon(WAIT_WHILE_TYPING);
      return;
    }
    fetching = true;
    window
      .fetch(page, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        // Signed out (sent to the sign-in form) or gone: leave the page as it is.
        if (!response.ok || response.redirected) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (text) {
        if (typing()) {
          soon(WAIT_WHILE_TYPING);
          return;
        }
        swap(text);
      })
      .catch(function () {
        // The next event tries again.
      })
      .then(function () {
        fetching = false;
        if (again) {
          again = false;
          soon(DELAY.change);
        }
      });
  }

  var source = new EventSource(url);
  source.addEventListener("open", function () {
    show("on", "live", "this page updates itself when a change or a resource moves");
    // The page was rendered before the stream opened (or the stream was down): catch up once.
    soon(DELAY.open);
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      show("off", "not live", "no live updates: reload the page to see what moved");
    } else {
      show("off", "reconnecting", "the live updates were cut; trying again");
    }
  });
  wanted.forEach(function (name) {
    source.addEventListener(name, function (event) {
      if (name === "change" && onlyChange !== null) {
        var data = JSON.parse(event.data);
        if (String(data.id) !== onlyChange) return;
      }
      if (name === "resource" && onlyKind !== null) {
        if (JSON.parse(event.data).kind !== onlyKind) return;
      }
      soon(DELAY[name] || DELAY.change);
    });
  });
  source.addEventListener("resync", function () {
    soon(DELAY.resync);
  });
})();
