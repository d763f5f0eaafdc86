// The dashboard: how much is stored where, how redundant the data is, and what is at risk
// (storages offline or failing, chunks with shares missing or out of reach, files kept once).
//
// The API has no summary endpoint, so the redundancy picture and the share health come from a
// bounded scan: walk the tree, read each file's info, then each chunk's share health.
import { api, enc, messageOf } from "../api.js";
import { h } from "../dom.js";
import { bytes, describeDurability, joinPath, parseDurability, plural, relative } from "../format.js";
import { alertBox, badge, busy, pageHeader, section, toast } from "../ui.js";
import { loadMembers } from "./members.js";
import { kindLabel, storageState } from "./storages.js";

const MAX_FILES = 300;
const MAX_CHUNKS = 400;
const SCAN_TTL_MS = 2 * 60 * 1000;
let lastScan = null;       // {user, at, result}

async function pool(values, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < values.length) {
      const value = values[next];
      next += 1;
      await fn(value);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, values.length) }, worker));
}

async function collectFiles(limit) {
  const files = [];
  const queue = ["/"];
  let complete = true;
  while (queue.length) {
    const dir = queue.shift();
    let cursor = null;
    do {
      const page = await api.get("/api/filesystem/info", { path: dir, depth: 1, limit: 1000, cursor });
      for (const child of page.children || []) {
        const path = joinPath(dir, child.name);
        if (child.type === "directory") queue.push(path);
        else if (files.length < limit) files.push({ ...child, path });
        else complete = false;
      }
      cursor = page.next_cursor;
    } while (cursor);
    if (!complete) break;
  }
  return { files, complete: complete && !queue.length };
}

async function scan(onProgress) {
  const { files, complete } = await collectFiles(MAX_FILES);
  const infos = [];
  let done = 0;
  onProgress(`Reading ${plural(files.length, "file")}…`);
  await pool(files, 6, async (file) => {
    try {
      const info = await api.get(`/api/filesystem/info/${enc(file.id)}`);
      // The chunks holding it, as the server names them (a small file lives in a pack).
      const where = await api.get(`/api/filesystem/chunks/${enc(file.id)}`);
      infos.push({ ...info, path: file.path, chunks: where.chunks });
    } catch {
      // Deleted while scanning: skip.
    }
    done += 1;
    if (done % 10 === 0) onProgress(`Reading files… ${done} of ${files.length}`);
  });
  const chunks = [];
  const seen = new Set();       // a pack holds many small files: checked once
  for (const info of infos) {
    for (const id of info.chunks) {
      if (seen.has(id)) continue;
      seen.add(id);
      if (chunks.length < MAX_CHUNKS) chunks.push({ file: info, id });
    }
  }
  const chunkResults = [];
  done = 0;
  await pool(chunks, 6, async (chunk) => {
    try {
      chunkResults.push({ ...chunk, info: await api.get(`/api/chunk/${enc(chunk.id)}/info`) });
    } catch (error) {
      chunkResults.push({ ...chunk, error });
    }
    done += 1;
    if (done % 10 === 0) onProgress(`Checking shares… ${done} of ${chunks.length} chunks`);
  });
  const chunksTotal = seen.size;
  return { infos, chunkResults, complete: complete && chunks.length === chunksTotal,
    chunksTotal, at: Date.now() };
}

export default async function render(root, ctx) {
  const refresh = h("button", { type: "button", class: "button" }, "Check again");
  root.append(pageHeader(`Hello, ${ctx.me.username}`, refresh));
  const stats = h("div", { class: "stats", "aria-busy": "true" });
  const backends = h("div", { class: "backend-list" }, h("p", { class: "loading" }, "Loading…"));
  const redundancy = h("div", { class: "redundancy" }, h("p", { class: "loading" }, "Checking your files…"));
  const risks = h("div", { class: "risks" });
  const scanStatus = h("p", { class: "muted small", role: "status" });
  const onboarding = h("div");
  root.append(onboarding, stats,
    h("div", { class: "dashboard-grid" },
      section("At risk", risks, scanStatus),
      section("Redundancy of your data", redundancy),
      section("Used per backend", backends)));

  let storages = [];
  let members = [];
  let defaults = {};
  let usage = null;
  try {
    [storages, members, defaults, usage] = await Promise.all([
      api.get("/api/cloud/storages").then((a) => a.storages),
      loadMembers().catch(() => []),
      api.get("/api/filesystem/settings").catch(() => ({})),
      api.get("/api/filesystem/usage").catch(() => null),
    ]);
  } catch (error) {
    stats.removeAttribute("aria-busy");
    stats.replaceChildren(alertBox("error", messageOf(error)));
    return;
  }
  if (!ctx.alive()) return;
  const online = storages.filter((s) => s.online);
  if (storages.length < 2) onboarding.append(gettingStarted(storages.length));
  drawBackends(backends, storages);

  const drawAll = (result) => {
    drawStats(stats, storages, members, result, usage);
    drawRedundancy(redundancy, result, defaults, online.length);
    drawRisks(risks, storages, members, result, ctx);
    scanStatus.textContent = result
      ? (result.complete ? `Checked every chunk of ${plural(result.infos.length, "file")}.`
        : `Checked ${plural(result.chunkResults.length, "chunk")} of the first ${plural(result.infos.length, "file")} (a sample of a larger account).`)
      : "";
  };

  const runScan = async (force) => {
    const user = ctx.me.username;
    if (!force && lastScan && lastScan.user === user && Date.now() - lastScan.at < SCAN_TTL_MS) {
      drawAll(lastScan.result);
      return;
    }
    drawAll(null);
    busy(refresh, true);
    try {
      const result = await scan((text) => {
        if (ctx.alive()) scanStatus.textContent = text;
      });
      lastScan = { user, at: Date.now(), result };
      if (ctx.alive()) drawAll(result);
    } catch (error) {
      if (ctx.alive()) scanStatus.textContent = `Could not check your files: ${messageOf(error)}`;
    } finally {
      busy(refresh, false);
    }
  };
  refresh.addEventListener("click", async () => {
    try {
      [storages, usage] = await Promise.all([
        api.get("/api/cloud/storages").then((a) => a.storages),
        api.get("/api/filesystem/usage").catch(() => null)]);
      drawBackends(backends, storages);
    } catch (error) {
      toast(messageOf(error), "error");
    }
    runScan(true);
  });
  await runScan(false);
}

function gettingStarted(count) {
  return h("section", { class: "panel getting-started", "aria-label": "Getting started" },
    h("h2", { class: "panel-title" }, "Getting started"),
    h("ol", { class: "steps" },
      h("li", { class: count >= 1 ? "done" : "" }, h("a", { href: "#/storages" }, "Add a storage"),
        " — a folder, an S3 bucket, or a cloud account."),
      h("li", { class: count >= 2 ? "done" : "" }, h("a", { href: "#/storages" }, "Add a second one"),
        " so every chunk has a copy elsewhere."),
      h("li", {}, h("a", { href: "#/files" }, "Upload your files"), "."),
      h("li", {}, h("a", { href: "#/settings" }, "Choose how redundant"), " new files are.")));
}

function stat(label, value, detail) {
  return h("div", { class: "stat" }, h("p", { class: "stat-label" }, label),
    h("p", { class: "stat-value" }, value), detail ? h("p", { class: "stat-detail muted" }, detail) : null);
}

// What the account keeps, counted once (GET /api/filesystem/usage): against the quota, and
// where it is (files and their versions, the trash, deleted small files until compaction).
function spaceStat(usage) {
  if (!usage) return stat("Your space", "—", "not known now");
  const quota = usage.quota_bytes || 0;
  const parts = [`files ${bytes(usage.live_bytes)}`, `trash ${bytes(usage.trash_bytes)}`];
  if (usage.dead_bytes) parts.push(`${bytes(usage.dead_bytes)} freed by the next compaction`);
  return stat("Your space", quota ? `${bytes(usage.stored_bytes)} of ${bytes(quota)}`
    : bytes(usage.stored_bytes), parts.join(" · "));
}

function drawStats(box, storages, members, result, usage) {
  box.removeAttribute("aria-busy");
  const stored = storages.reduce((sum, s) => sum + (s.stored_bytes || 0), 0);
  const logical = result ? result.infos.reduce((sum, f) => sum + (f.size || 0), 0) : null;
  // Only a count of every file gives a ratio: a sample ("300+") would inflate it many times.
  const whole = Boolean(result && result.complete);
  // The shares against what they hold (every version, the trash): the scan's files are the
  // current versions only, which made the ratio look larger than it is.
  const kept = usage ? usage.stored_bytes : null;
  // `online`: taking new shares now. A draining storage takes none by the user's choice; it is
  // not unreachable.
  const online = storages.filter((s) => s.online).length;
  const draining = storages.filter((s) => s.status === "draining").length;
  const away = storages.length - online - draining;
  const notTaking = [away ? `${away} unreachable or needing attention` : "",
    draining ? `${draining} draining` : ""].filter(Boolean).join(", ");
  const membersOnline = members.filter((m) => m.online).length;
  box.replaceChildren(
    stat("Your files", result ? `${result.infos.length}${result.complete ? "" : "+"}` : "…",
      logical !== null ? `${bytes(logical)}${whole ? "" : " or more"}` : "counting…"),
    stat("Stored on backends", bytes(stored), kept
      ? `${(stored / kept).toFixed(2)}× what you keep, encrypted and spread out` : "encrypted shares"),
    spaceStat(usage),
    stat("Storages online", `${online} of ${storages.length}`, notTaking || "all reachable"),
    stat("Members online", `${membersOnline} of ${members.length}`, members.length ? "machines of yours" : "none added"));
}

function drawBackends(box, storages) {
  if (!storages.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No storages yet. ", h("a", { href: "#/storages" }, "Add one")));
    return;
  }
  const total = storages.reduce((sum, s) => sum + (s.stored_bytes || 0), 0);
  box.replaceChildren(h("ul", { class: "bars" }, [...storages]
    .sort((a, b) => (b.stored_bytes || 0) - (a.stored_bytes || 0))
    .map((s) => {
      const [state, kind] = storageState(s);
      const share = total ? (s.stored_bytes || 0) / total : 0;
      return h("li", { class: "bar-row", "data-storage": s.name },
        h("div", { class: "bar-head" }, h("strong", {}, s.name), " ", badge(state, kind),
          h("span", { class: "muted small" }, ` ${kindLabel(s.kind)}`)),
        h("div", { class: "bar", role: "img", "aria-label": `${s.name} holds ${bytes(s.stored_bytes)}, ${(share * 100).toFixed(0)}% of your stored data` },
          h("div", { class: "bar-fill", style: { width: `${(share * 100).toFixed(1)}%` } })),
        h("p", { class: "small" }, `${bytes(s.stored_bytes)} in ${plural(s.shares, "share")}`,
          s.capacity ? ` · ${bytes(s.used)} of ${bytes(s.capacity)} used in all (measured ${relative(s.used_measured_at)})` : ""));
    })));
}

function drawRedundancy(box, result, defaults, usable) {
  if (!result) {
    box.replaceChildren(h("p", { class: "loading" }, "Checking your files…"));
    return;
  }
  if (!result.infos.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No files yet. New files use ",
      h("strong", {}, defaults.durability || (usable >= 2 ? "raid1(2)" : "raid1(1)")), ": ",
      describeDurability(defaults.durability || (usable >= 2 ? "raid1(2)" : "raid1(1)")), "."));
    return;
  }
  const groups = new Map();
  for (const info of result.infos) {
    const key = info.durability || "unknown";
    const group = groups.get(key) || { files: 0, size: 0 };
    group.files += 1;
    group.size += info.size || 0;
    groups.set(key, group);
  }
  const total = [...groups.values()].reduce((sum, g) => sum + g.size, 0) || 1;
  const sorted = [...groups.entries()].sort((a, b) => b[1].size - a[1].size);
  const levelOf = (scheme) => {
    const d = parseDurability(scheme);
    if (!d || d.tolerates === 0) return "bad";
    return d.tolerates === 1 ? "ok" : "great";
  };
  box.replaceChildren(
    h("div", { class: "stacked", role: "img", "aria-label": sorted.map(([k, g]) =>
      `${k}: ${Math.round((g.size / total) * 100)}%`).join(", ") },
    sorted.map(([key, g]) => h("div", { class: `stacked-part level-${levelOf(key)}`,
      style: { width: `${Math.max(2, (g.size / total) * 100).toFixed(1)}%` } }))),
    h("ul", { class: "legend" }, sorted.map(([key, g]) => h("li", { "data-scheme": key },
      h("span", { class: `swatch level-${levelOf(key)}`, "aria-hidden": "true" }),
      h("div", {}, h("strong", {}, key), ` — ${plural(g.files, "file")}, ${bytes(g.size)}`,
        h("div", { class: "muted small" }, describeDurability(key)))))),
    h("p", { class: "muted small" }, "New files use ", h("strong", {}, defaults.durability || "automatic durability"),
      ". ", h("a", { href: "#/settings" }, "Change")));
}

function drawRisks(box, storages, members, result, ctx) {
  const items = [];
  for (const s of storages) {
    const [state] = storageState(s);
    const problem = s.last_error
      ? h("div", { class: "small" }, `Last problem${s.last_error_at ? ` (${relative(s.last_error_at)})` : ""}: ${s.last_error}`)
      : null;
    if (s.status === "draining") {
      // Draining takes no new shares; its shares are read and moved, not lost.
      items.push(alertBox("info", h("strong", {}, `${s.name} is draining. `),
        s.shares ? `${plural(s.shares, "share")} on it are moving to your other storages.`
          : "It holds no shares any more; you can remove it.", problem));
    } else if (!s.online) {
      items.push(alertBox("error", h("strong", {}, `${s.name} is ${state.toLowerCase()}. `),
        s.shares ? `${plural(s.shares, "share")} on it cannot be read until it is back; files stay readable while their other shares suffice.`
          : "It holds no shares.", problem));
    } else if (s.capacity && s.free !== null && s.free !== undefined && s.free / s.capacity < 0.1) {
      items.push(alertBox("warning", h("strong", {}, `${s.name} is nearly full: `), `${bytes(s.free)} free.`));
    }
  }
  for (const m of members.filter((member) => !member.online && member.shares)) {
    items.push(alertBox("warning", h("strong", {}, `Member ${m.name} is offline. `),
      `${plural(m.shares, "share")} on it are unavailable until it reconnects.`));
  }
  if (result) {
    const repair = result.chunkResults.filter((c) => c.info && c.info.needs_repair && c.info.readable);
    const unreadable = result.chunkResults.filter((c) => c.info && !c.info.readable);
    if (unreadable.length) {
      items.push(alertBox("error", h("strong", {}, `${plural(unreadable.length, "chunk")} cannot be read now`),
        ` (too few healthy shares) in: `, fileLinks(unreadable)));
    }
    if (repair.length) {
      const fix = h("button", { type: "button", class: "button small" }, "Repair now");
      fix.addEventListener("click", async () => {
        busy(fix, true);
        let fixed = 0;
        for (const c of repair) {
          try {
            const done = await api.post(`/api/chunk/${enc(c.id)}/repair`, {});
            fixed += (done.repaired || []).length;
          } catch (error) {
            toast(messageOf(error), "error");
          }
        }
        toast(`Re-created ${plural(fixed, "share")}.`, "success");
        lastScan = null;
        if (ctx.alive()) ctx.navigate("#/");
      });
      items.push(alertBox("warning", h("strong", {}, `${plural(repair.length, "chunk")} ${repair.length === 1 ? "has" : "have"} shares missing or out of reach`),
        ` (still readable) in: `, fileLinks(repair), " ", fix));
    }
    const single = result.infos.filter((f) => parseDurability(f.durability)?.tolerates === 0);
    if (single.length && storages.filter((s) => s.online).length >= 2) {
      items.push(alertBox("warning", h("strong", {}, `${plural(single.length, "file")} kept in a single copy. `),
        "Losing the storage that holds a share loses the file. Upload them again after choosing more durability in ",
        h("a", { href: "#/settings" }, "Settings"), "."));
    }
  }
  if (!items.length) {
    items.push(result ? alertBox("success", "Nothing at risk: every storage is online and every share checked is healthy.")
      : h("p", { class: "loading" }, "Checking shares…"));
  }
  box.replaceChildren(...items);
}

function fileLinks(chunks) {
  const files = new Map();
  for (const c of chunks) files.set(c.file.id, c.file);
  const list = [...files.values()];
  const shown = list.slice(0, 5);
  return [shown.map((f, i) => [i ? ", " : "", h("a", { href: `#/file/${enc(f.id)}` }, f.path)]),
    list.length > shown.length ? ` and ${list.length - shown.length} more` : ""];
}

