// The dashboard's only script: polls its page for a fresh <main> every 2 s, keeps the token of this tab in
// sessionStorage and sends it as a bearer token, and posts promote / roll back. The server escapes every text it
// renders; this script writes only with textContent.
"use strict";
(() => {
  const KEY = "shoal-token";
  const POLL_MS = 2000;
  const main = document.getElementById("main");
  const status = document.getElementById("status");
  const input = document.getElementById("token");
  const api = document.body.dataset.api;
  let shown = main.innerHTML;
  let busy = false;

  const token = () => sessionStorage.getItem(KEY);
  const auth = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const url = new URL(window.location.href);
      url.searchParams.set("fragment", "1");
      const answer = await fetch(url, { headers: auth(), cache: "no-store" });
      if (!answer.ok) {
        status.textContent = `refresh failed: HTTP ${answer.status}`;
        return;
      }
      const html = await answer.text();
      if (html !== shown) {
        main.innerHTML = html; // rendered and escaped by the server (shoal.serve.ui.pages)
        shown = html;
      }
      status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      status.textContent = "server unreachable; retrying";
    } finally {
      busy = false;
    }
  }

  async function act(button) {
    const { action, model, version } = button.dataset;
    const question =
      action === "promote"
        ? `Put v${version} of ${model} in production?`
        : `Roll ${model} back to its previous production version?`;
    if (!window.confirm(question)) return;
    const init = { method: "POST", headers: auth() };
    if (action === "promote") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify({ version: Number(version), reason: "promoted from the dashboard" });
    }
    try {
      const answer = await fetch(`${api}/v1/models/${encodeURIComponent(model)}/${action}`, init);
      const body = await answer.json().catch(() => ({}));
      status.textContent = answer.ok
        ? `${model}: v${body.version} is in production`
        : `refused: ${(body.error && body.error.message) || `HTTP ${answer.status}`}`;
    } catch (error) {
      status.textContent = `${action} not sent: server unreachable`;
    }
    await refresh();
  }

  main.addEventListener("click", (event) => {
    const button = event.target.closest("button.act");
    if (button) act(button);
  });
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const given = input.value.trim();
    if (given) sessionStorage.setItem(KEY, given);
    input.value = "";
    refresh();
  });
  document.getElementById("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    refresh();
  });
  refresh();
  window.setInterval(refresh, POLL_MS);
})();
