// Admin: users and groups, and what each group's members reach through it (only for members of
// `admins`; the API checks that too).
import { api, enc, messageOf } from "../api.js";
import { h, nextId } from "../dom.js";
import { date } from "../format.js";
import { alertBox, badge, busy, confirmDialog, field, openDialog, pageHeader, section, toast } from "../ui.js";

export default async function render(root, ctx) {
  const usersBox = h("div", { "aria-busy": "true" }, h("p", { class: "loading", role: "status" }, "Loading…"));
  const groupsBox = h("div", { "aria-busy": "true" });
  const sharesBox = h("div", { id: nextId("group-shares"), class: "group-shares" });
  const createForm = groupForm();
  root.append(pageHeader("Admin"),
    section("Users", h("p", { class: "muted" }, "Changes to a user's groups take effect at once: what a group is granted is checked on every request."), usersBox),
    section("Groups", groupsBox, sharesBox, h("h3", { class: "subhead" }, "Create a group"), createForm.form));

  let users = [];
  let next = null;
  let groups = [];
  const membersOf = new Map();       // group -> Set(usernames)
  let sharesOf = null;               // the group whose shares are shown
  let sharesAsked = 0;               // answers to an earlier choice are dropped

  const loadGroups = async () => {
    groups = (await api.get("/api/auth/groups")).groups;
    const lists = await Promise.all(groups.map((g) =>
      api.get(`/api/auth/groups/${enc(g.name)}/members`).then((a) => a.members).catch(() => [])));
    membersOf.clear();
    groups.forEach((g, i) => membersOf.set(g.name, new Set(lists[i])));
  };
  const loadUsers = async (more = false) => {
    const page = await api.get("/api/auth/users", { limit: 60, cursor: more ? next : undefined });
    users = more ? [...users, ...page.users] : page.users;
    next = page.next_cursor || null;
  };

  const groupsFor = (username) => groups.filter((g) => membersOf.get(g.name)?.has(username)).map((g) => g.name);

  const drawUsers = () => {
    usersBox.removeAttribute("aria-busy");
    const rows = users.map((user) => {
      const mine = user.username === ctx.me.username;
      const manage = h("button", { type: "button", class: "button small",
        "aria-label": `Groups of ${user.username}` }, "Groups");
      manage.addEventListener("click", () => membershipDialog(user.username));
      const remove = h("button", { type: "button", class: "button small danger", disabled: mine,
        title: mine ? "You cannot delete your own account here." : undefined,
        "aria-label": `Delete ${user.username}` }, "Delete");
      remove.addEventListener("click", async () => {
        const sure = await confirmDialog({ title: `Delete ${user.username}?`,
          message: "The account is removed and can no longer log in. Their stored data is not deleted by this.",
          confirmLabel: "Delete user", danger: true });
        if (!sure) return;
        try {
          await api.del(`/api/auth/users/${enc(user.username)}`);
          toast(`Deleted ${user.username}.`, "success");
          users = users.filter((u) => u.username !== user.username);
          drawUsers();
        } catch (error) {
          toast(messageOf(error), "error");
        }
      });
      const names = groupsFor(user.username);
      return h("tr", { "data-username": user.username },
        h("th", { scope: "row" }, user.username, mine ? h("span", { class: "muted" }, " (you)") : null),
        h("td", { class: "hide-narrow" }, user.email || "—"),
        h("td", {}, names.length ? names.map((n) => badge(n, n === "admins" ? "info" : "neutral")) : h("span", { class: "muted" }, "—")),
        h("td", { class: "hide-narrow" }, user.status === "CONFIRMED" ? "Confirmed" : (user.status || "—"),
          user.enabled === false ? " (disabled)" : ""),
        h("td", { class: "hide-narrow" }, date(user.created)),
        h("td", { class: "row-actions" }, manage, remove));
    });
    const more = next ? h("button", { type: "button", class: "button" }, "Load more users") : null;
    more?.addEventListener("click", async () => {
      busy(more, true);
      try {
        await loadUsers(true);
        drawUsers();
      } catch (error) {
        toast(messageOf(error), "error");
        busy(more, false);
      }
    });
    usersBox.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "data-table users-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "User"), h("th", { scope: "col", class: "hide-narrow" }, "E-mail"),
        h("th", { scope: "col" }, "Groups"), h("th", { scope: "col", class: "hide-narrow" }, "Status"),
        h("th", { scope: "col", class: "hide-narrow" }, "Created"),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, rows))), ...(more ? [more] : []));
  };

  const drawGroups = () => {
    groupsBox.removeAttribute("aria-busy");
    if (!groups.length) {
      groupsBox.replaceChildren(h("p", { class: "muted" }, "No groups."));
      return;
    }
    groupsBox.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "data-table groups-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Group"), h("th", { scope: "col", class: "hide-narrow" }, "Description"),
        h("th", { scope: "col" }, "Members"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, groups.map((group) => {
        const members = [...(membersOf.get(group.name) || [])];
        const remove = h("button", { type: "button", class: "button small danger",
          disabled: group.name === "admins", "aria-label": `Delete group ${group.name}`,
          title: group.name === "admins" ? "The admins group cannot be deleted." : undefined }, "Delete");
        remove.addEventListener("click", async () => {
          const sure = await confirmDialog({ title: `Delete the group ${group.name}?`,
            message: `Its ${members.length} member${members.length === 1 ? "" : "s"} stay; only the group goes.`,
            confirmLabel: "Delete group", danger: true });
          if (!sure) return;
          try {
            await api.del(`/api/auth/groups/${enc(group.name)}`);
            toast(`Deleted the group ${group.name}.`, "success");
            if (sharesOf === group.name) closeShares();
            await refresh();
          } catch (error) {
            toast(messageOf(error), "error");
          }
        });
        const shown = h("button", { type: "button", class: "button small", "aria-label": `Shares of ${group.name}`,
          "aria-controls": sharesBox.id, "aria-expanded": String(sharesOf === group.name) }, "Shares");
        shown.addEventListener("click", () => showShares(group.name));
        return h("tr", { "data-group": group.name },
          h("th", { scope: "row" }, group.name),
          h("td", { class: "hide-narrow" }, group.description || h("span", { class: "muted" }, "—")),
          h("td", {}, members.length ? members.join(", ") : h("span", { class: "muted" }, "nobody")),
          h("td", { class: "row-actions" }, shown, remove));
      })))));
  };

  // What the group's members reach through it: read-only here (owners change their own shares).
  const closeShares = () => {
    sharesOf = null;
    sharesAsked += 1;
    sharesBox.replaceChildren();
  };
  const showShares = async (group) => {
    sharesOf = group;
    const asked = ++sharesAsked;
    const headingId = nextId("shares-heading");
    const list = h("div", { "aria-busy": "true" }, h("p", { class: "loading", role: "status" }, "Loading…"));
    const close = h("button", { type: "button", class: "button small", "aria-label": `Close the shares of ${group}` }, "Close");
    close.addEventListener("click", () => {
      closeShares();
      drawGroups();
      groupsBox.querySelector(`tr[data-group="${CSS.escape(group)}"] button[aria-controls]`)?.focus();
    });
    sharesBox.replaceChildren(h("div", { class: "subhead-row" },
      h("h3", { class: "subhead", id: headingId }, `Shared with the group ${group}`), close),
    h("p", { class: "muted" }, `What the members of ${group} can reach through it. Only the owners change or revoke their shares.`),
    list);
    drawGroups();
    let found = [];
    let cursor = null;
    const draw = () => {
      list.removeAttribute("aria-busy");
      // A page can come back empty but not last (its items in their owners' trash).
      const more = cursor ? h("button", { type: "button", class: "button" }, "Load more shares") : null;
      more?.addEventListener("click", () => { busy(more, true); load(); });
      if (!found.length) {
        list.replaceChildren(h("p", { class: "muted" }, "Nothing is shared with this group."), more);
        return;
      }
      list.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "data-table group-shares-table", "aria-labelledby": headingId },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Owner"), h("th", { scope: "col" }, "Item"),
          h("th", { scope: "col" }, "Level"), h("th", { scope: "col", class: "hide-narrow" }, "Shared"))),
        h("tbody", {}, found.map((share) => h("tr", { "data-share": share.id },
          h("td", {}, share.owner),
          h("th", { scope: "row", class: "cell-path" }, share.path),
          h("td", {}, badge(share.level, share.level === "write" ? "info" : "neutral")),
          h("td", { class: "hide-narrow" }, date(share.created))))))), more);
    };
    const load = async () => {
      try {
        const page = await api.get(`/api/filesystem/groups/${enc(group)}/shares`, { limit: 100, cursor: cursor || undefined });
        if (asked !== sharesAsked || !ctx.alive()) return;
        found = [...found, ...page.shares];
        cursor = page.next_cursor || null;
        draw();
      } catch (error) {
        if (asked !== sharesAsked) return;
        if (found.length) {
          toast(messageOf(error), "error");
          draw();
          return;
        }
        list.removeAttribute("aria-busy");
        list.replaceChildren(alertBox("error", messageOf(error)));
      }
    };
    await load();
  };

  const refresh = async () => {
    await loadGroups();
    if (!ctx.alive()) return;
    drawGroups();
    drawUsers();
  };

  const membershipDialog = async (username) => {
    const boxes = groups.map((group) => {
      const id = nextId("member-of");
      const isSelfAdmin = group.name === "admins" && username === ctx.me.username;
      return h("div", { class: "checkbox" },
        h("input", { type: "checkbox", id, name: group.name, checked: membersOf.get(group.name)?.has(username),
          disabled: isSelfAdmin }),
        h("label", { for: id }, group.name, group.description ? h("span", { class: "muted" }, ` — ${group.description}`) : null));
    });
    const changed = await openDialog({
      title: `Groups of ${username}`,
      body: groups.length ? [h("fieldset", { class: "checkbox-group" }, h("legend", {}, "Member of"), boxes)]
        : [h("p", {}, "There are no groups yet.")],
      submitLabel: "Save",
      onSubmit: async (form) => {
        let count = 0;
        for (const group of groups) {
          const want = form.elements[group.name].checked;
          const has = membersOf.get(group.name)?.has(username) || false;
          if (want === has) continue;
          const path = `/api/auth/groups/${enc(group.name)}/members/${enc(username)}`;
          if (want) await api.put(path);
          else await api.del(path);
          if (want) membersOf.get(group.name).add(username);
          else membersOf.get(group.name).delete(username);
          count += 1;
        }
        return count;
      },
    });
    if (changed !== null) {
      if (changed) toast(`Updated the groups of ${username}.`, "success");
      drawUsers();
      drawGroups();
    }
  };

  createForm.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { form, submit, result } = createForm;
    result.replaceChildren();
    const name = form.elements.name.value.trim();
    if (!name) {
      result.replaceChildren(alertBox("error", "Give the group a name."));
      form.elements.name.focus();
      return;
    }
    busy(submit, true);
    try {
      await api.post("/api/auth/groups", { name, description: form.elements.description.value.trim() });
      form.reset();
      result.replaceChildren(alertBox("success", `Created the group ${name}.`));
      await refresh();
    } catch (error) {
      result.replaceChildren(alertBox("error", messageOf(error)));
    } finally {
      busy(submit, false);
    }
  });

  try {
    await Promise.all([loadGroups(), loadUsers()]);
  } catch (error) {
    usersBox.removeAttribute("aria-busy");
    usersBox.replaceChildren(alertBox("error", messageOf(error)));
    return;
  }
  if (!ctx.alive()) return;
  drawGroups();
  drawUsers();
}

function groupForm() {
  const submit = h("button", { type: "submit", class: "button primary" }, "Create group");
  const result = h("div", { class: "form-result" });
  const form = h("form", { class: "inline-form", novalidate: true },
    field({ label: "Group name", name: "name", required: true, autocomplete: "off" }),
    field({ label: "Description", name: "description", autocomplete: "off" }),
    h("div", { class: "form-actions" }, submit), result);
  return { form, submit, result };
}
