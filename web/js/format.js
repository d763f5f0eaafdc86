// Formatting for people: sizes, dates, durability and encryption schemes.

const UNITS = ["bytes", "KB", "MB", "GB", "TB", "PB"];

export function bytes(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  let n = Number(value);
  if (n < 1000) return `${n} ${n === 1 ? "byte" : "bytes"}`;
  let unit = 0;
  while (n >= 1000 && unit < UNITS.length - 1) {
    n /= 1000;
    unit += 1;
  }
  return `${n >= 100 ? Math.round(n) : n.toFixed(1).replace(/\.0$/, "")} ${UNITS[unit]}`;
}

// "500 GB", "2TiB", "1048576" -> bytes; null for blank; NaN for nonsense.
export function parseSize(text) {
  const value = String(text ?? "").trim();
  if (!value) return null;
  const match = value.match(/^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)b?(?:ytes?)?$/i);
  if (!match) return NaN;
  const power = "kmgtp".indexOf(match[2].toLowerCase()) + 1;
  const base = match[3] ? 1024 : 1000;
  return Math.round(Number(match[1]) * base ** power);
}

export function date(iso) {
  if (!iso) return "—";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "—";
  return when.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function relative(iso) {
  if (!iso) return "never";
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (Number.isNaN(seconds)) return "—";
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return date(iso);
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

// "raid1(3)" -> {kind, k, m, shares, needed, tolerates}; null when unreadable.
export function parseDurability(text) {
  const value = String(text || "").replace(/\s+/g, "").toLowerCase();
  let match = value.match(/^raid1\((\d+)\)$/);
  if (match) {
    const copies = Number(match[1]);
    return { kind: "raid1", k: 1, m: copies - 1, shares: copies, needed: 1, tolerates: copies - 1 };
  }
  match = value.match(/^rs\((\d+),(\d+)\)$/);
  if (match) {
    const k = Number(match[1]);
    const m = Number(match[2]);
    return { kind: "rs", k, m, shares: k + m, needed: k, tolerates: m };
  }
  return null;
}

export function describeDurability(text) {
  const d = parseDurability(text);
  if (!d) return text ? String(text) : "Automatic";
  const survive = d.tolerates === 0
    ? "no storage may be lost"
    : `survives losing any ${d.tolerates === 1 ? "one storage" : `${d.tolerates} storages`}`;
  if (d.kind === "raid1") {
    return d.shares === 1 ? "1 copy, no redundancy" : `${d.shares} full copies, ${survive}`;
  }
  const overhead = (d.shares / d.k).toFixed(2).replace(/\.?0+$/, "");
  return `Erasure coded: ${d.k} data + ${d.m} parity shares (${overhead}× the size), ${survive}`;
}

export function tolerance(text) {
  const d = parseDurability(text);
  return d ? d.tolerates : null;
}

export const ENCRYPTIONS = {
  "aes256-gcm": "AES-256-GCM (recommended)",
  "aes256-md5": "AES-256 with an MD5 checksum (compatibility)",
  none: "None — shares are stored readable",
};

export function describeEncryption(value) {
  return ENCRYPTIONS[value] || value || "—";
}

// The server's CHUNK_BYTES (cloudstrype/limits.py; a test keeps this copy equal).
export const CHUNK_SIZE = 4 * 1024 * 1024;

export function chunkCount(size) {
  return size > 0 ? Math.ceil(size / CHUNK_SIZE) : 0;
}

export function currentVersion(info) {
  return (info.versions || []).find((v) => v.current) || null;
}

export function joinPath(dir, name) {
  return `${dir === "/" ? "" : dir}/${name}`;
}

export function parentPath(path) {
  const cut = path.lastIndexOf("/");
  return cut <= 0 ? "/" : path.slice(0, cut);
}

export function baseName(path) {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function normalizePath(path) {
  const parts = String(path || "/").split("/").filter((p) => p && p !== ".");
  return `/${parts.join("/")}`;
}

// The user pool's password policy in words (cloudstrype.auth.pool.PASSWORD_POLICY).
export const PASSWORD_HELP =
  "At least 8 characters, with an upper-case letter (A-Z), a lower-case letter (a-z) and a digit (0-9).";
