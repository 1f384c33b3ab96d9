// Live mirror progress: long-polls the API's progress call (?wait=) for each set on the
// page and updates the counts, images and errors without reloading.
"use strict";
(function () {
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  async function follow(section) {
    const name = section.dataset.set;
    const live = section.querySelector("[data-field=live]");
    for (;;) {
      try {
        const r = await fetch(`/ui/mirror/${encodeURIComponent(name)}/progress.json?wait=20`,
          { credentials: "same-origin" });
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const p = await r.json();
        section.querySelector("[data-field=done]").textContent = p.ended;
        section.querySelector("[data-field=pending]").textContent = p.wanted - p.ended;
        const bar = section.querySelector("progress");
        bar.max = p.wanted || 1;
        bar.value = p.ended;
        section.querySelector("[data-field=images]").innerHTML = p.images.length ? p.images.map((i) =>
          `<tr><td>${esc(i.reference)}</td><td><a href="/ui/r/${esc(i.repository)}@${esc(i.digest)}">` +
          `${esc(i.repository)}@${esc(i.digest.slice(0, 19))}</a></td>` +
          `<td><span class="state state-${esc(i.state || "pending")}">${esc(i.state || "pending")}</span></td>` +
          `<td>${esc((i.reasons || []).join("; "))}</td></tr>`).join("") :
          '<tr><td colspan="4">No images yet.</td></tr>';
        section.querySelector("[data-field=failed]").innerHTML = p.failed.length ? p.failed.map((f) =>
          `<li><code>${esc(f.job.reference || f.job.entry || JSON.stringify(f.job))}</code>: ` +
          `<span class="bad">${esc(f.error)}</span></li>`).join("") : '<li class="muted">none</li>';
        live.textContent = p.finished ? "finished" : "working… (live)";
        if (p.finished) await new Promise((ok) => setTimeout(ok, 10000));
      } catch (err) {
        live.textContent = `updates paused: ${err.message}`;
        await new Promise((ok) => setTimeout(ok, 10000));
      }
    }
  }
  document.querySelectorAll("section[data-set]").forEach(follow);
})();
