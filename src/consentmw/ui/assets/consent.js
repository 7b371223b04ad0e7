/* consentmw banner script: progressive enhancement of the server-rendered consent banner.
 *
 * Without this script the banner still works: its forms POST to the consent endpoint and
 * come back to the page. With it, a choice is sent as JSON (Accept: application/json,
 * X-CSRF-Token), the banner closes without a reload, tags the server neutralised
 * (data-consent="<purpose>") are activated for the purposes just granted, and Google
 * Consent Mode gets an "update". If the request fails, the plain form POST is used.
 *
 * No eval, no new Function, no inline handlers, no innerHTML: it runs under a strict CSP.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var banner = document.getElementById("cmw-banner");
  if (!script || !banner) {
    return;
  }
  var mount = script.getAttribute("data-mount") || "/_consent";
  var consentMode = parseJSON(script.getAttribute("data-consent-mode"));
  var dialog = document.getElementById("cmw-dialog");
  var firstLayer = document.getElementById("cmw-first");
  var panel = document.getElementById("cmw-panel");
  var customise = document.getElementById("cmw-customise");
  var back = document.getElementById("cmw-back");
  var previous = document.activeElement;
  var lastClicked = null;

  function parseJSON(text) {
    if (!text) {
      return null;
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  function toSet(list) {
    var set = {};
    for (var i = 0; i < list.length; i++) {
      set[list[i]] = true;
    }
    return set;
  }

  function purposesOf(el) {
    return (el.getAttribute("data-consent") || "")
      .toLowerCase()
      .split(/[\s,]+/)
      .filter(function (p) {
        return p.length > 0;
      });
  }

  /* Activate the gated tags whose purposes are now all granted. A script element that was
     parsed as text/plain never runs, even if its type changes: it is replaced by a fresh
     element with the original type, source and text (and the CSP nonce). */
  function activate(granted) {
    var set = toSet(granted);
    var nodes = document.querySelectorAll(
      "script[data-consent], iframe[data-consent], img[data-consent]"
    );
    Array.prototype.forEach.call(nodes, function (el) {
      var wanted = purposesOf(el);
      if (!wanted.length || !wanted.every(function (p) { return set[p] === true; })) {
        return;
      }
      if (el.tagName === "SCRIPT") {
        if ((el.getAttribute("type") || "").toLowerCase() !== "text/plain") {
          return;
        }
        var fresh = document.createElement("script");
        for (var i = 0; i < el.attributes.length; i++) {
          var attr = el.attributes[i];
          if (attr.name === "type" || attr.name === "data-type" || attr.name === "data-src" ||
              attr.name === "nonce") {
            continue;
          }
          fresh.setAttribute(attr.name, attr.value);
        }
        var type = el.getAttribute("data-type");
        if (type) {
          fresh.setAttribute("type", type);
        }
        if (el.nonce) {
          fresh.nonce = el.nonce;
        }
        var src = el.getAttribute("data-src");
        if (src) {
          fresh.async = false; /* keep the page's order between gated scripts */
          fresh.src = src;
        } else {
          fresh.text = el.text;
        }
        fresh.setAttribute("data-consent-activated", "");
        el.parentNode.replaceChild(fresh, el);
        return;
      }
      ["srcset", "srcdoc", "src"].forEach(function (name) {
        var value = el.getAttribute("data-" + name);
        if (value !== null) {
          el.removeAttribute("data-" + name);
          el.setAttribute(name, value);
        }
      });
      el.setAttribute("data-consent-activated", "");
    });
  }

  function updateConsentMode(granted) {
    if (!consentMode) {
      return;
    }
    var set = toSet(granted);
    var update = {};
    Object.keys(consentMode).forEach(function (type) {
      var purposes = consentMode[type];
      var ok = purposes.length > 0 && purposes.every(function (p) { return set[p] === true; });
      update[type] = ok ? "granted" : "denied";
    });
    window.dataLayer = window.dataLayer || [];
    if (typeof window.gtag !== "function") {
      window.gtag = function () {
        window.dataLayer.push(arguments);
      };
    }
    window.gtag("consent", "update", update);
  }

  function focusInto(el) {
    if (el && typeof el.focus === "function") {
      el.focus({ preventScroll: true });
    }
  }

  function returnFocus() {
    var target = previous;
    if (!target || target === document.body || !document.contains(target) ||
        banner.contains(target)) {
      target = document.querySelector(".cmw-settings a");
    }
    focusInto(target || document.body);
  }

  function close() {
    banner.hidden = true;
    returnFocus();
  }

  function showPanel(show) {
    panel.hidden = !show;
    firstLayer.hidden = show;
    customise.setAttribute("aria-expanded", show ? "true" : "false");
    if (show) {
      focusInto(panel.querySelector("input[type='checkbox']:not([disabled])") || panel);
    } else {
      focusInto(customise);
    }
  }

  function setBusy(busy) {
    Array.prototype.forEach.call(banner.querySelectorAll("button"), function (b) {
      b.disabled = busy;
    });
    dialog.setAttribute("aria-busy", busy ? "true" : "false");
  }

  function field(form, name) {
    var input = form.querySelector('input[type="hidden"][name="' + name + '"]');
    return input ? input.value : null;
  }

  function apply(state) {
    var granted = state && state.granted ? state.granted : [];
    close();
    activate(granted);
    updateConsentMode(granted);
    document.dispatchEvent(new CustomEvent("consentmw:change", { detail: state }));
  }

  /* The JSON request failed (network, an old browser, a refused token): send the form the
     way it works without JavaScript. */
  function fallback(form, choice) {
    setBusy(false);
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = "choice";
    input.value = choice;
    form.appendChild(input);
    HTMLFormElement.prototype.submit.call(form);
  }

  function onSubmit(event) {
    var form = event.target;
    var submitter = event.submitter || lastClicked;
    if (!submitter || submitter.name !== "choice") {
      return;
    }
    var choice = submitter.value;
    if (!window.fetch || !window.JSON) {
      return; /* the browser posts the form itself */
    }
    event.preventDefault();
    var csrf = field(form, "csrf");
    var body = { choice: choice, csrf: csrf, next: field(form, "next") };
    if (choice === "custom") {
      body.purposes = {};
      Array.prototype.forEach.call(
        form.querySelectorAll('input[type="checkbox"][name="purpose"]'),
        function (box) {
          if (!box.disabled) {
            body.purposes[box.value] = box.checked;
          }
        }
      );
    }
    setBusy(true);
    window
      .fetch(mount, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRF-Token": csrf || ""
        },
        body: JSON.stringify(body)
      })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("consent request failed: " + response.status);
        }
        return response.json();
      })
      .then(
        function (state) {
          setBusy(false);
          apply(state);
        },
        function () {
          fallback(form, choice);
        }
      );
  }

  Array.prototype.forEach.call(banner.querySelectorAll("form[method='post']"), function (form) {
    form.addEventListener("submit", onSubmit);
  });
  banner.addEventListener("click", function (event) {
    var target = event.target;
    lastClicked = target && target.closest ? target.closest("button") : null;
  });
  if (customise && panel && firstLayer) {
    customise.addEventListener("click", function (event) {
      event.preventDefault();
      showPanel(true);
    });
    if (back) {
      back.addEventListener("click", function () {
        showPanel(false);
      });
    }
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        showPanel(false);
      }
    });
  }
  focusInto(dialog);
})();
