// The REST API and the signed-in session: base URL from config.json, bearer tokens that are
// refreshed before they expire (and once more on a 401), errors turned into sentences.

const SESSION_KEY = "cloudstrype.session";
const REFRESH_AHEAD_MS = 2 * 60 * 1000;     // refresh this long before the access token expires
const MIN_VALID_MS = 60 * 1000;             // never send a token with less than this left

export const NETWORK_MESSAGE = "Cannot reach the server. Check your connection and try again.";

let config = { apiBaseUrl: "" };
let base = "";

export async function loadConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) config = await response.json();
  } catch {
    // No config file: talk to the API on this origin.
  }
  base = String(config.apiBaseUrl || "").replace(/\/+$/, "");
  return config;
}

export function getConfig() {
  return config;
}

export function apiUrl(path, query) {
  let url = base + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(key, value);
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  return url;
}

export class ApiError extends Error {
  constructor(message, { status = 0, code = "", details = {} } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

// Where the server's own message would send a person to the API, say it in the UI's words.
const FRIENDLY = {
  not_confirmed: "Your account is not confirmed yet. Enter the code from the e-mail we sent you.",
  invalid_refresh_token: "Your session has ended. Please log in again.",
  payload_too_large: "That is too large to send in one request.",
};

// 401s about something else than the request's token (a password it carries): no refresh, no
// logout, the server's words.
const NOT_THE_TOKEN = new Set(["wrong_password"]);

async function refusesTheToken(response) {
  try {
    const body = await response.clone().json();
    return !(body && body.error && NOT_THE_TOKEN.has(body.error.code));
  } catch {
    return true;
  }
}

export function statusMessage(status) {
  if (status === 401) return "You are not signed in, or your session has ended. Please log in again.";
  if (status === 403) return "You are not allowed to do that.";
  if (status === 404) return "That was not found. It may have been moved or deleted.";
  if (status === 413) return "That is too large to send in one request.";
  if (status === 429) return "The server is busy. Try again in a moment.";
  if (status === 502 || status === 503 || status === 504) {
    return "The server did not answer in time. Try again in a moment.";
  }
  if (status >= 500) return `The server had a problem (error ${status}). Try again in a moment.`;
  return `The request did not succeed (error ${status}).`;
}

export async function errorFrom(status, readJson) {
  let body = null;
  try {
    body = await readJson();
  } catch {
    body = null;
  }
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error.message === "string" && error.message) {
    return new ApiError(FRIENDLY[error.code] || error.message,
      { status, code: error.code || "", details: error.details });
  }
  return new ApiError(statusMessage(status), { status });
}

// The size of the whole file a 206's Content-Range ("bytes a-b/size") names, or null.
export function rangeTotal(header) {
  const total = Number((header || "").split("/")[1]);
  return Number.isSafeInteger(total) ? total : null;
}

export function messageOf(error) {
  if (error instanceof ApiError) return error.message;
  if (error && error.name === "AbortError") return "Cancelled.";
  return "Something went wrong in the page. Reload it and try again.";
}

// -- session -------------------------------------------------------------------------------------

let session = readSession();
let refreshing = null;
let timer = null;
const listeners = new Set();

function readSession() {
  try {
    const value = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
    return value && value.access_token && value.refresh_token ? value : null;
  } catch {
    return null;
  }
}

function writeSession() {
  try {
    if (session) localStorage.setItem(SESSION_KEY, JSON.stringify(session));
    else localStorage.removeItem(SESSION_KEY);
  } catch {
    // Private mode without storage: the session lives as long as the page.
  }
}

function notify(reason) {
  for (const listener of listeners) listener(session, reason);
}

export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function currentSession() {
  return session;
}

function tokenExpiry(token, expiresIn) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    if (typeof payload.exp === "number") return payload.exp * 1000;
  } catch {
    // Not a JWT we can read: fall back to expires_in.
  }
  return Date.now() + (Number(expiresIn) || 3600) * 1000;
}

function setTokens(tokens, username) {
  session = {
    access_token: tokens.access_token,
    id_token: tokens.id_token,
    refresh_token: tokens.refresh_token || session?.refresh_token,
    expires_at: tokenExpiry(tokens.access_token, tokens.expires_in),
    username: username || session?.username,
  };
  writeSession();
  schedule();
  notify("tokens");
}

function schedule() {
  clearTimeout(timer);
  if (!session) return;
  const wait = Math.max(5000, session.expires_at - Date.now() - REFRESH_AHEAD_MS);
  // setTimeout cannot wait longer than ~24 days; tokens live an hour, so this is fine.
  timer = setTimeout(() => refresh().catch(() => {}), wait);
}

export async function login(username, password) {
  const tokens = await request("/api/auth/login", { method: "POST", auth: false,
    json: { username, password } });
  setTokens(tokens, username);
  return session;
}

export function refresh() {
  if (!session) return Promise.reject(new ApiError("Please log in.", { status: 401 }));
  if (!refreshing) {
    const token = session.refresh_token;
    refreshing = request("/api/auth/refresh", { method: "POST", auth: false,
      json: { refresh_token: token } })
      .then((tokens) => {
        if (session && session.refresh_token === token) setTokens(tokens);
        return session;
      })
      .catch((error) => {
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
          logout("Your session has ended. Please log in again.");
        } else {
          schedule();        // the network or server is down: try again later
        }
        throw error;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

export function logout(reason) {
  clearTimeout(timer);
  session = null;
  writeSession();
  notify(reason || "logout");
}

export async function accessToken() {
  if (!session) throw new ApiError("Please log in.", { status: 401 });
  if (Date.now() > session.expires_at - MIN_VALID_MS) await refresh();
  return session.access_token;
}

window.addEventListener("storage", (event) => {
  if (event.key !== SESSION_KEY) return;
  const before = session;
  session = readSession();
  schedule();
  if (Boolean(before) !== Boolean(session)) notify(session ? "login" : "logout");
});

if (session) schedule();

// -- requests ------------------------------------------------------------------------------------

export async function request(path, options = {}) {
  const { method = "GET", json, query, auth = true, signal, raw = false } = options;
  let { body } = options;
  const headers = { ...(options.headers || {}) };
  if (json !== undefined) {
    body = JSON.stringify(json);
    headers["Content-Type"] = "application/json";
  }
  if (auth) headers.Authorization = `Bearer ${await accessToken()}`;
  let response;
  try {
    response = await fetch(apiUrl(path, query), { method, headers, body, signal, cache: "no-store" });
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(NETWORK_MESSAGE, { code: "network" });
  }
  const tokenRefused = response.status === 401 && auth && await refusesTheToken(response);
  if (tokenRefused && !options.retried && session) {
    await refresh();
    return request(path, { ...options, retried: true });
  }
  if (!response.ok) {
    const error = await errorFrom(response.status, () => response.json());
    if (tokenRefused) logout("Your session has ended. Please log in again.");
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const api = {
  get: (path, query, options = {}) => request(path, { ...options, query }),
  post: (path, json, options = {}) => request(path, { ...options, method: "POST", json }),
  put: (path, json, options = {}) => request(path, { ...options, method: "PUT", json }),
  del: (path, options = {}) => request(path, { ...options, method: "DELETE" }),
};

export function enc(segment) {
  return encodeURIComponent(segment);
}
