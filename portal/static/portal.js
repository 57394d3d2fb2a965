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
    // New content starts at its top (not where the previous step was scrolled to).
    container.scrollTop = 0;
    if (target) {
      target.focus({ preventScroll: target.id === "dialog-title" });
    }
  }

  // Closing a dialog must not drop focus to the page body (bug 8). Remember the
  // control that opened it; on close focus it again or, when the content behind the
  // dialog was swapped for a fresh copy meanwhile (the settings sections, the admin
  // member's cards), its counterpart there: the same id, else the same hx-get, else
  // the heading of the section it was in.
  var opener = null;

  function remember(el) {
    if (!el || el === document.body || dialog().contains(el)) {
      return;
    }
    var section = el.closest("section[id]");
    opener = {
      el: el,
      id: el.id || "",
      hxGet: el.getAttribute("hx-get") || "",
      section: section ? section.id : "",
      until: 0,
    };
  }

  function withAttribute(name, value) {
    var found = null;
    document.querySelectorAll("[" + name + "]").forEach(function (el) {
      if (!found && el.getAttribute(name) === value && !dialog().contains(el)) {
        found = el;
      }
    });
    return found;
  }

  function counterpart(saved) {
    if (saved.el.isConnected) {
      return saved.el;
    }
    var found =
      (saved.id && document.getElementById(saved.id)) ||
      (saved.hxGet && withAttribute("hx-get", saved.hxGet));
    if (found) {
      return found;
    }
    var section = saved.section && document.getElementById(saved.section);
    return (section || document).querySelector(section ? "h2, h3" : "main h1");
  }

  function returnFocus() {
    var target = opener && counterpart(opener);
    if (!target) {
      return;
    }
    if (!target.matches("a[href], button, input, select, textarea, summary, [tabindex]")) {
      target.setAttribute("tabindex", "-1");
    }
    target.focus();
    opener.el = target; // a later swap looks for this one
  }

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var dlg = dialog();
    var target = evt.detail.target;
    if (dlg && !dlg.open && target && target.id === "dialog-content") {
      remember(evt.detail.elt || document.activeElement);
    }
  });

  // Content swapped in after the dialog closed may have taken the focused control
  // with it (focus then falls to the body): look again for a short while.
  document.addEventListener("htmx:load", function () {
    if (opener && Date.now() < opener.until) {
      window.setTimeout(function () {
        var active = document.activeElement;
        if (opener && (!active || active === document.body)) {
          returnFocus();
        }
      }, 0);
    }
  });

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
      if (opener) {
        opener.until = Date.now() + 5000;
        returnFocus();
      }
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

  // The wait before a code can be sent again, counted down each second. Only the end
  // is announced (a live region read out every second would drown the page).
  function startCountdowns(root) {
    root.querySelectorAll("[data-countdown]:not([data-counting])").forEach(function (el) {
      el.setAttribute("data-counting", "");
      el.setAttribute("aria-live", "off");
      var left = parseInt(el.getAttribute("data-countdown"), 10);
      var template = el.getAttribute("data-template");
      var timer = window.setInterval(function () {
        left -= 1;
        if (!el.isConnected) {
          window.clearInterval(timer);
        } else if (left <= 0) {
          window.clearInterval(timer);
          el.setAttribute("aria-live", "polite");
          el.textContent = el.getAttribute("data-done");
        } else {
          el.textContent = template.replace("999999", String(left));
        }
      }, 1000);
    });
  }
  document.addEventListener("htmx:load", function (evt) {
    startCountdowns(evt.detail.elt.querySelectorAll ? evt.detail.elt : document);
  });

  // On a phone the header menu folds behind its button. The CSS shows the button on
  // narrow screens only; without JavaScript it stays hidden and the menu simply wraps.
  function setUpMenu() {
    var button = document.querySelector(".menu-button");
    var nav = button && document.getElementById(button.getAttribute("aria-controls"));
    if (!nav) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var open = button.getAttribute("aria-expanded") === "true";
      button.setAttribute("aria-expanded", open ? "false" : "true");
    });
    nav.addEventListener("keydown", function (evt) {
      if (evt.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
        button.setAttribute("aria-expanded", "false");
        button.focus();
      }
    });
  }

  // Copy buttons (the set-up key, the recovery codes) and the print button: hidden
  // without JavaScript, where the key stays selectable and the codes downloadable.
  function revealTools(root) {
    root.querySelectorAll("[data-copy-target][hidden], [data-print][hidden]").forEach(function (b) {
      b.hidden = false;
    });
  }

  function textOf(el) {
    var items = el.querySelectorAll("li");
    if (items.length) {
      return Array.prototype.map.call(items, function (li) {
        return li.textContent.trim();
      }).join("\n");
    }
    // A set-up key is shown in groups of four; apps want it without the spaces.
    return el.textContent.replace(/\s+/g, "");
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http on a LAN address has no clipboard API: the older way still works.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    (dialog() && dialog().open ? dialog() : document.body).appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  document.addEventListener("click", function (evt) {
    var printer = evt.target.closest("[data-print]");
    if (printer) {
      window.print();
      return;
    }
    var button = evt.target.closest("[data-copy-target]");
    var source = button && document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) {
      return;
    }
    var label = button.querySelector(".label") || button;
    var status = document.getElementById(button.getAttribute("data-status") || "");
    copyText(textOf(source)).then(function () {
      var done = document.body.getAttribute("data-copied-label");
      if (!button.hasAttribute("data-label")) {
        button.setAttribute("data-label", label.textContent);
      }
      label.textContent = done;
      button.classList.add("copied");
      if (status) {
        status.textContent = done;
      }
      window.clearTimeout(button._copyTimer);
      button._copyTimer = window.setTimeout(function () {
        label.textContent = button.getAttribute("data-label");
        button.classList.remove("copied");
        if (status) {
          status.textContent = "";
        }
      }, 2500);
    }).catch(function () {
      // No clipboard (refused or unavailable): select the text for the member to copy.
      var range = document.createRange();
      range.selectNodeContents(source);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
    });
  });

  document.addEventListener("htmx:load", function (evt) {
    revealTools(evt.detail.elt.querySelectorAll ? evt.detail.elt : document);
  });

  document.addEventListener("DOMContentLoaded", function () {
    setUpMenu();
    revealTools(document);
    syncConfirmButtons(document);
    addRevealButtons(document);
    startCountdowns(document);
  });
})();
