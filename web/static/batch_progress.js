// The batch page's live enrolment progress: polls the batch's progress URL every 2 s until every
// token is used or expired (or the handout is gone), and updates the counts and the progress bar.
(function () {
  "use strict";
  var section = document.getElementById("batch-progress");
  if (!section) { return; }
  var url = section.getAttribute("data-progress-url");
  var bar = document.getElementById("progress-bar");
  function show(counts) {
    ["used", "claimed", "issued", "expired"].forEach(function (name) {
      var cell = section.querySelector('[data-count="' + name + '"]');
      if (cell) { cell.textContent = counts[name].toLocaleString("en"); }
    });
    bar.max = counts.total;
    bar.value = counts.used;
    bar.textContent = counts.used + " of " + counts.total;
    return counts.used + counts.expired < counts.total;
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (counts) { if (counts && show(counts)) { setTimeout(poll, 2000); } })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();
