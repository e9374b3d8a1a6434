// imagefit in-browser classifier: each photo is decoded, resized and classified on this
// machine by ONNX Runtime Web (WebAssembly). Nothing is fetched: the model and the runtime
// arrive as classic scripts (model.js, ort-runtime.js), which browsers load from file:// too.
"use strict";

(function () {
  const input = document.getElementById("file-input");
  const drop = document.getElementById("drop");
  const results = document.getElementById("results");
  const summary = document.getElementById("summary");
  const clearButton = document.getElementById("clear");
  const modelInfo = document.getElementById("model-info");
  const meta = window.IMAGEFIT_MODEL;

  const queue = [];
  let running = false;
  let done = 0;
  let total = 0;
  // Every answer, for tests and benchmarks: {name, label, probabilities, ms}.
  window.imagefitResults = [];

  const pct = (p) => (100 * p).toFixed(1) + "%";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bytes(b64) {
    const raw = atob(b64);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  async function createSession() {
    const rt = window.IMAGEFIT_ORT;
    // Blob URLs stand in for the runtime's own files, which it would otherwise fetch.
    ort.env.wasm.wasmPaths = {
      mjs: URL.createObjectURL(new Blob([rt.mjs], { type: "text/javascript" })),
      wasm: URL.createObjectURL(new Blob([bytes(rt.wasm)], { type: "application/wasm" })),
    };
    // One thread: worker threads need a cross-origin-isolated page, which file:// is not.
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    return ort.InferenceSession.create(bytes(meta.onnx), { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  }

  const ready = createSession().then(
    (session) => {
      modelInfo.textContent = "Model " + meta.name + " (" + meta.backbone + ") · classes: " + meta.classes.join(", ") +
        (meta.accuracy !== null ? " · validation accuracy " + pct(meta.accuracy) : "");
      document.body.dataset.ready = "1";
      return session;
    },
    (err) => {
      modelInfo.textContent = "The model could not be loaded: " + err.message;
      document.body.dataset.ready = "error";
      throw err;
    },
  );

  // RGB pixels as imagefit decodes them: EXIF orientation applied, no colour conversion,
  // transparent areas on white.
  async function pixels(file) {
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const w = bitmap.width;
    const h = bitmap.height;
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const rgba = ctx.getImageData(0, 0, w, h).data;
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
      const a = rgba[i + 3];
      if (a === 255) {
        rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
      } else {
        for (let c = 0; c < 3; c++) rgb[j + c] = Math.round((rgba[i + c] * a + 255 * (255 - a)) / 255);
      }
    }
    return new ort.Tensor("uint8", rgb, [1, h, w, 3]);
  }

  async function predict(file) {
    const session = await ready;
    const start = performance.now();
    const tensor = await pixels(file);
    const out = await session.run({ [session.inputNames[0]]: tensor });
    const probs = Array.from(out[session.outputNames[0]].data);
    const ms = performance.now() - start;
    let k = 0;
    for (let i = 1; i < probs.length; i++) if (probs[i] > probs[k]) k = i;
    const probabilities = {};
    meta.classes.forEach((c, i) => { probabilities[c] = probs[i]; });
    return { name: file.name, label: meta.classes[k], probability: probs[k], probabilities, ms };
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
  }

  function showError(card, message) {
    card.classList.remove("pending");
    card.classList.add("error");
    card.dataset.error = message;
    card.querySelector(".label").textContent = "not classified";
    card.querySelector(".body").append(el("div", "error-text", message));
  }

  // One photo at a time: a WebAssembly session runs one inference at once.
  async function pump() {
    if (running) return;
    running = true;
    while (queue.length) {
      const { file, card } = queue.shift();
      try {
        const pred = await predict(file);
        window.imagefitResults.push(pred);
        showPrediction(card, pred);
      } catch (err) {
        const message = err && err.name === "InvalidStateError" ? "not an image this browser can decode" : String(err && err.message || err);
        window.imagefitResults.push({ name: file.name, error: message });
        showError(card, message);
      }
      done += 1;
      updateSummary();
    }
    running = false;
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
    total = queue.length + (running ? 1 : 0);
    updateSummary();
  });
})();
