// Progressive enhancement: a replay's progress bar follows the job without reloading
// the page (the page works without this script: its Refresh link reloads it).
"use strict";
(function () {
  const bar = document.querySelector("progress[data-source]");
  if (!bar || bar.dataset.state !== "running") return;
  const poll = async () => {
    try {
      const r = await fetch(bar.dataset.source, { credentials: "same-origin" });
      if (!r.ok) return;
      const job = await r.json();
      bar.max = job.total || 1;
      bar.value = job.total ? job.processed : (job.state === "running" ? 0 : 1);
      bar.textContent = job.processed + " of " + job.total;
      for (const k of ["state", "total", "queued"]) {
        const el = document.getElementById(k);
        if (el) el.textContent = job[k];
      }
      if (job.state === "running") setTimeout(poll, 1000);
    } catch (e) {
      setTimeout(poll, 3000);
    }
  };
  setTimeout(poll, 1000);
})();
