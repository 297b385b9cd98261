// The household's key, in the members' browsers alone (cloud/portal/household.py,
// cloud/store/household.py). age is typage, vendored as age-encryption.js
// (deploy/typage/build.sh); nothing here sends a key to the server in the clear.
import * as age from "./age-encryption.js";

const say = (text) => { const el = document.getElementById("status"); if (el) el.textContent = text; };
const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const b64 = (data) => btoa(String.fromCharCode(...data));
const KEPT = "earmark-household";  // this session's identities, newest first (sessionStorage: gone with the tab)

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

async function post(url, body) {
  const response = await fetch(url, {method: "POST", credentials: "same-origin",
                                     headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
  const done = await response.json();
  if (!response.ok) throw new Error(done.error || "that did not work");
  return done;
}

async function household() {
  const response = await fetch("/api/household", {credentials: "same-origin",
                                                  headers: {"content-type": "application/json"}});
  return response.json();
}

const sealTo = async (recipient, secret) => {
  const e = new age.Encrypter();
  e.addRecipient(recipient);
  return b64(await e.encrypt(secret));
};
const sealWithCode = async (code, secret) => {
  const e = new age.Encrypter();
  e.setPassphrase(code);
  return b64(await e.encrypt(secret));
};

// This member's own key, kept by their passkey: {recipient, wrap (its identity under the passkey's PRF), identity}.
async function memberKey() {
  const identity = await age.generateX25519Identity();
  const keep = new age.Encrypter();
  keep.addRecipient(new age.webauthn.WebAuthnRecipient({rpId: location.hostname}));
  return {identity, recipient: await age.identityToRecipient(identity), wrap: b64(await keep.encrypt(identity))};
}

function saveKeyFile(identities, recipient) {
  const lines = [`# Earmark household key: keep it private`, `# public key: ${recipient}`, ...identities];
  const file = new Blob([lines.join("\n") + "\n"], {type: "text/plain"});
  Object.assign(document.createElement("a"), {href: URL.createObjectURL(file), download: "household-key.txt"}).click();
}

// Every identity this household has had, in one age identity file (older keys open older clips).
async function exportKey() {
  const identities = await unlock();
  saveKeyFile(identities, await age.identityToRecipient(identities[0]));
  say("Saved household-key.txt: keep it as safe as the recovery code.");
}

function showCode(code, fingerprint, identity, recipient) {
  document.getElementById("recovery-code").textContent = code;
  (document.getElementById("new-fingerprint") || document.getElementById("fingerprint")).textContent = fingerprint;
  document.getElementById("made").hidden = false;
  document.getElementById("save-key").onclick = () => saveKeyFile([identity], recipient);
}

async function makeKey(button) {
  say("Making your household key, then asking your passkey to keep it…");
  const identity = await age.generateX25519Identity();
  const recipient = await age.identityToRecipient(identity);
  const member = await memberKey();
  const code = recoveryCode();
  const done = await post("/api/household", {
    csrf: button.dataset.csrf, recipient, recovery: await sealWithCode(code, identity),
    member: {recipient: member.recipient, wrap: member.wrap, data: await sealTo(member.recipient, identity)}});
  sessionStorage.setItem(KEPT, JSON.stringify([identity]));
  button.hidden = true;
  showCode(code, done.fingerprint, identity, recipient);
  say("Your household key is made and kept by your passkey.");
}

// Every identity this household has had that this browser can reach, newest first: the newest
// through this member's passkey (or the recovery code, or a key file), then each older one
// through the 'previous' wraps a rotation left.
let unlocking = null;
export function unlock() {
  unlocking ??= (async () => {
    const kept = sessionStorage.getItem(KEPT);
    if (kept) return JSON.parse(kept);
    const house = await household();
    if (!house.recipients.length) throw new Error("your household has no key yet: make it on the Household key page");
    const open = async (data, identity) => {
      const d = new age.Decrypter();
      d.addIdentity(identity);
      return d.decrypt(bytes(data), "text");
    };
    let newest = null;
    for (const join of house.joins.filter((j) => j.confirmed)) {
      const [wrap] = house.wraps.filter((w) => w.kind === "member" && w.join === join.id);
      if (!wrap) continue;
      try {
        const own = new age.Decrypter();
        own.addIdentity(new age.webauthn.WebAuthnIdentity({rpId: location.hostname}));
        newest = await open(wrap.data, await own.decrypt(bytes(join.wrap), "text"));
        break;
      } catch (e) { /* another member's key, or no PRF here: try the next */ }
    }
    if (newest === null) newest = await fromSecret(house);
    const identities = [newest];
    for (let grown = true; grown;) {  // older identities, each wrapped to the one after it
      grown = false;
      for (const wrap of house.wraps.filter((w) => w.kind === "previous")) {
        for (const identity of [...identities]) {
          try {
            const older = await open(wrap.data, identity);
            if (!identities.includes(older)) { identities.push(older); grown = true; }
          } catch (e) { /* not wrapped to this one */ }
        }
      }
    }
    sessionStorage.setItem(KEPT, JSON.stringify(identities));  // this session only
    return identities;
  })();
  unlocking.catch(() => { unlocking = null; });
  return unlocking;
}

async function fromSecret(house) {
  const given = await askForSecret();
  if (given.file) {  // a household key kept as a file (age-keygen's, or saved from the page)
    const identity = (given.file.match(/^AGE-SECRET-KEY-1[0-9A-Z]+$/m) || [""])[0];
    if (!identity) throw new Error("that file does not hold a household key");
    return identity;
  }
  const [wrap] = house.wraps.filter((w) => w.kind === "recovery");
  if (!wrap) throw new Error("your household key was made outside this page: choose its file instead");
  const d = new age.Decrypter();
  d.addPassphrase(given.code.trim().toUpperCase());
  try {
    return await d.decrypt(bytes(wrap.data), "text");
  } catch (e) {
    throw new Error("that recovery code does not open your household key");
  }
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
  const identities = await unlock();
  const started = performance.now();
  const d = new age.Decrypter();
  for (const identity of identities) d.addIdentity(identity);
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

// A newcomer: a member key of its own, kept by this passkey; its public half asks to join.
async function askToJoin(button) {
  say("Asking your passkey to keep this browser's member key…");
  const member = await memberKey();
  const done = await post("/api/household/join", {csrf: button.dataset.csrf, recipient: member.recipient,
                                                  wrap: member.wrap});
  document.getElementById("join-fingerprint").textContent = done.fingerprint;
  document.getElementById("join-asked").hidden = false;
  button.hidden = true;
  say("Asked: a member compares your fingerprint and gives you the key.");
}

// A member: the household key, wrapped in this browser to the newcomer's member key.
async function confirmJoin(button) {
  const [identity] = await unlock();
  await post("/api/household/confirm", {csrf: button.dataset.csrf, join: button.dataset.join,
                                        data: await sealTo(button.dataset.recipient, identity)});
  button.closest("li").textContent = "Given: they can open your recordings now.";
  say("The new member has the key.");
}

// Removing a member: a new household key, given to everyone else, the old one kept reachable from it.
async function removeMember(button) {
  if (!window.confirm("Remove this member? Their passkey will not open recordings made from now on; "
                      + "your devices must then be paired again.")) return;
  const [old] = await unlock();
  say("Making a new household key without that member…");
  const house = await household();
  const identity = await age.generateX25519Identity();
  const recipient = await age.identityToRecipient(identity);
  const members = [];
  for (const join of house.joins.filter((j) => j.confirmed && j.id !== button.dataset.join)) {
    members.push({join: join.id, data: await sealTo(join.recipient, identity)});
  }
  const code = recoveryCode();
  const done = await post("/api/household/rotate", {
    csrf: button.dataset.csrf, recipient, members, recovery: await sealWithCode(code, identity),
    previous: await sealTo(recipient, old)});
  const kept = JSON.parse(sessionStorage.getItem(KEPT) || "[]");
  sessionStorage.setItem(KEPT, JSON.stringify([identity, ...kept]));
  button.closest("li").textContent = "Removed: new recordings are sealed to a key they never had.";
  showCode(code, done.fingerprint, identity, recipient);
  say("A new household key is made: pair your devices again so that they seal to it.");
}

document.addEventListener("DOMContentLoaded", () => {
  const on = (selector, act) => {
    for (const button of document.querySelectorAll(selector)) {
      button.addEventListener("click", () => act(button).catch((e) => say(e.message)));
    }
  };
  on("#make-key", makeKey);
  on("#export-key", exportKey);
  on("#ask-join", askToJoin);
  on("button.confirm-join", confirmJoin);
  on("button.remove-member", removeMember);
  for (const audio of document.querySelectorAll("audio[data-sealable]")) {
    audio.addEventListener("error", () => {
      if (audio.dataset.decodedBytes) return;  // opened already: a real playback error
      openSealed(audio).catch((e) => say(e.message));
    });
  }
});
