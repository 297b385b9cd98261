// index.html's player for the archive's sealed recordings, opened from disk with no server:
// the household key file, or the recovery code (which opens the household key wrapped in
// this page, and through it the older keys a rotation left), then the recordings the reader
// picks in the archive's clips folder, decrypted and played in the page. Nothing is sent.
// cloud/owner/archive.py inlines this file into index.html, with AGE_MODULE_URL replaced by
// the portal's vendored typage as a data: URL (a page opened from disk may load no module file).
const cells = [...document.querySelectorAll(".sealed[data-file]")];
const say = (text) => { document.getElementById("opened").textContent = text; };
const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const wraps = JSON.parse(document.getElementById("household-wraps").textContent);
if (cells.length) {
  document.getElementById("open-sealed").hidden = false;
  document.getElementById("by-code").hidden = !wraps.recovery;
  const age = await import("AGE_MODULE_URL");
  const opened = async (data, open) => {
    const d = new age.Decrypter();
    open(d);
    return d.decrypt(data, "text");
  };
  // Every identity the reader's secret reaches: the key file's, or the one the recovery code
  // opens; then each older one, wrapped to the one after it.
  const identities = async () => {
    const file = document.getElementById("key-file").files[0];
    const code = document.getElementById("recovery-code").value.trim().toUpperCase();
    let newest;
    if (file) {
      newest = ((await file.text()).match(/^AGE-SECRET-KEY-1[0-9A-Z]+$/m) || [""])[0];
      if (!newest) throw new Error("That file holds no household key (AGE-SECRET-KEY-1…).");
    } else if (code && wraps.recovery) {
      try {
        newest = await opened(bytes(wraps.recovery), (d) => d.addPassphrase(code));
      } catch (e) {
        throw new Error("That recovery code does not open your household key.");
      }
    } else {
      return null;
    }
    const found = [newest];
    for (let grown = true; grown;) {
      grown = false;
      for (const wrap of wraps.previous) {
        for (const identity of [...found]) {
          try {
            const older = await opened(bytes(wrap), (d) => d.addIdentity(identity));
            if (!found.includes(older)) { found.push(older); grown = true; }
          } catch (e) { /* not wrapped to this one */ }
        }
      }
    }
    return found;
  };
  const open = async () => {
    const files = [...document.getElementById("sealed-files").files];
    let keys;
    try {
      keys = await identities();
    } catch (e) {
      say(e.message);
      return;
    }
    if (!keys || !files.length) return;
    let n = 0;
    for (const f of files) {
      const cell = cells.find((c) => c.dataset.file.endsWith("/" + f.name));
      if (!cell) continue;
      try {
        const d = new age.Decrypter();
        for (const identity of keys) d.addIdentity(identity);
        const wav = await d.decrypt(new Uint8Array(await f.arrayBuffer()));
        const a = document.createElement("audio");
        a.controls = true;
        a.src = URL.createObjectURL(new Blob([wav], {type: "audio/wav"}));
        a.dataset.decodedBytes = String(wav.length);
        cell.replaceWith(a);
        n++;
      } catch (e) {
        say(f.name + " does not open with that key.");
        return;
      }
    }
    say(n + " recording(s) opened with your key.");
  };
  for (const id of ["key-file", "sealed-files"]) document.getElementById(id).addEventListener("change", open);
  document.getElementById("by-code").addEventListener("submit", (event) => { event.preventDefault(); open(); });
}
