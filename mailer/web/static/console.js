// The console's own script: small enhancements over pages that work without it.
// No inline scripts anywhere (CSP script-src 'self'); this file and htmx are all there is.
(function () {
  "use strict";

  // Forms marked data-confirm ask before they post (the server asks again on a confirmation
  // page for actions that cannot be undone, so this only saves a round trip).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);

  // htmx: a request that ends with a redirect to sign-in, or an error page, loads the whole page.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail && event.detail.xhr;
    if (xhr && (xhr.status === 401 || xhr.status === 403)) {
      window.location.reload();
    }
  });
})();
