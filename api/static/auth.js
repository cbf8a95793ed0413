// The browser's credentials for the API: an API key the user typed in (kept in this browser's localStorage,
// sent only as an Authorization header to this origin), or a share link's ?token= (read-only, one generation).
"use strict";

const KEY_STORAGE = "reasonq.key";

function storedKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function saveKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
}

function authHeaders(extra = {}) {
  const key = storedKey();
  return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
}

function withToken(url, token) {
  if (!token) return url;
  return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}
