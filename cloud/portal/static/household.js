// The household's key, in the owner's browser alone (cloud/portal/household.py). age is typage,
// vendored as age-encryption.js (deploy/typage/build.sh); nothing here sends a key to the server.
import * as age from "./age-encryption.js";

const say = (text) => { const el = document.getElementById("status"); if (el) el.textContent = text; };
const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const b64 = (data) => btoa(String.fromCharCode(...data));

// A recovery code: 30 characters of an alphabet without look-alikes (150 bits), in groups of 5.
export function recoveryCode() {
  const alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
  const out = [];
  while (out.length < 30) {
    const [n] = crypto.getRandomValues(new Uint8Array(1));
    if (n < 248) out.push(alphabet[n % 31]);  // 248 = 8 x 31: no bias
  }
  return out.join("").match(/.{5}/g).join("-");
}

async function makeKey(button) {
  say("Making your household key, then asking your passkey to keep it…");
  const identity = await age.generateX25519Identity();
  const recipient = await age.identityToRecipient(identity);
  const forPasskey = new age.Encrypter();
  forPasskey.addRecipient(new age.webauthn.WebAuthnRecipient({rpId: location.hostname}));
  const code = recoveryCode();
  const forCode = new age.Encrypter();
  forCode.setPassphrase(code);
  const wraps = [{kind: "passkey", data: b64(await forPasskey.encrypt(identity))},
                 {kind: "recovery", data: b64(await forCode.encrypt(identity))}];
  const response = await fetch("/api/household", {
    method: "POST", credentials: "same-origin", headers: {"content-type": "application/json"},
    body: JSON.stringify({csrf: button.dataset.csrf, recipient, wraps})});
  const done = await response.json();
  if (!response.ok) throw new Error(done.error || "the key was not kept");
  sessionStorage.setItem("earmark-household", identity);
  button.hidden = true;
  document.getElementById("recovery-code").textContent = code;
  document.getElementById("fingerprint").textContent = done.fingerprint;
  document.getElementById("made").hidden = false;
  document.getElementById("save-key").addEventListener("click", () => {
    const file = new Blob([`# Earmark household key: keep it private\n# public key: ${recipient}\n${identity}\n`],
                          {type: "text/plain"});
    const link = Object.assign(document.createElement("a"), {href: URL.createObjectURL(file),
                                                            download: "household-key.txt"});
    link.click();
  });
  say("Your household key is made and kept by your passkey.");
}

// The household's identity: this session's, else unwrapped by a passkey, else by the recovery code.
let unlocking = null;
export function unlock() {
  unlocking ??= (async () => {
    const kept = sessionStorage.getItem("earmark-household");
    if (kept) return kept;
    const response = await fetch("/api/household", {credentials: "same-origin",
                                                    headers: {"content-type": "application/json"}});
    const household = await response.json();
    if (!household.recipients.length) throw new Error("your household has no key yet: make it on the Household key page");
    for (const wrap of household.wraps.filter((w) => w.kind === "passkey")) {
      try {
        const d = new age.Decrypter();
        d.addIdentity(new age.webauthn.WebAuthnIdentity({rpId: location.hostname}));
        const identity = await d.decrypt(bytes(wrap.data), "text");
        sessionStorage.setItem("earmark-household", identity);
        return identity;
      } catch (e) { /* not this passkey, or no PRF: try the next, then the recovery code */ }
    }
    for (const join of household.joins.filter((j) => j.confirmed)) {  // a member given the key (confirm pattern)
      const [wrap] = household.wraps.filter((w) => w.kind === "member" && w.join === join.id);
      if (!wrap) continue;
      try {
        const own = new age.Decrypter();
        own.addIdentity(new age.webauthn.WebAuthnIdentity({rpId: location.hostname}));
        const member = await own.decrypt(bytes(join.wrap), "text");
        const d = new age.Decrypter();
        d.addIdentity(member);
        const identity = await d.decrypt(bytes(wrap.data), "text");
        sessionStorage.setItem("earmark-household", identity);
        return identity;
      } catch (e) { /* another member's: try the next */ }
    }
    const given = await askForSecret();
    let identity;
    if (given.file) {  // a household key kept as a file (age-keygen's, or saved from this page)
      identity = (given.file.match(/^AGE-SECRET-KEY-1[0-9A-Z]+$/m) || [""])[0];
      if (!identity || !household.recipients.includes(await age.identityToRecipient(identity))) {
        throw new Error("that file does not hold your household key");
      }
    } else {
      const [wrap] = household.wraps.filter((w) => w.kind === "recovery");
      if (!wrap) throw new Error("your household key was made outside this page: choose its file instead");
      const d = new age.Decrypter();
      d.addPassphrase(given.code.trim().toUpperCase());
      try {
        identity = await d.decrypt(bytes(wrap.data), "text");
      } catch (e) {
        throw new Error("that recovery code does not open your household key");
      }
    }
    sessionStorage.setItem("earmark-household", identity);  // this session only
    return identity;
  })();
  unlocking.catch(() => { unlocking = null; });
  return unlocking;
}

// The recovery code typed, or the household key file chosen, in the page's unlock form.
function askForSecret() {
  const form = document.getElementById("unlock");
  if (!form) return Promise.reject(new Error("this page cannot ask for the recovery code"));
  form.hidden = false;
  form.elements.code.focus();
  return new Promise((resolve) => form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.hidden = true;
    const [file] = form.elements.keyfile.files;
    resolve(file ? {file: await file.text()} : {code: form.elements.code.value});
  }, {once: true}));
}

// A sealed recording (its audio answer is an age file): unlocked, decrypted here, then played.
async function openSealed(audio) {
  const response = await fetch(audio.dataset.src || audio.src, {credentials: "same-origin"});
  if (response.headers.get("x-earmark-sealed") !== "age") return;
  const sealed = new Uint8Array(await response.arrayBuffer());
  say("Opening the recording with your household key…");
  const identity = await unlock();
  const started = performance.now();
  const d = new age.Decrypter();
  d.addIdentity(identity);
  let wav;
  try {
    wav = await d.decrypt(sealed);
  } catch (e) {
    throw new Error("This recording does not open with your household key: it is sealed to another key, or damaged.");
  }
  audio.dataset.decryptMs = (performance.now() - started).toFixed(1);
  audio.dataset.decodedBytes = String(wav.length);
  audio.dataset.src = audio.dataset.src || audio.src;
  audio.src = URL.createObjectURL(new Blob([wav], {type: "audio/wav"}));
  audio.preload = "auto";
  audio.load();
  audio.play().catch(() => { /* no gesture left to play with: the player's own button does */ });
  say("");
}

async function post(url, body) {
  const response = await fetch(url, {method: "POST", credentials: "same-origin",
                                     headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
  const done = await response.json();
  if (!response.ok) throw new Error(done.error || "that did not work");
  return done;
}

// A newcomer: a member key of its own, kept by this passkey; its public half asks to join.
async function askToJoin(button) {
  say("Asking your passkey to keep this browser's member key…");
  const member = await age.generateX25519Identity();
  const recipient = await age.identityToRecipient(member);
  const keep = new age.Encrypter();
  keep.addRecipient(new age.webauthn.WebAuthnRecipient({rpId: location.hostname}));
  const done = await post("/api/household/join", {csrf: button.dataset.csrf, recipient,
                                                  wrap: b64(await keep.encrypt(member))});
  document.getElementById("join-fingerprint").textContent = done.fingerprint;
  document.getElementById("join-asked").hidden = false;
  button.hidden = true;
  say("Asked: a member compares your fingerprint and gives you the key.");
}

// A member: the household key, wrapped in this browser to the newcomer's member key.
async function confirmJoin(button) {
  const identity = await unlock();
  const e = new age.Encrypter();
  e.addRecipient(button.dataset.recipient);
  await post("/api/household/confirm", {csrf: button.dataset.csrf, join: button.dataset.join,
                                        data: b64(await e.encrypt(identity))});
  button.closest("li").textContent = "Given: they can open your recordings now.";
  say("The new member has the key.");
}

document.addEventListener("DOMContentLoaded", () => {
  const make = document.getElementById("make-key");
  if (make) make.addEventListener("click", () => makeKey(make).catch((e) => say(e.message)));
  const ask = document.getElementById("ask-join");
  if (ask) ask.addEventListener("click", () => askToJoin(ask).catch((e) => say(e.message)));
  for (const button of document.querySelectorAll("button.confirm-join")) {
    button.addEventListener("click", () => confirmJoin(button).catch((e) => say(e.message)));
  }
  for (const audio of document.querySelectorAll("audio[data-sealable]")) {
    audio.addEventListener("error", () => {
      if (audio.dataset.decodedBytes) return;  // opened already: a real playback error
      openSealed(audio).catch((e) => say(e.message));
    });
  }
});
