// One file: its facts, versions, and where every share of every chunk lives (and how healthy).
import { api, ApiError, enc, messageOf } from "../api.js";
import { h, icon, setTitle } from "../dom.js";
import { bytes, chunkCount, currentVersion, date, describeDurability, describeEncryption, parentPath, parseDurability,
  plural } from "../format.js";
import { deleteItems, downloadItem, moveItems, renameItem } from "../actions.js";
import { alertBox, badge, busy, confirmDialog, pageHeader, section, toast } from "../ui.js";
import { filesHash } from "./files.js";
import { linkDialog, shareDialog } from "../sharing.js";

const CHUNKS_SHOWN = 24;
const HEALTH = {
  ok: ["Healthy", "ok"],
  missing: ["Missing", "bad"],
  damaged: ["Damaged", "bad"],
  lost: ["Storage removed", "bad"],
  unreachable: ["Unreachable", "warn"],
};

async function mapLimit(values, limit, fn) {
  const results = new Array(values.length);
  let next = 0;
  const worker = async () => {
    while (next < values.length) {
      const index = next;
      next += 1;
      try {
        results[index] = { value: await fn(values[index]) };
      } catch (error) {
        results[index] = { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, values.length) }, worker));
  return results;
}

export default async function render(root, ctx) {
  const id = ctx.params[0];
  let info;
  try {
    // An id is letters, digits, '-' and '_': anything else ('..', a path) names no file (sent,
    // the browser would resolve it into another route of the API).
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(id || "")) {
      throw new ApiError("There is no such file: the address does not name one.", { status: 404 });
    }
    info = await api.get(`/api/filesystem/info/${enc(id)}`);
  } catch (error) {
    root.append(pageHeader("File details"), alertBox("error", messageOf(error), " ",
      h("a", { href: "#/files" }, "Go to My files")));
    return;
  }
  if (!ctx.alive()) return;
  if (info.type === "directory") {
    ctx.navigate(filesHash(info.path), { replace: true });
    return;
  }
  const dir = parentPath(info.path);
  const item = { id: info.id, name: info.name, type: info.type };
  setTitle(info.name);

  const downloadButton = h("button", { type: "button", class: "button primary" }, icon("download"),
    h("span", {}, "Download"));
  downloadButton.addEventListener("click", () => downloadItem(info).catch((e) => toast(messageOf(e), "error")));
  const rename = h("button", { type: "button", class: "button" }, "Rename");
  rename.addEventListener("click", async () => {
    const done = await renameItem(item, dir);
    if (done && done !== true) ctx.navigate(`#/file/${enc(info.id)}`);
  });
  const move = h("button", { type: "button", class: "button" }, "Move");
  move.addEventListener("click", async () => {
    const done = await moveItems([item], dir);
    if (done && done !== true) ctx.navigate(`#/file/${enc(info.id)}`);
  });
  const shareButton = h("button", { type: "button", class: "button" }, icon("share"),
    h("span", {}, "Share"));
  shareButton.addEventListener("click", () => shareDialog(item));
  const linkButton = h("button", { type: "button", class: "button" }, icon("link"),
    h("span", {}, "Get link"));
  linkButton.addEventListener("click", () => linkDialog(item));
  const remove = h("button", { type: "button", class: "button danger" }, "Delete");
  remove.addEventListener("click", async () => {
    if (await deleteItems([item], dir)) ctx.navigate(filesHash(dir));
  });

  const back = h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumb" }, h("ol", {},
    h("li", {}, h("a", { href: filesHash(dir) }, dir === "/" ? "My files" : dir)),
    h("li", {}, h("span", { "aria-current": "page" }, info.name))));

  // Where the current version is stored (own files only: a shared file's storage is its owner's).
  const current = currentVersion(info);
  if (current) {
    try {
      await locate(info.id, current);
    } catch {
      // Said where the shares are shown.
    }
    if (!ctx.alive()) return;
  }
  const durability = parseDurability(info.durability);
  const facts = h("dl", { class: "facts" },
    fact("Size", `${bytes(info.size)}${info.size >= 1000 ? ` (${info.size.toLocaleString()} bytes)` : ""}`),
    fact("Type", info.content_type || "—"),
    fact("Folder", dir === "/" ? "My files" : dir),
    fact("Modified", date(info.modified)),
    fact("Created", date(info.created)),
    fact("Durability", h("span", {}, h("code", {}, info.durability || "—"), " — ",
      describeDurability(info.durability))),
    fact("Encryption", h("span", {}, h("code", {}, info.encryption || "—"), " — ",
      describeEncryption(info.encryption))),
    fact("Chunks", chunksFact(info, durability)),
    info.sha256 ? fact("SHA-256", h("code", { class: "hash" }, info.sha256)) : null);

  const versions = [...(info.versions || [])].sort((a, b) => String(b.created).localeCompare(String(a.created)));
  const sharesBox = h("div", { class: "shares" });
  const versionRows = versions.map((version) => {
    const get = h("button", { type: "button", class: "button small",
      "aria-label": `Download version from ${date(version.created)}` }, "Download");
    get.addEventListener("click", () => downloadItem(info, version.version));
    const where = h("button", { type: "button", class: "button small ghost",
      "aria-label": `Show where the version from ${date(version.created)} is stored` }, "Shares");
    where.addEventListener("click", () => showShares(sharesBox, info.id, version, ctx));
    let drop = null;
    if (!version.current) {
      drop = h("button", { type: "button", class: "button small danger",
        "aria-label": `Delete the version from ${date(version.created)}` }, "Delete");
      drop.addEventListener("click", async () => {
        if (await deleteVersion(info, version, drop)) ctx.navigate(`#/file/${enc(info.id)}`);
      });
    }
    return h("tr", {},
      h("td", {}, date(version.created), " ", version.current ? badge("current", "info") : null),
      h("td", {}, bytes(version.size)),
      h("td", {}, h("code", {}, version.durability)),
      h("td", { class: "hide-narrow" }, h("code", {}, version.encryption)),
      h("td", { class: "row-actions" }, get, where, drop));
  });

  root.append(
    back,
    pageHeader(info.name, downloadButton, shareButton, linkButton, rename, move, remove),
    section("About this file", facts),
    section(`Versions (${info.versions_total ?? versions.length})`,
      h("p", { class: "muted" }, "Uploading a file with the same name adds a version; the newest is current. An earlier version can be deleted for good to free its space; the current one goes with the file."),
      (info.versions_total ?? 0) > versions.length
        ? h("p", { class: "muted" }, `The newest ${versions.length} are listed.`)
        : null,
      h("div", { class: "table-wrap" }, h("table", { class: "data-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Uploaded"), h("th", { scope: "col" }, "Size"),
          h("th", { scope: "col" }, "Durability"), h("th", { scope: "col", class: "hide-narrow" }, "Encryption"),
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
        h("tbody", {}, versionRows)))),
    section("Where the shares live", sharesBox));
  const shown = current || versions[0];
  if (shown) await showShares(sharesBox, info.id, shown, ctx);
  else sharesBox.append(h("p", { class: "muted" }, "This file has no stored versions."));
}

// An earlier version deleted for good (DELETE /info/{id}/versions/{version}); the server frees a
// huge one over several requests (202: ask again). True once gone.
async function deleteVersion(info, version, button) {
  const sure = await confirmDialog({
    title: `Delete the version from ${date(version.created)}?`,
    message: `It is deleted for good, not moved to the trash, and its ${bytes(version.size)} are freed. The file and its other versions stay.`,
    confirmLabel: "Delete", danger: true,
  });
  if (!sure) return false;
  busy(button, true);
  try {
    for (let round = 0; round < 20; round += 1) {
      const answer = await api.del(`/api/filesystem/info/${enc(info.id)}/versions/${enc(version.version)}`);
      if (!answer || answer.complete !== false) {
        toast(`Deleted the version from ${date(version.created)}.`, "success");
        return true;
      }
    }
    toast("The version is still being freed; delete it again to finish.", "error");
  } catch (error) {
    toast(messageOf(error), "error");
  } finally {
    busy(button, false);
  }
  return false;
}

function chunksFact(info, durability) {
  if (!info.size) return "None (empty file)";
  const shares = durability ? plural(durability.shares, "share") : "shares";
  const where = (currentVersion(info) || {}).where;
  if (where && where.packed) return `Packed with other small files into one chunk, cut into ${shares}`;
  // A shared file's storage is its owner's: its size tells how many chunks it has.
  const count = where ? where.chunks.length : chunkCount(info.size);
  return `${plural(count, "chunk")} of up to 4 MiB, each cut into ${shares}`;
}

// The chunks holding a version's content, as the server names them (a small file lives in a
// pack, content stored once in the chunks of the version that stored it first), kept on it.
async function locate(fileId, version) {
  if (!version.where) {
    version.where = await api.get(`/api/filesystem/chunks/${enc(fileId)}`, { version: version.version });
  }
  return version.where;
}

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

// The box's latest request: an answer to an earlier one (another version asked for before,
// slower to answer) is dropped, not drawn over the one asked for last.
const askedOf = new WeakMap();

async function showShares(box, fileId, version, ctx, limit = CHUNKS_SHOWN) {
  const asked = {};
  askedOf.set(box, asked);
  const current = () => ctx.alive() && askedOf.get(box) === asked;
  let where;
  try {
    where = await locate(fileId, version);
  } catch (error) {
    if (current()) box.replaceChildren(alertBox("error", messageOf(error)));
    return;
  }
  if (!current()) return;
  const chunks = where.chunks;
  const count = chunks.length;
  const what = where.packed ? "packed with other small files into one chunk"
    : count ? plural(count, "chunk") : "empty";
  const intro = h("p", { class: "muted" }, version.current ? "The current version" : `The version from ${date(version.created)}`,
    ` is ${what}. Each chunk is encrypted, then cut into shares that sit on different storages.`);
  if (!count) {
    box.replaceChildren(intro, h("p", {}, "An empty file has no shares."));
    return;
  }
  const shown = Math.min(count, limit);
  const status = h("p", { class: "muted", role: "status" }, `Checking ${plural(shown, "chunk")}…`);
  box.replaceChildren(intro, status);
  const ids = chunks.slice(0, shown);
  const results = await mapLimit(ids, 4, (chunkId) => api.get(`/api/chunk/${enc(chunkId)}/info`));
  if (!current()) return;

  const byStorage = new Map();
  let repairs = 0;
  let unreadable = 0;
  const rows = results.map((result, n) => {
    if (result.error) {
      return h("tr", { "data-chunk": ids[n] }, h("th", { scope: "row" }, `#${n + 1}`),
        h("td", { colspan: "2" }, alertBox("error", messageOf(result.error))));
    }
    const chunk = result.value;
    if (chunk.needs_repair) repairs += 1;
    if (!chunk.readable) unreadable += 1;
    for (const share of chunk.shares) {
      const name = share.storage_name || "a removed storage";
      byStorage.set(name, (byStorage.get(name) || 0) + 1);
    }
    const shares = h("ul", { class: "share-list" }, chunk.shares.map((share) => {
      const [label, kind] = HEALTH[share.health] || [share.health, "warn"];
      return h("li", { class: `share share-${kind}`, "data-storage": share.storage_name || "" },
        h("span", { class: "share-index" }, `Share ${share.index + 1}`),
        h("span", { class: "share-storage" }, share.storage_name || "removed storage"),
        badge(label, kind));
    }));
    const state = !chunk.readable ? badge("Cannot be read", "bad")
      : chunk.needs_repair ? badge("Awaiting repair", "warn") : badge("Healthy", "ok");
    const cells = [h("th", { scope: "row" }, `#${n + 1}`), h("td", {}, shares),
      h("td", { class: "chunk-state" }, state,
        h("div", { class: "muted small" }, `${chunk.healthy_shares} of ${chunk.shares.length} shares healthy; any ${chunk.needed_shares} rebuild it`))];
    if (chunk.needs_repair) {
      const repair = h("button", { type: "button", class: "button small" }, "Repair now");
      repair.addEventListener("click", async () => {
        busy(repair, true);
        try {
          const done = await api.post(`/api/chunk/${enc(chunk.chunk_id)}/repair`, {});
          toast(done.repaired && done.repaired.length
            ? `Re-created ${plural(done.repaired.length, "share")} of chunk #${n + 1}.`
            : `Chunk #${n + 1} needed no repair.`, "success");
          await showShares(box, fileId, version, ctx, limit);
        } catch (error) {
          toast(messageOf(error), "error");
          busy(repair, false);
        }
      });
      cells[2].append(repair);
    }
    return h("tr", { "data-chunk": chunk.chunk_id }, cells);
  });

  const summary = h("div", { class: "share-summary" },
    unreadable ? alertBox("error", `${plural(unreadable, "chunk")} cannot be read right now: too few healthy shares.`)
      : repairs ? alertBox("warning", `${plural(repairs, "chunk")} ${repairs === 1 ? "has" : "have"} shares missing or out of reach; the file is still readable. Repair now re-creates them elsewhere (the scheduled repair waits for a storage that is only away).`)
        : alertBox("success", "Every share checked is healthy."),
    h("p", {}, "Stored on: ", [...byStorage.entries()].map(([name, n], i) => [i ? ", " : "",
      h("strong", {}, name), ` (${plural(n, "share")})`])));
  const table = h("div", { class: "table-wrap" }, h("table", { class: "data-table shares-table" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Chunk"), h("th", { scope: "col" }, "Shares"),
      h("th", { scope: "col" }, "State"))),
    h("tbody", {}, rows)));
  const more = [];
  if (shown < count) {
    const all = h("button", { type: "button", class: "button" }, `Show all ${count} chunks`);
    all.addEventListener("click", () => showShares(box, fileId, version, ctx, count));
    more.push(h("p", { class: "muted" }, `Showing the first ${shown} of ${count} chunks. `, all));
  }
  box.replaceChildren(intro, summary, table, ...more);
}

