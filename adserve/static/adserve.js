/* adserve loader: one slot request per page, sandboxed creatives, viewable impressions.
 *
 * Mark slots with <div data-adserve-slot="PLACEMENT"></div>, describe the page in
 * <script type="application/json" id="adserve-page">{"item_id": ..., "section": ...}</script>,
 * and include this file once. No dependencies.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var endpoint = (script && script.getAttribute("data-endpoint")) ||
    (script ? new URL(script.src, location.href).origin : location.origin);
  var READER_KEY = "adserve_reader";
  var VIEW_RATIO = 0.5;   // IAB: half the pixels ...
  var VIEW_MS = 1000;     // ... for one continuous second
  var CMP_WAIT_MS = 1000; // a consent platform that has not answered by then means "no consent"
  var reader = null;      // the reader id of the last slot request, when storage was allowed

  /* The reader's privacy signals, then callback(privacy, storageAllowed). With a TCF v2.2 CMP on
     the page (__tcfapi) its answer is awaited, at most CMP_WAIT_MS; Global Privacy Control
     (navigator.globalPrivacyControl) allows no storage whatever the CMP says. The server
     decodes the TC string itself; storage (purpose 1) is read here only to decide whether the
     reader id may be read from or written to localStorage at all. */
  function withPrivacy(callback) {
    var gpc = navigator.globalPrivacyControl === true;
    if (typeof window.__tcfapi !== "function") {
      callback(gpc ? {gpc: true} : null, !gpc);
      return;
    }
    var done = false;
    var finish = function (tcString, gdprApplies, storage) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      callback({gdpr_applies: gdprApplies, tc_string: tcString, gpc: gpc}, storage && !gpc);
    };
    var timer = setTimeout(function () { finish("", true, false); }, CMP_WAIT_MS);
    try {
      window.__tcfapi("addEventListener", 2, function (tcData, success) {
        if (!success || !tcData) { finish("", true, false); return; }
        if (tcData.eventStatus !== "tcloaded" && tcData.eventStatus !== "useractioncomplete") return;
        if (tcData.listenerId !== undefined && tcData.listenerId !== null) {
          window.__tcfapi("removeEventListener", 2, function () {}, tcData.listenerId);
        }
        var gdprApplies = tcData.gdprApplies !== false;
        finish(tcData.tcString || "", gdprApplies, !gdprApplies || storageConsent(tcData));
      });
    } catch (e) {
      finish("", true, false);
    }
  }

  /* Purpose 1 as the server reads it: the publisher segment's consents when the string has one
     (a segment whose first base64url character holds segment type 3), else the core segment's. */
  function storageConsent(tcData) {
    var publisher = String(tcData.tcString || "").split(".").slice(1).some(function (segment) {
      return /^[Y-Za-f]/.test(segment);
    });
    var consents = (publisher ? tcData.publisher : tcData.purpose) || {};
    return !!(consents.consents && consents.consents["1"] === true);
  }

  function readerId() {
    try {
      var id = localStorage.getItem(READER_KEY);
      if (!id) {
        id = "r-" + (window.crypto && crypto.randomUUID ? crypto.randomUUID() :
          Math.random().toString(36).slice(2) + Date.now().toString(36));
        localStorage.setItem(READER_KEY, id);
      }
      return id;
    } catch (e) {
      return null; // storage blocked: ask as an anonymous reader
    }
  }

  function pageContext() {
    var block = document.getElementById("adserve-page");
    if (block) {
      try { return JSON.parse(block.textContent); } catch (e) { /* fall through */ }
    }
    return {url: location.href, title: document.title};
  }

  function deviceType() {
    var width = window.innerWidth || 1024;
    return width < 768 ? "mobile" : (width < 1024 ? "tablet" : "desktop");
  }

  function slotRequest(element, index) {
    if (!element.id) element.id = "adserve-slot-" + index;
    var slot = {id: element.id};
    var placement = element.getAttribute("data-adserve-slot");
    if (placement) slot.placement = placement;
    var type = element.getAttribute("data-adserve-type");
    if (type) slot.type = type;
    var sizes = element.getAttribute("data-adserve-sizes");
    if (sizes) slot.sizes = sizes.split(/[\s,]+/).filter(Boolean);
    var count = element.getAttribute("data-adserve-count");
    if (count) slot.count = parseInt(count, 10);
    return slot;
  }

  /* Fire `urls` once the element has been at least half visible for one second. */
  function whenViewed(element, urls) {
    urls = urls.filter(Boolean);
    if (!urls.length) return;
    var fire = function () {
      urls.forEach(function (url) { new Image().src = url; });
      element.setAttribute("data-adserve-viewed", "true");
    };
    if (!("IntersectionObserver" in window)) { fire(); return; }
    var timer = null;
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.intersectionRatio >= VIEW_RATIO && timer === null) {
          timer = setTimeout(function () { observer.disconnect(); fire(); }, VIEW_MS);
        } else if (entry.intersectionRatio < VIEW_RATIO && timer !== null) {
          clearTimeout(timer);
          timer = null;
        }
      });
    }, {threshold: [0, VIEW_RATIO, 1]});
    observer.observe(element);
  }

  function escapeAttr(text) {
    return String(text).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
  }

  /* The creative lives in a sandboxed frame with an opaque origin: its scripts (if any) can never
     reach the host page, open dialogs or navigate the top window; a click opens a new tab. */
  function renderDisplay(element, fill) {
    var inner = fill.html !== undefined ? fill.html :
      '<img src="' + escapeAttr(fill.image_url) + '" width="' + fill.width + '" height="' +
      fill.height + '" alt="Advertisement" style="display:block;border:0">';
    var doc = '<!doctype html><html><head><base target="_blank"><style>html,body{margin:0;' +
      'overflow:hidden}a{display:block;color:inherit;text-decoration:none}</style></head><body>' +
      '<a href="' + escapeAttr(fill.click_url) + '" rel="noopener">' + inner + '</a></body></html>';
    var frame = document.createElement("iframe");
    frame.setAttribute("sandbox", "allow-scripts allow-popups allow-popups-to-escape-sandbox");
    frame.setAttribute("srcdoc", doc);
    frame.setAttribute("title", "Advertisement");
    frame.setAttribute("scrolling", "no");
    frame.width = fill.width;
    frame.height = fill.height;
    frame.style.border = "0";
    frame.style.display = "block";
    element.textContent = "";
    element.className += " adserve-display";
    element.setAttribute("data-adserve-campaign", fill.campaign_id);
    element.setAttribute("data-adserve-variant", fill.variant);
    element.appendChild(frame);
    whenViewed(element, [fill.impression_url]);
  }

  function renderRecs(element, fill) {
    var heading = element.getAttribute("data-adserve-title");
    var list = document.createElement("ul");
    list.className = "adserve-recs-list";
    fill.items.forEach(function (item) {
      var li = document.createElement("li");
      li.className = "adserve-rec" + (item.sponsored ? " adserve-rec--sponsored" : "");
      var link = document.createElement("a");
      link.href = item.click_url;
      if (item.sponsored) link.rel = "sponsored noopener";
      if (item.image_url) {
        var img = document.createElement("img");
        img.src = item.image_url;
        img.alt = "";
        img.loading = "lazy";
        link.appendChild(img);
      }
      var title = document.createElement("span");
      title.className = "adserve-rec-title";
      title.textContent = item.title;
      link.appendChild(title);
      if (item.sponsored) {
        var label = document.createElement("span");
        label.className = "adserve-sponsored";
        label.textContent = "Sponsored" + (item.advertiser ? " · " + item.advertiser : "");
        link.appendChild(label);
      }
      li.appendChild(link);
      list.appendChild(li);
    });
    element.textContent = "";
    element.className += " adserve-recs";
    element.setAttribute("role", "region");
    if (heading) {
      var h = document.createElement("h2");
      h.className = "adserve-recs-heading";
      h.textContent = heading;
      element.appendChild(h);
      element.setAttribute("aria-label", heading);
    }
    element.setAttribute("data-adserve-strategy", fill.strategy);
    element.appendChild(list);
    var footer = element.getAttribute("data-adserve-footer");
    if (footer) {
      var about = document.createElement("a");
      about.className = "adserve-about";
      about.href = element.getAttribute("data-adserve-footer-href") || endpoint + "/";
      about.rel = "noopener";
      about.textContent = footer;
      element.appendChild(about);
    }
    var urls = [fill.impression_url].concat(fill.items.map(function (i) { return i.impression_url; }));
    whenViewed(element, urls);
  }

  function collapse(element) {
    element.textContent = "";
    element.hidden = true;
    element.className += " adserve-empty";
    element.setAttribute("data-adserve-state", "empty");
  }

  function render(elements, answer) {
    elements.forEach(function (element) {
      var fill = answer.slots[element.id];
      if (!fill || (fill.type === "display" && !fill.fill) ||
          (fill.type === "recs" && !fill.items.length)) {
        collapse(element);
        return;
      }
      if (fill.type === "display") {
        renderDisplay(element, fill);
      } else {
        renderRecs(element, fill);
      }
      element.setAttribute("data-adserve-state", "filled");
    });
  }

  /* Slots rendered server-side (adserve.render) only need their viewability tracking. */
  function trackServerRendered() {
    var done = document.querySelectorAll("[data-adserve-impressions]");
    Array.prototype.forEach.call(done, function (element) {
      whenViewed(element, element.getAttribute("data-adserve-impressions").split(" "));
    });
  }

  function run() {
    trackServerRendered();
    var elements = Array.prototype.slice.call(
      document.querySelectorAll("[data-adserve-slot]:not([data-adserve-state])"));
    if (!elements.length) return;
    withPrivacy(function (privacy, storage) { request(elements, privacy, storage); });
  }

  function request(elements, privacy, storage) {
    var context = pageContext();
    var body = {page: context, device: context.device || deviceType(), slots: elements.map(slotRequest)};
    reader = storage ? readerId() : null;  // no storage consent: localStorage is not touched
    if (reader) body.user = {id: reader};
    if (privacy) body.privacy = privacy;
    if (context.country) body.country = context.country;
    delete body.page.device;
    delete body.page.country;
    fetch(endpoint + "/v1/slots", {
      method: "POST", credentials: "omit", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body)
    }).then(function (response) {
      if (!response.ok) throw new Error("adserve: HTTP " + response.status);
      return response.json();
    }).then(function (answer) {
      render(elements, answer);
    }).catch(function (error) {
      elements.forEach(collapse);
      if (window.console) console.warn(error);
    });
  }

  window.adserve = {reader: function () { return reader; }, refresh: run};
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", run);
  } else {
    run();
  }
})();
