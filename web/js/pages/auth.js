// Log in, sign up and (deployed, where Cognito mails a code) confirm an account.
import { api, login, messageOf } from "../api.js";
import { h } from "../dom.js";
import { PASSWORD_HELP } from "../format.js";
import { safeNext } from "../hash.js";
import { alertBox, busy, field } from "../ui.js";

export default async function render(root, ctx) {
  const signup = ctx.name === "signup";
  root.classList.add("auth-page");
  const card = h("div", { class: "auth-card" });
  root.append(card);
  if (signup) signupForm(card, ctx);
  else loginForm(card, ctx);
}

function formError(form) {
  let box = form.querySelector(".form-error");
  if (!box) {
    box = h("p", { class: "alert alert-error form-error", role: "alert", hidden: true });
    form.querySelector(".form-actions").before(box);
  }
  return {
    show(message) {
      box.textContent = message;
      box.hidden = false;
    },
    clear() {
      box.hidden = true;
      box.textContent = "";
      for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    },
  };
}

function requireFields(form, checks) {
  for (const [name, message] of checks) {
    const input = form.elements[name];
    if (!input.value.trim()) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return message;
    }
  }
  return null;
}

function nextPage(ctx) {
  return safeNext(ctx.query.get("next"));
}

function loginForm(card, ctx, { username = "", notice } = {}) {
  const submit = h("button", { type: "submit", class: "button primary wide" }, "Log in");
  const form = h("form", { class: "auth-form", novalidate: true },
    h("h1", { class: "page-title", tabindex: "-1" }, "Log in to Cloudstrype"),
    h("p", { class: "muted" }, "One encrypted, redundant file system over the storage you already have."),
    notice ? alertBox("success", notice) : null,
    field({ label: "Username", name: "username", value: username, required: true,
      autocomplete: "username", attrs: { autofocus: true, autocapitalize: "none", spellcheck: "false" } }),
    field({ label: "Password", name: "password", type: "password", required: true,
      autocomplete: "current-password" }),
    h("div", { class: "form-actions" }, submit),
    h("p", { class: "auth-switch" }, "New here? ", h("a", { href: `#/signup${ctx.query.get("next")
      ? `?next=${encodeURIComponent(ctx.query.get("next"))}` : ""}` }, "Create an account")));
  const errors = formError(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.clear();
    const missing = requireFields(form, [["username", "Enter your username."],
      ["password", "Enter your password."]]);
    if (missing) {
      errors.show(missing);
      return;
    }
    busy(submit, true);
    const name = form.elements.username.value.trim();
    try {
      await login(name, form.elements.password.value);
      ctx.navigate(nextPage(ctx));
    } catch (error) {
      if (error.code === "not_confirmed") {
        card.replaceChildren();
        confirmForm(card, ctx, name, form.elements.password.value);
        return;
      }
      errors.show(messageOf(error));
      form.elements.password.select();
      form.elements.password.focus();
    } finally {
      busy(submit, false);
    }
  });
  card.replaceChildren(form);
  if (username) form.elements.password.setAttribute("autofocus", "");
}

function signupForm(card, ctx) {
  const submit = h("button", { type: "submit", class: "button primary wide" }, "Create account");
  const form = h("form", { class: "auth-form", novalidate: true },
    h("h1", { class: "page-title", tabindex: "-1" }, "Create your account"),
    h("p", { class: "muted" }, "Your files are encrypted and spread over storages you connect."),
    field({ label: "Username", name: "username", required: true, autocomplete: "username",
      help: "Letters, digits and . _ - are fine.",
      attrs: { autofocus: true, autocapitalize: "none", spellcheck: "false" } }),
    field({ label: "E-mail", name: "email", type: "email", required: true, autocomplete: "email" }),
    field({ label: "Password", name: "password", type: "password", required: true,
      autocomplete: "new-password",
      help: PASSWORD_HELP }),
    h("div", { class: "form-actions" }, submit),
    h("p", { class: "auth-switch" }, "Have an account? ", h("a", { href: "#/login" }, "Log in")));
  const errors = formError(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.clear();
    const missing = requireFields(form, [["username", "Choose a username."],
      ["email", "Enter your e-mail address."], ["password", "Choose a password."]]);
    if (missing) {
      errors.show(missing);
      return;
    }
    const email = form.elements.email;
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email.value.trim())) {
      email.setAttribute("aria-invalid", "true");
      email.focus();
      errors.show("Enter an e-mail address like name@example.org.");
      return;
    }
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    busy(submit, true);
    try {
      const created = await api.post("/api/auth/register",
        { username, email: email.value.trim(), password }, { auth: false });
      if (created && created.confirmed === false) {
        confirmForm(card, ctx, username, password);
        return;
      }
      await login(username, password);
      ctx.navigate("#/");
    } catch (error) {
      const fieldName = error.details && error.details.field;
      if (fieldName && form.elements[fieldName]) {
        form.elements[fieldName].setAttribute("aria-invalid", "true");
        form.elements[fieldName].focus();
      }
      errors.show(messageOf(error));
    } finally {
      busy(submit, false);
    }
  });
  card.replaceChildren(form);
}

function confirmForm(card, ctx, username, password) {
  const submit = h("button", { type: "submit", class: "button primary wide" }, "Confirm");
  const form = h("form", { class: "auth-form", novalidate: true },
    h("h1", { class: "page-title", tabindex: "-1" }, "Confirm your account"),
    h("p", {}, `We sent a code to the e-mail address of ${username}. Enter it here.`),
    field({ label: "Code", name: "code", required: true, autocomplete: "one-time-code",
      attrs: { inputmode: "numeric", autofocus: true } }),
    h("div", { class: "form-actions" }, submit));
  const errors = formError(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.clear();
    const missing = requireFields(form, [["code", "Enter the code from the e-mail."]]);
    if (missing) {
      errors.show(missing);
      return;
    }
    busy(submit, true);
    try {
      await api.post("/api/auth/confirm", { username, code: form.elements.code.value.trim() },
        { auth: false });
      if (password) {
        await login(username, password);
        ctx.navigate("#/");
      } else {
        loginForm(card, ctx, { username, notice: "Your account is confirmed. Log in now." });
      }
    } catch (error) {
      errors.show(messageOf(error));
    } finally {
      busy(submit, false);
    }
  });
  card.replaceChildren(form);
  form.elements.code.focus();
}
