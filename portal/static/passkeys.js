// Passkeys: the browser's WebAuthn prompt, run with @simplewebauthn/browser (vendored
// beside this file), whose answer is handed to an ordinary form; htmx or the browser
// then sends it like any other. The server made the options and checks the answer:
// nothing here decides anything. Without this file (or WebAuthn) the pages say a
// passkey needs JavaScript and offer the member's other methods.
(function () {
  "use strict";

  var lib = window.SimpleWebAuthnBrowser;

  function supported() {
    return !!(lib && lib.browserSupportsWebAuthn());
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // The texts come from the server (data-msg-* attributes), already in the page's language.
  function say(el, text) {
    var box = el.querySelector("[data-passkey-error]");
    if (box) {
      box.textContent = text || "";
      box.hidden = !text;
    }
  }

  function messageFor(err, el) {
    var name = err && err.name;
    if (err && err.code === "ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED") {
      return el.dataset.msgDuplicate || el.dataset.msgFailed;
    }
    if (name === "NotAllowedError" || name === "AbortError") {
      return el.dataset.msgCancelled;
    }
    return el.dataset.msgFailed;
  }

  function showWhereSupported(root) {
    var ok = supported();
    root.querySelectorAll("[data-passkey-supported]").forEach(function (el) {
      el.hidden = !ok;
    });
    root.querySelectorAll("[data-passkey-unsupported]").forEach(function (el) {
      el.hidden = ok;
    });
  }

  // A ceremony form (data-passkey="register" or "authenticate", options in
  // data-passkey-options): its submit first runs the prompt, then goes ahead with the
  // answer in the hidden "credential" field. Runs before htmx sees the submit.
  document.addEventListener(
    "submit",
    function (evt) {
      var form = evt.target;
      if (!(form instanceof HTMLFormElement) || !form.dataset.passkey) {
        return;
      }
      var field = form.elements.namedItem("credential");
      if (!field || field.value) {
        return;
      }
      evt.preventDefault();
      evt.stopImmediatePropagation();
      if (!supported()) {
        say(form, form.dataset.msgUnsupported);
        return;
      }
      if (form.dataset.busy) {
        return;
      }
      form.dataset.busy = "1";
      say(form, "");
      var options = JSON.parse(form.dataset.passkeyOptions);
      var prompt =
        form.dataset.passkey === "register"
          ? lib.startRegistration({ optionsJSON: options })
          : lib.startAuthentication({ optionsJSON: options });
      prompt
        .then(
          function (answer) {
            field.value = JSON.stringify(answer);
            delete form.dataset.busy;
            form.requestSubmit();
          },
          function (err) {
            say(form, messageFor(err, form));
          }
        )
        .finally(function () {
          delete form.dataset.busy;
        });
    },
    true
  );

  // パスキーでログイン on /login: the button (a modal prompt) and, where the browser
  // offers it, passkeys in the login-ID field's autofill (conditional mediation). The
  // options are asked for only now, so visitors without JavaScript cost nothing.
  function startPasswordless(box, autofill) {
    var form = box.querySelector("form");
    return fetch(box.dataset.optionsUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) {
            throw { server: body.error || box.dataset.msgFailed };
          }
          return body;
        });
      })
      .then(function (options) {
        return lib.startAuthentication({ optionsJSON: options, useBrowserAutofill: autofill });
      })
      .then(
        function (answer) {
          form.elements.namedItem("credential").value = JSON.stringify(answer);
          form.submit();
        },
        function (err) {
          // The autofill offer is quiet: it ends when the member presses the button or
          // leaves, and a refusal of it (e.g. a busy office over the limit) is not the
          // member's doing. Only the button's prompt reports what went wrong.
          if (!autofill) {
            say(box, err && err.server ? err.server : messageFor(err, box));
          }
        }
      );
  }

  function setUpPasswordless(root) {
    var box = root.querySelector ? root.querySelector("#passkey-login") : null;
    if (!box || !supported() || box.dataset.ready) {
      return;
    }
    box.dataset.ready = "1";
    box.querySelector("[data-passkey-start]").addEventListener("click", function () {
      say(box, "");
      startPasswordless(box, false);
    });
    lib.browserSupportsWebAuthnAutofill().then(function (yes) {
      if (yes && document.querySelector('input[autocomplete~="webauthn"]')) {
        startPasswordless(box, true);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    showWhereSupported(document);
    setUpPasswordless(document);
  });
  document.addEventListener("htmx:load", function (evt) {
    showWhereSupported(evt.detail.elt);
  });
})();
