// Passkey ceremonies for the owner's portal (no inline script: the CSP allows only this file).
async function post(url, body) {
  const response = await fetch(url, {method: "POST", headers: {"content-type": "application/json"},
                                     body: JSON.stringify(body), credentials: "same-origin"});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || "something went wrong");
  return data;
}

function say(text) { document.getElementById("status").textContent = text; }

async function register(button) {
  say("Waiting for your passkey…");
  const start = await post("/api/register/options", {token: button.dataset.token});
  const credential = await navigator.credentials.create(
      {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(start.options)});
  const done = await post("/api/register/verify", {ceremony: start.ceremony, credential: credential.toJSON()});
  window.location.assign(done.next);
}

async function signIn() {
  say("Waiting for your passkey…");
  const start = await post("/api/signin/options", {});
  const credential = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(start.options)});
  const done = await post("/api/signin/verify", {ceremony: start.ceremony, credential: credential.toJSON()});
  window.location.assign(done.next);
}

async function eraseEverything(button) {
  const typed = document.getElementById("typed").value;
  const csrf = button.dataset.csrf;
  say("Waiting for your passkey…");
  const start = await post("/api/erase/options", {csrf, typed});
  const credential = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(start.options)});
  const done = await post("/api/erase/verify", {csrf, typed, ceremony: start.ceremony, credential: credential.toJSON()});
  window.location.assign(done.next);
}

// Times are written in UTC; here they are shown in the reader's own time zone, named.
function localTimes() {
  const format = new Intl.DateTimeFormat(undefined, {year: "numeric", month: "short", day: "numeric",
                                                     hour: "2-digit", minute: "2-digit", timeZoneName: "short"});
  for (const el of document.querySelectorAll("time[data-local]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) el.textContent = format.format(at);
  }
}

// The export's progress, in its polite live region, until it is ready (then the page shows the link).
function followExport(progress) {
  const tick = async () => {
    try {
      const response = await fetch(progress.dataset.poll, {credentials: "same-origin",
                                                           headers: {"content-type": "application/json"}});
      const job = await response.json();
      if (!job.running) { window.location.assign("/export"); return; }  // ready, failed or gone
      progress.textContent = `Preparing: ${job.done} of ${job.total || "…"} recordings.`;
    } catch (e) { /* the next tick tries again */ }
    setTimeout(tick, 1000);
  };
  setTimeout(tick, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  try { localTimes(); } catch (e) { /* the UTC times stay */ }
  // The filter's dates are the reader's own days: the server is told how far from UTC each
  // day's start is (the since day's, and the day after the until day's), summer time or not.
  for (const form of document.querySelectorAll("form.filters")) {
    form.addEventListener("submit", () => {
      for (const tz of form.querySelectorAll("input[data-tz-of]")) {
        const day = form.elements[tz.dataset.tzOf].value;
        if (!day) continue;
        const [y, m, d] = day.split("-").map(Number);
        tz.value = String(new Date(y, m - 1, d + (tz.dataset.tzOf === "until" ? 1 : 0)).getTimezoneOffset());
      }
    });
  }
  const progress = document.querySelector("[data-poll]");
  if (progress) followExport(progress);
  const reg = document.getElementById("register");
  if (reg) reg.addEventListener("click", () => register(reg).catch((e) => say(e.message)));
  const sign = document.getElementById("signin");
  if (sign) sign.addEventListener("click", () => signIn().catch((e) => say(e.message)));
  const erase = document.getElementById("erase");
  if (erase) erase.addEventListener("click", () => eraseEverything(erase).catch((e) => say(e.message)));
  for (const form of document.querySelectorAll("form.confirm")) {
    form.addEventListener("submit", (event) => {
      const ask = event.submitter && event.submitter.hasAttribute("data-confirm")  // a button may ask its own
          ? event.submitter.dataset.confirm : form.dataset.confirm;               // question, or none ("")
      if (ask && !window.confirm(ask)) event.preventDefault();
    });
  }
});
