// Verifies an evidence-ledger record in the browser, trusting nothing the server says about the
// result: the leaf hash (SHA-256 of 0x00 and the record), the inclusion path to the root
// (RFC 9162 section 2.1.3.2), and the checkpoint's Ed25519 signature with the public key in the
// form (WebCrypto). The server only supplies the bytes.
"use strict";

const enc = new TextEncoder();

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}
function unhex(s) {
  if (!/^([0-9a-f]{2})*$/i.test(s)) throw new Error("not hex: " + s.slice(0, 16));
  return Uint8Array.from(s.match(/../g) || [], (h) => parseInt(h, 16));
}
function unb64(s) {
  const bin = atob(s.trim());
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) { out.set(p, i); i += p.length; }
  return out;
}
async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}
const leafHash = (data) => sha256(concat(new Uint8Array([0]), data));
const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// A checkpoint: "origin\nsize\nroot(base64)\ntimestamp\n" then a blank line and one signature
// line "— origin signature(base64)". The signed message is the body with its final newline.
function parseCheckpoint(text) {
  const [body, sigLine] = text.replace(/\n+$/, "").split("\n\n");
  const lines = body.split("\n");
  if (lines.length !== 4 || !sigLine || !sigLine.startsWith("— ")) {
    throw new Error("malformed checkpoint");
  }
  const cut = sigLine.lastIndexOf(" ");
  if (sigLine.slice(2, cut) !== lines[0]) throw new Error("signature line names another origin");
  return { body: enc.encode(body + "\n"), size: Number(lines[1]), root: unb64(lines[2]),
           signature: unb64(sigLine.slice(cut + 1)) };
}

async function importKey(pem) {
  const b64 = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
  return crypto.subtle.importKey("spki", unb64(b64), { name: "Ed25519" }, false, ["verify"]);
}

async function rootFromPath(index, size, leaf, path) {
  if (index >= size) throw new Error(`index ${index} is outside a tree of size ${size}`);
  let fn = index, sn = size - 1, r = leaf;
  for (const p of path) {
    if (sn === 0) throw new Error("the proof is longer than the tree is deep");
    if ((fn & 1) === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1) === 0) {
        while ((fn & 1) === 0 && fn !== 0) { fn >>= 1; sn >>= 1; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1; sn >>= 1;
  }
  if (sn !== 0) throw new Error("the proof is shorter than the tree is deep");
  return r;
}

async function verify(bundle, pem) {
  const steps = [];
  const cp = parseCheckpoint(bundle.checkpoint);
  const key = await importKey(pem);
  const sigOk = await crypto.subtle.verify({ name: "Ed25519" }, key, cp.signature, cp.body);
  steps.push(["checkpoint signature (Ed25519)", sigOk]);
  const leaf = await leafHash(enc.encode(bundle.record));
  steps.push(["record matches its leaf hash", hex(leaf) === bundle.leaf_hash]);
  let pathOk = false;
  try {
    const root = await rootFromPath(bundle.index, cp.size, leaf, bundle.proof.map(unhex));
    pathOk = same(root, cp.root);
  } catch (e) {
    steps.push(["inclusion path: " + e.message, false]);
  }
  steps.push([`inclusion in the tree of ${cp.size} records (root ${hex(cp.root).slice(0, 16)}…)`,
              pathOk]);
  return steps;
}

function show(ok, steps, message) {
  const out = document.getElementById("result");
  out.className = ok ? "pass" : "fail";
  out.replaceChildren();
  const head = document.createElement("p");
  head.textContent = message;
  out.append(head);
  const ul = document.createElement("ul");
  for (const [what, good] of steps) {
    const li = document.createElement("li");
    li.textContent = (good ? "✓ " : "✗ ") + what;
    ul.append(li);
  }
  out.append(ul);
}

async function run(ev) {
  if (ev) ev.preventDefault();
  const index = Number(document.getElementById("index").value);
  const pem = document.getElementById("pubkey").value;
  const record = document.getElementById("record");
  try {
    const resp = await fetch(`/console/ledger/proof/${index}`, { credentials: "same-origin" });
    if (!resp.ok) throw new Error(`the server answered ${resp.status}`);
    const bundle = await resp.json();
    record.textContent = bundle.record;
    const steps = await verify(bundle, pem);
    const ok = steps.every(([, good]) => good);
    show(ok, steps, ok ? `VERIFIED: record ${index} is in the signed ledger.`
                       : `FAILED: record ${index} does not verify.`);
  } catch (e) {
    show(false, [], `FAILED: ${e.message}`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("verify-form").addEventListener("submit", run);
  if (new URLSearchParams(location.search).has("index")) run();
});
