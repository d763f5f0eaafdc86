// Uploads and downloads, with a progress bar per file and overall.
//
// Small files (up to BATCH_FILE_MAX, the server's pack threshold) bound for the same folder go
// many to a request (POST /api/filesystem/batch), which the server packs together; each file
// keeps its own row, the batch's progress is shown on each, and the 207 answer fails a file
// alone (retried alone, in one request). Cancelling a file of a running batch cancels the batch.
// Other uploads up to 4 MiB go in one multipart request; bigger files go through an upload session:
// parts of `part_size` bytes, several at once, each retried on a network error or a 5xx (the
// API makes a repeated part harmless), then a commit. A failed upload can be resumed: the
// session says which parts arrived. Downloads up to 4 MiB are one request; bigger ones are
// Range requests of at most 4 MiB, pinned to one version, assembled into a Blob.
import { accessToken, apiUrl, ApiError, errorFrom, messageOf, NETWORK_MESSAGE, rangeTotal, refresh } from "./api.js";
import { h, icon } from "./dom.js";
import { bytes, CHUNK_SIZE, plural } from "./format.js";
import { sha256 } from "./vendor/noble-hashes/sha2.js";

// One request carries at most this much file data (Lambda's 6 MB payload, after base64).
// Copies of the server's limits (layers/shared/python/cloudstrype/limits.py), checked against it
// by tests/foundation/test_gateway.py: files up to ONE_SHOT_MAX go in one request (under
// ONE_SHOT_MAX_BYTES with room for the form around them); RANGE_SIZE is RANGE_MAX_BYTES.
export const ONE_SHOT_MAX = 4 * 1024 * 1024;
const RANGE_SIZE = 4 * 1024 * 1024;
// Batches, copies of the server's (checked by tests/cli/test_batch_put.py): files up to
// BATCH_FILE_MAX (pipeline.packs.PACK_THRESHOLD), at most BATCH_MAX_FILES (tree.files.
// MAX_BATCH_FILES) and BATCH_MAX_BYTES of body as sent (under ONE_SHOT_MAX_BYTES) per request.
const BATCH_FILE_MAX = 256 * 1024;
const BATCH_MAX_FILES = 500;
const BATCH_MAX_BYTES = 4 * 1024 * 1024;
// What the form adds per file part besides its bytes and name, and once per batch, generously.
const BATCH_PART_OVERHEAD = 256;
const BATCH_FORM_OVERHEAD = 4096;
const FILES_AT_ONCE = 3;
const PARTS_AT_ONCE = 3;
const HASH_SLICE = 4 * 1024 * 1024;
const ATTEMPTS = 5;
// How many times a download starts again when its file is replaced while it downloads.
const CHANGED_TRIES = 3;
const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
// A Retry-After longer than this is waited for this long (the server asks at most 60 s).
const RETRY_AFTER_MAX_SECONDS = 120;
// What a downloaded file's blob is typed as, whatever its own type: the blob: URL is of this
// page's origin, and an HTML or SVG file opened from it would run as the app.
export const DOWNLOAD_TYPE = "application/octet-stream";

class Limiter {
  constructor(size) {
    this.size = size;
    this.active = 0;
    this.waiting = [];
  }

  async run(task) {
    if (this.active >= this.size) await new Promise((resolve) => this.waiting.push(resolve));
    this.active += 1;
    try {
      return await task();
    } finally {
      this.active -= 1;
      this.waiting.shift()?.();
    }
  }
}

const fileSlots = new Limiter(FILES_AT_ONCE);
const requestSlots = new Limiter(6);
const items = [];
let nextItemId = 0;
let panel = null;
let drawQueued = false;
let collapsed = false;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function cancelledError() {
  const error = new Error("Cancelled.");
  error.name = "AbortError";
  return error;
}

// -- HTTP with progress ---------------------------------------------------------------------------

function decodeText(xhr) {
  if (xhr.responseType === "arraybuffer") {
    return xhr.response ? new TextDecoder().decode(xhr.response) : "";
  }
  return xhr.responseText;
}

async function send(item, { method, path, query, body, headers = {}, responseType = "text",
  onUpload, onDownload, retried = false }) {
  if (item.cancelled) throw cancelledError();
  const token = await accessToken();
  const xhr = new XMLHttpRequest();
  const result = await new Promise((resolve, reject) => {
    xhr.open(method, apiUrl(path, query));
    xhr.responseType = responseType;
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (onUpload) xhr.upload.onprogress = (event) => onUpload(event.loaded, event.total);
    if (onDownload) xhr.onprogress = (event) => onDownload(event.loaded);
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => reject(new ApiError(NETWORK_MESSAGE, { code: "network" }));
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => reject(cancelledError());
    item.requests.add(xhr);
    xhr.send(body === undefined ? null : body);
  }).finally(() => item.requests.delete(xhr));
  if (result.status === 401 && !retried) {
    await refresh();
    return send(item, { method, path, query, body, headers, responseType, onUpload, onDownload,
      retried: true });
  }
  if (result.status >= 400 || result.status === 0) {
    const error = await errorFrom(result.status, () => JSON.parse(decodeText(result)));
    error.retryAfter = retryAfterSeconds(result.getResponseHeader("Retry-After"));
    throw error;
  }
  return result;
}

// The seconds a Retry-After header asks to wait (its number form; the date form is not sent by
// this server), or 0.
export function retryAfterSeconds(value) {
  const seconds = Number.parseInt(value || "", 10);
  return Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
}

async function sendJson(item, options) {
  const xhr = await send(item, options);
  const text = decodeText(xhr);
  return text ? JSON.parse(text) : null;
}

function retriable(error) {
  return error instanceof ApiError && (error.code === "network" || RETRY_STATUSES.has(error.status));
}

// `task()` again after a failure that may pass (a lost connection, 408/429/5xx), up to ATTEMPTS
// times: after the server's own wait when it names one (Retry-After: a storage away for a
// while, too many requests), else a backoff of our own. `onWait(error, attempt, ms, asked)` is
// told each wait, `onWait(null)` once it is over; `stopped()` ends the retrying.
export async function retrying(task, { onWait = () => {}, stopped = () => false } = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await task();
    } catch (error) {
      if (stopped()) throw cancelledError();
      if (!retriable(error) || attempt >= ATTEMPTS) throw error;
      const asked = Math.min(RETRY_AFTER_MAX_SECONDS, error.retryAfter || 0) * 1000;
      const wait = Math.max(asked,
        Math.min(8000, 400 * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2));
      onWait(error, attempt, wait, asked);
      await sleep(wait);
      onWait(null);
    }
  }
}

function withRetries(item, what, task) {
  return retrying(task, {
    stopped: () => item.cancelled,
    onWait: (error, attempt, wait, asked) => {
      if (error === null) {
        item.note = "";
        return;
      }
      item.retries += 1;
      item.note = asked
        ? `${error.message} Trying again in ${Math.ceil(wait / 1000)} s (${attempt} of ${ATTEMPTS - 1})…`
        : `${what} did not get through; trying again (${attempt} of ${ATTEMPTS - 1})…`;
      draw();
    } });
}

// -- uploads -------------------------------------------------------------------------------------

function newItem(direction, name, dir, size) {
  nextItemId += 1;
  const item = { id: nextItemId, direction, name, dir, size, loaded: 0, state: "queued",
    message: "", note: "", requests: new Set(), cancelled: false, retries: 0, parts: new Map(),
    sessionId: null, partCount: 0, done: null };
  items.push(item);
  return item;
}

// files: [{file, dir}] — dir is the destination directory path. emptyDirs: paths to create.
// share: a share id, to upload inside a share granted to you (paths start at its folder).
export function enqueueUploads(files, emptyDirs = [], { share } = {}) {
  const started = files.map(({ file, dir }) => {
    const item = newItem("up", file.name, dir, file.size);
    item.file = file;
    item.share = share;
    return item;
  });
  const batched = new Set();
  for (const batch of planBatches(started)) {
    const done = runBatch(batch);
    for (const item of batch) {
      batched.add(item);
      item.done = done;
    }
  }
  for (const item of started) if (!batched.has(item)) item.done = runUpload(item);
  for (const dir of emptyDirs) makeDir(dir, share);
  showPanel();
  draw();
  return started;
}

// The small files of each folder (two or more), in batches filled up to the server's limits.
function planBatches(uploads) {
  const byDir = new Map();
  for (const item of uploads) {
    if (item.size > BATCH_FILE_MAX) continue;
    if (!byDir.has(item.dir)) byDir.set(item.dir, []);
    byDir.get(item.dir).push(item);
  }
  const encoder = new TextEncoder();
  const batches = [];
  for (const [dir, small] of byDir) {
    if (small.length < 2) continue;
    const room = BATCH_MAX_BYTES - BATCH_FORM_OVERHEAD - 3 * encoder.encode(dir).length;
    let batch = [];
    let used = 0;
    for (const item of small) {
      // A name may be percent-encoded in its part's header: three bytes a byte.
      const cost = item.size + 3 * encoder.encode(item.name).length + BATCH_PART_OVERHEAD;
      if (batch.length && (batch.length >= BATCH_MAX_FILES || used + cost > room)) {
        batches.push(batch);
        batch = [];
        used = 0;
      }
      batch.push(item);
      used += cost;
    }
    batches.push(batch);
  }
  return batches;
}

// One request for the batch's files; each file ends done or failed with its own message.
async function runBatch(batch) {
  const group = { requests: new Set(), cancelled: false, retries: 0, note: "" };
  for (const item of batch) item.batch = group;
  await fileSlots.run(async () => {
    const live = batch.filter((item) => !item.cancelled);
    if (!live.length) return;
    for (const item of live) {
      item.state = "running";
      item.message = "";
    }
    draw();
    let answer = null;
    let failure = null;
    try {
      answer = await withRetries(group, "The batch", () => requestSlots.run(() => {
        const form = new FormData();
        form.append("path", live[0].dir);
        form.append("mtimes", JSON.stringify(Object.fromEntries(
          live.map((item) => [item.name, modifiedTime(item)]))));
        for (const item of live) form.append("file", item.file, item.name);
        return sendJson(group, { method: "POST", path: "/api/filesystem/batch", body: form,
          query: { share: live[0].share },
          onUpload: (loaded, sent) => {
            const fraction = sent ? Math.min(1, loaded / sent) : 0;
            for (const item of live) item.loaded = Math.round(fraction * item.size);
            draw();
          } });
      }));
    } catch (error) {
      failure = error;
    }
    const results = new Map((answer?.results || []).map((result) => [result.name, result]));
    for (const item of live) {
      item.batch = null;
      item.note = "";
      item.retries = group.retries;
      const result = results.get(item.name);
      if (failure && (group.cancelled || failure.name === "AbortError")) {
        item.state = "cancelled";
      } else if (failure) {
        item.state = "failed";
        item.message = messageOf(failure);
      } else if (result?.status === 201) {
        item.loaded = item.size;
        item.state = "done";
      } else {
        item.state = "failed";
        item.message = result?.error?.message || "The server did not report this file.";
      }
    }
    if (answer?.created) changed(live[0].dir, live[0].share);
    draw();
  });
}

async function makeDir(path, share) {
  const item = { requests: new Set(), cancelled: false };
  try {
    await sendJson(item, { method: "POST", path: "/api/filesystem/dirs", query: { share },
      body: JSON.stringify({ path }), headers: { "Content-Type": "application/json" } });
    changed(path.slice(0, path.lastIndexOf("/")) || "/", share);
  } catch (error) {
    const { toast } = await import("./ui.js");
    toast(`Could not create the folder ${path}: ${messageOf(error)}`, "error");
  }
}

// `share` tells the pages that `dir` is a path inside that share, not in the user's own tree.
function changed(dir, share) {
  window.dispatchEvent(new CustomEvent("cloudstrype:changed", { detail: { dir, share } }));
}

// The file's own modification time (Unix seconds), kept by the server as the file's
// `modified` — as the CLI sends it — so listings show when the content last changed.
function modifiedTime(item) {
  return (item.file.lastModified || Date.now()) / 1000;
}

async function runUpload(item) {
  await fileSlots.run(async () => {
    if (item.cancelled) return;
    item.state = "running";
    item.message = "";
    draw();
    try {
      if (item.size <= ONE_SHOT_MAX) await uploadOneShot(item);
      else await uploadInParts(item);
      item.loaded = item.size;
      item.state = "done";
      changed(item.dir, item.share);
    } catch (error) {
      if (item.cancelled || error.name === "AbortError") {
        // (Unless the cancel found its commit had landed: cancel() said so already.)
        if (item.state !== "done") item.state = "cancelled";
      } else {
        item.state = "failed";
        item.message = messageOf(error);
        // Refused for good (not a network failure or a busy server): its session would only
        // be refused again, so it is abandoned and its parts freed, not left open for a week
        // against the open-uploads limit; Try again starts afresh.
        if (item.sessionId && !retriable(error)) abandonSession(item);
      }
    }
    item.note = "";
    draw();
  });
}

// The session abandoned and its parts freed; true if it turned out committed already (a
// cancel that came as its commit landed: the file is there).
async function abandonSession(item) {
  const cleanup = { requests: new Set(), cancelled: false };
  const sessionId = item.sessionId;
  item.sessionId = null;
  item.parts.clear();
  try {
    await send(cleanup, { method: "DELETE",
      path: `/api/filesystem/uploads/${encodeURIComponent(sessionId)}`,
      query: { share: item.share } });
    return false;
  } catch (error) {
    return error instanceof ApiError && error.code === "upload_committed";
  }
}

async function uploadOneShot(item) {
  await withRetries(item, "The upload", () => requestSlots.run(() => {
    const form = new FormData();
    form.append("path", item.dir);
    form.append("name", item.name);
    form.append("mtime", String(modifiedTime(item)));
    form.append("file", item.file, item.name);
    return send(item, { method: "POST", path: "/api/filesystem/data", body: form,
      query: { share: item.share },
      onUpload: (loaded, total) => {
        item.loaded = total ? Math.min(item.size, Math.round((loaded / total) * item.size)) : 0;
        draw();
      } });
  }));
}

async function startSession(item) {
  // The session's id is drawn here, so a retry after a lost answer is answered the session
  // the first attempt opened (200), not a second one left open for a week.
  const uploadId = Array.from(crypto.getRandomValues(new Uint8Array(12)),
    (b) => b.toString(16).padStart(2, "0")).join("");
  const session = await withRetries(item, "Starting the upload", () => sendJson(item, {
    method: "POST", path: "/api/filesystem/uploads", query: { share: item.share },
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ path: item.dir, name: item.name, size: item.size,
      content_type: item.file.type || undefined, upload_id: uploadId }) }));
  item.sessionId = session.upload_id;
  item.partSize = session.part_size;
  item.partCount = session.parts;
  item.parts = new Map();
  return [...Array(session.parts).keys()];
}

async function resumeSession(item) {
  try {
    const status = await sendJson(item, { method: "GET",
      path: `/api/filesystem/uploads/${encodeURIComponent(item.sessionId)}`,
      query: { share: item.share } });
    if (status.committed) return [];
    for (const part of status.received) item.parts.set(part, partLength(item, part));
    return status.missing;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 410)) {
      return startSession(item);
    }
    throw error;
  }
}

function partLength(item, part) {
  return Math.min(item.size, (part + 1) * item.partSize) - part * item.partSize;
}

function updatePartsProgress(item) {
  let sum = 0;
  for (const value of item.parts.values()) sum += value;
  item.loaded = Math.min(item.size, sum);
  draw();
}

async function uploadParts(item, queue) {
  let failedOnce = false;
  const worker = async () => {
    while (queue.length && !failedOnce) {
      if (item.cancelled) throw cancelledError();
      const part = queue.shift();
      const start = part * item.partSize;
      const blob = item.file.slice(start, start + partLength(item, part));
      await withRetries(item, `Part ${part + 1} of ${item.partCount}`, () => requestSlots.run(() => {
        item.parts.set(part, 0);
        return send(item, { method: "PUT", body: blob,
          path: `/api/filesystem/uploads/${encodeURIComponent(item.sessionId)}/parts/${part}`,
          query: { share: item.share },
          headers: { "Content-Type": "application/octet-stream" },
          onUpload: (loaded) => {
            item.parts.set(part, Math.min(loaded, blob.size));
            updatePartsProgress(item);
          } });
      })).catch((error) => {
        failedOnce = true;
        throw error;
      });
      item.parts.set(part, blob.size);
      updatePartsProgress(item);
    }
  };
  const workers = [];
  for (let i = 0; i < PARTS_AT_ONCE; i += 1) workers.push(worker());
  const results = await Promise.allSettled(workers);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

// A Blob's SHA-256 (hex), read in order a slice at a time: an upload's while its parts go up
// (in any order), declared at the commit, so that later downloads (the CLI's, the owner's in
// this page: checkSha256) are checked against it; a download's before it is saved.
// WebCrypto's digest would need the whole file in memory at once.
async function blobSha256(blob, stopped) {
  const hash = sha256.create();
  for (let start = 0; start < blob.size; start += HASH_SLICE) {
    if (stopped()) throw cancelledError();
    hash.update(new Uint8Array(await blob.slice(start, start + HASH_SLICE).arrayBuffer()));
  }
  return Array.from(hash.digest(), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function uploadInParts(item) {
  let queue = item.sessionId ? await resumeSession(item) : await startSession(item);
  const hashing = blobSha256(item.file, () => item.cancelled);
  hashing.catch(() => {});          // (awaited below; a failure is the upload's)
  updatePartsProgress(item);
  for (let round = 0; round < 3; round += 1) {
    await uploadParts(item, [...queue]);
    const declared = await hashing;
    try {
      await withRetries(item, "Finishing the upload", () => sendJson(item, { method: "POST",
        path: `/api/filesystem/uploads/${encodeURIComponent(item.sessionId)}/commit`,
        query: { share: item.share },
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ mtime: modifiedTime(item), sha256: declared }) }));
      return;
    } catch (error) {
      // A commit sent again after its answer was lost on the way: it had landed.
      if (error instanceof ApiError && error.code === "upload_committed") return;
      const missing = error.details && error.details.missing;
      if (error.code !== "parts_missing" || !Array.isArray(missing)) throw error;
      for (const part of missing) item.parts.delete(part);
      queue = missing;
    }
  }
  throw new ApiError("Some parts of the file did not arrive; try the upload again.");
}

function cancel(item) {
  if (item.state === "done" || item.state === "failed" || item.state === "cancelled") return;
  item.cancelled = true;
  if (item.batch && item.state === "running") {
    item.batch.cancelled = true;
    for (const xhr of item.batch.requests) xhr.abort();
  }
  for (const xhr of item.requests) xhr.abort();
  if (item.sessionId) {
    abandonSession(item).then((committed) => {
      if (!committed) return;
      // Cancelled as its commit landed: the file is stored, and said so.
      item.state = "done";
      item.loaded = item.size;
      changed(item.dir, item.share);
      draw();
    });
  }
  if (item.state === "queued") item.state = "cancelled";
  draw();
}

function retry(item) {
  item.cancelled = false;
  item.state = "queued";
  item.message = "";
  item.retries = 0;               // (this attempt's retries are counted afresh)
  item.done = item.direction === "up" ? runUpload(item) : runDownload(item);
  draw();
}

// -- downloads -----------------------------------------------------------------------------------

// Downloads one version of a file (the current one unless `version` is given) and saves it.
export function download({ id, name, size, version, contentType, share, sha256 = null }) {
  const item = newItem("down", name, null, size);
  Object.assign(item, { fileId: id, version, contentType, share, sha256 });
  item.done = runDownload(item);
  showPanel();
  draw();
  return item;
}

async function runDownload(item) {
  await fileSlots.run(async () => {
    if (item.cancelled) return;
    item.state = "running";
    draw();
    try {
      const blob = await fetchContent(item);
      item.loaded = item.size;
      await checkSha256(item, blob);
      item.state = "done";
      saveBlob(blob, item.name);
    } catch (error) {
      if (item.cancelled || error.name === "AbortError") item.state = "cancelled";
      else {
        item.state = "failed";
        item.message = messageOf(error);
      }
    }
    item.note = "";
    draw();
  });
}

// The bytes are checked against the file's SHA-256 where the page knows it for the version
// downloaded (the CLI checks every download so): a file stored otherwise than its uploader
// hashed it, or a wrong range, is not saved.
async function checkSha256(item, blob) {
  if (!item.sha256) return;
  item.note = "Checking the file's SHA-256…";
  draw();
  const digest = await blobSha256(blob, () => item.cancelled);
  if (digest !== item.sha256) {
    throw new ApiError("The downloaded bytes do not match the file's SHA-256, so nothing was "
      + "saved. Try again; if it happens again, the file is not stored as its uploader hashed it.");
  }
}

// The bytes of the file `item` names, as one version: a file replaced while its parts come is
// downloaded again from the start (its new version), never joined from two.
async function fetchContent(item) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fetchVersion(item);
    } catch (error) {
      if (item.cancelled || !(error instanceof ApiError) || error.code !== "file_changed"
        || attempt >= CHANGED_TRIES) throw error;
      item.loaded = 0;
      item.sha256 = null;           // (the hash known here was the replaced version's)
      item.note = "The file was replaced while it downloaded; downloading the new version…";
      draw();
    }
  }
}

async function fetchVersion(item) {
  const path = `/api/filesystem/data/${encodeURIComponent(item.fileId)}`;
  const query = { version: item.version, share: item.share };
  if (item.size <= RANGE_SIZE) {
    const xhr = await withRetries(item, "The download", () => requestSlots.run(() => send(item, {
      method: "GET", path, query, responseType: "arraybuffer",
      onDownload: (loaded) => {
        item.loaded = Math.min(item.size, loaded);
        draw();
      } })));
    item.size = xhr.response.byteLength;
    return new Blob([xhr.response], { type: DOWNLOAD_TYPE });
  }
  const progress = new Map();
  // Every part after the first carries the first one's ETag (If-Match): a part of a newer
  // version is refused (412 file_changed). The first says the size of its version too, which
  // a listing read earlier may not.
  let pinned = null;
  const part = (index) => withRetries(item, `Part ${index + 1}`, () => requestSlots.run(
    async () => {
      const first = index * RANGE_SIZE;
      const last = Math.min(item.size, first + RANGE_SIZE) - 1;
      const answer = await send(item, { method: "GET", path, query, responseType: "arraybuffer",
        headers: { Range: `bytes=${first}-${last}`, ...(pinned ? { "If-Match": pinned } : {}) },
        onDownload: (loaded) => {
          progress.set(index, loaded);
          item.loaded = [...progress.values()].reduce((a, b) => a + b, 0);
          draw();
        } });
      const total = rangeTotal(answer.getResponseHeader("Content-Range"));
      if (index === 0 && answer.status === 206 && total !== null) item.size = total;
      const length = Math.min(item.size, first + RANGE_SIZE) - first;
      if (answer.status !== 206 || answer.response.byteLength !== length) {
        throw new ApiError("The server sent a different part of the file than asked for.",
          { status: 502 });
      }
      progress.set(index, length);
      return answer;
    }));
  const head = await part(0);
  pinned = head.getResponseHeader("ETag");
  const count = Math.ceil(item.size / RANGE_SIZE);
  const pieces = new Array(count);
  pieces[0] = head.response;
  const queue = [...Array(count).keys()].slice(1);
  const worker = async () => {
    while (queue.length) {
      const index = queue.shift();
      pieces[index] = (await part(index)).response;
    }
  };
  const workers = [];
  for (let i = 0; i < PARTS_AT_ONCE; i += 1) workers.push(worker());
  const results = await Promise.allSettled(workers);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  return new Blob(pieces, { type: DOWNLOAD_TYPE });
}

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// -- the panel -----------------------------------------------------------------------------------

export function initTransfers() {
  panel = document.getElementById("transfers");
  // The page keeps room below its last row for the panel (which floats over it), so no
  // row's buttons sit under it while it is open.
  if (panel && typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      const space = panel.hidden ? 0 : panel.offsetHeight + 32;
      document.documentElement.style.setProperty("--transfers-space", `${space}px`);
    }).observe(panel);
  }
  window.addEventListener("beforeunload", (event) => {
    if (items.some((item) => item.state === "running" || item.state === "queued")) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
}

function showPanel() {
  if (panel) panel.hidden = false;
}

function draw() {
  if (drawQueued || !panel) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    render();
  });
}

function statusText(item) {
  const verb = item.direction === "up" ? "Uploading" : "Downloading";
  if (item.state === "queued") return "Waiting…";
  if (item.state === "running") {
    const percent = item.size ? Math.floor((item.loaded / item.size) * 100) : 0;
    const parts = item.direction === "up" && item.partCount > 1
      ? ` in ${item.partCount} parts` : "";
    // A batch's files share its request, and so its retry notes.
    const note = item.note || item.batch?.note;
    return note || `${verb}${parts}… ${percent}% (${bytes(item.loaded)} of ${bytes(item.size)})`;
  }
  if (item.state === "done") {
    return item.direction === "up"
      ? `Uploaded${item.retries ? ` (${plural(item.retries, "retry", "retries")})` : ""}`
      : "Downloaded";
  }
  if (item.state === "cancelled") return "Cancelled";
  return `Failed: ${item.message}`;
}

let frame = null;

function ensureFrame() {
  if (frame) return frame;
  const toggle = h("button", { type: "button", class: "icon-button transfers-toggle",
    "aria-expanded": "true", "aria-controls": "transfers-list", "aria-label": "Hide transfers" },
  icon("chevron"));
  toggle.addEventListener("click", () => {
    collapsed = !collapsed;
    render();
  });
  const clear = h("button", { type: "button", class: "button small" }, "Close");
  clear.addEventListener("click", () => {
    for (let i = items.length - 1; i >= 0; i -= 1) {
      if (!["running", "queued"].includes(items[i].state)) items.splice(i, 1);
    }
    render();
  });
  const summary = h("span", { class: "transfers-summary", role: "status" });
  const overall = h("progress", { class: "transfers-overall", max: "100", value: "0" });
  const list = h("ul", { class: "transfers-list", id: "transfers-list" });
  panel.replaceChildren(h("div", { class: "transfers-head" },
    h("h2", { class: "transfers-title" }, "Transfers"), summary, clear, toggle, overall), list);
  frame = { toggle, clear, summary, overall, list };
  return frame;
}

function itemElement(item) {
  if (!item.el) {
    const progress = h("progress", { "aria-label":
      `${item.direction === "up" ? "Upload" : "Download"} of ${item.name}` });
    const status = h("div", { class: "transfer-status" });
    const actions = h("div", { class: "transfer-actions" });
    const li = h("li", { "data-name": item.name, "data-direction": item.direction },
      icon(item.direction === "up" ? "upload" : "download"),
      h("div", { class: "transfer-main" },
        h("div", { class: "transfer-name", title: item.dir || "" }, item.name), progress, status),
      actions);
    item.el = { li, progress, status, actions, state: null };
  }
  const { li, progress, status, actions } = item.el;
  progress.max = Math.max(item.size, 1);
  progress.value = item.state === "done" ? Math.max(item.size, 1) : item.loaded;
  status.textContent = statusText(item);
  status.classList.toggle("error-text", item.state === "failed");
  if (item.el.state !== item.state) {
    const hadFocus = li.contains(document.activeElement);
    li.className = `transfer transfer-${item.state}`;
    li.dataset.state = item.state;
    const buttons = [];
    if (item.state === "running" || item.state === "queued") {
      const stop = h("button", { type: "button", class: "button small",
        "aria-label": `Cancel ${item.name}` }, "Cancel");
      stop.addEventListener("click", () => cancel(item));
      buttons.push(stop);
    } else if (item.state === "failed" || item.state === "cancelled") {
      const again = h("button", { type: "button", class: "button small",
        "aria-label": `Try ${item.name} again` }, "Try again");
      again.addEventListener("click", () => retry(item));
      buttons.push(again);
    }
    actions.replaceChildren(...buttons);
    if (hadFocus) (buttons[0] || frame.clear).focus();
    item.el.state = item.state;
  }
  return li;
}

function render() {
  if (!items.length) {
    panel.hidden = true;
    return;
  }
  const f = ensureFrame();
  const counted = items.filter((item) => item.state !== "cancelled");
  const total = counted.reduce((sum, item) => sum + item.size, 0);
  const loaded = counted.reduce((sum, item) => sum + (item.state === "done" ? item.size : item.loaded), 0);
  const finished = items.filter((item) => item.state === "done").length;
  const failed = items.filter((item) => item.state === "failed").length;
  const active = items.filter((item) => item.state === "running" || item.state === "queued").length;
  const percent = total ? Math.floor((loaded / total) * 100) : (active ? 0 : 100);
  f.summary.textContent = active
    ? `${finished} of ${items.length} done · ${percent}%`
    : `${plural(finished, "transfer")} finished${failed ? `, ${failed} failed` : ""}`;
  f.overall.value = percent;
  f.overall.setAttribute("aria-label", `All transfers: ${percent}%`);
  f.clear.textContent = active ? "Clear finished" : "Close";
  f.clear.disabled = items.length - active === 0;
  f.toggle.setAttribute("aria-expanded", String(!collapsed));
  f.toggle.setAttribute("aria-label", collapsed ? "Show transfers" : "Hide transfers");
  f.list.hidden = collapsed;
  panel.classList.toggle("collapsed", collapsed);
  const wanted = items.map(itemElement);
  const keep = new Set(wanted);
  for (const child of [...f.list.children]) if (!keep.has(child)) child.remove();
  for (const li of wanted) if (li.parentNode !== f.list) f.list.append(li);
  panel.hidden = false;
}

export function activeUploads() {
  return items.filter((item) => item.direction === "up");
}

export { CHUNK_SIZE };
