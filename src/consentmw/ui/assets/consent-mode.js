/* consentmw: the Google Consent Mode v2 default, injected as the first script in <head>.
 *
 * The visitor's current state comes from this script tag's data attributes
 * (data-ad-storage="granted|denied" ... and data-wait-for-update="<ms>"), so the file itself
 * is the same for everyone and can be cached for a year. It must run before gtag.js or
 * Google Tag Manager load, which is why it is a plain blocking script at the top of <head>.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) {
    return;
  }
  var types = [
    "ad_storage",
    "ad_user_data",
    "ad_personalization",
    "analytics_storage",
    "functionality_storage",
    "personalization_storage",
    "security_storage"
  ];
  window.dataLayer = window.dataLayer || [];
  if (typeof window.gtag !== "function") {
    /* Google's own definition: gtag.js reads the arguments object, not an array. */
    window.gtag = function () {
      window.dataLayer.push(arguments);
    };
  }
  var state = {};
  types.forEach(function (type) {
    var value = script.getAttribute("data-" + type.replace(/_/g, "-"));
    state[type] = value === "granted" ? "granted" : "denied";
  });
  var wait = parseInt(script.getAttribute("data-wait-for-update") || "", 10);
  if (wait > 0) {
    state.wait_for_update = wait;
  }
  window.gtag("consent", "default", state);
})();
