// Array members: the user's own machines that donate disk space and stay connected.
import { api, ApiError, enc, getConfig, messageOf } from "../api.js";
import { h } from "../dom.js";
import { bytes, plural, relative } from "../format.js";
import { alertBox, badge, busy, confirmDialog, emptyState, meter, pageHeader, section, toast } from "../ui.js";
import { stopDraining } from "./storages.js";

export async function loadMembers() {
  try {
    const answer = await api.get("/api/array/members");
    return answer.members || [];
  } catch (error) {
    // The members API may not exist on an older server: that is "no members", not a failure.
    if (error instanceof ApiError && error.status === 404) return [];
    throw error;
  }
}

export default async function render(root, ctx) {
  const box = h("div", { class: "member-list", "aria-busy": "true" },
    h("p", { class: "loading", role: "status" }, "Loading…"));
  const server = (getConfig().apiBaseUrl || location.origin).replace(/\/+$/, "");
  root.append(pageHeader("Members"),
    section("Your machines", h("p", { class: "muted" },
      "Members are computers of yours that give Cloudstrype some disk space. They hold shares like any other storage while they are online."), box),
    section("Add a machine",
      h("p", {}, "On the computer you want to add, install Cloudstrype and run:"),
      h("pre", { class: "command" }, h("code", {},
        `cloudstrype array --server ${server} --dir ~/cloudstrype-shares --size 50GB`)),
      h("p", { class: "muted" }, "It asks nothing else: it signs in with your saved login, appears here, and stays connected until you stop it.")));

  const load = async () => {
    let members;
    try {
      members = await loadMembers();
    } catch (error) {
      box.removeAttribute("aria-busy");
      box.replaceChildren(alertBox("error", messageOf(error)));
      return;
    }
    if (!ctx.alive()) return;
    box.removeAttribute("aria-busy");
    if (!members.length) {
      box.replaceChildren(emptyState("No members yet.", "Run the command below on a computer to add it."));
      return;
    }
    box.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "data-table members-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "State"),
        h("th", { scope: "col" }, "Used"), h("th", { scope: "col", class: "hide-narrow" }, "Shares"),
        h("th", { scope: "col", class: "hide-narrow" }, "Last seen"),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, members.map((member) => memberRow(member, load))))));
  };
  await load();
  const timer = setInterval(() => {
    if (document.visibilityState === "visible") load();
  }, 15000);
  ctx.onLeave(() => clearInterval(timer));
}

function memberRow(member, reload) {
  const state = member.status === "draining" ? badge("Draining", "warn")
    : member.online ? badge("Online", "ok") : badge("Offline", "bad");
  const used = member.capacity
    ? [meter(member.used, member.capacity, `${member.name}: ${bytes(member.used)} of ${bytes(member.capacity)}`),
      h("span", { class: "small" }, `${bytes(member.used)} of ${bytes(member.capacity)}`)]
    : h("span", { class: "small" }, bytes(member.used));
  const remove = h("button", { type: "button", class: "button small danger",
    "aria-label": `Remove ${member.name}` }, "Remove");
  remove.addEventListener("click", async () => {
    const sure = await confirmDialog({ title: `Remove ${member.name}?`,
      message: member.shares
        ? `It holds ${plural(member.shares, "share")}; they are moved to your other storages first.`
        : "Cloudstrype stops using this machine.",
      confirmLabel: "Remove", danger: true });
    if (!sure) return;
    busy(remove, true);
    try {
      if (member.shares) {
        let query = "";
        for (;;) {
          const response = await api.post(`/api/array/members/${enc(member.id)}/drain${query}`, {}, { raw: true });
          if (response.status === 200) break;
          const result = await response.json();
          if (result.status !== "draining") throw new Error(`The drain of ${member.name} was stopped; it keeps its shares.`);
          query = "?continue=1";
          remove.textContent = `Moving… ${plural(result.remaining, "share")} left`;
        }
      }
      await api.del(`/api/array/members/${enc(member.id)}`);
      toast(`Removed ${member.name}.`, "success");
    } catch (error) {
      toast(messageOf(error), "error");
    }
    await reload();
  });
  return h("tr", { "data-id": member.id },
    h("th", { scope: "row" }, member.name),
    h("td", {}, state),
    h("td", { class: "usage-cell" }, used),
    h("td", { class: "hide-narrow" }, String(member.shares ?? 0)),
    h("td", { class: "hide-narrow" }, member.online ? "now" : relative(member.last_seen)),
    h("td", { class: "row-actions" }, member.status === "draining" ? stopButton(member, reload) : null,
      remove));
}

function stopButton(member, reload) {
  const stop = h("button", { type: "button", class: "button small",
    "aria-label": `Stop draining ${member.name}` }, "Stop draining");
  stop.addEventListener("click", () => stopDraining(
    `/api/array/members/${enc(member.id)}/drain`, member.name, stop, reload));
  return stop;
}
