/* adserve loader: one slot request per page, sandboxed creatives, viewable impressions, and
 * every slot's space reserved before the answer so the page does not shift when it arrives.
 *
 * Mark slots with <div data-adserve-slot="PLACEMENT"></div>, describe the page in
 * <script type="application/json" id="adserve-page">{"item_id": ..., "section": ...}</script>,
 * and include this file once, async. The space is in the first frame only when the page's own
 * markup reserves it (adserve.render.reserve_slots); this loader reserves it too, as a fallback.
 * No dependencies.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var endpoint = (script && script.getAttribute("data-endpoint")) ||
    (script ? new URL(script.src, location.href).origin : location.origin);
  var READER_KEY = "adserve_reader";
  var VIEW_RATIO = 0.5;   // IAB: half the pixels ...
  var VIEW_MS = 1000;     // ... for one continuous second
  var SLOTS = "[data-adserve-slot]:not([data-adserve-state])";
  var COLLAPSE = ["never", "on_empty", "before_fetch"];
  var MAX_ITEMS = 24;     // the server's limit for a widget: more skeleton tiles never fill
  // placement -> {type, sizes, count, collapse}; the server writes in its placements here
  var PLACEMENTS = /* placements */ {};
  // what makes every tile one size and centres a creative (adserve.render.BASE_CSS, written in
  // by the server, which also puts it in the pages it renders)
  var BASE_CSS = /* base css */ "";
  var specs = new WeakMap();       // slot element -> what it reserves, once reserved
  var requested = new WeakSet();   // slots already asked for
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

  /* What the page says about a slot, over what the placements map says: enough to reserve its
     space before the answer comes back. */
  function slotSpec(element) {
    var name = element.getAttribute("data-adserve-slot");
    var placement = Object.prototype.hasOwnProperty.call(PLACEMENTS, name) ? PLACEMENTS[name] : {};
    var sizes = element.getAttribute("data-adserve-sizes");
    var count = parseInt(element.getAttribute("data-adserve-count"), 10);
    var collapse = element.getAttribute("data-adserve-collapse");
    var spec = {
      type: element.getAttribute("data-adserve-type") || placement.type,
      sizes: sizes ? sizes.split(/[\s,]+/).filter(Boolean) : placement.sizes,
      count: count > 0 ? count : placement.count,
      collapse: COLLAPSE.indexOf(collapse) >= 0 ? collapse : (placement.collapse || "never")
    };
    if (spec.type === "display" && spec.sizes) spec.sizes = fittingSizes(element, spec.sizes);
    return spec;
  }

  /* The sizes as wide as the slot's container or narrower (else the narrowest one): a creative
     never overflows the column, and the reserved box is the largest that can come back. */
  function fittingSizes(element, sizes) {
    var parent = element.parentElement;
    var style = parent ? getComputedStyle(parent) : null;
    var room = parent ? parent.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) : 0;
    var parsed = sizes.map(function (size) {
      var wh = /^(\d+)x(\d+)$/.exec(size);
      return wh && {name: size, width: +wh[1], height: +wh[2]};
    }).filter(Boolean);
    var fit = parsed.filter(function (size) { return size.width <= room; });
    if (!fit.length && parsed.length) {
      fit = [parsed.reduce(function (a, b) { return b.width < a.width ? b : a; })];
    }
    return fit;
  }

  /* A constructed sheet: no <style> element for a Content-Security-Policy to refuse. */
  function addBaseStyle() {
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(BASE_CSS);
      document.adoptedStyleSheets = [sheet].concat(document.adoptedStyleSheets);
    } catch (e) { /* an older browser: the page's own CSS alone sizes the tiles */ }
  }

  function addClass(element, name) {
    if ((" " + element.className + " ").indexOf(" " + name + " ") < 0) {
      element.className = (element.className ? element.className + " " : "") + name;
    }
  }

  function tileCount(spec) {
    return Math.min(spec.count || 6, MAX_ITEMS);
  }

  /* Give the slot the space its answer will take, before asking: a display slot the largest
     fitting size (a smaller creative is centred in it), a widget its heading, footer and one
     skeleton tile per item, built like the real tiles so the same CSS gives them the same size. */
  function reserve(element) {
    if (specs.has(element)) return;
    var spec = slotSpec(element);
    specs.set(element, spec);
    if (spec.collapse === "before_fetch") return;
    if (spec.type === "display" && spec.sizes && spec.sizes.length) {
      /* the page's own reservation (adserve.render.reserve_slots, or the publisher's CSS) is
         kept where it is larger: it is already painted, and shrinking it would move the page */
      var page = getComputedStyle(element);
      var widths = spec.sizes.map(function (s) { return s.width; }).concat(parseFloat(page.minWidth) || 0);
      var heights = spec.sizes.map(function (s) { return s.height; }).concat(parseFloat(page.minHeight) || 0);
      addClass(element, "adserve-display");
      element.style.minWidth = Math.max.apply(null, widths) + "px";
      element.style.minHeight = Math.max.apply(null, heights) + "px";
    } else if (spec.type === "recs") {
      var tiles = [];
      for (var i = 0; i < tileCount(spec); i++) tiles.push(tile(null));
      widget(element, tiles);
    } else {
      return;
    }
    element.setAttribute("aria-busy", "true");
  }

  function slotRequest(element, index) {
    if (!element.id) element.id = "adserve-slot-" + index;
    var spec = specs.get(element);
    var slot = {id: element.id};
    var placement = element.getAttribute("data-adserve-slot");
    if (placement) slot.placement = placement;
    var type = element.getAttribute("data-adserve-type");
    if (type) slot.type = type;
    if (spec.type === "display" && spec.sizes && spec.sizes.length) {
      slot.sizes = spec.sizes.map(function (s) { return s.name; });
    }
    if (element.getAttribute("data-adserve-count")) slot.count = spec.count;
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
    addClass(element, "adserve-display");
    element.setAttribute("data-adserve-campaign", fill.campaign_id);
    element.setAttribute("data-adserve-variant", fill.variant);
    element.appendChild(frame);
    whenViewed(element, [fill.impression_url]);
  }

  /* One widget tile; without an item, a skeleton of the same build. */
  function tile(item) {
    var li = document.createElement("li");
    var link = document.createElement("a");
    var thumb = document.createElement(item && item.image_url ? "img" : "span");
    var title = document.createElement("span");
    li.className = "adserve-rec" + (!item ? " adserve-rec--skeleton" : item.sponsored ? " adserve-rec--sponsored" : "");
    thumb.className = "adserve-rec-img";
    title.className = "adserve-rec-title";
    link.appendChild(thumb);
    link.appendChild(title);
    li.appendChild(link);
    if (!item) {
      li.setAttribute("aria-hidden", "true");
      return li;
    }
    link.href = item.click_url;
    if (item.sponsored) link.rel = "sponsored noopener";
    if (item.image_url) {
      thumb.src = item.image_url;
      thumb.alt = "";
      thumb.loading = "lazy";
    }
    title.textContent = item.title;
    if (item.sponsored) {
      var label = document.createElement("span");
      label.className = "adserve-sponsored";
      label.textContent = "Sponsored" + (item.advertiser ? " · " + item.advertiser : "");
      link.appendChild(label);
    }
    return li;
  }

  /* The widget around its tiles: heading and footer come from the markup, so the skeleton
     already has them. */
  function widget(element, tiles) {
    var heading = element.getAttribute("data-adserve-title");
    var list = document.createElement("ul");
    list.className = "adserve-recs-list";
    tiles.forEach(function (li) { list.appendChild(li); });
    element.textContent = "";
    addClass(element, "adserve-recs");
    element.setAttribute("role", "region");
    if (heading) {
      var h = document.createElement("h2");
      h.className = "adserve-recs-heading";
      h.textContent = heading;
      element.appendChild(h);
      element.setAttribute("aria-label", heading);
    }
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
  }

  function renderRecs(element, fill) {
    var spec = specs.get(element);
    var tiles = fill.items.map(tile);
    while (spec.collapse !== "before_fetch" && tiles.length < tileCount(spec)) {
      var blank = tile(null);  // fewer items than reserved: blank tiles keep the widget's size
      blank.style.visibility = "hidden";
      tiles.push(blank);
    }
    widget(element, tiles);
    element.setAttribute("data-adserve-strategy", fill.strategy);
    var urls = [fill.impression_url].concat(fill.items.map(function (i) { return i.impression_url; }));
    whenViewed(element, urls);
  }

  /* `never` keeps the reserved space (blank), so nothing below moves; the others give it up. */
  function empty(element) {
    var spec = specs.get(element) || {};
    if (spec.collapse === "never") {
      element.style.visibility = "hidden";
    } else {
      element.textContent = "";
      element.hidden = true;
      element.style.display = "none";  // whatever display the page's CSS gives the slot
    }
    addClass(element, "adserve-empty");
    element.setAttribute("data-adserve-state", "empty");
  }

  function render(elements, answer) {
    elements.forEach(function (element) {
      var fill = answer.slots[element.id];
      element.removeAttribute("aria-busy");
      if (!fill || (fill.type === "display" && !fill.fill) ||
          (fill.type === "recs" && !fill.items.length)) {
        empty(element);
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
    var elements = Array.prototype.slice.call(document.querySelectorAll(SLOTS))
      .filter(function (element) { return !requested.has(element); });
    if (!elements.length) return;
    elements.forEach(function (element) { reserve(element); requested.add(element); });
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
      render(elements, {slots: {}});
      if (window.console) console.warn(error);
    });
  }

  function reserveAll() {
    Array.prototype.forEach.call(document.querySelectorAll(SLOTS), reserve);
  }

  window.adserve = {reader: function () { return reader; }, refresh: run};
  addBaseStyle();
  if (document.readyState === "loading") {
    /* Reserve each slot as the parser adds it: observer callbacks run before the browser's next
       frame, so a slot is never painted without its space (when the loader came in time). */
    var parsing = new MutationObserver(reserveAll);
    parsing.observe(document.documentElement, {childList: true, subtree: true});
    reserveAll();
    document.addEventListener("DOMContentLoaded", function () { parsing.disconnect(); run(); });
  } else {
    run();
  }
})();
