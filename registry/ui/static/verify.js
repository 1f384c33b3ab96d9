// "Verify in this browser": checks one of Zoll's attestations with the browser's own
// WebCrypto, trusting nothing the server computed. What it checks, in order:
//   1. the DSSE signature over PAE(payloadType, payload), with the published key the
//      signature names (ECDSA P-256: the DER signature becomes raw r||s; or Ed25519);
//   2. the statement's subject is the digest of the image on this page;
//   3. the log leaf is rebuilt from the envelope (RFC 8785 canonical JSON of
//      {"kind":"attestation","envelope":…}, SHA-256 with the 0x00 prefix);
//   4. the inclusion proof (RFC 9162) leads from that leaf to the checkpoint's root;
//   5. the checkpoint (a C2SP signed note) is signed by the log key of its origin.
// The keys come from this server (/api/v1/keys): their fingerprints are shown so they
// can be compared with a copy obtained elsewhere.
"use strict";

(function () {
  const enc = new TextEncoder();

  function b64decode(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function equal(a, b) {
    return a.length === b.length && a.every((v, i) => v === b[i]);
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // DSSE pre-authentication encoding (lengths are byte lengths).
  function pae(payloadType, payload) {
    const type = enc.encode(payloadType);
    return concat(
      enc.encode(`DSSEv1 ${type.length} `), type, enc.encode(` ${payload.length} `), payload
    );
  }

  // RFC 8785: ECMAScript serialisation of primitives, keys sorted by UTF-16 code units.
  function canonical(value) {
    if (value === null || typeof value !== "object") return JSON.stringify(value);
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    return "{" + Object.keys(value).sort()
      .map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }

  // An ASN.1 DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs) → raw r||s for WebCrypto.
  function derToRaw(der, size) {
    let at = 0;
    const fail = () => { throw new Error("the signature is not a DER ECDSA signature"); };
    const length = () => {
      let n = der[at++];
      if (n & 0x80) {
        const count = n & 0x7f;
        n = 0;
        for (let i = 0; i < count; i++) n = (n << 8) | der[at++];
      }
      return n;
    };
    if (der[at++] !== 0x30) fail();
    if (length() !== der.length - at) fail();
    const out = new Uint8Array(2 * size);
    for (let part = 0; part < 2; part++) {
      if (der[at++] !== 0x02) fail();
      const n = length();
      let int = der.slice(at, at + n);
      at += n;
      while (int.length > size && int[0] === 0) int = int.slice(1);
      if (int.length > size) fail();
      out.set(int, part * size + (size - int.length));
    }
    if (at !== der.length) fail();
    return out;
  }

  function pemToDer(pem) {
    return b64decode(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""));
  }

  const ALGORITHMS = {
    "ecdsa-p256": {
      name: "ECDSA P-256",
      importParams: { name: "ECDSA", namedCurve: "P-256" },
      verifyParams: { name: "ECDSA", hash: "SHA-256" },
      signature: (sig) => derToRaw(sig, 32),
    },
    ed25519: {
      name: "Ed25519",
      importParams: { name: "Ed25519" },
      verifyParams: { name: "Ed25519" },
      signature: (sig) => sig,
    },
  };

  async function importKey(format, data, algorithm) {
    const alg = ALGORITHMS[algorithm];
    if (!alg) throw new Error(`${algorithm} keys cannot be checked in the browser`);
    return crypto.subtle.importKey(format, data, alg.importParams, false, ["verify"]);
  }

  async function verifySig(algorithm, key, signature, message) {
    const alg = ALGORITHMS[algorithm];
    return crypto.subtle.verify(alg.verifyParams, key, alg.signature(signature), message);
  }

  // RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or an error.
  async function rootFromInclusion(index, size, leaf, path) {
    if (index >= size) throw new Error(`index ${index} is outside a tree of ${size}`);
    let fn = index;
    let sn = size - 1;
    let r = leaf;
    const node = async (l, rr) => sha256(concat(Uint8Array.of(1), l, rr));
    for (const p of path) {
      if (sn === 0) throw new Error("the proof is longer than the tree is deep");
      if (fn % 2 === 1 || fn === sn) {
        r = await node(p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) {
            fn = Math.floor(fn / 2);
            sn = Math.floor(sn / 2);
          }
        }
      } else {
        r = await node(r, p);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error("the proof is shorter than the tree is deep");
    return r;
  }

  // A C2SP signed note: text (ending in a newline), blank line, "— name base64" lines.
  function parseNote(raw) {
    const split = raw.lastIndexOf("\n\n");
    if (split < 0) throw new Error("the checkpoint has no signature block");
    const text = raw.slice(0, split + 1);
    const signatures = raw.slice(split + 2).split("\n").filter((l) => l)
      .map((line) => {
        const m = /^\u2014 (\S+) (\S+)$/.exec(line);
        if (!m) throw new Error(`malformed signature line ${line.slice(0, 60)}`);
        const blob = b64decode(m[2]);
        return { name: m[1], keyHash: hex(blob.slice(0, 4)), signature: blob.slice(4) };
      });
    const lines = text.split("\n");
    return {
      text,
      origin: lines[0],
      size: Number(lines[1]),
      root: b64decode(lines[2]),
      signatures,
    };
  }

  function parseVerifierKey(vkey) {
    // name+hash+base64(type || key): base64 itself may contain "+".
    const first = vkey.indexOf("+");
    const second = vkey.indexOf("+", first + 1);
    const name = vkey.slice(0, first);
    const keyHash = vkey.slice(first + 1, second);
    const material = vkey.slice(second + 1);
    const blob = b64decode(material);
    const type = blob[0];
    if (type === 1) return { name, keyHash, algorithm: "ed25519", format: "raw", key: blob.slice(1) };
    if (type === 2) return { name, keyHash, algorithm: "ecdsa-p256", format: "spki", key: blob.slice(1) };
    throw new Error(`unknown note key type ${type}`);
  }

  async function verifyAttestation(att, checkpointText, keys, imageDigest) {
    const steps = [];
    const step = (ok, text) => {
      steps.push({ ok, text });
      if (!ok) throw new Error(text);
    };
    try {
      // 1. DSSE signature
      const env = att.envelope;
      const payload = b64decode(env.payload);
      const sigs = env.signatures || [];
      let checked = false;
      for (const s of sigs) {
        const key = keys.keys.find((k) => k.keyid === s.keyid);
        if (!key) continue;
        const alg = ALGORITHMS[key.algorithm];
        const pub = await importKey("spki", pemToDer(key.publicKey), key.algorithm);
        const ok = await verifySig(key.algorithm, pub, b64decode(s.sig), pae(env.payloadType, payload));
        step(ok, `DSSE signature over PAE(${env.payloadType}, payload) ` +
          (ok ? "verifies" : "does NOT verify") +
          ` with ${alg ? alg.name : key.algorithm} key ${key.keyid.slice(0, 16)}… (${key.status})`);
        checked = true;
        break;
      }
      step(checked, checked ? "signed by a published Zoll key" :
        "no signature of the envelope is by a key Zoll publishes");

      // 2. the statement is about this image
      const statement = JSON.parse(new TextDecoder().decode(payload));
      const want = imageDigest.split(":")[1];
      const about = (statement.subject || []).some((s) => s.digest && s.digest.sha256 === want);
      step(about, `statement (${statement.predicateType}) names this image ` +
        `sha256:${want.slice(0, 12)}… as its subject` + (about ? "" : ": it does NOT"));

      // 3. + 4. leaf and inclusion proof
      const proof = att.inclusion_proof;
      step(!!proof && att.log_index !== null, proof ?
        `logged at index ${att.log_index}` : "the attestation has no inclusion proof yet");
      const leafData = enc.encode(canonical({ kind: "attestation", envelope: env }));
      const leaf = await sha256(concat(Uint8Array.of(0), leafData));
      steps.push({ ok: true, text: `leaf hash rebuilt from the envelope: ${hex(leaf).slice(0, 16)}…` });
      step(proof.logIndex === att.log_index, `proof is for index ${proof.logIndex}`);
      const note = parseNote(checkpointText);
      step(proof.treeSize === note.size,
        `proof is against the checkpoint's tree of ${note.size} entries`);
      const root = await rootFromInclusion(
        proof.logIndex, proof.treeSize, leaf, proof.hashes.map(b64decode));
      step(equal(root, note.root), `inclusion proof (${proof.hashes.length} hashes) leads to ` +
        `root ${hex(root).slice(0, 16)}…, ` +
        (equal(root, note.root) ? "the checkpoint's root" : "NOT the checkpoint's root"));

      // 5. the checkpoint's signature
      const vkeys = keys.keys.filter((k) => k.logVerifierKey).map((k) => parseVerifierKey(k.logVerifierKey));
      let signed = false;
      for (const sig of note.signatures) {
        const vk = vkeys.find((v) => v.name === sig.name && v.keyHash === sig.keyHash);
        if (!vk) continue;
        const pub = await importKey(vk.format, vk.key, vk.algorithm);
        const ok = await verifySig(vk.algorithm, pub, sig.signature, enc.encode(note.text));
        step(ok, `checkpoint of ${note.origin} (size ${note.size}) ` +
          (ok ? "is signed" : "has a BAD signature") +
          ` by log key ${vk.keyHash} (${ALGORITHMS[vk.algorithm].name})`);
        signed = true;
      }
      step(signed, signed ? "checkpoint signature checked" :
        "the checkpoint carries no signature by a published log key");
      const others = note.signatures.filter((s) => !vkeys.some((v) => v.name === s.name && v.keyHash === s.keyHash));
      if (others.length) {
        steps.push({ ok: true, text: `${others.length} cosignature(s) by other keys (not checked here): ` +
          others.map((s) => s.name).join(", ") });
      }
      return { ok: true, steps };
    } catch (err) {
      if (!steps.length || steps[steps.length - 1].ok) steps.push({ ok: false, text: String(err.message || err) });
      return { ok: false, steps };
    }
  }

  function show(box, result) {
    box.replaceChildren();
    const head = document.createElement("p");
    head.className = result.ok ? "verify-ok" : "verify-fail";
    head.textContent = result.ok ? "Verified in this browser" : "Verification FAILED";
    const list = document.createElement("ol");
    for (const s of result.steps) {
      const li = document.createElement("li");
      li.className = s.ok ? "step-ok" : "step-fail";
      li.textContent = (s.ok ? "✓ " : "✗ ") + s.text;
      list.append(li);
    }
    box.append(head, list);
    box.dataset.result = result.ok ? "pass" : "fail";
  }

  async function onVerify(button) {
    const box = document.getElementById(button.getAttribute("aria-controls"));
    if (!window.crypto || !crypto.subtle) {
      show(box, { ok: false, steps: [{ ok: false, text:
        "this browser offers WebCrypto only on HTTPS pages (or localhost): open Zoll over TLS" }] });
      return;
    }
    box.textContent = "Checking…";
    button.disabled = true;
    try {
      const page = document.getElementById("verify-data").dataset;
      const [atts, keys] = await Promise.all([
        fetch(page.attestations, { credentials: "same-origin" }).then((r) => r.json()),
        fetch(page.keys).then((r) => r.json()),
      ]);
      const att = atts.attestations.find((a) => String(a.id) === button.dataset.attestation);
      if (!att) throw new Error("the attestation is no longer listed");
      show(box, await verifyAttestation(att, atts.checkpoint, keys, atts.digest));
    } catch (err) {
      show(box, { ok: false, steps: [{ ok: false, text: String(err.message || err) }] });
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-attestation]");
    if (button) onVerify(button);
  });
  window.zollVerify = { verifyAttestation, canonical, derToRaw, rootFromInclusion, parseNote };
})();
