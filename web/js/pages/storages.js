// Storages: what the user has connected, how full and how healthy each is; adding a folder or an
// S3-compatible bucket with keys; connecting a cloud account through the provider's consent page.
import { api, ApiError, enc, messageOf } from "../api.js";
import { h, icon, nextId } from "../dom.js";
import { bytes, parseSize, plural, relative } from "../format.js";
import { alertBox, badge, busy, confirmDialog, emptyState, meter, openDialog, pageHeader, section,
  toast } from "../ui.js";

export const OAUTH_PROVIDERS = [
  { kind: "dropbox", label: "Dropbox" },
  { kind: "gdrive", label: "Google Drive" },
  { kind: "onedrive", label: "OneDrive" },
  { kind: "box", label: "Box" },
];

const KIND_LABELS = {
  local: "Folder on the server",
  s3: "S3-compatible bucket",
  member: "Array member",
  dropbox: "Dropbox",
  gdrive: "Google Drive",
  onedrive: "OneDrive",
  box: "Box",
};

export function kindLabel(kind) {
  return KIND_LABELS[kind] || kind;
}

const FIELD_HELP = {
  local: { path: "A folder on the server: an absolute path, or a plain name to keep it in the server's data folder." },
};

export function storageState(storage) {
  if (storage.status === "draining") return storage.shares ? ["Draining", "warn"] : ["Drained", "warn"];
  if (storage.status === "needs_reconnect") return ["Needs reconnecting", "bad"];
  if (storage.status !== "active") return [storage.status, "warn"];
  return storage.online ? ["Online", "ok"] : ["Offline", "bad"];
}

export default async function render(root, ctx) {
  const list = h("div", { class: "storage-grid", "aria-busy": "true" },
    h("p", { class: "loading", role: "status" }, "Loading…"));
  const notices = h("div", { class: "notices" });
  const addBox = h("div", { class: "add-grid" });
  root.append(pageHeader("Storages"), notices,
    section("Your storages",
      h("p", { class: "muted" }, "Every chunk of your files is cut into shares that go to different storages here. No storage holds a readable copy."),
      list),
    section("Add a storage", addBox));

  let connected = null, reconnected = false;
  const oauthError = ctx.query.get("error");
  const returned = oauthReturn(ctx.query);
  // The finish code must not stay in the address bar or the history.
  if (returned || oauthError) history.replaceState(null, "", "#/storages");
  if (oauthError) notices.append(alertBox("error", `The cloud account was not connected: ${oauthError}`));
  if (returned && !returned.startedHere) notices.append(finishCodeNotice(returned));
  if (returned?.startedHere) {
    try {
      const answer = await api.post(`/api/cloud/oauth/${enc(returned.provider)}/finish`,
        { state: returned.state, code: returned.code });
      connected = answer.id;
      reconnected = Boolean(answer.reconnected);
    } catch (error) {
      if (!ctx.alive()) return;
      notices.append(alertBox("error", `The cloud account was not connected: ${messageOf(error)}`));
    }
  }

  let storages = [];
  const load = async () => {
    try {
      const answer = await api.get("/api/cloud/storages");
      if (!ctx.alive()) return;
      storages = answer.storages;
      drawList();
      if (connected) {
        const found = storages.find((s) => s.id === connected);
        notices.replaceChildren(alertBox("success", !found ? "The cloud account is connected."
          : reconnected
            // One account is one storage: connecting it again renews that storage's access.
            ? `This account is your storage ${found.name} (${kindLabel(found.kind)}) already: it is reconnected, with the new access.`
            : `Connected ${found.name} (${kindLabel(found.kind)}). New shares can go there now.`));
      }
    } catch (error) {
      list.removeAttribute("aria-busy");
      list.replaceChildren(alertBox("error", messageOf(error)));
    }
  };

  const drawList = () => {
    list.removeAttribute("aria-busy");
    if (!storages.length) {
      list.replaceChildren(emptyState("No storages yet.",
        "Add at least two, so every chunk can have a copy in a second place."));
      return;
    }
    const sorted = [...storages].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
    list.replaceChildren(...sorted.map((storage) => storageCard(storage, load)));
  };

  let providers = [];
  try {
    providers = (await api.get("/api/cloud/providers")).providers;
  } catch (error) {
    addBox.append(alertBox("error", messageOf(error)));
  }
  for (const provider of providers.filter((p) => p.auth !== "oauth")) {
    const add = h("button", { type: "button", class: "button primary" }, "Add");
    add.addEventListener("click", () => addDialog(provider, load));
    addBox.append(h("div", { class: "add-card", "data-kind": provider.kind },
      h("h3", {}, icon(provider.kind === "local" ? "folder" : "storage"), h("span", {}, kindLabel(provider.kind))),
      h("p", { class: "muted" }, provider.kind === "local"
        ? "A folder on the machine that runs Cloudstrype. Handy for trying it out."
        : "Amazon S3, Backblaze B2, Wasabi, MinIO… anything that speaks S3, with an access key."),
      add));
  }
  for (const oauth of OAUTH_PROVIDERS) {
    const offered = providers.find((p) => p.kind === oauth.kind);
    const connect = h("button", { type: "button", class: "button", disabled: !offered,
      "aria-label": `Connect ${oauth.label}` }, "Connect");
    connect.addEventListener("click", () => connectDialog(oauth));
    addBox.append(h("div", { class: `add-card${offered ? "" : " unavailable"}`, "data-kind": oauth.kind },
      h("h3", {}, icon("cloud"), h("span", {}, oauth.label)),
      h("p", { class: "muted" }, offered
        ? `Sign in at ${oauth.label} and allow Cloudstrype to keep shares in its own folder.`
        : `Not set up on this server (it needs an OAuth app for ${oauth.label}).`),
      connect));
  }
  await load();
}

function storageCard(storage, reload) {
  const [state, kind] = storageState(storage);
  const where = storage.settings?.path || (storage.settings?.bucket
    ? `${storage.settings.bucket}${storage.settings.endpoint_url ? ` at ${storage.settings.endpoint_url}` : ""}`
    : storage.settings?.account_name || "");
  const usage = storage.capacity
    ? [meter(storage.used, storage.capacity, `${storage.name}: ${bytes(storage.used)} of ${bytes(storage.capacity)} used`),
      h("p", { class: "small" }, `${bytes(storage.used)} used of ${bytes(storage.capacity)}`,
        storage.free !== null && storage.free !== undefined ? ` · ${bytes(storage.free)} free` : "",
        ` · measured ${relative(storage.used_measured_at)}`)]
    : [h("p", { class: "small" }, `${bytes(storage.used)} used · no size limit known · measured ${relative(storage.used_measured_at)}`)];
  const actions = h("div", { class: "card-actions" });
  if (storage.kind === "member") {
    actions.append(h("a", { href: "#/members", class: "button small" }, "See members"));
  } else {
    if (storage.status === "draining") {
      const stop = h("button", { type: "button", class: "button small",
        "aria-label": `Stop draining ${storage.name}` }, "Stop draining");
      stop.addEventListener("click", () => stopDraining(
        `/api/cloud/storages/${enc(storage.id)}/drain`, storage.name, stop, reload));
      actions.append(stop);
    }
    if (storage.shares > 0) {
      const drain = h("button", { type: "button", class: "button small",
        "aria-label": `Drain ${storage.name}` }, "Drain");
      drain.addEventListener("click", () => drainStorage(storage, drain, reload));
      actions.append(drain);
    }
    const remove = h("button", { type: "button", class: "button small danger",
      "aria-label": `Remove ${storage.name}` }, "Remove");
    remove.addEventListener("click", () => removeStorage(storage, reload));
    actions.append(remove);
  }
  return h("article", { class: "storage-card", "data-id": storage.id, "data-name": storage.name },
    h("header", { class: "card-head" },
      h("h3", {}, icon(storage.kind === "local" ? "folder" : storage.kind === "member" ? "members"
        : storage.kind === "s3" ? "storage" : "cloud"), h("span", {}, storage.name)),
      badge(state, kind)),
    h("p", { class: "muted small card-where" }, kindLabel(storage.kind), where ? ` · ${where}` : ""),
    usage,
    h("dl", { class: "mini-facts" },
      h("dt", {}, "Shares"), h("dd", {}, String(storage.shares)),
      h("dt", {}, "Cloudstrype data"), h("dd", {}, bytes(storage.stored_bytes)),
      h("dt", {}, "Last checked"), h("dd", { class: "check-state" }, checkState(storage.check))),
    storage.last_error ? alertBox("warning", `Last problem${storage.last_error_at ? ` (${relative(storage.last_error_at)})` : ""}: ${storage.last_error}`) : null,
    checkFound(storage.check),
    actions);
}

// The scrub's checks of the storage's shares (README: Storages, the scrub).
function checkState(check) {
  if (!check || !check.checked_at) return "not yet";
  return relative(check.checked_at);
}

function checkFound(check) {
  if (!check || (!check.missing_found && !check.corrupt_found)) return null;
  return alertBox("info", `Since it was added, the scrub's checks have found ${plural(check.missing_found, "share")} missing and ${check.corrupt_found} corrupt here; each was queued for repair from your other storages when found (a file at risk shows on the dashboard).`);
}

// Undo a drain: the storage (or member) takes new shares again; what moved stays moved.
export async function stopDraining(url, name, button, reload) {
  busy(button, true);
  try {
    await api.del(url);
    toast(`${name} takes new shares again.`, "success");
  } catch (error) {
    toast(messageOf(error), "error");
  }
  await reload();
}

async function drainStorage(storage, button, reload) {
  const sure = await confirmDialog({
    title: `Drain ${storage.name}?`,
    message: `Its ${plural(storage.shares, "share")} move to your other storages and it takes no new ones. Your files stay readable throughout.`,
    confirmLabel: "Drain",
  });
  if (!sure) return;
  busy(button, true);
  button.textContent = "Draining…";
  try {
    let query = "";
    for (;;) {
      const response = await api.post(`/api/cloud/storages/${enc(storage.id)}/drain${query}`, {}, { raw: true });
      const result = await response.json();
      if (response.status === 200 || !result.remaining) break;
      if (result.status !== "draining") {
        toast(`The drain of ${storage.name} was stopped; ${plural(result.remaining, "share")} stay on it.`, "info");
        await reload();
        return;
      }
      query = "?continue=1";      // the next rounds go on with this drain only
      button.textContent = `Draining… ${plural(result.remaining, "share")} left`;
    }
    toast(`${storage.name} is drained; you can remove it now.`, "success");
  } catch (error) {
    toast(messageOf(error), "error");
  }
  await reload();
}

async function removeStorage(storage, reload) {
  const sure = await confirmDialog({
    title: `Remove ${storage.name}?`,
    message: storage.shares
      ? `It still holds ${plural(storage.shares, "share")}. Drain it first to move them elsewhere.`
      : "Cloudstrype stops using it. Nothing of yours is left on it.",
    confirmLabel: "Remove", danger: true,
  });
  if (!sure) return;
  try {
    await api.del(`/api/cloud/storages/${enc(storage.id)}`);
    toast(`Removed ${storage.name}.`, "success");
  } catch (error) {
    // The API's words name its route; here the button is the way.
    toast(error instanceof ApiError && error.code === "storage_not_empty"
      ? `${storage.name} still holds shares: drain it first (Drain moves them to your other storages), then remove it.`
      : messageOf(error), "error");
  }
  await reload();
}

function inputFor(kind, fieldInfo) {
  const id = nextId(`storage-${fieldInfo.name}`);
  const helpText = FIELD_HELP[kind]?.[fieldInfo.name] || (fieldInfo.name === "capacity"
    ? "How much Cloudstrype may use, like 500 GB or 2 TB; empty for no limit."
    : fieldInfo.help);
  const helpId = helpText ? nextId("help") : undefined;
  const input = h("input", { id, name: fieldInfo.name, type: fieldInfo.secret ? "password" : "text",
    required: fieldInfo.required || undefined, autocomplete: "off", spellcheck: "false",
    "aria-describedby": helpId });
  return h("div", { class: "field" },
    h("label", { for: id }, fieldInfo.name === "capacity" ? "Capacity" : fieldInfo.label,
      fieldInfo.required ? null : h("span", { class: "optional" }, " (optional)")),
    input, helpText ? h("p", { class: "help", id: helpId }, helpText) : null);
}

function addDialog(provider, reload) {
  const nameId = nextId("storage-name");
  const body = [
    h("div", { class: "field" }, h("label", { for: nameId }, "Name", h("span", { class: "optional" }, " (optional)")),
      h("input", { id: nameId, name: "storage_name", type: "text", autocomplete: "off",
        placeholder: provider.kind === "local" ? "e.g. Home disk" : "e.g. Backblaze" })),
    provider.fields.map((f) => inputFor(provider.kind, f)),
  ];
  return openDialog({
    title: `Add ${kindLabel(provider.kind).toLowerCase()}`, body, submitLabel: "Add storage", wide: true,
    onSubmit: async (form) => {
      const config = {};
      for (const f of provider.fields) {
        const raw = form.elements[f.name].value.trim();
        if (!raw) continue;
        if (f.name === "capacity") {
          const size = parseSize(raw);
          if (!Number.isFinite(size) || size <= 0) {
            form.elements[f.name].setAttribute("aria-invalid", "true");
            throw new ApiError("Capacity: write a size like 500 GB, 2 TB or a number of bytes.");
          }
          config.capacity = size;
        } else {
          config[f.name] = raw;
        }
      }
      try {
        const added = await api.post("/api/cloud/storages", { kind: provider.kind,
          name: form.elements.storage_name.value.trim() || undefined, config });
        toast(`Added ${added.name}.`, "success");
        await reload();
        return added;
      } catch (error) {
        const name = error.details && error.details.field;
        if (name && form.elements[name]) {
          form.elements[name].setAttribute("aria-invalid", "true");
          form.elements[name].focus();
        }
        throw error;
      }
    },
  });
}

function connectDialog(oauth) {
  const nameId = nextId("oauth-name");
  return openDialog({
    title: `Connect ${oauth.label}`,
    body: [
      h("p", {}, `You will go to ${oauth.label} to sign in and allow access, then come back here.`),
      h("div", { class: "field" }, h("label", { for: nameId }, "Name", h("span", { class: "optional" }, " (optional)")),
        h("input", { id: nameId, name: "storage_name", type: "text", autocomplete: "off",
          placeholder: oauth.label })),
    ],
    submitLabel: `Continue to ${oauth.label}`,
    onSubmit: async (form) => {
      const answer = await api.get(`/api/cloud/oauth/${enc(oauth.kind)}/authorize`, {
        name: form.elements.storage_name.value.trim() || undefined,
        return_to: `${location.pathname}#/storages`,
      });
      // Only a return to this tab, from a connect it started, is finished by itself.
      sessionStorage.setItem(PENDING_PREFIX + answer.state, oauth.kind);
      location.assign(answer.authorize_url);
      return answer;
    },
  });
}

// -- coming back from the provider ----------------------------------------------------------------
// The callback sends the browser here with provider, state and a one-time finish_code in the
// fragment; nothing is connected until POST .../finish. This tab finishes a connect it started
// itself (remembered in sessionStorage). Any other return — a connect started by the command
// line, or a consent link someone else sent — only shows the code: finishing it here could
// attach this cloud account to whoever started it.
const PENDING_PREFIX = "cloudstrype.oauth.";

function oauthReturn(query) {
  const provider = query.get("provider"), state = query.get("state"), code = query.get("finish_code");
  if (!provider || !state || !code) return null;
  const key = PENDING_PREFIX + state;
  const startedHere = sessionStorage.getItem(key) === provider;
  sessionStorage.removeItem(key);
  return { provider, state, code, startedHere };
}

function finishCodeNotice(returned) {
  const label = kindLabel(returned.provider);
  return alertBox("warning",
    h("p", {}, `You allowed access at ${label}. To finish, paste this code into the command line that is waiting for it (cloudstrype storages connect ${returned.provider}):`),
    h("p", {}, h("code", { class: "finish-code", "aria-label": "Finish code" }, returned.code)),
    h("p", {}, "If you did not start connecting a storage yourself, do not give this code to anyone: whoever has it can attach your account to theirs. Close this page instead; it expires in 10 minutes."));
}
