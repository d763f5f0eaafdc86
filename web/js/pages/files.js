// The file browser: breadcrumbs, a folder tree, a sortable listing, selection, upload by picker
// and drag-and-drop (files and whole folders), and the actions on each item.
import { api, ApiError, messageOf } from "../api.js";
import { h, icon, nextId } from "../dom.js";
import { bytes, date, joinPath, normalizePath, parentPath, plural } from "../format.js";
import { cachedFolders, deleteItems, downloadItem, foldersOf, forgetFolders, moveItems,
  newFolder, renameItem } from "../actions.js";
import { enqueueUploads } from "../transfers.js";
import { linkDialog, shareDialog } from "../sharing.js";
import { alertBox, emptyState, menuButton, pageHeader } from "../ui.js";

const SORT_KEY = "cloudstrype.sort";
const expanded = new Set(["/"]);
let sort = readSort();

function readSort() {
  try {
    const value = JSON.parse(localStorage.getItem(SORT_KEY) || "null");
    if (value && ["name", "size", "modified"].includes(value.key)) return value;
  } catch {
    // ignore
  }
  return { key: "name", dir: "asc" };
}

export function filesHash(path) {
  return path === "/" ? "#/files" : `#/files?path=${encodeURIComponent(path)}`;
}

async function listAll(path) {
  const entries = [];
  let node = null;
  let cursor = null;
  do {
    const page = await api.get("/api/filesystem/info", { path, depth: 1, limit: 1000, cursor });
    node = node || page;
    entries.push(...(page.children || []));
    cursor = page.next_cursor;
  } while (cursor && entries.length < 50000);
  return { node, entries };
}

function compare(a, b) {
  if (a.type !== b.type) return a.type === "directory" ? -1 : 1;
  let result = 0;
  if (sort.key === "size") result = (a.size || 0) - (b.size || 0);
  else if (sort.key === "modified") result = String(a.modified).localeCompare(String(b.modified));
  if (result === 0) result = a.name.localeCompare(b.name, undefined, { numeric: true, sensitivity: "base" });
  return sort.dir === "asc" ? result : -result;
}

export default async function render(root, ctx) {
  const path = normalizePath(ctx.query.get("path") || "/");
  let entries = [];
  const selected = new Set();

  // -- frame -------------------------------------------------------------------------------------
  const filesInput = h("input", { type: "file", multiple: true, class: "visually-hidden",
    id: "upload-files-input", tabindex: "-1", "aria-label": "Choose files to upload" });
  const folderInput = h("input", { type: "file", multiple: true, webkitdirectory: true,
    class: "visually-hidden", id: "upload-folder-input", tabindex: "-1",
    "aria-label": "Choose a folder to upload" });
  const uploadFiles = h("button", { type: "button", class: "button primary" }, icon("upload"),
    h("span", {}, "Upload files"));
  const uploadFolder = h("button", { type: "button", class: "button" }, icon("upload"),
    h("span", {}, "Upload folder"));
  const makeFolder = h("button", { type: "button", class: "button" }, icon("newfolder"),
    h("span", {}, "New folder"));
  uploadFiles.addEventListener("click", () => filesInput.click());
  uploadFolder.addEventListener("click", () => folderInput.click());
  makeFolder.addEventListener("click", () => newFolder(path));
  filesInput.addEventListener("change", () => {
    const files = [...filesInput.files];
    filesInput.value = "";
    if (files.length) enqueueUploads(files.map((file) => ({ file, dir: path })));
  });
  folderInput.addEventListener("change", () => {
    const files = [...folderInput.files];
    folderInput.value = "";
    if (!files.length) return;
    enqueueUploads(files.map((file) => {
      const relative = file.webkitRelativePath || file.name;
      const folder = relative.includes("/") ? relative.slice(0, relative.lastIndexOf("/")) : "";
      return { file, dir: folder ? normalizePath(joinPath(path, folder)) : path };
    }));
  });

  const crumbs = breadcrumbs(path);
  const selectionBar = h("div", { class: "selection-bar", hidden: true, role: "region",
    "aria-label": "Selected items" });
  const notices = h("div", { class: "notices" });
  const listing = h("div", { class: "listing", "aria-busy": "true" },
    h("p", { class: "loading", role: "status" }, "Loading…"));
  const dropHint = h("div", { class: "drop-hint", "aria-hidden": "true" },
    icon("upload"), h("span", {}, `Drop to upload to ${path === "/" ? "My files" : path}`));
  const filesArea = h("section", { class: "files-area", "aria-label": "Folder contents" },
    selectionBar, listing, dropHint);
  const treeBox = h("div", { class: "tree" });
  const treePanel = h("details", { class: "tree-panel", open: window.matchMedia("(min-width: 900px)").matches },
    h("summary", {}, "Folders"), h("nav", { "aria-label": "Folders" }, treeBox));

  root.append(
    pageHeader("Files", uploadFiles, uploadFolder, makeFolder),
    filesInput, folderInput, crumbs, notices,
    h("div", { class: "files-layout" }, treePanel, filesArea));

  // -- tree --------------------------------------------------------------------------------------
  for (let p = path; ; p = parentPath(p)) {
    expanded.add(p);
    if (p === "/") break;
  }

  const drawTree = () => {
    const build = (dirPath, label) => {
      const isCurrent = dirPath === path;
      const children = cachedFolders(dirPath);
      const open = expanded.has(dirPath);
      const leaf = children && children.length === 0;
      const twisty = h("button", { type: "button", class: `twisty${open ? " open" : ""}`,
        "aria-expanded": String(open && !leaf), hidden: leaf,
        "aria-label": `${open ? "Hide" : "Show"} folders in ${label}` }, icon("chevron"));
      twisty.addEventListener("click", () => {
        if (expanded.has(dirPath)) expanded.delete(dirPath);
        else expanded.add(dirPath);
        drawTree();
      });
      const link = h("a", { href: filesHash(dirPath), class: "tree-link",
        "aria-current": isCurrent ? "page" : undefined }, icon("folder"), h("span", {}, label));
      const li = h("li", {}, h("div", { class: `tree-row${isCurrent ? " current" : ""}` },
        leaf ? h("span", { class: "twisty-space" }) : twisty, link));
      if (open && children && children.length) {
        li.append(h("ul", {}, children.map((child) => build(joinPath(dirPath, child.name), child.name))));
      } else if (open && !children) {
        li.append(h("ul", {}, h("li", { class: "muted tree-loading" }, "Loading…")));
        foldersOf(dirPath).then(() => ctx.alive() && drawTree()).catch(() => {
          expanded.delete(dirPath);
        });
      }
      return li;
    };
    treeBox.replaceChildren(h("ul", { class: "tree-root" }, build("/", "My files")));
  };
  drawTree();

  // -- listing -----------------------------------------------------------------------------------
  const updateSelection = () => {
    const chosen = entries.filter((entry) => selected.has(entry.id));
    selectionBar.hidden = chosen.length === 0;
    if (!chosen.length) {
      selectionBar.replaceChildren();
      return;
    }
    const move = h("button", { type: "button", class: "button small" }, "Move");
    const remove = h("button", { type: "button", class: "button small danger" }, "Delete");
    const clear = h("button", { type: "button", class: "button small ghost" }, "Clear selection");
    move.addEventListener("click", () => moveItems(chosen, path));
    remove.addEventListener("click", () => deleteItems(chosen, path));
    clear.addEventListener("click", () => {
      selected.clear();
      drawListing();
    });
    selectionBar.replaceChildren(h("span", { class: "selection-count" },
      `${plural(chosen.length, "item")} selected`), move, remove, clear);
  };

  const sortButton = (key, label) => {
    const active = sort.key === key;
    const button = h("button", { type: "button", class: "sort-button" }, label,
      h("span", { class: "sort-mark", "aria-hidden": "true" }, active ? (sort.dir === "asc" ? "▲" : "▼") : ""));
    button.addEventListener("click", () => {
      sort = { key, dir: active && sort.dir === "asc" ? "desc" : "asc" };
      try {
        localStorage.setItem(SORT_KEY, JSON.stringify(sort));
      } catch {
        // ignore
      }
      drawListing();
      listing.querySelector(`th[data-key="${key}"] button`)?.focus();
    });
    return h("th", { scope: "col", "data-key": key, class: `col-${key}`,
      "aria-sort": active ? (sort.dir === "asc" ? "ascending" : "descending") : "none" }, button);
  };

  const rowFor = (entry) => {
    const isDir = entry.type === "directory";
    const target = joinPath(path, entry.name);
    const check = h("input", { type: "checkbox", checked: selected.has(entry.id),
      "aria-label": `Select ${entry.name}` });
    check.addEventListener("change", () => {
      if (check.checked) selected.add(entry.id);
      else selected.delete(entry.id);
      row.classList.toggle("selected", check.checked);
      updateSelection();
      syncAll();
    });
    const link = h("a", { href: isDir ? filesHash(target) : `#/file/${encodeURIComponent(entry.id)}`,
      class: "item-link" }, icon(isDir ? "folder" : "file"), h("span", { class: "item-name" }, entry.name));
    const item = { id: entry.id, name: entry.name, type: entry.type, size: entry.size };
    const actions = menuButton(`Actions for ${entry.name}`, [
      isDir ? { label: "Open", icon: "folder", onSelect: () => ctx.navigate(filesHash(target)) }
        : { label: "Download", icon: "download", onSelect: () => downloadItem(item).catch(showProblem) },
      isDir ? null : { label: "Details", icon: "file",
        onSelect: () => ctx.navigate(`#/file/${encodeURIComponent(entry.id)}`) },
      { label: "Share", icon: "share", onSelect: () => shareDialog(item) },
      { label: "Get link", icon: "link", onSelect: () => linkDialog(item) },
      { label: "Rename", onSelect: () => renameItem(item, path) },
      { label: "Move", onSelect: () => moveItems([item], path) },
      { label: "Delete", danger: true, icon: "close", onSelect: () => deleteItems([item], path) },
    ]);
    const row = h("tr", { class: selected.has(entry.id) ? "selected" : "", "data-id": entry.id,
      "data-name": entry.name, "data-type": entry.type },
    h("td", { class: "col-select" }, check),
    h("td", { class: "col-name" }, link),
    h("td", { class: "col-size" }, isDir ? h("span", { class: "muted" }, "Folder") : bytes(entry.size)),
    h("td", { class: "col-modified" }, date(entry.modified)),
    h("td", { class: "col-actions" }, actions));
    return row;
  };

  let selectAll = null;
  const syncAll = () => {
    if (!selectAll) return;
    const count = entries.filter((entry) => selected.has(entry.id)).length;
    selectAll.checked = count > 0 && count === entries.length;
    selectAll.indeterminate = count > 0 && count < entries.length;
  };

  const drawListing = () => {
    listing.removeAttribute("aria-busy");
    for (const id of [...selected]) if (!entries.some((entry) => entry.id === id)) selected.delete(id);
    if (!entries.length) {
      selectAll = null;
      listing.replaceChildren(emptyState("This folder is empty.",
        "Drop files or folders here, or use Upload files."));
      updateSelection();
      return;
    }
    selectAll = h("input", { type: "checkbox", "aria-label": "Select all" });
    selectAll.addEventListener("change", () => {
      for (const entry of entries) {
        if (selectAll.checked) selected.add(entry.id);
        else selected.delete(entry.id);
      }
      drawListing();
      listing.querySelector("thead input")?.focus();
    });
    const sorted = [...entries].sort(compare);
    const captionId = nextId("caption");
    listing.replaceChildren(h("table", { class: "file-table", "aria-labelledby": captionId },
      h("caption", { id: captionId, class: "visually-hidden" },
        `Contents of ${path === "/" ? "My files" : path}, sorted by ${sort.key} ${sort.dir === "asc" ? "ascending" : "descending"}`),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", class: "col-select" }, selectAll),
        sortButton("name", "Name"), sortButton("size", "Size"), sortButton("modified", "Modified"),
        h("th", { scope: "col", class: "col-actions" }, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, sorted.map(rowFor))),
    h("p", { class: "muted listing-summary" }, summaryText(entries)));
    syncAll();
    updateSelection();
  };

  const showProblem = (error) => {
    notices.replaceChildren(alertBox("error", messageOf(error)));
  };

  let loading = null;
  const load = async () => {
    if (loading) return loading;
    loading = (async () => {
      try {
        const result = await listAll(path);
        if (!ctx.alive()) return;
        if (result.node.type !== "directory") {
          ctx.navigate(`#/file/${encodeURIComponent(result.node.id)}`, { replace: true });
          return;
        }
        entries = result.entries;
        drawListing();
      } catch (error) {
        if (!ctx.alive()) return;
        listing.removeAttribute("aria-busy");
        const back = h("a", { href: "#/files" }, "Go to My files");
        listing.replaceChildren(alertBox("error", messageOf(error), " ",
          error instanceof ApiError && error.status === 404 ? back : null));
      } finally {
        loading = null;
      }
    })();
    return loading;
  };

  // Reload when something changes in this folder (uploads, renames, moves, deletes).
  let timer = null;
  const onChanged = (event) => {
    const dir = event.detail && event.detail.dir;
    if (!dir || event.detail.share) return;        // a change inside someone's share
    const inside = dir === path || dir.startsWith(`${path === "/" ? "" : path}/`);
    if (dir !== path && inside) forgetFolders(path);
    if (inside || dir === parentPath(path)) {
      clearTimeout(timer);
      timer = setTimeout(() => {
        load();
        drawTree();
      }, 250);
    } else {
      drawTree();
    }
  };
  window.addEventListener("cloudstrype:changed", onChanged);
  ctx.onLeave(() => {
    window.removeEventListener("cloudstrype:changed", onChanged);
    clearTimeout(timer);
  });

  setupDrop(filesArea, path);
  await load();
  hintWhenNoStorage(notices, ctx);
}

function summaryText(entries) {
  const folders = entries.filter((entry) => entry.type === "directory").length;
  const files = entries.length - folders;
  const size = entries.reduce((sum, entry) => sum + (entry.type === "file" ? entry.size || 0 : 0), 0);
  const parts = [];
  if (folders) parts.push(plural(folders, "folder"));
  if (files) parts.push(`${plural(files, "file")} (${bytes(size)})`);
  return parts.join(", ");
}

function breadcrumbs(path) {
  const list = h("ol", {});
  const names = path.split("/").filter(Boolean);
  const items = [{ label: "My files", path: "/" }];
  names.forEach((name, index) => items.push({ label: name, path: `/${names.slice(0, index + 1).join("/")}` }));
  items.forEach((item, index) => {
    const last = index === items.length - 1;
    list.append(h("li", {}, last
      ? h("span", { "aria-current": "page" }, item.label)
      : h("a", { href: filesHash(item.path) }, item.label)));
  });
  return h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumb" }, list);
}

async function hintWhenNoStorage(notices, ctx) {
  try {
    const { storages } = await api.get("/api/cloud/storages");
    if (!ctx.alive() || storages.some((s) => s.online)) return;
    notices.append(alertBox("warning", storages.length
      ? "None of your storages is online, so uploads cannot be stored right now. "
      : "You have no storage yet, so there is nowhere to keep uploads. ",
    h("a", { href: "#/storages" }, storages.length ? "Check your storages" : "Add a storage")));
  } catch {
    // The hint is a convenience; the listing is what matters.
  }
}

// -- drag and drop --------------------------------------------------------------------------------

function setupDrop(area, path) {
  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  area.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth += 1;
    area.classList.add("dragging");
  });
  area.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  area.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) area.classList.remove("dragging");
  });
  area.addEventListener("drop", async (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    area.classList.remove("dragging");
    // Entries must be taken while the event runs; the DataTransfer empties afterwards.
    const entries = [...(event.dataTransfer.items || [])]
      .filter((item) => item.kind === "file")
      .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
    const plain = [...(event.dataTransfer.files || [])];
    let files = [];
    const emptyDirs = [];
    if (entries.length && entries.every(Boolean)) {
      for (const entry of entries) await walk(entry, path, files, emptyDirs);
    } else {
      files = plain.map((file) => ({ file, dir: path }));
    }
    if (files.length || emptyDirs.length) enqueueUploads(files, emptyDirs);
  });
}

async function walk(entry, dir, files, emptyDirs) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    files.push({ file, dir });
    return;
  }
  if (!entry.isDirectory) return;
  const sub = joinPath(dir, entry.name);
  const reader = entry.createReader();
  let count = 0;
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) {
      count += 1;
      await walk(child, sub, files, emptyDirs);
    }
  }
  if (!count) emptyDirs.push(sub);
}
