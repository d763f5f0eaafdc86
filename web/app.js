// Reads the deployment's config (API base URL), then shows whether the API answers.
(async function () {
  const status = document.getElementById("status");
  try {
    const config = await (await fetch("config.json")).json();
    const health = await (await fetch(`${config.apiBaseUrl || ""}/api/health`)).json();
    status.textContent = health.status === "ok" ? "The server is up." : "The server is not healthy.";
  } catch (error) {
    status.textContent = "The server cannot be reached.";
  }
})();
