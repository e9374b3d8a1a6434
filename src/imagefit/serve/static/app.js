// imagefit page: send each photo to POST predict and show its label and probability bars.
// Plain browser JavaScript, no build step, no external URLs; paths are relative so the
// page also works when the server is mounted under a prefix.
"use strict";

(function () {
  const input = document.getElementById("file-input");
  const drop = document.getElementById("drop");
  const results = document.getElementById("results");
  const summary = document.getElementById("summary");
  const clearButton = document.getElementById("clear");
  const modelInfo = document.getElementById("model-info");

  // A few requests at a time: the server batches concurrent ones, and a
  // hundred dropped photos should not open a hundred connections.
  const CONCURRENCY = 4;
  const queue = [];
  let running = 0;
  let done = 0;
  let total = 0;
  let classNames = [];  // from GET model, for the "not a ... photo?" badge

  const pct = (p) => (100 * p).toFixed(1) + "%";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function loadModel() {
    try {
      const res = await fetch("model");
      if (!res.ok) throw new Error("HTTP " + res.status);
      const m = await res.json();
      classNames = m.classes || [];
      const acc = m.metrics && m.metrics.val && typeof m.metrics.val.accuracy === "number"
        ? " · validation accuracy " + pct(m.metrics.val.accuracy) : "";
      modelInfo.textContent = "Model " + m.run + " (" + m.backbone.name + ") · classes: " + m.classes.join(", ") + acc;
    } catch (err) {
      modelInfo.textContent = "Model information unavailable (" + err.message + ")";
    }
  }

  function updateSummary() {
    summary.textContent = total ? done + " of " + total + " classified" : "";
    clearButton.hidden = total === 0;
  }

  function addCard(file) {
    const card = el("article", "card pending");
    const img = el("img");
    img.alt = file.name;
    img.src = URL.createObjectURL(file);
    const body = el("div", "body");
    body.append(el("div", "name", file.name));
    const verdict = el("div", "verdict");
    verdict.append(el("span", "label", "classifying…"), el("span", "prob", ""));
    body.append(verdict);
    card.append(img, body);
    results.prepend(card);
    return card;
  }

  function showPrediction(card, pred) {
    card.classList.remove("pending");
    card.dataset.label = pred.label;
    card.querySelector(".label").textContent = pred.label;
    card.querySelector(".prob").textContent = pct(pred.probability);
    const bars = el("ul", "bars");
    const entries = Object.entries(pred.probabilities).sort((a, b) => b[1] - a[1]);
    for (const [cls, p] of entries) {
      const bar = el("li", cls === pred.label ? "bar top" : "bar");
      const fill = el("span", "fill");
      fill.style.width = (100 * p).toFixed(2) + "%";
      const text = el("span", "text");
      text.append(el("span", "", cls), el("span", "", pct(p)));
      bar.append(fill, text);
      bar.setAttribute("aria-label", cls + " " + pct(p));
      bars.append(bar);
    }
    card.querySelector(".body").append(bars);
    if (pred.unknown === true) {
      // The photo is unlike the training photos: the label above is a guess among classes that may not apply.
      const what = classNames.length ? classNames.join("/") : "training";
      const badge = el("div", "unknown-badge", "not a " + what + " photo?");
      badge.title = "This photo looks unlike the photos the model was trained on (score " +
        (typeof pred.unknown_score === "number" ? pred.unknown_score.toFixed(3) : "?") + "); its answer is unreliable.";
      card.classList.add("unknown");
      card.querySelector(".body").insertBefore(badge, card.querySelector(".verdict"));
    }
  }

  function showError(card, message) {
    card.classList.remove("pending");
    card.classList.add("error");
    card.dataset.error = message;
    card.querySelector(".label").textContent = "not classified";
    card.querySelector(".body").append(el("div", "error-text", message));
  }

  async function classify(file, card) {
    const form = new FormData();
    form.append("files", file, file.name);
    try {
      const res = await fetch("predict", { method: "POST", body: form });
      let body = null;
      try { body = await res.json(); } catch (_) { /* non-JSON answer: reported below */ }
      if (!res.ok) {
        showError(card, body && body.detail ? body.detail : "HTTP " + res.status);
      } else {
        showPrediction(card, body.predictions[0]);
      }
    } catch (err) {
      showError(card, "network error: " + err.message);
    }
  }

  function pump() {
    while (running < CONCURRENCY && queue.length) {
      const { file, card } = queue.shift();
      running += 1;
      classify(file, card).finally(() => {
        running -= 1;
        done += 1;
        updateSummary();
        pump();
      });
    }
  }

  function addFiles(fileList) {
    for (const file of Array.from(fileList)) {
      queue.push({ file, card: addCard(file) });
      total += 1;
    }
    updateSummary();
    pump();
  }

  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = ""; // picking the same photo again still triggers a change
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
  });
  // A photo dropped beside the zone must not make the browser navigate away.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  clearButton.addEventListener("click", () => {
    for (const img of results.querySelectorAll("img")) URL.revokeObjectURL(img.src);
    results.textContent = "";
    done = 0;
    total = queue.length + running;
    updateSummary();
  });

  loadModel();
})();
