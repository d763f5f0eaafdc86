// Cloudstrype web UI: the entry module. Loads config.json, keeps the session, routes by the URL
// hash (#/files?path=/docs, #/file/<id>, #/storages, ...) and draws the frame around the pages.
import { api, currentSession, loadConfig, logout, messageOf, onSessionChange } from "./js/api.js";
import { h, icon } from "./js/dom.js";
import { safeNext } from "./js/hash.js";
import { alertBox, toast } from "./js/ui.js";
import { initTransfers } from "./js/transfers.js";

const PAGES = {
  "": { title: "Dashboard", load: () => import("./js/pages/dashboard.js") },
  files: { title: "Files", load: () => import("./js/pages/files.js") },
  file: { title: "File details", load: () => import("./js/pages/details.js") },
  shared: { title: "Shared with me", load: () => import("./js/pages/shared.js") },
  trash: { title: "Trash", load: () => import("./js/pages/trash.js") },
  // A link works for anyone holding it, signed in or not (docs/sharing-api.md).
  link: { title: "Shared link", load: () => import("./js/pages/link.js"), anyone: true },
  storages: { title: "Storages", load: () => import("./js/pages/storages.js") },
  members: { title: "Members", load: () => import("./js/pages/members.js") },
  settings: { title: "Settings", load: () => import("./js/pages/settings.js") },
  admin: { title: "Admin", load: () => import("./js/pages/admin.js"), admin: true },
  login: { title: "Log in", load: () => import("./js/pages/auth.js"), public: true },
  signup: { title: "Sign up", load: () => import("./js/pages/auth.js"), public: true },
};

const NAV = [
  { name: "", label: "Dashboard", icon: "dashboard" },
  { name: "files", label: "Files", icon: "files" },
  { name: "shared", label: "Shared with me", icon: "share" },
  { name: "trash", label: "Trash", icon: "trash" },
  { name: "storages", label: "Storages", icon: "storage" },
  { name: "members", label: "Members", icon: "members" },
  { name: "settings", label: "Settings", icon: "settings" },
  { name: "admin", label: "Admin", icon: "admin", admin: true },
];

let me = null;            // GET /api/auth/me of the signed-in user
let cleanups = [];
let renderCount = 0;
let firstRender = true;
let pendingNotice = null;

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const cut = raw.indexOf("?");
  const pathPart = cut >= 0 ? raw.slice(0, cut) : raw;
  const query = new URLSearchParams(cut >= 0 ? raw.slice(cut + 1) : "");
  const segments = pathPart.split("/").filter(Boolean).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  return { name: segments[0] || "", params: segments.slice(1), query };
}

export function navigate(hash, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, "", hash);
    route();
  } else if (location.hash === hash) {
    route();
  } else {
    location.hash = hash;
  }
}

function isAdmin() {
  return Boolean(me && (me.groups || []).includes("admins"));
}

async function loadMe() {
  me = await api.get("/api/auth/me");
  return me;
}

function drawFrame(current) {
  const signedIn = Boolean(currentSession()) && me;
  document.body.classList.toggle("signed-out", !signedIn);
  const nav = document.getElementById("nav");
  const toggle = document.getElementById("nav-toggle");
  const userArea = document.getElementById("user-area");
  nav.hidden = !signedIn;
  toggle.hidden = !signedIn;
  if (!toggle.firstChild) toggle.append(icon("menu"));
  if (!signedIn) {
    nav.replaceChildren();
    userArea.replaceChildren();
    return;
  }
  const items = NAV.filter((item) => !item.admin || isAdmin()).map((item) => {
    const active = item.name === current || (item.name === "files" && current === "file");
    return h("li", {}, h("a", { href: `#/${item.name}`, class: active ? "nav-link active" : "nav-link",
      "aria-current": active ? "page" : undefined }, icon(item.icon), h("span", {}, item.label)));
  });
  nav.replaceChildren(h("ul", { class: "nav-list" }, items));
  const out = h("button", { type: "button", class: "button ghost logout-button" },
    icon("logout"), h("span", {}, "Log out"));
  out.addEventListener("click", async () => {
    out.disabled = true;
    // End the sign-in on the server too (its tokens stop working there), then here; a server
    // that cannot be reached does not keep anyone signed in on this page.
    await api.post("/api/auth/logout").catch(() => {});
    pendingNotice = "You have logged out.";
    logout("logout");
  });
  userArea.replaceChildren(h("span", { class: "user-name", title: me.email || "" }, me.username),
    out);
}

function setNavOpen(open) {
  document.body.classList.toggle("nav-open", open);
  document.getElementById("nav-toggle").setAttribute("aria-expanded", String(open));
}

async function route() {
  const count = ++renderCount;
  for (const fn of cleanups.splice(0)) {
    try {
      fn();
    } catch {
      // A page's cleanup must not stop the next page.
    }
  }
  setNavOpen(false);
  const where = parseHash();
  let page = PAGES[where.name];
  const main = document.getElementById("main");
  // An address this app has no page for (a typo, an old bookmark) is said, not swapped for the
  // dashboard in silence; signed out, it is the sign-in page as before.
  const unknown = !page;
  if (unknown && !currentSession()) {
    navigate("#/", { replace: true });
    return;
  }
  if (unknown) page = { title: "No such page", anyone: true };
  if (!page.public && !page.anyone && !currentSession()) {
    const next = location.hash && !location.hash.startsWith("#/login") ? location.hash : "";
    navigate(`#/login${next ? `?next=${encodeURIComponent(next)}` : ""}`, { replace: true });
    return;
  }
  if (page.public && currentSession()) {
    navigate(safeNext(where.query.get("next")), { replace: true });
    return;
  }
  if (currentSession() && !me) {
    try {
      await loadMe();
    } catch (error) {
      if (count !== renderCount) return;
      if (!currentSession()) return;            // the session ended: the listener re-routes
      drawFrame(where.name);
      const retry = h("button", { type: "button", class: "button" }, "Try again");
      retry.addEventListener("click", () => route());
      main.replaceChildren(alertBox("error", messageOf(error), " ", retry));
      return;
    }
    if (count !== renderCount) return;
  }
  if (page.admin && !isAdmin()) {
    page = null;
  }
  drawFrame(where.name);
  document.title = page ? `${page.title} · Cloudstrype` : "Not allowed · Cloudstrype";
  const root = h("div", { class: "page", "data-page": where.name || "dashboard" });
  main.replaceChildren(root);
  if (pendingNotice) {
    root.append(alertBox("info", pendingNotice));
    pendingNotice = null;
  }
  if (!page) {
    root.append(h("h1", { tabindex: "-1", class: "page-title" }, "Not allowed"),
      alertBox("error", "This page is for administrators only."));
    return;
  }
  if (unknown) {
    root.append(h("h1", { tabindex: "-1", class: "page-title" }, "No such page"),
      alertBox("error", "There is no page at this address. ",
        h("a", { href: "#/" }, "Go to the dashboard"), "."));
    return;
  }
  const ctx = {
    ...where,
    me,
    isAdmin: isAdmin(),
    navigate,
    onLeave: (fn) => cleanups.push(fn),
    alive: () => count === renderCount,
    reloadMe: async () => {
      await loadMe();
      drawFrame(where.name);
    },
  };
  try {
    const module = await page.load();
    if (count !== renderCount) return;
    await module.default(root, ctx);
  } catch (error) {
    if (count !== renderCount) return;
    root.append(alertBox("error", messageOf(error)));
  }
  if (count !== renderCount) return;
  if (!firstRender) {
    const target = root.querySelector("[autofocus]") || root.querySelector(".page-title");
    target?.focus();
  } else {
    root.querySelector("[autofocus]")?.focus();
  }
  firstRender = false;
}

onSessionChange((session, reason) => {
  if (!session) {
    me = null;
    if (reason && reason !== "logout" && reason !== "tokens") pendingNotice = reason;
    navigate("#/login", { replace: true });
  } else if (reason === "login") {
    me = null;
    route();
  }
});

async function start() {
  await loadConfig();
  initTransfers();
  document.getElementById("nav-toggle").addEventListener("click", () => {
    setNavOpen(!document.body.classList.contains("nav-open"));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("nav-open")) {
      setNavOpen(false);
      document.getElementById("nav-toggle").focus();
    }
  });
  // The skip link moves focus without touching the hash (the hash is the router's).
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    const main = document.getElementById("main");
    (main.querySelector(".page-title") || main).focus();
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    toast(messageOf(event.reason), "error");
  });
  await route();
}

start();
