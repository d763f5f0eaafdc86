// A shared link, #/link/<token>?path=/sub: works without an account. Lists a linked folder (and
// the folders below it), downloads files, and asks for the password when the link has one. The
// token stays in the fragment (never sent to the web server); the password goes in the
// X-Link-Password header and is kept only in this page's memory. Contract: docs/sharing-api.md.
import { apiUrl, ApiError, errorFrom, messageOf, NETWORK_MESSAGE, rangeTotal, request } from "../api.js";
import { append, h, icon, nextId, setTitle } from "../dom.js";
import { bytes, date, joinPath, normalizePath, plural } from "../format.js";
import { DOWNLOAD_TYPE, retryAfterSeconds, retrying, saveBlob } from "../transfers.js";
import { alertBox, busy, emptyState, pageHeader, toast } from "../ui.js";

const RANGE_SIZE = 4 * 1024 * 1024;          // the server's largest read (RANGE_MAX_BYTES)
const passwords = new Map();                  // token -> password, for this page's life

function linkHash(token, path = "/") {
  return `#/link/${encodeURIComponent(token)}${path === "/" ? "" : `?path=${encodeURIComponent(path)}`}`;
}

function headersFor(token) {
  return passwords.has(token) ? { "X-Link-Password": passwords.get(token) } : {};
}

// How many times a download starts again when its file is replaced while it downloads.
const CHANGED_TRIES = 3;

// (bytes, the answer's ETag, the size of the file it is a range of); a request refused for a
// while (a link's requests per minute: 429 with Retry-After; a storage away) is sent again
// after the wait the server asks, as the transfers panel does.
function fetchBytes(token, path, range, etag) {
  return retrying(() => fetchOnce(token, path, range, etag));
}

async function fetchOnce(token, path, range, etag) {
  let response;
  try {
    response = await fetch(apiUrl(`/api/filesystem/public/${encodeURIComponent(token)}/data`, { path }),
      { headers: { ...headersFor(token), ...(range ? { Range: range } : {}),
        ...(etag ? { "If-Match": etag } : {}) }, cache: "no-store" });
  } catch {
    throw new ApiError(NETWORK_MESSAGE, { code: "network" });
  }
  if (!response.ok) {
    const error = await errorFrom(response.status, () => response.json());
    error.retryAfter = retryAfterSeconds(response.headers.get("Retry-After"));
    throw error;
  }
  const data = await response.arrayBuffer();
  return { data, etag: response.headers.get("ETag"),
    size: rangeTotal(response.headers.get("Content-Range")) ?? data.byteLength };
}

// Every part after the first is asked for with the ETag of the first (If-Match): a file
// replaced while its parts come is refused (412 file_changed) and read again from the start,
// never joined from two versions. The first part says the size of its version (a listing read
// earlier may be older).
async function downloadFile(token, path, entry, button) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const pieces = [];
      let size = entry.size;
      let etag = null;
      if (size <= RANGE_SIZE) {
        pieces.push((await fetchBytes(token, path, null, null)).data);
      } else {
        for (let first = 0; first < size; first += RANGE_SIZE) {
          const last = Math.min(size, first + RANGE_SIZE) - 1;
          const got = await fetchBytes(token, path, `bytes=${first}-${last}`, etag);
          if (first === 0) ({ etag, size } = got);
          pieces.push(got.data);
          progressOn(button, Math.min(1, (first + got.data.byteLength) / size));
        }
      }
      saveBlob(new Blob(pieces, { type: DOWNLOAD_TYPE }), entry.name);
      return;
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "file_changed" || attempt >= CHANGED_TRIES) {
        throw error;
      }
    } finally {
      progressOn(button, null);
    }
  }
}

// A large download's share so far, on its button (null: back to the button's own words).
function progressOn(button, fraction) {
  const label = button?.querySelector("span");
  if (!label) return;
  if (!label.dataset.words) label.dataset.words = label.textContent;
  label.textContent = fraction === null ? label.dataset.words
    : `${label.dataset.words} ${Math.floor(fraction * 100)}%`;
}

export default async function render(root, ctx) {
  const token = ctx.params[0] || "";
  const path = normalizePath(ctx.query.get("path") || "/");
  const body = h("div", { class: "link-page" });
  root.append(body);

  let node;
  try {
    node = await request(`/api/filesystem/public/${encodeURIComponent(token)}`,
      { auth: false, query: { path }, headers: headersFor(token) });
  } catch (error) {
    if (!ctx.alive()) return;
    if (error instanceof ApiError && (error.code === "password_required" || error.code === "wrong_password")) {
      body.append(passwordForm(token, error.code === "wrong_password", ctx));
      return;
    }
    body.append(pageHeader("Shared link"), alertBox("error", messageOf(error)));
    return;
  }
  if (!ctx.alive()) return;
  setTitle(node.name);
  const crumbs = h("ol", {});
  const names = path.split("/").filter(Boolean);
  const trail = [{ label: node.type === "directory" && names.length ? "Shared folder" : node.name, path: "/" },
    ...names.map((name, i) => ({ label: name, path: `/${names.slice(0, i + 1).join("/")}` }))];
  if (names.length) {
    trail.forEach((item, i) => crumbs.append(h("li", {}, i === trail.length - 1
      ? h("span", { "aria-current": "page" }, item.label) : h("a", { href: linkHash(token, item.path) }, item.label))));
  }
  const expires = node.expires_at ? `This link works until ${date(node.expires_at)}.` : "";

  if (node.type !== "directory") {
    const get = h("button", { type: "button", class: "button primary" }, icon("download"),
      h("span", {}, "Download"));
    get.addEventListener("click", () => run(get, () => downloadFile(token, path, node, get)));
    append(body, [pageHeader(node.name),
      names.length ? h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumb" }, crumbs) : null,
      h("section", { class: "panel", "aria-label": "Shared file" },
        h("dl", { class: "facts" }, h("dt", {}, "Size"), h("dd", {}, bytes(node.size)),
          h("dt", {}, "Modified"), h("dd", {}, date(node.modified))),
        h("p", { class: "form-actions" }, get)),
      expires ? h("p", { class: "muted" }, expires) : null]);
    return;
  }

  const children = [...(node.children || [])].sort((a, b) => (a.type === b.type
    ? a.name.localeCompare(b.name, undefined, { numeric: true }) : a.type === "directory" ? -1 : 1));
  const captionId = nextId("caption");
  const rows = children.map((child) => {
    const target = joinPath(path, child.name);
    const isDir = child.type === "directory";
    let action = null;
    if (!isDir) {
      action = h("button", { type: "button", class: "button small", "aria-label": `Download ${child.name}` },
        icon("download"), h("span", {}, "Download"));
      action.addEventListener("click", () => run(action, () => downloadFile(token, target, child, action)));
    }
    return h("tr", { "data-name": child.name, "data-type": child.type },
      h("td", { class: "col-name" }, isDir
        ? h("a", { href: linkHash(token, target), class: "item-link" }, icon("folder"),
          h("span", { class: "item-name" }, child.name))
        : h("span", { class: "item-link" }, icon("file"), h("span", { class: "item-name" }, child.name))),
      h("td", { class: "col-size" }, isDir ? h("span", { class: "muted" }, "Folder") : bytes(child.size)),
      h("td", { class: "col-modified" }, date(child.modified)),
      h("td", { class: "row-actions" }, action));
  });
  append(body, [pageHeader(names.length ? names[names.length - 1] : node.name),
    names.length ? h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumb" }, crumbs) : null,
    h("p", { class: "muted" }, "A folder shared by link. ", expires),
    h("section", { class: "files-area", "aria-label": "Folder contents" }, children.length
      ? h("div", { class: "table-wrap scroll-x" }, h("table", { class: "file-table auto-table", "aria-labelledby": captionId },
        h("caption", { id: captionId, class: "visually-hidden" }, `Contents of ${node.name}`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"),
          h("th", { scope: "col", class: "col-size" }, "Size"),
          h("th", { scope: "col", class: "col-modified" }, "Modified"),
          h("th", { scope: "col", class: "col-buttons" }, h("span", { class: "visually-hidden" }, "Actions")))),
        h("tbody", {}, rows)))
      : emptyState("This folder is empty.")),
    node.next_cursor ? h("p", { class: "muted" }, `Showing the first ${plural(children.length, "item")}.`) : null]);
}

async function run(button, task) {
  busy(button, true);
  try {
    await task();
  } catch (error) {
    toast(messageOf(error), "error");
  } finally {
    busy(button, false);
  }
}

function passwordForm(token, wrong, ctx) {
  const id = nextId("link-password");
  const input = h("input", { id, name: "password", type: "password", required: true,
    autocomplete: "current-password", autofocus: true, "aria-invalid": wrong ? "true" : undefined });
  const form = h("form", { class: "panel auth-card", novalidate: true },
    h("h1", { class: "page-title", tabindex: "-1" }, "This link needs a password"),
    wrong ? alertBox("error", "That password is not right. Try again.") : null,
    h("div", { class: "field" }, h("label", { for: id }, "Password"), input),
    h("p", { class: "form-actions" }, h("button", { type: "submit", class: "button primary" }, "Open")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.value) {
      input.focus();
      return;
    }
    passwords.set(token, input.value);
    ctx.navigate(location.hash);          // draw the page again, now with the password
  });
  return form;
}
