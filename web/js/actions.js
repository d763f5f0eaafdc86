// What can be done to files and folders, shared by the file browser and the details page.
import { api, enc } from "./api.js";
import { h, icon, nextId } from "./dom.js";
import { joinPath, normalizePath, parentPath, plural } from "./format.js";
import { download } from "./transfers.js";
import { confirmDialog, openDialog, promptDialog, toast } from "./ui.js";

// Folders of a directory, for the tree and the move dialog (cached per path).
const folderCache = new Map();

export async function foldersOf(path, { fresh = false } = {}) {
  if (!fresh && folderCache.has(path)) return folderCache.get(path);
  const folders = [];
  let cursor = null;
  do {
    const page = await api.get("/api/filesystem/info", { path, depth: 1, limit: 1000, cursor });
    for (const child of page.children || []) {
      if (child.type === "directory") folders.push(child);
    }
    cursor = page.next_cursor;
  } while (cursor && folders.length < 5000);
  folders.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  folderCache.set(path, folders);
  return folders;
}

export function cachedFolders(path) {
  return folderCache.get(path);
}

export function forgetFolders(...paths) {
  for (const path of paths) {
    if (!path) continue;
    folderCache.delete(path);
    // A renamed or deleted folder takes its subfolders' cached listings with it.
    for (const key of [...folderCache.keys()]) {
      if (key.startsWith(`${path === "/" ? "" : path}/`)) folderCache.delete(key);
    }
  }
}

function announce(dir) {
  window.dispatchEvent(new CustomEvent("cloudstrype:changed", { detail: { dir } }));
}

export function checkName(name) {
  if (!name) throw new Error("Enter a name.");
  if (name.includes("/")) throw new Error("A name cannot contain '/'.");
  if (name === "." || name === "..") throw new Error(`'${name}' is not a valid name.`);
}

function nameError(fn) {
  return async (value) => {
    try {
      checkName(value);
    } catch (error) {
      const { ApiError } = await import("./api.js");
      throw new ApiError(error.message);
    }
    return fn(value);
  };
}

// item: {id, name, type, path?}; dir: the folder it is in.
export async function renameItem(item, dir) {
  const kind = item.type === "directory" ? "folder" : "file";
  const done = await promptDialog({
    title: `Rename ${kind}`, label: "New name", value: item.name, submitLabel: "Rename",
    selectStem: item.type !== "directory",
    onSubmit: nameError(async (name) => {
      if (name === item.name) return item;
      return api.post(`/api/filesystem/info/${enc(item.id)}`, { name });
    }),
  });
  if (done && done !== true) {
    if (item.type === "directory") forgetFolders(dir, joinPath(dir, item.name));
    announce(dir);
    toast(`Renamed to ${done.name}.`, "success");
  }
  return done;
}

export async function newFolder(dir) {
  const created = await promptDialog({
    title: "New folder", label: "Folder name", submitLabel: "Create",
    help: `It is created in ${dir === "/" ? "My files" : dir}.`,
    onSubmit: nameError((name) => api.post("/api/filesystem/dirs", { path: joinPath(dir, name) },
      { raw: true }).then(async (response) => ({ existed: response.status === 200,
      node: await response.json() }))),
  });
  if (created && created !== true) {
    forgetFolders(dir);
    announce(dir);
    toast(created.existed ? `The folder ${created.node.name} exists already.`
      : `Created the folder ${created.node.name}.`, created.existed ? "info" : "success");
  }
  return created;
}

export async function deleteItems(items, dir) {
  if (!items.length) return false;
  const one = items.length === 1 ? items[0] : null;
  const folders = items.filter((item) => item.type === "directory").length;
  const title = one ? `Delete ${one.type === "directory" ? "folder" : "file"}?`
    : `Delete ${plural(items.length, "item")}?`;
  const what = one ? `“${one.name}”` : plural(items.length, "item");
  const message = folders
    ? `${what} and everything inside ${folders > 1 || !one ? "the folders" : "it"} will move to the trash with every version. You can restore ${one ? "it" : "them"} from the Trash page until the trash is emptied.`
    : `${what} will move to the trash with every version. You can restore ${one ? "it" : "them"} from the Trash page until the trash is emptied.`;
  const sure = await confirmDialog({ title, message, confirmLabel: "Delete", danger: true });
  if (!sure) return false;
  const failures = [];
  for (const item of items) {
    try {
      await api.del(`/api/filesystem/info/${enc(item.id)}`);
      if (item.type === "directory") forgetFolders(joinPath(dir, item.name));
    } catch (error) {
      failures.push(`${item.name}: ${error.message}`);
    }
  }
  forgetFolders(dir);
  announce(dir);
  if (failures.length) toast(`Some items were not deleted. ${failures.join(" ")}`, "error");
  else toast(one ? `Deleted ${one.name}.` : `Deleted ${plural(items.length, "item")}.`, "success");
  return failures.length === 0;
}

// A small folder browser: pick (or type) the destination folder.
function folderPicker(start) {
  const inputId = nextId("move-target");
  const input = h("input", { id: inputId, name: "target", type: "text", value: start, required: true,
    autocomplete: "off", spellcheck: "false" });
  const list = h("ul", { class: "picker-list", "aria-label": "Folders" });
  const status = h("p", { class: "muted picker-status", role: "status" });
  let shown = null;

  const show = async (path) => {
    shown = path;
    input.value = path;
    list.replaceChildren();
    status.textContent = "Loading folders…";
    try {
      const folders = await foldersOf(path);
      if (shown !== path) return;
      status.textContent = folders.length ? "" : "No folders here.";
      if (path !== "/") {
        const up = h("button", { type: "button", class: "picker-item" }, "↑ Up one level");
        up.addEventListener("click", () => show(parentPath(path)));
        list.append(h("li", {}, up));
      }
      for (const folder of folders) {
        const target = joinPath(path, folder.name);
        const open = h("button", { type: "button", class: "picker-item",
          "aria-label": `Open folder ${folder.name}` }, icon("folder"), h("span", {}, folder.name));
        open.addEventListener("click", () => show(target));
        list.append(h("li", {}, open));
      }
    } catch (error) {
      status.textContent = error.message;
    }
  };
  show(start);
  const body = [
    h("div", { class: "field" }, h("label", { for: inputId }, "Move to folder"), input,
      h("p", { class: "help" }, "Open a folder below or type a path; missing folders are created.")),
    status, list,
  ];
  return { body, input };
}

export async function moveItems(items, dir) {
  if (!items.length) return false;
  const picker = folderPicker(dir);
  const label = items.length === 1 ? `“${items[0].name}”` : plural(items.length, "item");
  const result = await openDialog({
    title: `Move ${label}`, body: picker.body, submitLabel: "Move here", wide: true,
    onSubmit: async () => {
      const target = normalizePath(picker.input.value.trim());
      if (target === dir) {
        const { ApiError } = await import("./api.js");
        throw new ApiError("That is the folder they are in already; choose another.");
      }
      const moved = [];
      for (const item of items.filter((it) => !it.moved)) {
        try {
          await api.post(`/api/filesystem/info/${enc(item.id)}`, { path: target });
        } catch (error) {
          if (moved.length) {
            forgetFolders(dir, target);
            announce(dir);
          }
          error.message = items.length > 1 ? `${item.name}: ${error.message}` : error.message;
          throw error;
        }
        item.moved = true;
        moved.push(item);
      }
      return { target, moved };
    },
  });
  if (result && result !== true) {
    forgetFolders(dir, result.target);
    announce(dir);
    announce(result.target);
    toast(`Moved ${label} to ${result.target === "/" ? "My files" : result.target}.`, "success");
  }
  return result;
}

export async function downloadItem(item, version) {
  const info = item.versions ? item : await api.get(`/api/filesystem/info/${enc(item.id)}`);
  const chosen = version ? (info.versions || []).find((v) => v.version === version) : null;
  download({ id: info.id, name: info.name, size: chosen ? chosen.size : info.size,
    version: chosen ? chosen.version : info.version, contentType: info.content_type,
    sha256: chosen ? chosen.sha256 : info.sha256 });
}
