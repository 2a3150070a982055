// ETVR dashboard: plain JavaScript, no build step, no network beyond this service.
// Live data comes over the WebSocket `etvr/ws` (schema: docs/live-data.md); every change goes through the
// REST API, which persists it; config-change events on the socket keep this page in step with changes
// made anywhere else (the desktop app, a hand-edited file, another browser).
"use strict";

(() => {
  const TOKEN = new URLSearchParams(location.search).get("token");
  const ALGORITHMS = ["HSRAC", "RANSAC", "HSF", "AHSF", "BLOB", "LEAP"];
  const POSITION_LABELS = { LEFT_EYE: "Left eye", RIGHT_EYE: "Right eye", MOUTH: "Mouth", UNDEFINED: "No position" };
  const OSC_MODES = [
    ["v1", "v1 — /avatar/parameters"],
    ["v2", "v2 — /avatar/parameters/v2"],
    ["native", "VRChat native eye tracking"],
    ["module", "VRCFT ETVR module"],
    ["babble", "VRCFT Babble module"],
  ];
  const GAZE_TRAIL_POINTS = 36;
  const MIN_ROI_PX = 8;
  const RECONNECT_MS = 1000;
  const TOAST_MS = 5000;

  const state = {
    config: null,
    running: false,
    statuses: new Map(), // uuid -> latest `state` message
    views: new Map(), // uuid -> TrackerView
    discovered: [],
    socketOpen: false,
    oscStale: false,
    configPushes: 0, // config messages received; a reply to an older request must not undo a newer push
  };

  // -- helpers -------------------------------------------------------------------------------------------

  const $ = (root, selector) => root.querySelector(selector);

  function withToken(url) {
    if (!TOKEN) return url;
    return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}`;
  }

  function describeError(data, status) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) {
      return data.detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
    }
    return `HTTP ${status}`;
  }

  async function api(method, path, body) {
    const headers = {};
    if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) throw new Error(describeError(data, response.status));
    return data;
  }

  function toast(message, kind = "") {
    const element = document.createElement("div");
    element.className = `toast ${kind}`;
    element.textContent = message;
    $(document, "#toasts").append(element);
    setTimeout(() => element.remove(), TOAST_MS);
  }

  function signed(value) {
    return `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(2)}`;
  }

  function trackerConfig(uuid) {
    return state.config ? state.config.trackers.find((t) => t.uuid === uuid) : undefined;
  }

  function trackerLabel(uuid) {
    const tracker = trackerConfig(uuid);
    return tracker ? tracker.name || POSITION_LABELS[tracker.tracker_position] : uuid;
  }

  /** Fill an input from the config unless the user is typing in it. */
  function setValue(input, value) {
    if (document.activeElement === input) return;
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value;
  }

  function pillClass(cameraState) {
    if (["connected", "tracking"].includes(cameraState)) return "pill-good";
    if (["connecting", "restarting", "waiting_for_frames"].includes(cameraState)) return "pill-warn";
    if (["disconnected", "no_source", "error", "failed"].includes(cameraState)) return "pill-bad";
    return "pill-muted";
  }

  // -- saving changes ------------------------------------------------------------------------------------

  async function updateTracker(uuid, patch) {
    const pushes = state.configPushes;
    try {
      const tracker = await api("POST", `etvr/config/tracker?uuid=${encodeURIComponent(uuid)}`, patch);
      // A config pushed while the request was out is as new as this reply or newer (every change is pushed).
      const index = state.config.trackers.findIndex((t) => t.uuid === uuid);
      if (index >= 0 && pushes === state.configPushes) state.config.trackers[index] = tracker;
      return true;
    } catch (error) {
      toast(`${trackerLabel(uuid)}: ${error.message}`, "bad");
      return false;
    } finally {
      renderTrackers();
    }
  }

  async function updateConfig(patch) {
    const pushes = state.configPushes;
    try {
      const config = await api("POST", "etvr/config", patch);
      if (pushes === state.configPushes) state.config = config; // else a newer push is already shown
      renderAll();
      return true;
    } catch (error) {
      toast(error.message, "bad");
      renderAll();
      renderOsc(true); // put back what is saved, even in the field the user just left
      return false;
    }
  }

  // -- one tracker card ----------------------------------------------------------------------------------

  class TrackerView {
    constructor(uuid) {
      this.uuid = uuid;
      const fragment = $(document, "#tracker-template").content.cloneNode(true);
      this.root = fragment.firstElementChild;
      this.root.dataset.uuid = uuid;
      this.trail = [];
      this.latest = null;
      this.dirty = false;
      this.calibrating = false;
      this.calibrationRequested = false;
      this.feedsOn = false;
      this.drag = null;
      this.el = {};
      for (const name of [
        "tracker-name", "tracker-position", "camera-state", "stat-fps", "stat-latency", "tracker-enabled",
        "tracker-error", "feed-camera", "feed-algorithm", "roi-canvas", "roi-readout", "confidence-readout",
        "gaze-plot", "gaze-x", "gaze-y", "bar-openness", "bar-dilation", "bar-confidence", "val-openness",
        "val-dilation", "val-confidence", "calibrate", "recenter", "calib-progress", "calib-fill", "calib-status",
        "look-around", "capture-source", "discovered", "scan", "rotation", "rotation-slider", "flip-x", "flip-y",
        "roi-text", "roi-reset", "algo-order", "algo-add", "closed-eye-gate", "closure-classifier",
        "still-frame-reuse", "calib-duration",
      ]) {
        this.el[name] = $(this.root, `.${name}`);
      }
      this.bind();
    }

    bind() {
      const el = this.el;
      el["tracker-enabled"].addEventListener("change", (e) => updateTracker(this.uuid, { enabled: e.target.checked }));
      el.calibrate.addEventListener("click", () => this.calibrate());
      el.recenter.addEventListener("click", async () => {
        try {
          await api("POST", `etvr/trackers/${encodeURIComponent(this.uuid)}/recenter`);
          toast(`${trackerLabel(this.uuid)}: recentered`, "good");
        } catch (error) {
          toast(`${trackerLabel(this.uuid)}: ${error.message}`, "bad");
        }
      });
      el["capture-source"].addEventListener("change", (e) =>
        updateTracker(this.uuid, { camera: { capture_source: e.target.value.trim() } }),
      );
      el.discovered.addEventListener("change", (e) => {
        if (!e.target.value) return;
        el["capture-source"].value = e.target.value;
        updateTracker(this.uuid, { camera: { capture_source: e.target.value } });
        e.target.value = "";
      });
      el.scan.addEventListener("click", () => scanCameras());
      el["rotation-slider"].addEventListener("input", (e) => {
        el.rotation.value = e.target.value;
      });
      el["rotation-slider"].addEventListener("change", (e) =>
        updateTracker(this.uuid, { camera: { rotation: Number(e.target.value) } }),
      );
      el.rotation.addEventListener("change", (e) => {
        const value = Number(e.target.value);
        if (Number.isFinite(value)) updateTracker(this.uuid, { camera: { rotation: value } });
      });
      el["flip-x"].addEventListener("change", (e) =>
        updateTracker(this.uuid, { camera: { flip_x_axis: e.target.checked } }),
      );
      el["flip-y"].addEventListener("change", (e) =>
        updateTracker(this.uuid, { camera: { flip_y_axis: e.target.checked } }),
      );
      el["roi-reset"].addEventListener("click", () =>
        updateTracker(this.uuid, { camera: { roi_x: 0, roi_y: 0, roi_w: 0, roi_h: 0 } }),
      );
      el["algo-add"].addEventListener("change", (e) => {
        if (!e.target.value) return;
        const order = [...trackerConfig(this.uuid).algorithm.algorithm_order, e.target.value];
        updateTracker(this.uuid, { algorithm: { algorithm_order: order } });
      });
      el["closed-eye-gate"].addEventListener("change", (e) =>
        updateTracker(this.uuid, { algorithm: { closed_eye_gate: e.target.checked } }),
      );
      el["closure-classifier"].addEventListener("change", (e) =>
        updateTracker(this.uuid, { algorithm: { closure_classifier: e.target.checked } }),
      );
      el["still-frame-reuse"].addEventListener("change", (e) =>
        updateTracker(this.uuid, { algorithm: { still_frame_reuse: e.target.checked } }),
      );
      el["calib-duration"].addEventListener("change", (e) =>
        updateTracker(this.uuid, { calibration: { duration_s: Number(e.target.value) } }),
      );
      this.bindRoiDrawing();
    }

    // -- ROI drawn with the mouse on the raw camera preview --

    /** The camera image's displayed box inside the (letterboxed) frame, in CSS pixels. */
    imageBox() {
      const img = this.el["feed-camera"];
      const frame = img.getBoundingClientRect();
      const naturalW = img.naturalWidth;
      const naturalH = img.naturalHeight;
      if (!naturalW || !naturalH) return null;
      const scale = Math.min(frame.width / naturalW, frame.height / naturalH);
      return {
        left: (frame.width - naturalW * scale) / 2,
        top: (frame.height - naturalH * scale) / 2,
        scale,
        naturalW,
        naturalH,
        frame,
      };
    }

    toImagePx(event, box) {
      const x = (event.clientX - box.frame.left - box.left) / box.scale;
      const y = (event.clientY - box.frame.top - box.top) / box.scale;
      return [Math.min(Math.max(x, 0), box.naturalW), Math.min(Math.max(y, 0), box.naturalH)];
    }

    canDrawRoi() {
      const status = state.statuses.get(this.uuid);
      return Boolean(this.feedsOn && status && status.camera_state === "connected" && this.latest);
    }

    bindRoiDrawing() {
      const canvas = this.el["roi-canvas"];
      canvas.addEventListener("pointerdown", (event) => {
        if (event.button !== 0 || !this.canDrawRoi()) return;
        const box = this.imageBox();
        if (!box) return;
        canvas.setPointerCapture(event.pointerId);
        const start = this.toImagePx(event, box);
        this.drag = { box, start, end: start };
        this.drawRubberBand();
      });
      canvas.addEventListener("pointermove", (event) => {
        if (!this.drag) return;
        this.drag.end = this.toImagePx(event, this.drag.box);
        this.drawRubberBand();
      });
      const finish = (event) => {
        if (!this.drag) return;
        const { start, end } = this.drag;
        this.drag = null;
        this.drawRubberBand();
        if (event.type === "pointercancel") return;
        const x = Math.round(Math.min(start[0], end[0]));
        const y = Math.round(Math.min(start[1], end[1]));
        const w = Math.round(Math.abs(end[0] - start[0]));
        const h = Math.round(Math.abs(end[1] - start[1]));
        if (w < MIN_ROI_PX || h < MIN_ROI_PX) return;
        updateTracker(this.uuid, { camera: { roi_x: x, roi_y: y, roi_w: w, roi_h: h } });
      };
      canvas.addEventListener("pointerup", finish);
      canvas.addEventListener("pointercancel", finish);
    }

    drawRubberBand() {
      const canvas = this.el["roi-canvas"];
      const ratio = window.devicePixelRatio || 1;
      const width = canvas.clientWidth;
      const height = canvas.clientHeight;
      if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
      if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      if (!this.drag) return;
      const { box, start, end } = this.drag;
      const x0 = box.left + Math.min(start[0], end[0]) * box.scale;
      const y0 = box.top + Math.min(start[1], end[1]) * box.scale;
      const w = Math.abs(end[0] - start[0]) * box.scale;
      const h = Math.abs(end[1] - start[1]) * box.scale;
      ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
      ctx.fillRect(0, 0, width, height);
      ctx.clearRect(x0, y0, w, h);
      ctx.strokeStyle = "#7aa2f7";
      ctx.lineWidth = 2;
      ctx.setLineDash([6, 4]);
      ctx.strokeRect(x0, y0, w, h);
      ctx.setLineDash([]);
      ctx.fillStyle = "#dde3ee";
      ctx.font = "12px system-ui, sans-serif";
      const label = `${Math.round(w / box.scale)}×${Math.round(h / box.scale)}`;
      ctx.fillText(label, x0 + 4, Math.max(12, y0 - 4));
    }

    // -- calibration --

    async calibrate() {
      this.calibrationRequested = true;
      this.showCalibration(0, "Starting…");
      try {
        await api("POST", `etvr/trackers/${encodeURIComponent(this.uuid)}/calibrate`);
      } catch (error) {
        this.calibrationRequested = false;
        this.hideCalibration(`Not started: ${error.message}`);
        toast(`${trackerLabel(this.uuid)}: ${error.message}`, "bad");
      }
    }

    showCalibration(progress, text) {
      const el = this.el;
      el["calib-progress"].hidden = false;
      el["look-around"].hidden = false;
      el["calib-fill"].style.width = `${Math.round(progress * 100)}%`;
      el["calib-status"].textContent = text;
      el["calib-status"].classList.remove("done");
      el.calibrate.disabled = true;
    }

    hideCalibration(text, done = false) {
      const el = this.el;
      el["look-around"].hidden = true;
      el["calib-status"].textContent = text;
      el["calib-status"].classList.toggle("done", done);
      el.calibrate.disabled = false;
      if (!done) el["calib-progress"].hidden = true;
    }

    finishCalibration() {
      if (!this.calibrating && !this.calibrationRequested) return;
      this.calibrating = false;
      this.calibrationRequested = false;
      this.el["calib-fill"].style.width = "100%";
      this.hideCalibration("Calibration complete ✓", true);
    }

    // -- rendering --

    renderConfig(tracker) {
      const el = this.el;
      const camera = tracker.camera;
      el["tracker-name"].textContent = tracker.name || POSITION_LABELS[tracker.tracker_position];
      el["tracker-position"].textContent = POSITION_LABELS[tracker.tracker_position] || tracker.tracker_position;
      this.root.classList.toggle("disabled", !tracker.enabled);
      setValue(el["tracker-enabled"], tracker.enabled);
      setValue(el["capture-source"], camera.capture_source);
      setValue(el.rotation, camera.rotation);
      setValue(el["rotation-slider"], Math.max(-180, Math.min(180, camera.rotation)));
      setValue(el["flip-x"], camera.flip_x_axis);
      setValue(el["flip-y"], camera.flip_y_axis);
      setValue(el["calib-duration"], tracker.calibration.duration_s);
      const roi = camera.roi_w > 0 && camera.roi_h > 0;
      const roiText = roi ? `${camera.roi_w}×${camera.roi_h} at (${camera.roi_x}, ${camera.roi_y})` : "whole frame";
      el["roi-text"].textContent = roiText;
      el["roi-readout"].textContent = roi ? `ROI ${roiText}` : "";
      this.renderAlgorithms(tracker.algorithm.algorithm_order);
      setValue(el["closed-eye-gate"], tracker.algorithm.closed_eye_gate);
      setValue(el["closure-classifier"], tracker.algorithm.closure_classifier);
      setValue(el["still-frame-reuse"], tracker.algorithm.still_frame_reuse);
      if (!el.calibrate.disabled && !el["calib-status"].classList.contains("done")) {
        el["calib-status"].textContent = tracker.calibration.calibrated ? "Calibrated" : "Not calibrated yet";
      }
      this.renderDiscovered();
    }

    renderAlgorithms(order) {
      const list = this.el["algo-order"];
      list.replaceChildren();
      order.forEach((name, index) => {
        const item = document.createElement("li");
        item.dataset.algorithm = name;
        const rank = document.createElement("span");
        rank.className = "rank";
        rank.textContent = `${index + 1}.`;
        item.append(rank, name);
        const move = (delta, symbol, title) => {
          const button = document.createElement("button");
          button.type = "button";
          button.textContent = symbol;
          button.title = title;
          const target = index + delta;
          button.disabled = delta === 0 ? order.length < 2 : target < 0 || target >= order.length;
          button.addEventListener("click", () => {
            const next = [...order];
            if (delta === 0) next.splice(index, 1);
            else [next[index], next[target]] = [next[target], next[index]];
            updateTracker(this.uuid, { algorithm: { algorithm_order: next } });
          });
          item.append(button);
        };
        move(-1, "‹", "Try earlier");
        move(1, "›", "Try later");
        move(0, "×", "Remove");
        list.append(item);
      });
      const add = this.el["algo-add"];
      add.replaceChildren(new Option("Add…", ""));
      for (const name of ALGORITHMS.filter((a) => !order.includes(a))) add.append(new Option(name, name));
      add.disabled = add.options.length < 2;
    }

    renderDiscovered() {
      const select = this.el.discovered;
      const current = this.el["capture-source"].value;
      select.replaceChildren(new Option("Pick a camera…", ""), new Option("Virtual eye (built-in test)", "virtual"));
      for (const camera of state.discovered) {
        const option = new Option(`${camera.name} — ${camera.capture_source}`, camera.capture_source);
        if (camera.capture_source === current) option.textContent += " (in use)";
        select.append(option);
      }
    }

    renderStatus(status) {
      const el = this.el;
      const cameraState = status ? status.camera_state : "stopped";
      el["camera-state"].textContent = cameraState.replaceAll("_", " ");
      el["camera-state"].className = `pill camera-state ${pillClass(cameraState)}`;
      // An error is red; a notice (e.g. no program listening on an OSC port yet) is a quiet hint.
      const error = status && status.last_error;
      const notice = !error && status && status.notice;
      el["tracker-error"].hidden = !(error || notice);
      el["tracker-error"].classList.toggle("notice", Boolean(notice));
      el["tracker-error"].textContent = error ? `⚠ ${error}` : notice ? notice : "";
      if (status && !this.latest) el["stat-fps"].textContent = status.running ? status.fps.toFixed(0) : "–";
      this.setFeeds(Boolean(status && status.running) && document.visibilityState === "visible");
      el.calibrate.disabled = !(status && status.running) || this.calibrating || this.calibrationRequested;
      el.recenter.disabled = !(status && status.running);
      el["roi-canvas"].classList.toggle("off", !this.canDrawRoi());
      if (!(status && status.running)) {
        this.latest = null;
        this.trail = [];
        this.dirty = true;
      }
    }

    /** Open the MJPEG previews only while the tracker runs and the page is visible: no viewer, no encoding. */
    setFeeds(on) {
      if (on === this.feedsOn) return;
      this.feedsOn = on;
      for (const kind of ["camera", "algorithm"]) {
        const img = this.el[`feed-${kind}`];
        if (on) img.src = withToken(`etvr/feed/${encodeURIComponent(this.uuid)}/${kind}`);
        else img.removeAttribute("src");
      }
    }

    onResult(message) {
      this.latest = message;
      if (message.confidence > 0 && !message.blink) {
        this.trail.push([message.gaze_x, message.gaze_y]);
        if (this.trail.length > GAZE_TRAIL_POINTS) this.trail.shift();
      }
      if (message.calibrating) {
        this.calibrating = true;
        this.calibrationRequested = false;
      } else if (this.calibrating) {
        this.finishCalibration();
      }
      this.dirty = true;
    }

    renderLive() {
      if (!this.dirty) return;
      this.dirty = false;
      const el = this.el;
      const result = this.latest;
      const bar = (name, value) => {
        el[`bar-${name}`].style.width = result ? `${Math.round(Math.min(1, Math.max(0, value)) * 100)}%` : "0";
        el[`val-${name}`].textContent = result ? value.toFixed(2) : "–";
      };
      bar("openness", result ? result.openness : 0);
      bar("dilation", result ? result.dilation : 0);
      bar("confidence", result ? result.confidence : 0);
      el["gaze-x"].textContent = result ? signed(result.gaze_x) : "–";
      el["gaze-y"].textContent = result ? signed(result.gaze_y) : "–";
      el["stat-fps"].textContent = result ? result.fps.toFixed(0) : el["stat-fps"].textContent;
      el["stat-latency"].textContent = result ? result.latency_ms.toFixed(1) : "–";
      el["confidence-readout"].textContent = result
        ? `${result.blink ? "blink · " : ""}pupil ${result.pupil_x === null ? "not found" : "found"}`
        : "";
      if (result && result.calibrating) {
        const percent = Math.round(result.calibration_progress * 100);
        this.showCalibration(result.calibration_progress, `Calibrating… ${percent}%`);
      }
      this.drawGaze();
    }

    drawGaze() {
      const canvas = this.el["gaze-plot"];
      const ratio = window.devicePixelRatio || 1;
      const size = canvas.clientWidth || 170;
      if (canvas.width !== Math.round(size * ratio)) {
        canvas.width = Math.round(size * ratio);
        canvas.height = Math.round(size * ratio);
      }
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, size, size);
      const pad = 10;
      const span = size - 2 * pad;
      const toX = (x) => pad + ((x + 1) / 2) * span;
      const toY = (y) => pad + ((1 - y) / 2) * span; // +y is up
      ctx.strokeStyle = "#2a3142";
      ctx.lineWidth = 1;
      ctx.strokeRect(pad + 0.5, pad + 0.5, span, span);
      ctx.beginPath();
      ctx.moveTo(toX(0), pad);
      ctx.lineTo(toX(0), pad + span);
      ctx.moveTo(pad, toY(0));
      ctx.lineTo(pad + span, toY(0));
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(toX(0), toY(0), span / 4, 0, Math.PI * 2);
      ctx.stroke();
      const trail = this.trail;
      for (let i = 1; i < trail.length; i += 1) {
        ctx.strokeStyle = `rgba(122, 162, 247, ${(i / trail.length) * 0.8})`;
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.moveTo(toX(trail[i - 1][0]), toY(trail[i - 1][1]));
        ctx.lineTo(toX(trail[i][0]), toY(trail[i][1]));
        ctx.stroke();
      }
      const result = this.latest;
      if (!result) {
        ctx.fillStyle = "#8a93a6";
        ctx.font = "12px system-ui, sans-serif";
        ctx.textAlign = "center";
        ctx.fillText("no data", size / 2, size / 2 + 4);
        return;
      }
      const x = toX(Math.max(-1, Math.min(1, result.gaze_x)));
      const y = toY(Math.max(-1, Math.min(1, result.gaze_y)));
      ctx.beginPath();
      ctx.arc(x, y, 6, 0, Math.PI * 2);
      if (result.blink || result.confidence <= 0) {
        ctx.strokeStyle = "#8a93a6";
        ctx.lineWidth = 2;
        ctx.stroke();
      } else {
        ctx.fillStyle = "#9ece6a";
        ctx.fill();
      }
    }
  }

  // -- page-level rendering ------------------------------------------------------------------------------

  function renderTrackers() {
    if (!state.config) return;
    const container = $(document, "#trackers");
    const wanted = state.config.trackers.map((t) => t.uuid);
    for (const [uuid, view] of state.views) {
      if (!wanted.includes(uuid)) {
        view.setFeeds(false);
        view.root.remove();
        state.views.delete(uuid);
      }
    }
    for (const tracker of state.config.trackers) {
      let view = state.views.get(tracker.uuid);
      if (!view) {
        view = new TrackerView(tracker.uuid);
        state.views.set(tracker.uuid, view);
      }
      container.append(view.root); // keeps the config's order
      view.renderConfig(tracker);
      view.renderStatus(state.statuses.get(tracker.uuid));
    }
  }

  function renderService() {
    const pill = $(document, "#service-state");
    pill.textContent = state.running ? "tracking" : "tracking stopped";
    pill.className = `pill ${state.running ? "pill-good" : "pill-muted"}`;
    const button = $(document, "#start-stop");
    button.textContent = state.running ? "Stop tracking" : "Start tracking";
    button.classList.toggle("btn-danger", state.running);
    button.classList.toggle("btn-primary", !state.running);
    $(document, "#calibrate-all").disabled = !state.running;
    $(document, "#recenter-all").disabled = !state.running;
  }

  // -- OSC settings --

  function element(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props);
    node.append(...children);
    return node;
  }

  function field(label, control, wide = false) {
    return element("label", { className: `field${wide ? " wide" : ""}` }, element("span", { textContent: label }), control);
  }

  function input(type, value, className, onChange, props = {}) {
    const node = element("input", { type, className, ...props });
    if (type === "number") Object.assign(node, { min: 1, max: 65535, step: 1 });
    setValue(node, value);
    node.dataset.saved = node.value;
    node.addEventListener("change", () => {
      if (type === "checkbox") node.blur();
      node.dataset.saved = node.value; // committed: no longer an edit in progress
      onChange(type === "checkbox" ? node.checked : node.value);
    });
    return node;
  }

  function select(options, value, className, onChange) {
    const node = element("select", { className });
    for (const [optionValue, text] of options) node.append(new Option(text, optionValue));
    node.value = value;
    node.addEventListener("change", () => {
      node.blur(); // a choice is complete: let the form re-render with what the service saved
      onChange(node.value);
    });
    return node;
  }

  function check(label, value, className, onChange) {
    return element("label", { className: "check" }, input("checkbox", value, className, onChange), ` ${label}`);
  }

  function legacyMode(osc) {
    return osc.vrchat_native_tracking ? "native" : osc.mode;
  }

  /** The GUI's native switch wins over `mode` in the config, so both change together. */
  function modePatch(mode) {
    return { mode, vrchat_native_tracking: mode === "native" };
  }

  function savePort(key) {
    return (value) => {
      const port = Number(value);
      if (Number.isInteger(port)) updateConfig({ osc: { [key]: port } });
      else renderOsc(true);
    };
  }

  function renderOsc(force = false) {
    const form = $(document, "#osc-form");
    const osc = state.config && state.config.osc;
    if (!osc) return;
    const active = document.activeElement && form.contains(document.activeElement) ? document.activeElement : null;
    if (!force && active && active.dataset.saved !== undefined && active.value !== active.dataset.saved) {
      state.oscStale = true; // the user is typing there: render when the focus leaves the form
      return;
    }
    state.oscStale = false;
    const focusClass = active ? active.classList[0] : null;
    const focusIndex = active ? [...form.querySelectorAll(`.${focusClass}`)].indexOf(active) : -1;
    const fields = [
      field("Default output mode", select(OSC_MODES, legacyMode(osc), "osc-mode", (m) => updateConfig({ osc: modePatch(m) }))),
      field("Default address", input("text", osc.address, "osc-address", (v) => updateConfig({ osc: { address: v.trim() } }))),
      field("Default port", input("number", osc.sending_port, "osc-sending-port", savePort("sending_port"))),
      field(
        "Listen on port (recenter, recalibrate)",
        input("number", osc.receiver_port, "osc-receiver-port", savePort("receiver_port")),
      ),
    ];
    const options = element("div", { className: "row" });
    for (const [key, label] of [
      ["enable_sending", "send OSC"],
      ["enable_receiving", "listen for commands"],
      ["oscquery", "advertise the listener (OSCQuery)"],
      ["mirror_eyes", "mirror eyes (one eye drives both)"],
      ["sync_blink", "sync blink"],
    ]) {
      if (key in osc) options.append(check(label, osc[key], `osc-${key.replaceAll("_", "-")}`, (v) => updateConfig({ osc: { [key]: v } })));
    }
    fields.push(field("Options", options, true));
    if (Array.isArray(osc.outputs)) fields.push(renderOscOutputs(osc));
    form.replaceChildren(...fields);
    if (focusClass && focusIndex >= 0) {
      const again = form.querySelectorAll(`.${focusClass}`)[focusIndex];
      if (again) again.focus();
    }
  }

  const OUTPUT_PRESETS = [
    ["VRChat", { mode: "v1", port: 9000 }],
    ["VRChat native eye tracking", { mode: "native", port: 9000 }],
    ["VRCFaceTracking ETVR module", { mode: "module", port: 8889 }],
    ["VRCFaceTracking Babble module", { mode: "babble", port: 8888 }],
    ["Resonite / Neos", { mode: "v1", port: 9000 }],
  ];

  /** The OSC targets (`osc.outputs`): every one gets the same results in its own format. */
  function renderOscOutputs(osc) {
    const outputs = osc.outputs;
    const save = (next) => updateConfig({ osc: { outputs: next } });
    const change = (index, patch) => save(outputs.map((o, i) => (i === index ? { ...o, ...patch } : o)));
    const inherited = `default (${legacyMode(osc)})`;
    const table = element("div", { className: "outputs" });
    table.append(
      element(
        "div",
        { className: "output-row output-head" },
        ...["On", "Name", "Mode", "Address", "Port", "", ""].map((t) => element("span", { textContent: t })),
      ),
    );
    outputs.forEach((output, index) => {
      const modes = [["", inherited], ...OSC_MODES];
      const row = element(
        "div",
        { className: "output-row" },
        input("checkbox", output.enabled, "output-enabled", (v) => change(index, { enabled: v })),
        input("text", output.name, "output-name", (v) => change(index, { name: v.trim() }), { placeholder: "name" }),
        select(modes, output.mode || "", "output-mode", (v) => change(index, { mode: v || null })),
        input("text", output.address || "", "output-address", (v) => change(index, { address: v.trim() || null }), {
          placeholder: osc.address,
        }),
        input("number", output.port === null ? "" : output.port, "output-port", (v) => change(index, { port: v === "" ? null : Number(v) }), {
          placeholder: output.mode ? "mode default" : String(osc.sending_port),
        }),
        check("auto", output.auto_port, "output-auto-port", (v) => change(index, { auto_port: v })),
        element("button", {
          type: "button",
          className: "btn btn-small output-remove",
          textContent: "Remove",
          onclick: () => save(outputs.filter((_, i) => i !== index)),
        }),
      );
      row.lastChild.title = "Remove this output";
      row.children[5].title = "Use the port VRChat advertises over OSCQuery";
      table.append(row);
    });
    const add = select([["", "Add an output…"], ...OUTPUT_PRESETS.map(([name]) => [name, name])], "", "output-add", (name) => {
      const preset = OUTPUT_PRESETS.find(([n]) => n === name);
      if (preset) save([...outputs, { name, enabled: true, ...preset[1] }]);
    });
    add.disabled = outputs.length >= 8;
    return field("Outputs (empty fields use the defaults above)", element("div", {}, table, add), true);
  }

  function renderAll() {
    renderService();
    renderTrackers();
    renderOsc();
  }

  function setBanner(message) {
    const banner = $(document, "#banner");
    banner.hidden = !message;
    banner.textContent = message || "";
  }

  // -- actions -------------------------------------------------------------------------------------------

  async function scanCameras() {
    for (const view of state.views.values()) view.el.scan.disabled = true;
    try {
      state.discovered = await api("GET", "etvr/cameras?mdns_timeout_s=2");
      toast(state.discovered.length ? `Found ${state.discovered.length} camera(s)` : "No cameras found", "good");
    } catch (error) {
      toast(`Camera scan failed: ${error.message}`, "bad");
    } finally {
      for (const view of state.views.values()) {
        view.el.scan.disabled = false;
        view.renderDiscovered();
      }
    }
  }

  function bindTopBar() {
    $(document, "#start-stop").addEventListener("click", async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      try {
        const starting = !state.running;
        await api("GET", starting ? "etvr/start" : "etvr/stop");
        state.running = starting;
      } catch (error) {
        toast(error.message, "bad");
      } finally {
        button.disabled = false;
        renderService();
      }
    });
    $(document, "#calibrate-all").addEventListener("click", async () => {
      const running = [...state.views.values()].filter((v) => (state.statuses.get(v.uuid) || {}).running);
      running.forEach((view) => view.calibrate());
    });
    $(document, "#recenter-all").addEventListener("click", async () => {
      try {
        const answer = await api("POST", "etvr/trackers/recenter");
        toast(`Recentered ${answer.trackers.length} tracker(s)`, "good");
      } catch (error) {
        toast(error.message, "bad");
      }
    });
    $(document, "#osc-form").addEventListener("focusout", (event) => {
      if (state.oscStale && !event.currentTarget.contains(event.relatedTarget)) setTimeout(() => renderOsc(), 0);
    });
    document.addEventListener("visibilitychange", () => {
      for (const view of state.views.values()) view.renderStatus(state.statuses.get(view.uuid));
    });
  }

  // -- live data -----------------------------------------------------------------------------------------

  function handleMessage(message) {
    switch (message.type) {
      case "hello":
        state.configPushes += 1;
        state.config = message.config;
        state.running = message.running;
        state.statuses = new Map(message.trackers.map((t) => [t.uuid, t]));
        $(document, "#version").textContent = `ETVR Backend ${message.version}`;
        renderAll();
        break;
      case "config":
        state.configPushes += 1;
        state.config = message.config;
        renderTrackers();
        renderOsc();
        break;
      case "service":
        state.running = message.running;
        renderService();
        break;
      case "state": {
        state.statuses.set(message.uuid, message);
        const view = state.views.get(message.uuid);
        if (view) view.renderStatus(message);
        break;
      }
      case "result": {
        const view = state.views.get(message.uuid);
        if (view) view.onResult(message);
        break;
      }
      case "calibration": {
        const view = state.views.get(message.uuid);
        if (!view) break;
        if (message.status === "started") {
          view.calibrating = true;
          view.showCalibration(0, "Calibrating…");
        } else {
          view.finishCalibration();
        }
        break;
      }
      case "error":
        if (message.uuid) toast(`${trackerLabel(message.uuid)} (${message.source}): ${message.message}`, "bad");
        else setBanner(message.message);
        break;
      default:
        break;
    }
  }

  function connect() {
    const url = new URL(withToken("etvr/ws"), location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url);
    const link = $(document, "#link-state");
    socket.addEventListener("open", () => {
      state.socketOpen = true;
      link.textContent = "live";
      link.className = "pill pill-good";
    });
    socket.addEventListener("message", (event) => handleMessage(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      if (state.socketOpen) toast("Lost the live connection to the service; reconnecting…", "bad");
      state.socketOpen = false;
      link.textContent = "reconnecting…";
      link.className = "pill pill-bad";
      setTimeout(connect, RECONNECT_MS);
    });
  }

  function animate() {
    for (const view of state.views.values()) view.renderLive();
    requestAnimationFrame(animate);
  }

  async function loadHealth() {
    try {
      const health = await api("GET", "etvr/health");
      $(document, "#config-path").textContent = `config: ${health.config_path}`;
      const problems = health.config_problems.map((p) => p.message);
      if (health.persist_error) problems.unshift(health.persist_error);
      setBanner(problems.join(" · "));
    } catch {
      // The socket's reconnect notice covers a service that is not there.
    }
  }

  $(document, "#docs-link").href = withToken("docs");
  bindTopBar();
  connect();
  loadHealth();
  requestAnimationFrame(animate);
})();
