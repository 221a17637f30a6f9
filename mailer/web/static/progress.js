// A campaign's live progress by server-sent events (the console's own script; no inline code).
// The page works without it: the progress fragment polls itself with htmx every 3 s, and
// "Reload the page" always works. With EventSource, this script takes over: the polling
// element is replaced by a copy htmx has not seen (so its polling stops), and each event's
// fragment, rendered by the server and escaped there, replaces it. The server ends each stream
// after ~30 s and EventSource reconnects by itself; an `end` event means the campaign is
// finished, and the script stops listening.
(function () {
  "use strict";

  function start() {
    var panel = document.getElementById("progress-panel");
    var current = document.getElementById("progress");
    if (!panel || !current || !window.EventSource) return;
    if (current.getAttribute("data-final") === "yes") return;
    var url = panel.getAttribute("data-stream");
    if (!url) return;

    var source = new EventSource(url);
    var taken = false;

    function swap(html) {
      var holder = document.createElement("div");
      holder.innerHTML = html;
      var fresh = holder.querySelector("#progress");
      var old = document.getElementById("progress");
      if (!fresh || !old) return;
      // Not handed to htmx: its hx-trigger would start polling again beside the stream.
      old.replaceWith(fresh);
    }

    function take(event) {
      if (!taken) {
        taken = true;
        panel.setAttribute("data-live", "sse");
      }
      swap(event.data);
    }

    source.addEventListener("progress", take);
    source.addEventListener("end", function (event) {
      take(event);
      panel.setAttribute("data-live", "done");
      source.close();
      // Done or cancelled: pause, resume and cancel no longer apply (a reload shows none).
      var controls = document.getElementById("controls");
      if (controls) controls.hidden = true;
    });
    source.addEventListener("error", function () {
      // A stream the server closed is reopened by EventSource itself; one refused for good
      // (signed out: 401/403) is CLOSED, and the page reloads to show the sign-in.
      if (source.readyState === EventSource.CLOSED) {
        window.location.reload();
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
