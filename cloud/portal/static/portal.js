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

document.addEventListener("DOMContentLoaded", () => {
  const reg = document.getElementById("register");
  if (reg) reg.addEventListener("click", () => register(reg).catch((e) => say(e.message)));
  const sign = document.getElementById("signin");
  if (sign) sign.addEventListener("click", () => signIn().catch((e) => say(e.message)));
  const erase = document.getElementById("erase");
  if (erase) erase.addEventListener("click", () => eraseEverything(erase).catch((e) => say(e.message)));
  for (const form of document.querySelectorAll("form.confirm")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
