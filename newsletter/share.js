// The web archive's one script (newsletter/share.py): a Copy button beside each sample post, and on a
// post's share page the Mastodon server prompt. Inline in every page and allowed by its hash in serve's
// Content-Security-Policy, so it must not change from page to page. Without it the pages still work: the
// posts are selectable text, and the Mastodon section says to copy and paste.
(function () {
  "use strict";

  var KEY = "newsletter.mastodon-server";
  // A DNS name as the URL parser leaves it (lower case, IDNA in xn-- form), with a top-level domain.
  var DNS_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$/;
  var LOOPBACK = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])$/;

  // RFC 3986 leaves only letters, digits and -._~ unencoded; encodeURIComponent also leaves !'()*.
  function encode(text) {
    return encodeURIComponent(text).replace(/[!'()*]/g, function (c) {
      return "%" + c.charCodeAt(0).toString(16).toUpperCase();
    });
  }

  // The origin of the server a reader typed ("mastodon.social", "https://mastodon.social/@me",
  // "@me@mastodon.social"), or null. Only https, but for this machine (for trying it out); never a
  // user name, password or other scheme: the URL is rebuilt from the checked host and port alone.
  function serverOrigin(typed) {
    var value = String(typed || "").trim();
    var handle = /^@?[^@\s\/:]+@([^@\s\/]+)$/.exec(value);
    if (handle) value = handle[1];
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) value = "https://" + value;
    var url;
    try {
      url = new URL(value);
    } catch (e) {
      return null;
    }
    // "mastodon.social." (a name written in full, with the root's dot) is the same server; its pages answer without it.
    var host = url.hostname.replace(/\.$/, "");
    var loopback = LOOPBACK.test(host);
    if (url.username || url.password) return null;
    if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) return null;
    if (!loopback && !DNS_NAME.test(host)) return null;
    return url.protocol + "//" + host + (url.port ? ":" + url.port : "");
  }

  function remembered() {
    try {
      return serverOrigin(window.localStorage.getItem(KEY));
    } catch (e) {
      return null; // storage off: ask every time
    }
  }

  function remember(origin) {
    try {
      window.localStorage.setItem(KEY, origin);
    } catch (e) {
      // not kept: asked again next time
    }
  }

  // A post's text, exactly: pages carry it percent-encoded (share.py, SharedPost.encoded).
  function textOf(post) {
    return decodeURIComponent(post.getAttribute("data-encoded"));
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function addCopyButton(post) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(textOf(post)).then(
        function () {
          button.textContent = "Copied";
        },
        function () {
          selectText(post);
          button.textContent = "Selected: copy it";
        }
      );
    });
    var line = post.nextElementSibling;
    if (line && line.classList.contains("share")) {
      line.insertBefore(button, line.firstChild);
    } else {
      var holder = document.createElement("p");
      holder.appendChild(button);
      post.parentNode.insertBefore(holder, post.nextSibling);
    }
  }

  function mastodon(form, post) {
    var input = form.elements.namedItem("server");
    var problem = document.getElementById("mastodon-problem");
    var text = textOf(post);
    function go(origin, replace) {
      var target = origin + "/share?text=" + encode(text);
      if (replace) window.location.replace(target);
      else window.location.assign(target);
    }
    function arrived() {
      if (window.location.hash !== "#mastodon") return;
      var origin = remembered();
      // Replaced, not added: Back from the server's page returns to where the link was, not here again.
      if (origin) go(origin, true);
      else if (document.readyState === "complete") input.focus();
      // The browser's own move to #mastodon, at the end of loading, would take the focus back.
      else window.addEventListener("load", function () { window.setTimeout(function () { input.focus(); }, 0); });
    }
    var known = remembered();
    if (known) input.value = known.replace(/^https:\/\//, "");
    form.hidden = false;
    var without = document.querySelectorAll(".without-script");
    for (var i = 0; i < without.length; i++) without[i].hidden = true;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var origin = serverOrigin(input.value);
      if (!origin) {
        problem.textContent = "That is not a server name: type the part after the second @ of your address, " +
          "such as mastodon.social.";
        input.focus();
        return;
      }
      problem.textContent = "";
      remember(origin);
      go(origin, false);
    });
    window.addEventListener("hashchange", arrived);
    arrived();
  }

  var posts = document.querySelectorAll(".post[data-encoded]");
  if (navigator.clipboard && navigator.clipboard.writeText) {
    for (var i = 0; i < posts.length; i++) addCopyButton(posts[i]);
  }
  var form = document.getElementById("mastodon-form");
  if (form && posts.length) mastodon(form, posts[0]);
})();
