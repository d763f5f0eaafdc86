// Shared widgets: dialogs (native <dialog>: Escape cancels, Enter submits), toasts, alerts,
// menus, page headers, progress bars.
import { h, icon, nextId } from "./dom.js";
import { messageOf } from "./api.js";

// -- dialogs --------------------------------------------------------------------------------------

// Opens a modal form. `onSubmit(form)` may throw: its message is shown and the dialog stays
// open. Resolves with onSubmit's result (or true), or null when cancelled.
export function openDialog({ title, body = [], submitLabel = "OK", cancelLabel = "Cancel",
  danger = false, onSubmit, wide = false, focusSubmit = false }) {
  return new Promise((resolve) => {
    const returnFocus = document.activeElement;
    const titleId = nextId("dialog-title");
    const error = h("p", { class: "alert alert-error", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", class: danger ? "button danger" : "button primary",
      autofocus: focusSubmit || undefined }, submitLabel);
    // cancelLabel: null for a dialog that only informs (Escape still closes it). A dangerous
    // one (delete) starts on Cancel: an Enter pressed once too often deletes nothing.
    const cancel = cancelLabel ? h("button", { type: "button", class: "button",
      autofocus: (danger && !focusSubmit) || undefined }, cancelLabel) : null;
    const form = h("form", { method: "dialog", class: "dialog-form", novalidate: true },
      h("h2", { id: titleId, class: "dialog-title" }, title),
      h("div", { class: "dialog-body" }, body),
      error,
      h("div", { class: "dialog-actions" }, cancel, submit));
    const dialog = h("dialog", { class: wide ? "dialog dialog-wide" : "dialog",
      "aria-labelledby": titleId }, form);
    let result = null;
    let busy = false;

    const finish = (value) => {
      result = value;
      dialog.close();
    };
    cancel?.addEventListener("click", () => finish(null));
    dialog.addEventListener("cancel", (event) => {
      if (busy) event.preventDefault();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (returnFocus && returnFocus.isConnected) returnFocus.focus();
      resolve(result);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (busy) return;
      if (!form.checkValidity()) {
        const invalid = form.querySelector(":invalid");
        error.textContent = invalid?.validationMessage
          ? `${labelOf(invalid)}: ${invalid.validationMessage}` : "Please fill in the form.";
        error.hidden = false;
        invalid?.focus();
        return;
      }
      error.hidden = true;
      if (!onSubmit) {
        finish(true);
        return;
      }
      busy = true;
      submit.disabled = true;
      if (cancel) cancel.disabled = true;
      submit.setAttribute("aria-busy", "true");
      try {
        const value = await onSubmit(form);
        finish(value === undefined ? true : value);
      } catch (problem) {
        error.textContent = messageOf(problem);
        error.hidden = false;
      } finally {
        busy = false;
        submit.disabled = false;
        if (cancel) cancel.disabled = false;
        submit.removeAttribute("aria-busy");
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    const first = dialog.querySelector("[autofocus]") ||
      dialog.querySelector("input:not([type=hidden]):not([disabled]), select, textarea");
    (first || submit).focus();
    if (first && first.select && first.type === "text") first.select();
  });
}

function labelOf(input) {
  const label = input.labels && input.labels[0];
  return label ? label.textContent.replace(/\s*\(optional\)\s*$/, "").trim() : "This field";
}

export async function confirmDialog({ title, message, confirmLabel = "OK", danger = false }) {
  const answer = await openDialog({ title, body: [h("p", {}, message)], submitLabel: confirmLabel,
    danger, focusSubmit: !danger });
  return answer === true;
}

// A one-field dialog; `onSubmit(value)` does the work (and may throw to keep it open).
export function promptDialog({ title, label, value = "", submitLabel = "Save", help, onSubmit,
  selectStem = false }) {
  const id = nextId("prompt");
  const helpId = help ? nextId("help") : undefined;
  const input = h("input", { id, name: "value", type: "text", value, required: true,
    autocomplete: "off", "aria-describedby": helpId, spellcheck: "false" });
  const body = [h("div", { class: "field" }, h("label", { for: id }, label), input,
    help ? h("p", { class: "help", id: helpId }, help) : null)];
  const promise = openDialog({ title, body, submitLabel,
    onSubmit: (form) => onSubmit(form.elements.value.value.trim()) });
  if (selectStem) {
    const dot = value.lastIndexOf(".");
    if (dot > 0) input.setSelectionRange(0, dot);
  }
  return promise;
}

// -- toasts and alerts ----------------------------------------------------------------------------

export function toast(message, kind = "info") {
  const host = document.getElementById("toasts");
  const close = h("button", { type: "button", class: "icon-button", "aria-label": "Dismiss" },
    icon("close"));
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", { class: "toast-text" }, message), close);
  const remove = () => item.remove();
  close.addEventListener("click", remove);
  host.append(item);
  setTimeout(remove, kind === "error" ? 12000 : 6000);
  return item;
}

export function showError(error) {
  toast(messageOf(error), "error");
}

export function alertBox(kind, message, ...extra) {
  return h("div", { class: `alert alert-${kind}`, role: kind === "error" ? "alert" : "status" },
    kind === "error" || kind === "warning" ? icon("warning") : null,
    h("div", { class: "alert-text" }, message, ...extra));
}

// -- menus ----------------------------------------------------------------------------------------

let openMenu = null;

function closeOpenMenu(focusButton = false) {
  if (!openMenu) return;
  const { list, button } = openMenu;
  list.hidden = true;
  button.setAttribute("aria-expanded", "false");
  openMenu = null;
  if (focusButton) button.focus();
}

document.addEventListener("click", (event) => {
  if (openMenu && !openMenu.wrap.contains(event.target)) closeOpenMenu();
});

// A button that opens a list of actions (keyboard: arrows move, Escape closes).
export function menuButton(label, items, { iconName = "more", text } = {}) {
  const listId = nextId("menu");
  const button = h("button", { type: "button", class: text ? "button" : "icon-button",
    "aria-haspopup": "menu", "aria-expanded": "false", "aria-controls": listId,
    "aria-label": text ? undefined : label }, icon(iconName), text ? h("span", {}, text) : null);
  const list = h("div", { class: "menu", role: "menu", id: listId, hidden: true,
    "aria-label": label });
  const wrap = h("div", { class: "menu-wrap" }, button, list);
  for (const item of items.filter(Boolean)) {
    const entry = h("button", { type: "button", role: "menuitem", tabindex: "-1",
      class: item.danger ? "menu-item danger" : "menu-item" },
    item.icon ? icon(item.icon) : null, h("span", {}, item.label));
    entry.addEventListener("click", () => {
      closeOpenMenu(true);
      item.onSelect();
    });
    list.append(entry);
  }
  const entries = () => [...list.querySelectorAll("[role=menuitem]")];
  const open = () => {
    closeOpenMenu();
    list.hidden = false;
    button.setAttribute("aria-expanded", "true");
    openMenu = { list, button, wrap };
    entries()[0]?.focus();
  };
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    if (openMenu && openMenu.list === list) closeOpenMenu(true);
    else open();
  });
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      open();
    }
  });
  list.addEventListener("keydown", (event) => {
    const all = entries();
    const at = all.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      all[(at + step + all.length) % all.length].focus();
    } else if (event.key === "Home") {
      event.preventDefault();
      all[0].focus();
    } else if (event.key === "End") {
      event.preventDefault();
      all[all.length - 1].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      closeOpenMenu(true);
    } else if (event.key === "Tab") {
      closeOpenMenu();
    }
  });
  return wrap;
}

// -- layout pieces --------------------------------------------------------------------------------

export function pageHeader(title, ...actions) {
  return h("div", { class: "page-header" },
    h("h1", { tabindex: "-1", class: "page-title" }, title),
    actions.length ? h("div", { class: "page-actions" }, actions) : null);
}

export function section(title, ...content) {
  const id = nextId("section");
  return h("section", { class: "panel", "aria-labelledby": id },
    h("h2", { id, class: "panel-title" }, title), content);
}

export function meter(value, max, label) {
  const ratio = max > 0 ? Math.min(1, Math.max(0, value / max)) : 0;
  const level = ratio > 0.9 ? "meter-high" : ratio > 0.75 ? "meter-mid" : "";
  return h("div", { class: `meter ${level}`, role: "meter", "aria-valuemin": "0",
    "aria-valuemax": String(max || 0), "aria-valuenow": String(Math.min(value, max || 0)),
    "aria-label": label },
  h("div", { class: "meter-fill", style: { width: `${(ratio * 100).toFixed(1)}%` } }));
}

export function badge(text, kind = "neutral") {
  return h("span", { class: `badge badge-${kind}` }, text);
}

export function field({ label, name, type = "text", value = "", required = false, help,
  autocomplete, placeholder, attrs = {} }) {
  const id = nextId(`field-${name}`);
  const helpId = help ? nextId("help") : undefined;
  const input = h("input", { id, name, type, value, required: required || undefined,
    autocomplete, placeholder, "aria-describedby": helpId, ...attrs });
  return h("div", { class: "field" },
    h("label", { for: id }, label, required ? null : h("span", { class: "optional" }, " (optional)")),
    input, help ? h("p", { class: "help", id: helpId }, help) : null);
}

export function busy(button, working) {
  button.disabled = working;
  if (working) button.setAttribute("aria-busy", "true");
  else button.removeAttribute("aria-busy");
}

export function emptyState(title, text, ...actions) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title" }, title),
    text ? h("p", { class: "muted" }, text) : null, actions.length ? h("p", {}, actions) : null);
}
