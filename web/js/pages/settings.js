// Settings: the default durability and encryption of new uploads, and the account.
import { api, messageOf } from "../api.js";
import { h, nextId } from "../dom.js";
import { describeDurability, ENCRYPTIONS, PASSWORD_HELP, parseDurability, plural } from "../format.js";
import { alertBox, busy, field, pageHeader, section } from "../ui.js";

const PRESETS = ["raid1(1)", "raid1(2)", "raid1(3)", "rs(2,1)", "rs(4,2)", "rs(6,3)"];
const AUTO = "";
const OTHER = "other";

export default async function render(root, ctx) {
  const [defaults, storageList] = await Promise.all([
    api.get("/api/filesystem/settings"),
    api.get("/api/cloud/storages").then((a) => a.storages).catch(() => []),
  ]);
  if (!ctx.alive()) return;
  const usable = storageList.filter((s) => s.online).length;
  // The automatic choice counts the storages kept for data (any not draining), reachable this
  // moment or not, as the server does (placement.default_durability).
  const kept = storageList.filter((s) => s.status !== "draining").length;

  const durabilityId = nextId("durability");
  const customId = nextId("durability-custom");
  const adviceId = nextId("durability-advice");
  const current = defaults.durability;
  const options = [];
  // Always offered: a chosen scheme can be set back to automatic (saved as null).
  options.push(h("option", { value: AUTO, selected: !current },
    `Automatic: 2 copies once you have two storages (now ${kept >= 2 ? "2 copies" : "1 copy"})`));
  const presets = current && !PRESETS.includes(current) ? [...PRESETS, current] : PRESETS;
  for (const preset of presets) {
    const scheme = parseDurability(preset);
    options.push(h("option", { value: preset, selected: preset === current },
      `${preset} — ${describeDurability(preset)} (needs ${plural(scheme.shares, "storage")})`));
  }
  options.push(h("option", { value: OTHER }, "Other scheme…"));
  const select = h("select", { id: durabilityId, name: "durability", "aria-describedby": adviceId }, options);
  const custom = h("input", { id: customId, name: "custom", type: "text", placeholder: "e.g. rs(3,2) or raid1(4)",
    autocomplete: "off", spellcheck: "false" });
  const customField = h("div", { class: "field", hidden: true },
    h("label", { for: customId }, "Scheme"), custom,
    h("p", { class: "help" }, "raid1(N): N full copies. rs(K,M): K data and M parity shares; any K rebuild a chunk."));
  const advice = h("p", { class: "help", id: adviceId, role: "status" });

  const chosenScheme = () => (select.value === OTHER ? custom.value.trim() : select.value);
  const updateAdvice = () => {
    customField.hidden = select.value !== OTHER;
    const scheme = parseDurability(chosenScheme());
    advice.classList.remove("warning-text");
    if (select.value === AUTO) {
      advice.textContent = `You have ${usable} storage${usable === 1 ? "" : "s"} online.`;
    } else if (!scheme) {
      advice.textContent = select.value === OTHER && custom.value.trim()
        ? "Write raid1(N) or rs(K,M), e.g. rs(4,2)." : "";
    } else if (scheme.shares > usable) {
      advice.textContent = `This needs ${scheme.shares} storages and you have ${usable} online: uploads will fail until you add more.`;
      advice.classList.add("warning-text");
    } else {
      advice.textContent = `${describeDurability(chosenScheme())}. You have ${usable} storages online.`;
    }
  };
  select.addEventListener("change", () => {
    updateAdvice();
    if (select.value === OTHER) custom.focus();
  });
  custom.addEventListener("input", updateAdvice);

  const encryption = h("fieldset", { class: "radio-group" }, h("legend", {}, "Encryption"),
    Object.entries(ENCRYPTIONS).map(([value, label]) => {
      const id = nextId("enc");
      return h("div", { class: "radio" },
        h("input", { type: "radio", id, name: "encryption", value, checked: value === defaults.encryption }),
        h("label", { for: id }, label));
    }));
  const save = h("button", { type: "submit", class: "button primary" }, "Save");
  const result = h("div", { class: "form-result" });
  const form = h("form", { class: "settings-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: durabilityId }, "Durability"), select, advice),
    customField,
    encryption,
    h("p", { class: "muted small" }, "These apply to files uploaded from now on; stored files keep the scheme they were written with."),
    h("div", { class: "form-actions" }, save),
    result);
  updateAdvice();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren();
    const body = { encryption: form.elements.encryption.value };
    if (select.value !== AUTO) {
      const scheme = chosenScheme();
      if (!scheme) {
        result.replaceChildren(alertBox("error", "Write a durability scheme, e.g. rs(4,2)."));
        custom.focus();
        return;
      }
      body.durability = scheme;
    } else {
      body.durability = null;     // back to automatic
    }
    busy(save, true);
    try {
      const saved = await api.put("/api/filesystem/settings", body);
      result.replaceChildren(alertBox("success",
        `Saved. New files use ${saved.durability || "automatic durability"} and ${saved.encryption}.`));
    } catch (error) {
      result.replaceChildren(alertBox("error", messageOf(error)));
    } finally {
      busy(save, false);
    }
  });

  const me = ctx.me;
  root.append(pageHeader("Settings"),
    section("New files", form),
    section("Account", h("dl", { class: "facts" },
      h("dt", {}, "Username"), h("dd", {}, me.username),
      h("dt", {}, "E-mail"), h("dd", {}, me.email || "—"),
      h("dt", {}, "Groups"), h("dd", {}, (me.groups || []).length ? me.groups.join(", ") : "none")),
    passwordForm()));
}

// Changing the password: the current one, the new one twice. The server ends every other
// sign-in of the account (locally); this page stays signed in.
function passwordForm() {
  const old = field({ label: "Current password", name: "old_password", type: "password",
    required: true, autocomplete: "current-password" });
  const fresh = field({ label: "New password", name: "new_password", type: "password",
    required: true, autocomplete: "new-password",
    help: PASSWORD_HELP });
  const again = field({ label: "New password again", name: "new_password_again",
    type: "password", required: true, autocomplete: "new-password" });
  const submit = h("button", { type: "submit", class: "button" }, "Change password");
  const result = h("div", { class: "form-result" });
  const form = h("form", { class: "settings-form", novalidate: true },
    h("h3", { class: "subsection-title" }, "Password"), old, fresh, again,
    h("div", { class: "form-actions" }, submit), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren();
    const values = Object.fromEntries(new FormData(form));
    if (!values.old_password || !values.new_password) {
      result.replaceChildren(alertBox("error", "Fill in the current and the new password."));
      return;
    }
    if (values.new_password !== values.new_password_again) {
      result.replaceChildren(alertBox("error", "The two new passwords differ."));
      form.elements.new_password_again.focus();
      return;
    }
    busy(submit, true);
    try {
      await api.post("/api/auth/password", { old_password: values.old_password,
        new_password: values.new_password });
      form.reset();
      result.replaceChildren(alertBox("success",
        "Password changed. Your other sign-ins have ended; this one goes on."));
    } catch (error) {
      result.replaceChildren(alertBox("error", messageOf(error)));
    } finally {
      busy(submit, false);
    }
  });
  return form;
}
