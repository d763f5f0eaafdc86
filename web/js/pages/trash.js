// The trash: what the user deleted, newest first; restore to its place or into another folder,
// delete one item for good, or empty it all (with confirmation). Contract: docs/trash-api.md.
import { api, ApiError, enc, messageOf } from "../api.js";
import { h, icon, nextId } from "../dom.js";
import { bytes, date, normalizePath, parentPath, plural } from "../format.js";
import { forgetFolders } from "../actions.js";
import { alertBox, confirmDialog, emptyState, pageHeader, promptDialog, toast } from "../ui.js";
import { filesHash } from "./files.js";

async function listAll() {
  const items = [];
  let cursor = null;
  let retention = null;
  do {
    const page = await api.get("/api/filesystem/trash", { limit: 1000, cursor });
    items.push(...(page.items || []));
    retention = page.retention_days;
    cursor = page.next_cursor;
  } while (cursor && items.length < 50000);
  return { items, retention };
}

export default async function render(root, ctx) {
  const empty = h("button", { type: "button", class: "button danger" }, icon("trash"),
    h("span", {}, "Empty trash"));
  const note = h("p", { class: "muted" });
  const listing = h("div", { class: "listing scroll-x", "aria-busy": "true" },
    h("p", { class: "loading", role: "status" }, "Loading…"));
  root.append(pageHeader("Trash", empty), note, listing);
  let items = [];

  const restored = (node, item) => {
    forgetFolders(parentPath(node.path), parentPath(item.original_path));
    const where = parentPath(node.path);
    toast(h("span", {}, `Restored ${item.name} to `, h("a", { href: filesHash(where) },
      where === "/" ? "My files" : where), node.path === item.original_path ? "." : ` as ${node.name}.`), "success");
  };

  const restore = async (item) => {
    try {
      const node = await api.post(`/api/filesystem/trash/${enc(item.id)}/restore`, {});
      restored(node, item);
    } catch (error) {
      toast(messageOf(error), "error");
    }
    await load();
  };

  const restoreTo = async (item) => {
    const node = await promptDialog({
      title: `Restore “${item.name}” to…`, label: "Folder", value: parentPath(item.original_path),
      submitLabel: "Restore", help: "A folder path, like /Documents; missing folders are made.",
      onSubmit: (value) => {
        if (!value.startsWith("/")) throw new ApiError("Enter a folder path that starts with /.");
        return api.post(`/api/filesystem/trash/${enc(item.id)}/restore`, { path: normalizePath(value) });
      },
    });
    if (node && node !== true) {
      restored(node, item);
      await load();
    }
  };

  const purge = async (item) => {
    const sure = await confirmDialog({ title: "Delete for good?", danger: true, confirmLabel: "Delete for good",
      message: `“${item.name}” will be deleted with every version. This cannot be undone.` });
    if (!sure) return;
    try {
      await api.del(`/api/filesystem/trash/${enc(item.id)}`);
      toast(`Deleted ${item.name} for good.`, "success");
    } catch (error) {
      toast(messageOf(error), "error");
    }
    await load();
  };

  empty.addEventListener("click", async () => {
    const sure = await confirmDialog({ title: "Empty the trash?", danger: true, confirmLabel: "Empty trash",
      message: `${plural(items.length, "item")} will be deleted for good with every version. This cannot be undone.` });
    if (!sure) return;
    try {
      let deleted = 0;
      for (;;) {                       // a very large trash takes more than one request
        const result = await api.del("/api/filesystem/trash");
        deleted += result.deleted || 0;
        if (result.complete !== false) break;
      }
      toast(`Emptied the trash: ${plural(deleted, "item")} deleted for good.`, "success");
    } catch (error) {
      toast(messageOf(error), "error");
    }
    await load();
  });

  const draw = () => {
    listing.removeAttribute("aria-busy");
    empty.disabled = !items.length;
    if (!items.length) {
      listing.replaceChildren(emptyState("The trash is empty.",
        "What you delete comes here first, so you can restore it."));
      return;
    }
    const captionId = nextId("caption");
    listing.replaceChildren(h("table", { class: "file-table auto-table trash-table", "aria-labelledby": captionId },
      h("caption", { id: captionId, class: "visually-hidden" }, "Deleted items, newest first"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Deleted from"),
        h("th", { scope: "col", class: "col-size" }, "Size"), h("th", { scope: "col" }, "Deleted"),
        h("th", { scope: "col", class: "col-buttons" }, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, items.map((item) => {
        const back = h("button", { type: "button", class: "button small",
          "aria-label": `Restore ${item.name}` }, icon("restore"), h("span", {}, "Restore"));
        back.addEventListener("click", () => restore(item));
        const elsewhere = h("button", { type: "button", class: "button small",
          "aria-label": `Restore ${item.name} to another folder` }, "Restore to…");
        elsewhere.addEventListener("click", () => restoreTo(item));
        const forGood = h("button", { type: "button", class: "button small danger",
          "aria-label": `Delete ${item.name} for good` }, "Delete");
        forGood.addEventListener("click", () => purge(item));
        return h("tr", { "data-name": item.name, "data-id": item.id },
          h("td", { class: "col-name" }, h("span", { class: "item-link" },
            icon(item.type === "directory" ? "folder" : "file"), h("span", { class: "item-name" }, item.name))),
          h("td", { class: "trash-from" }, parentPath(item.original_path)),
          h("td", { class: "col-size" }, bytes(item.size)),
          h("td", {}, date(item.deleted)),
          h("td", { class: "row-actions" }, back, elsewhere, forGood));
      }))));
  };

  const load = async () => {
    try {
      const result = await listAll();
      if (!ctx.alive()) return;
      items = result.items;
      note.textContent = `Items are deleted for good ${plural(result.retention, "day")} after they were deleted. The trash counts against your storage.`;
      draw();
    } catch (error) {
      if (!ctx.alive()) return;
      listing.removeAttribute("aria-busy");
      listing.replaceChildren(alertBox("error", messageOf(error)));
    }
  };
  await load();
}
