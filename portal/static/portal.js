// Small progressive enhancements; every form works without this file.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // htmx requests carry the CSRF token in a header (no inline script needed).
  document.addEventListener("htmx:configRequest", function (evt) {
    evt.detail.headers["X-CSRFToken"] = csrfToken();
  });

  // A destructive button stays disabled until its confirmation box is ticked.
  // The server refuses without the box anyway; this only saves a round trip.
  function syncConfirmButtons(root) {
    root.querySelectorAll("[data-requires-check]").forEach(function (button) {
      var box = document.getElementById(button.getAttribute("data-requires-check"));
      if (box) {
        button.disabled = !box.checked;
      }
    });
  }
  document.addEventListener("change", function (evt) {
    if (evt.target.matches('input[type="checkbox"]')) {
      syncConfirmButtons(document);
    }
  });

  function dialog() {
    return document.getElementById("dialog");
  }

  function focusInside(container) {
    var target =
      container.querySelector("[autofocus]") ||
      container.querySelector('[aria-invalid="true"]') ||
      container.querySelector("#dialog-title");
    if (target) {
      target.focus();
    }
  }

  // Content swapped into the dialog opens it (modal: focus stays inside) and
  // moves focus to the first field or the heading.
  document.addEventListener("htmx:afterSwap", function (evt) {
    var dlg = dialog();
    if (dlg && evt.detail.target && evt.detail.target.id === "dialog-content") {
      if (!dlg.open) {
        dlg.showModal();
      }
      focusInside(dlg);
    }
  });

  document.addEventListener("htmx:load", function (evt) {
    syncConfirmButtons(evt.detail.elt.ownerDocument || document);
  });

  // Close buttons close the dialog instead of navigating (their href is the
  // no-JavaScript fallback).
  document.addEventListener("click", function (evt) {
    var closer = evt.target.closest("[data-close-dialog]");
    var dlg = dialog();
    if (closer && dlg && dlg.open && dlg.contains(closer)) {
      evt.preventDefault();
      dlg.close();
    }
  });

  // However the dialog closes (button or Escape), forget its content (it may show
  // a secret or recovery codes) and refresh the sections behind it.
  document.addEventListener(
    "close",
    function (evt) {
      if (evt.target !== dialog()) {
        return;
      }
      document.getElementById("dialog-content").replaceChildren();
      var sections = document.getElementById("tfa-sections");
      if (sections && window.htmx) {
        window.htmx.ajax("GET", sections.getAttribute("data-refresh-url"), {
          target: "#tfa-sections",
          swap: "outerHTML",
        });
      }
    },
    true
  );

  // A "show password" button beside every password field (ASVS 2.1.12): typing a long
  // passphrase blind is error-prone. Without JavaScript the field simply stays masked.
  function addRevealButtons(root) {
    var body = document.body;
    root.querySelectorAll('input[type="password"]:not([data-revealable])').forEach(function (input) {
      input.setAttribute("data-revealable", "");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "link reveal";
      button.setAttribute("aria-controls", input.id);
      button.setAttribute("aria-pressed", "false");
      button.textContent = body.getAttribute("data-reveal-label");
      button.addEventListener("click", function () {
        var shown = input.type === "text";
        input.type = shown ? "password" : "text";
        button.setAttribute("aria-pressed", shown ? "false" : "true");
        button.textContent = body.getAttribute(shown ? "data-reveal-label" : "data-conceal-label");
      });
      input.insertAdjacentElement("afterend", button);
    });
  }
  document.addEventListener("htmx:load", function (evt) {
    addRevealButtons(evt.detail.elt.querySelectorAll ? evt.detail.elt : document);
  });

  document.addEventListener("DOMContentLoaded", function () {
    syncConfirmButtons(document);
    addRevealButtons(document);
  });
})();
