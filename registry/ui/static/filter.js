// Filter a table's rows as the reader types (the SBOM table): no round trip per key.
"use strict";
document.addEventListener("input", (event) => {
  const input = event.target.closest("input[data-filter]");
  if (!input) return;
  const table = document.getElementById(input.dataset.filter);
  const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const row of table.tBodies[0].rows) {
    const text = row.textContent.toLowerCase();
    const match = words.every((w) => text.includes(w));
    row.hidden = !match;
    if (match) shown++;
  }
  const count = document.getElementById("sbom-count");
  if (count) count.textContent = `${shown} of ${table.tBodies[0].rows.length} components`;
});
