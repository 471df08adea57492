// Auto-refresh for the lock dashboard, loaded as an external file so the page's
// Content-Security-Policy can forbid inline script. Without JavaScript, a <noscript>
// meta refresh does the same job; with it, the reload pauses while the operator is
// typing in a field or the tab is in the background, and shows a countdown.
'use strict';

(function () {
  var body = document.body;
  var seconds = Number(body.getAttribute('data-refresh-seconds')) || 0;
  var url = body.getAttribute('data-refresh-url');
  if (seconds <= 0 || !url) return;

  var status = document.getElementById('refresh-status');
  var remaining = seconds;

  function busy() {
    var active = document.activeElement;
    var typing = active && (active.tagName === 'INPUT' || active.tagName === 'TEXTAREA' || active.tagName === 'SELECT');
    return document.hidden || typing;
  }

  function show(text) {
    if (status) status.textContent = text;
  }

  function tick() {
    if (busy()) {
      show('paused');
    } else {
      remaining -= 1;
      if (remaining <= 0) {
        window.location.assign(url);
        return;
      }
      show(remaining + ' s');
    }
    setTimeout(tick, 1000);
  }

  show(remaining + ' s');
  setTimeout(tick, 1000);
})();
