// "Shared with me": the shares granted to the user (directly or through a group), and the inside
// of one: #/shared/<share id>?path=/sub. Paths there start at the shared item; every request
// names the share with ?share= (docs/sharing-api.md). With write access: upload, new folder,
// delete.
import { api, ApiError, enc, messageOf } from "../api.js";
import { h, icon, nextId, setTitle } from "../dom.js";
import { bytes, date, joinPath, normalizePath, parentPath, plural } from "../format.js";
import { download, enqueueUploads } from "../transfers.js";
import { alertBox, badge, confirmDialog, emptyState, pageHeader, promptDialog, toast } from "../ui.js";

const LEVELS = { read: "Can view", write: "Can edit" };

function sharedHash(shareId, path = "/") {
  return `#/shared/${encodeURIComponent(shareId)}${path === "/" ? "" : `?path=${encodeURIComponent(path)}`}`;
}

export default async function render(root, ctx) {
  if (ctx.params[0]) return renderShare(root, ctx, ctx.params[0]);
  root.append(pageHeader("Shared with me"));
  const box = h("div", { class: "listing scroll-x", "aria-busy": "true" },
    h("p", { class: "loading", role: "status" }, "Loading…"));
  root.append(box);
  let shares;
  let truncated = false;
  try {
    ({ shares, truncated } = await api.get("/api/filesystem/shared"));
  } catch (error) {
    box.removeAttribute("aria-busy");
    box.replaceChildren(alertBox("error", messageOf(error)));
    return;
  }
  if (!ctx.alive()) return;
  box.removeAttribute("aria-busy");
  if (!shares.length) {
    box.replaceChildren(emptyState("Nothing is shared with you yet.",
      "When someone shares a folder or a file with you, or with a group you are in, it appears here."));
    return;
  }
  const captionId = nextId("caption");
  if (truncated) {
    root.insertBefore(h("p", { class: "muted" }, `The ${shares.length} newest shares are listed; more may be shared with you.`), box);
  }
  box.replaceChildren(h("table", { class: "file-table auto-table shared-table", "aria-labelledby": captionId },
    h("caption", { id: captionId, class: "visually-hidden" }, "Shared with me"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Owner"),
      h("th", { scope: "col" }, "Access"), h("th", { scope: "col" }, "Shared"))),
    h("tbody", {}, shares.map((share) => {
      const isDir = share.type === "directory";
      const via = share.via && share.via.kind === "group" ? ` (group ${share.via.name})` : "";
      return h("tr", { "data-name": share.name, "data-share": share.id },
        h("td", { class: "col-name" }, h("a", { href: sharedHash(share.id), class: "item-link" },
          icon(isDir ? "folder" : "file"), h("span", { class: "item-name" }, share.name))),
        h("td", {}, share.owner, h("span", { class: "muted" }, via)),
        h("td", {}, badge(LEVELS[share.level] || share.level, share.level === "write" ? "info" : "neutral")),
        h("td", {}, date(share.created)));
    }))));
}

async function listAll(shareId, path) {
  const entries = [];
  let node = null;
  let cursor = null;
  do {
    const page = await api.get("/api/filesystem/info",
      { share: shareId, path, depth: 1, limit: 1000, cursor });
    node = node || page;
    entries.push(...(page.children || []));
    cursor = page.next_cursor;
  } while (cursor && entries.length < 50000);
  return { node, entries };
}

async function renderShare(root, ctx, shareId) {
  const path = normalizePath(ctx.query.get("path") || "/");
  let share;
  try {
    share = await api.get(`/api/filesystem/shares/${enc(shareId)}`);
  } catch (error) {
    root.append(pageHeader("Shared with me"), alertBox("error",
      error instanceof ApiError && error.status === 404
        ? "This share is not available to you: it was removed, or you are no longer in its group. "
        : messageOf(error), " ", h("a", { href: "#/shared" }, "Back to Shared with me")));
    return;
  }
  if (!ctx.alive()) return;
  const canWrite = share.level === "write";
  setTitle(share.name);

  const actions = [];
  const filesInput = h("input", { type: "file", multiple: true, class: "visually-hidden",
    tabindex: "-1", "aria-label": "Choose files to upload" });
  if (canWrite && share.type === "directory") {
    const upload = h("button", { type: "button", class: "button primary" }, icon("upload"),
      h("span", {}, "Upload files"));
    upload.addEventListener("click", () => filesInput.click());
    filesInput.addEventListener("change", () => {
      const files = [...filesInput.files];
      filesInput.value = "";
      if (files.length) enqueueUploads(files.map((file) => ({ file, dir: path })), [], { share: shareId });
    });
    const folder = h("button", { type: "button", class: "button" }, icon("newfolder"),
      h("span", {}, "New folder"));
    folder.addEventListener("click", () => newFolder());
    actions.push(upload, folder);
  }

  const crumbs = h("ol", {});
  const names = path.split("/").filter(Boolean);
  const trail = [{ label: "Shared with me", href: "#/shared" }, { label: share.name, href: sharedHash(shareId) },
    ...names.map((name, i) => ({ label: name, href: sharedHash(shareId, `/${names.slice(0, i + 1).join("/")}`) }))];
  trail.forEach((item, i) => crumbs.append(h("li", {}, i === trail.length - 1
    ? h("span", { "aria-current": "page" }, item.label) : h("a", { href: item.href }, item.label))));
  const listing = h("div", { class: "listing scroll-x", "aria-busy": "true" },
    h("p", { class: "loading", role: "status" }, "Loading…"));
  root.append(pageHeader(share.name, ...actions), filesInput,
    h("nav", { class: "breadcrumbs", "aria-label": "Breadcrumb" }, crumbs),
    h("p", { class: "muted share-owner" }, `Shared by ${share.owner} · `,
      LEVELS[share.level] || share.level),
    h("section", { class: "files-area", "aria-label": "Folder contents" }, listing));

  const fetchFile = (entry) => download({ id: entry.id, name: entry.name, size: entry.size,
    contentType: entry.content_type, share: shareId });

  const remove = async (entry) => {
    const sure = await confirmDialog({ title: `Delete ${entry.type === "directory" ? "folder" : "file"}?`,
      message: `“${entry.name}” will move to ${share.owner}'s trash.`, confirmLabel: "Delete", danger: true });
    if (!sure) return;
    try {
      await api.del(`/api/filesystem/info/${enc(entry.id)}`, { query: { share: shareId } });
      toast(`Deleted ${entry.name}.`, "success");
      load();
    } catch (error) {
      toast(messageOf(error), "error");
    }
  };

  // A writer renames and moves inside the share, as the API lets them (paths start at the
  // shared folder).
  const rename = (entry) => promptDialog({
    title: `Rename ${entry.type === "directory" ? "folder" : "file"}`, label: "New name",
    value: entry.name, submitLabel: "Rename",
    onSubmit: async (name) => {
      if (!name || name.includes("/")) throw new ApiError("Enter a name without '/'.");
      if (name === entry.name) return true;
      await api.post(`/api/filesystem/info/${enc(entry.id)}`, { name }, { query: { share: shareId } });
      toast(`Renamed to ${name}.`, "success");
      load();
      return true;
    },
  });

  const move = (entry) => promptDialog({
    title: `Move “${entry.name}”`, label: "Folder to move it into", value: path,
    help: `A folder inside ${share.name}: / is the shared folder itself; a missing one is made.`,
    submitLabel: "Move",
    onSubmit: async (target) => {
      const into = normalizePath(target.trim() || "/");
      if (into === path) throw new ApiError("That is the folder it is in already; choose another.");
      await api.post(`/api/filesystem/info/${enc(entry.id)}`, { path: into }, { query: { share: shareId } });
      toast(`Moved ${entry.name} to ${into === "/" ? share.name : into}.`, "success");
      load();
      return true;
    },
  });

  const newFolder = () => promptDialog({
    title: "New folder", label: "Folder name", submitLabel: "Create",
    onSubmit: async (name) => {
      if (!name || name.includes("/")) throw new ApiError("Enter a name without '/'.");
      await api.post("/api/filesystem/dirs", { path: joinPath(path, name) }, { query: { share: shareId } });
      load();
    },
  });

  const load = async () => {
    let result;
    try {
      if (share.type !== "directory") {
        const info = await api.get(`/api/filesystem/info/${enc(share.node_id)}`, { share: shareId });
        result = { node: { type: "directory" }, entries: [info] };
      } else {
        result = await listAll(shareId, path);
      }
    } catch (error) {
      if (!ctx.alive()) return;
      listing.removeAttribute("aria-busy");
      listing.replaceChildren(alertBox("error", messageOf(error)));
      return;
    }
    if (!ctx.alive()) return;
    listing.removeAttribute("aria-busy");
    const entries = [...result.entries].sort((a, b) => (a.type === b.type
      ? a.name.localeCompare(b.name, undefined, { numeric: true }) : a.type === "directory" ? -1 : 1));
    if (!entries.length) {
      listing.replaceChildren(emptyState("This folder is empty.", canWrite ? "Use Upload files to add some." : null));
      return;
    }
    const captionId = nextId("caption");
    listing.replaceChildren(h("table", { class: "file-table auto-table", "aria-labelledby": captionId },
      h("caption", { id: captionId, class: "visually-hidden" }, `Contents of ${share.name}${path === "/" ? "" : path}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col", class: "col-size" }, "Size"),
        h("th", { scope: "col", class: "col-modified" }, "Modified"),
        h("th", { scope: "col", class: "col-buttons" }, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, entries.map((entry) => {
        const isDir = entry.type === "directory";
        const name = isDir
          ? h("a", { href: sharedHash(shareId, joinPath(path, entry.name)), class: "item-link" },
            icon("folder"), h("span", { class: "item-name" }, entry.name))
          : h("span", { class: "item-link" }, icon("file"), h("span", { class: "item-name" }, entry.name));
        const buttons = [];
        if (!isDir) {
          const get = h("button", { type: "button", class: "button small",
            "aria-label": `Download ${entry.name}` }, icon("download"), h("span", {}, "Download"));
          get.addEventListener("click", () => fetchFile(entry));
          buttons.push(get);
        }
        if (canWrite && share.type === "directory") {
          const renameButton = h("button", { type: "button", class: "button small ghost",
            "aria-label": `Rename ${entry.name}` }, "Rename");
          renameButton.addEventListener("click", () => rename(entry));
          const moveButton = h("button", { type: "button", class: "button small ghost",
            "aria-label": `Move ${entry.name}` }, "Move");
          moveButton.addEventListener("click", () => move(entry));
          const del = h("button", { type: "button", class: "button small danger",
            "aria-label": `Delete ${entry.name}` }, "Delete");
          del.addEventListener("click", () => remove(entry));
          buttons.push(renameButton, moveButton, del);
        }
        return h("tr", { "data-name": entry.name, "data-type": entry.type },
          h("td", { class: "col-name" }, name),
          h("td", { class: "col-size" }, isDir ? h("span", { class: "muted" }, "Folder") : bytes(entry.size)),
          h("td", { class: "col-modified" }, date(entry.modified)),
          h("td", { class: "row-actions" }, buttons));
      }))),
    h("p", { class: "muted listing-summary" }, plural(entries.length, "item")));
  };

  let timer = null;
  const onChanged = (event) => {
    if (event.detail && event.detail.share === shareId && (event.detail.dir === path
        || parentPath(event.detail.dir) === path)) {
      clearTimeout(timer);
      timer = setTimeout(load, 250);
    }
  };
  window.addEventListener("cloudstrype:changed", onChanged);
  ctx.onLeave(() => {
    window.removeEventListener("cloudstrype:changed", onChanged);
    clearTimeout(timer);
  });
  await load();
}
