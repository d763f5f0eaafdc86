// Sharing an item of one's own: with people and groups (read or write), and by link (with an
// optional password and expiry). Contract: docs/sharing-api.md.
import { api, ApiError, enc, messageOf } from "./api.js";
import { h, icon, nextId } from "./dom.js";
import { date } from "./format.js";
import { badge, openDialog, toast } from "./ui.js";

const LEVELS = { read: "Can view", write: "Can edit" };
const EXPIRIES = [["", "Never"], ["86400", "In 1 day"], ["604800", "In 7 days"],
  ["2592000", "In 30 days"]];

function grantee(share) {
  const kind = share.grantee.kind === "group" ? "group"
    : share.grantee.deleted ? "account deleted" : "person";
  return `${share.grantee.name} (${kind})`;
}

function kindOf(item) {
  return item.type === "directory" ? "folder" : "file";
}

// The share dialog: the item's current shares (level changeable, each removable at once) and a
// form to add one. Resolves with the share made, or null.
export async function shareDialog(item) {
  const list = h("ul", { class: "grant-list", "aria-label": "Shared with" });
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const draw = async () => {
    let shares;
    try {
      ({ shares } = await api.get("/api/filesystem/shares", { node_id: item.id }));
    } catch (error) {
      status.textContent = messageOf(error);
      return;
    }
    status.textContent = shares.length ? "" : `This ${kindOf(item)} is not shared with anyone yet.`;
    list.replaceChildren(...shares.map((share) => {
      const who = grantee(share);
      const levelId = nextId("level");
      const level = h("select", { id: levelId, "aria-label": `Access for ${who}`,
        disabled: item.type !== "directory" },
      Object.entries(LEVELS).map(([value, label]) => h("option", { value,
        selected: share.level === value }, label)));
      level.addEventListener("change", async () => {
        try {
          await api.put(`/api/filesystem/shares/${enc(share.id)}`, { level: level.value });
          toast(`${who} ${level.value === "write" ? "can now edit" : "can now only view"}.`, "success");
        } catch (error) {
          level.value = share.level;
          toast(messageOf(error), "error");
        }
      });
      const remove = h("button", { type: "button", class: "button small danger",
        "aria-label": `Stop sharing with ${who}` }, "Remove");
      remove.addEventListener("click", async () => {
        try {
          await api.del(`/api/filesystem/shares/${enc(share.id)}`);
          toast(`${item.name} is no longer shared with ${who}.`, "success");
          await draw();
        } catch (error) {
          toast(messageOf(error), "error");
        }
      });
      // A share that grants nothing now (its group deleted or made again, you out of it, the
      // account gone) says so: it looked like a working one.
      const why = share.grants === false
        ? h("span", { class: "muted grant-why" }, `Grants nothing: ${share.not_granting || "not in effect"}.`)
        : null;
      return h("li", { class: "grant", "data-grantee": share.grantee.name },
        h("span", { class: "grant-who" }, icon(share.grantee.kind === "group" ? "members" : "share"),
          h("span", {}, who), why), level, remove);
    }));
  };
  draw();

  const kindId = nextId("share-kind");
  const nameId = nextId("share-name");
  const levelId = nextId("share-level");
  const helpId = nextId("help");
  const body = [
    h("h3", { class: "subhead" }, "Shared with"), status, list,
    h("h3", { class: "subhead" }, "Add people or a group"),
    h("div", { class: "grant-form" },
      h("div", { class: "field" }, h("label", { for: kindId }, "Share with"),
        h("select", { id: kindId, name: "kind" }, h("option", { value: "user" }, "A person"),
          h("option", { value: "group" }, "A group"))),
      h("div", { class: "field" }, h("label", { for: nameId }, "Username or group name"),
        h("input", { id: nameId, name: "who", type: "text", required: true, autocomplete: "off",
          spellcheck: "false", "aria-describedby": helpId })),
      h("div", { class: "field" }, h("label", { for: levelId }, "Access"),
        h("select", { id: levelId, name: "level" },
          h("option", { value: "read" }, LEVELS.read),
          item.type === "directory" ? h("option", { value: "write" }, LEVELS.write) : null))),
    h("p", { class: "help", id: helpId }, item.type === "directory"
      ? "People who can edit upload, rename and delete inside the folder; what they add is yours and counts against your storage."
      : "A shared file can be viewed and downloaded."),
  ];
  const made = await openDialog({
    title: `Share “${item.name}”`, body, submitLabel: "Share", cancelLabel: "Close", wide: true,
    onSubmit: async (form) => {
      const who = form.elements.who.value.trim();
      if (!who) throw new ApiError("Enter a username or a group name.");
      const kind = form.elements.kind.value;
      return api.post("/api/filesystem/shares", { node_id: item.id, [kind]: who,
        level: form.elements.level.value });
    },
  });
  if (made && made !== true) {
    toast(`Shared ${item.name} with ${grantee(made)}: ${LEVELS[made.level].toLowerCase()}.`, "success");
  }
  return made;
}

// The link dialog: the item's links (state, revoke) and a form to make one; a new link's address
// is shown once, with a copy button.
export async function linkDialog(item) {
  const list = h("ul", { class: "grant-list", "aria-label": "Links" });
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const draw = async () => {
    let links;
    try {
      ({ links } = await api.get("/api/filesystem/links", { node_id: item.id }));
    } catch (error) {
      status.textContent = messageOf(error);
      return;
    }
    status.textContent = links.length ? "" : `This ${kindOf(item)} has no links.`;
    list.replaceChildren(...links.map((link) => {
      const facts = [`Made ${date(link.created)}`, link.password ? "password" : "no password",
        link.expires_at ? `expires ${date(link.expires_at)}` : "never expires"].join(" · ");
      const active = link.state === "active";
      const revoke = active ? h("button", { type: "button", class: "button small danger",
        "aria-label": `Revoke the link made ${date(link.created)}` }, "Revoke") : null;
      revoke?.addEventListener("click", async () => {
        try {
          await api.del(`/api/filesystem/links/${enc(link.id)}`);
          toast("The link no longer works.", "success");
          await draw();
        } catch (error) {
          toast(messageOf(error), "error");
        }
      });
      return h("li", { class: "grant", "data-link": link.id },
        h("span", { class: "grant-who" }, icon("link"), h("span", {}, facts)),
        badge(active ? "Active" : link.state === "expired" ? "Expired" : "Revoked",
          active ? "ok" : "neutral"), revoke);
    }));
  };
  draw();

  const passwordId = nextId("link-password");
  const expiresId = nextId("link-expires");
  const body = [
    h("h3", { class: "subhead" }, "Links"), status, list,
    h("h3", { class: "subhead" }, "New link"),
    h("p", { class: "help" }, `Anyone with the link can ${item.type === "directory"
      ? "list this folder and download what is in it" : "download this file"}, without an account.`),
    h("div", { class: "grant-form" },
      h("div", { class: "field" }, h("label", { for: passwordId }, "Password",
        h("span", { class: "optional" }, " (optional)")),
      h("input", { id: passwordId, name: "password", type: "password", autocomplete: "new-password",
        maxlength: "256" })),
      h("div", { class: "field" }, h("label", { for: expiresId }, "Expires"),
        h("select", { id: expiresId, name: "expires" },
          EXPIRIES.map(([value, label]) => h("option", { value }, label))))),
  ];
  const made = await openDialog({
    title: `Link to “${item.name}”`, body, submitLabel: "Create link", cancelLabel: "Close",
    wide: true,
    onSubmit: (form) => {
      const request = { node_id: item.id };
      if (form.elements.password.value) request.password = form.elements.password.value;
      if (form.elements.expires.value) request.expires_in = Number(form.elements.expires.value);
      return api.post("/api/filesystem/links", request);
    },
  });
  if (made && made !== true) await showLink(made);
  return made;
}

async function showLink(link) {
  const inputId = nextId("link-url");
  const input = h("input", { id: inputId, type: "text", value: link.url, readonly: true,
    class: "link-url", spellcheck: "false" });
  const copy = h("button", { type: "button", class: "button" }, icon("copy"), h("span", {}, "Copy link"));
  copy.addEventListener("click", async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(link.url);
      toast("Link copied.", "success");
    } catch {
      // No clipboard permission (or an insecure origin): the text stays selected to copy by hand.
      toast("Copy the selected link with Ctrl+C (⌘C).", "info");
    }
  });
  await openDialog({
    title: "Link created", submitLabel: "Done", cancelLabel: null,
    body: [
      h("div", { class: "field" }, h("label", { for: inputId }, "Link"),
        h("div", { class: "copy-row" }, input, copy)),
      h("p", { class: "help" }, "This is the only time the link is shown: copy it now. ",
        link.password ? "Send the password separately. " : "",
        link.expires_at ? `It works until ${date(link.expires_at)}.` : "It works until you revoke it."),
    ],
  });
}
