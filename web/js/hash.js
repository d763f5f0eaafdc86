// Where a `next=` parameter may send the browser after signing in: a page of this app only
// (a hash route), never another site, a javascript: URL or the login page again.
export function safeNext(next) {
  return typeof next === "string" && next.startsWith("#/") && !next.startsWith("#/login") &&
    !next.startsWith("#/signup") ? next : "#/";
}
