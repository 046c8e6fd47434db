// rfmweb viewer: the browser half of rfmweb.widgets.Viewer / Compare (one anywidget ES module with dom.js, no deps).
//
// Python renders; this file draws frames and turns the user's gestures into messages:
//   Python -> page: {type:"frame", view, id, mime, width, height, kind, render_ms, ...} + 1 binary buffer,
//                   {type:"screenshot", view, request, filename, mime} + PNG buffer, {type:"error", view, message}
//   page -> Python: ack, ready, resize, drag, wheel, key, preset, renderer, class, group, class_colors, cinematic,
//                   reset, screenshot, mode, slice, channel, stroke, mark, apply_correction, undo_correction, window,
//                   overlay, probe, point, annotate, unannotate, save_scene, load_scene
//                   (rfmweb.session.messages; rfmweb.session.controller carries them out)
//   Python -> page also: {type:"scene", view, request, filename, text} (a scene file to download),
//                   {type:"file", view, request, filename, mime} + buffer (e.g. a segmentation to download)
// A click (no drag) puts the crosshair cursor on the voxel (slice) or surface (3-D) under the pointer;
// linked views move there.
// Slice views: the wheel steps slices, ctrl+wheel zooms, right/ctrl-drag sets the window, shift/middle-drag
// pans, hovering reads the intensity under the pointer (Python decides by the view's mode). With the correction tool on,
// a drag on a slice view paints a stroke (sent as canvas device pixels on release) and a click on a 3-D
// view marks the surface under the pointer.
// Pointer and wheel deltas are summed and sent at most once per COALESCE_MS per view; each frame is
// acknowledged after it is drawn (Python keeps at most two frames unacknowledged).

const COALESCE_MS = 20;
const SLIDER_MS = 60;
const BUTTONS = ["left", "middle", "right"];
// keys a focused view answers (rfmweb.session.interaction.KEYS)
const VIEW_KEYS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown", "+", "=", "-", "Home"];
const MODES = [["3d", "3D"], ["axial", "Axial"], ["coronal", "Coronal"], ["sagittal", "Sagittal"]];
const CORRECTION_LABELS = [["0", "not tumour (erase)"], ["1", "NCR"], ["2", "ED"], ["3", "ET"]];
const STROKE_COLORS = ["#4fc3f7", "#e63326", "#40bf4d", "#ffd91a"];
const ICONS = {
  reset: '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M8 3a5 5 0 1 1-4.6 3H1.9A6.5 6.5 0 1 0 8 1.5V0L5 2.5 8 5z" fill="currentColor"/></svg>',
  camera: '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M5.5 2 4.4 3.5H2A1.5 1.5 0 0 0 .5 5v7.5A1.5 1.5 0 0 0 2 14h12a1.5 1.5 0 0 0 1.5-1.5V5A1.5 1.5 0 0 0 14 3.5h-2.4L10.5 2zM8 5.5a3 3 0 1 1 0 6 3 3 0 0 1 0-6z" fill="currentColor"/></svg>',
};

/** One view: header with menus, canvas, class panel, status line. */
class ViewPanel {
  constructor(model, index, parent) {
    this.model = model;
    this.index = index;
    this.lastId = 0;
    this.frames = 0;
    this.bitmap = null;
    this.drag = null;
    this.screenshotRequest = 0;
    this.errorTimer = null;
    this.cleanups = [];
    this.build(parent);
    this.bindPointer();
    this.bindResize();
  }

  send(msg) {
    if (this.lost) return;
    try {
      this.model.send({ view: this.index, ...msg });
    } catch (err) {   // the kernel restarted or shut down: its end of the widget is gone
      this.lost = true;
      console.warn("rfmweb: the kernel is gone:", err);
      this.root.classList.add("rfm-lost");
      this.overlay.textContent = "The kernel stopped or restarted: run this cell again";
      this.overlay.hidden = false;
    }
  }

  on(target, type, fn, opts) {
    target.addEventListener(type, fn, opts);
    this.cleanups.push(() => target.removeEventListener(type, fn, opts));
  }

  build(parent) {
    this.title = h("div", { class: "rfm-title" });
    this.subtitle = h("div", { class: "rfm-subtitle" });
    this.modeSel = h("select", { class: "rfm-select rfm-mode", title: "3-D view or a slice" });
    this.sliceRange = h("input", { type: "range", class: "rfm-slice", min: "0", max: "0", step: "1",
      title: "Slice (the mouse wheel steps slices too)" });
    this.sliceText = h("span", { class: "rfm-slice-text" });
    this.sliceRow = h("div", { class: "rfm-row rfm-slice-row" }, [this.sliceRange, this.sliceText]);
    this.windowSel = h("select", { class: "rfm-select rfm-window",
      title: "Grey window of the slices (right-drag or ctrl-drag on a slice: window/level)" });
    this.windowText = h("span", { class: "rfm-window-text" });
    this.overlayBox = h("input", { type: "checkbox", class: "rfm-overlay-toggle" });
    this.overlayRange = h("input", { type: "range", class: "rfm-overlay-opacity", min: "0", max: "1", step: "0.05",
      title: "Opacity of the label overlay" });
    this.channelSel = h("select", { class: "rfm-select rfm-channel", title: "MR sequence shown (slices and 3-D)" });
    this.channelRow = h("div", { class: "rfm-row" }, [h("span", { class: "rfm-label", text: "Sequence" }),
      this.channelSel]);
    this.measureBox = h("input", { type: "checkbox", class: "rfm-measure" });
    this.sliceTools = h("div", { class: "rfm-slice-tools" }, [
      h("div", { class: "rfm-row" }, [h("span", { class: "rfm-label", text: "Window" }), this.windowSel]),
      h("div", { class: "rfm-row" }, [this.windowText]),
      h("div", { class: "rfm-row" }, [h("label", { class: "rfm-toggle", title: "Draw the labels over the slice" },
        [this.overlayBox, h("span", { text: "labels" })]), this.overlayRange]),
      h("label", { class: "rfm-toggle", title: "Drag on a slice to measure a distance (off: the ruler goes)" },
        [this.measureBox, h("span", { text: "measure (drag on a slice)" })])]);
    this.toolBox = h("input", { type: "checkbox", class: "rfm-correct-tool" });
    this.labelSel = h("select", { class: "rfm-select rfm-correct-label", title: "What the marked voxels are" });
    fillSelect(this.labelSel, CORRECTION_LABELS, "0");
    this.applyBtn = h("button", { class: "rfm-btn rfm-apply", text: "Apply", title: "Fine-tune the INR on the marks" });
    this.undoBtn = h("button", { class: "rfm-btn rfm-undo", text: "Undo", title: "Undo the last correction" });
    this.clearBtn = h("button", { class: "rfm-btn rfm-clear-marks", text: "Clear",
      title: "Forget the pending marks (not applied yet)" });
    this.brushRange = h("input", { type: "range", class: "rfm-range rfm-brush", min: "0.5", max: "10", step: "0.5",
      title: "Brush radius (mm)" });
    this.brushText = h("span", { class: "rfm-brush-text" });
    this.marksText = h("span", { class: "rfm-marks" });
    this.outcomeText = h("div", { class: "rfm-correction-note" });  // how the last Apply / Undo ended
    this.saveSegBtn = h("button", { class: "rfm-btn rfm-save-seg", text: "Save labels",
      title: "Download this view's labels as NIfTI (.nii.gz), corrections included" });
    this.correctBox = h("div", { class: "rfm-correct" }, [
      h("label", { class: "rfm-toggle", title: "Drag on a slice view / click on the 3-D view to mark voxels" },
        [this.toolBox, h("span", { text: "correct" })]), this.labelSel,
      h("div", { class: "rfm-row" }, [h("span", { class: "rfm-label", text: "Brush" }), this.brushRange, this.brushText]),
      this.applyBtn, this.undoBtn, this.clearBtn, this.marksText, this.outcomeText, this.saveSegBtn]);
    this.noteInput = h("input", { type: "text", class: "rfm-note-text", maxlength: "80",
      placeholder: "label this point", title: "Click a point, type a label, press Enter" });
    this.noteBtn = h("button", { class: "rfm-btn rfm-annotate", text: "Add", title: "Label the cursor's point" });
    this.noteClear = h("button", { class: "rfm-btn rfm-unannotate", text: "Clear",
      title: "Remove every annotation and the cursor" });
    this.notesText = h("div", { class: "rfm-notes" });
    this.sceneSave = h("button", { class: "rfm-btn rfm-scene-save", text: "Save scene",
      title: "Download the view (preset, classes, camera, slices, annotations) as a JSON file" });
    this.sceneFile = h("input", { type: "file", accept: ".json,application/json", class: "rfm-scene-file", hidden: true });
    this.sceneLoad = h("button", { class: "rfm-btn rfm-scene-load", text: "Load scene", title: "Restore a saved scene" });
    this.presetSel = h("select", { class: "rfm-select", title: "Transfer-function preset" });
    this.rendererSel = h("select", { class: "rfm-select", title: "Renderer" });
    const resetBtn = h("button", { class: "rfm-btn", title: "Reset view", html: ICONS.reset });
    const shotBtn = h("button", { class: "rfm-btn", title: "Save a full-quality PNG", html: ICONS.camera });
    this.canvas = h("canvas", { class: "rfm-canvas", tabindex: "0",
      title: "click: crosshair · drag or arrow keys: orbit · shift+drag / middle: pan · right / ctrl+drag / " +
             "wheel / + -: zoom · Home: reset" });
    this.overlay = h("div", { class: "rfm-overlay", text: "waiting for the kernel…" });
    this.stage = h("div", { class: "rfm-stage" }, [this.canvas, this.overlay]);
    this.groupsBox = h("div", { class: "rfm-groups" });
    this.classBox = h("div", { class: "rfm-classes" });
    this.classColors = h("input", { type: "checkbox" });
    this.colorsLabel = h("label", { class: "rfm-toggle", title: "Colour voxels by their class" },
      [this.classColors, h("span", { text: "colour by class" })]);
    this.anatomyHead = h("div", { class: "rfm-section", text: "Anatomy" });
    this.cinematic = h("input", { type: "checkbox" });
    this.cinematicLabel = h("label", { class: "rfm-toggle",
      title: "While the camera rests, path-trace the view and keep adding samples" },
      [this.cinematic, h("span", { text: "cinematic still (path traced)" })]);
    this.statusText = h("span", { class: "rfm-status-text" });
    this.probeText = h("span", { class: "rfm-probe" });
    this.statusInfo = h("span", { class: "rfm-status-info" });
    this.spinner = h("span", { class: "rfm-spinner" });
    this.panel = h("div", { class: "rfm-panel" }, [
      h("div", { class: "rfm-row" }, [h("span", { class: "rfm-label", text: "View" }), this.modeSel]),
      this.channelRow, this.sliceRow, this.sliceTools, this.correctBox,
      h("div", { class: "rfm-row" }, [h("span", { class: "rfm-label", text: "Preset" }), this.presetSel]),
      h("div", { class: "rfm-row" }, [h("span", { class: "rfm-label", text: "Renderer" }), this.rendererSel]),
      this.anatomyHead, this.groupsBox, this.classBox, this.colorsLabel,
      this.cinematicLabel,
      h("div", { class: "rfm-section", text: "Annotations" }),
      h("div", { class: "rfm-row" }, [this.noteInput, this.noteBtn, this.noteClear]), this.notesText,
      h("div", { class: "rfm-row" }, [this.sceneSave, this.sceneLoad, this.sceneFile]),
    ]);
    this.root = h("div", { class: "rfm-view" }, [
      h("div", { class: "rfm-header" }, [h("div", { class: "rfm-heading" }, [this.title, this.subtitle]),
        h("div", { class: "rfm-tools" }, [resetBtn, shotBtn])]),
      h("div", { class: "rfm-body" }, [this.stage, this.panel]),
      h("div", { class: "rfm-status" }, [this.spinner, this.probeText, this.statusText, this.statusInfo]),
    ]);
    parent.append(this.root);
    this.classRows = new Map();
    this.classKey = null;   // no list drawn yet (a volume without classes has the key "")
    this.groupKey = "";

    this.on(this.presetSel, "change", () => this.send({ type: "preset", name: this.presetSel.value }));
    this.on(this.rendererSel, "change", () => this.send({ type: "renderer", name: this.rendererSel.value }));
    this.on(this.classColors, "change", () => this.send({ type: "class_colors", on: this.classColors.checked }));
    this.on(this.cinematic, "change", () => this.send({ type: "cinematic", on: this.cinematic.checked }));
    this.on(this.modeSel, "change", () => this.send({ type: "mode", mode: this.modeSel.value }));
    this.on(this.channelSel, "change", () => this.send({ type: "channel", channel: Number(this.channelSel.value) }));
    this.on(this.windowSel, "change", () => {
      if (this.windowSel.value !== "custom") this.send({ type: "window", preset: this.windowSel.value });
    });
    const sendOverlay = throttle((on, v) => this.send({ type: "overlay", on, opacity: v }), SLIDER_MS);
    this.on(this.overlayBox, "change", () => sendOverlay(this.overlayBox.checked, Number(this.overlayRange.value)));
    this.on(this.overlayRange, "input", () => sendOverlay(this.overlayBox.checked, Number(this.overlayRange.value)));
    this.cleanups.push(() => sendOverlay.cancel());
    const sendSlice = throttle((v) => this.send({ type: "slice", index: v }), SLIDER_MS);
    this.on(this.sliceRange, "input", () => sendSlice(Number(this.sliceRange.value)));
    this.cleanups.push(() => sendSlice.cancel());
    this.on(this.measureBox, "change", () => {   // one tool at a time; off, the ruler goes
      if (this.measureBox.checked) this.toolBox.checked = false;
      else this.send({ type: "measure", points: [] });
    });
    this.on(this.toolBox, "change", () => {
      if (this.toolBox.checked && this.measureBox.checked) {
        this.measureBox.checked = false;
        this.send({ type: "measure", points: [] });
      }
    });
    this.on(this.applyBtn, "click", () => { this.send({ type: "apply_correction" }); this.flash("correcting…"); });
    this.on(this.undoBtn, "click", () => this.send({ type: "undo_correction" }));
    this.on(this.clearBtn, "click", () => this.send({ type: "clear_marks" }));
    this.on(this.saveSegBtn, "click", () => {
      this.sceneRequest += 1;
      this.send({ type: "save_segmentation", request: this.sceneRequest });
      this.flash("saving the labels…");
    });
    this.on(this.brushRange, "change", () => {
      this.brushText.textContent = `${this.brushRange.value} mm`;
      this.send({ type: "brush", radius_mm: Number(this.brushRange.value) });
    });
    const annotate = () => {
      const text = this.noteInput.value.trim();
      if (text) { this.send({ type: "annotate", text }); this.noteInput.value = ""; }
    };
    this.on(this.noteBtn, "click", annotate);
    this.on(this.noteInput, "keydown", (e) => { if (e.key === "Enter") annotate(); });
    this.on(this.noteClear, "click", () => this.send({ type: "unannotate" }));
    this.sceneRequest = 0;
    this.on(this.sceneSave, "click", () => { this.sceneRequest += 1; this.send({ type: "save_scene", request: this.sceneRequest }); });
    this.on(this.sceneLoad, "click", () => this.sceneFile.click());
    this.on(this.sceneFile, "change", async () => {
      const file = this.sceneFile.files[0];
      this.sceneFile.value = "";
      if (!file) return;
      if (file.size > 256 * 1024) { this.flash(`${file.name}: too large for a scene file`, true); return; }
      this.send({ type: "load_scene", text: await file.text() });
      this.flash(`loaded ${file.name}`);
    });
    this.on(resetBtn, "click", () => this.send({ type: "reset" }));
    this.on(shotBtn, "click", () => {
      this.screenshotRequest += 1;
      this.send({ type: "screenshot", request: this.screenshotRequest });
      this.flash("rendering screenshot…");
    });
  }

  bindPointer() {
    const c = this.canvas;
    this.dragger = new Coalescer((p) => this.send({ type: "drag", ...p.fields, dx: p.dx, dy: p.dy }), COALESCE_MS);
    this.wheeler = new Coalescer((p) => this.send({ type: "wheel", dy: p.dy, ...p.fields }), COALESCE_MS);
    const probe = throttle((x, y) => this.send({ type: "probe", x, y }), 50);
    this.cleanups.push(() => probe.cancel());
    this.on(c, "contextmenu", (e) => e.preventDefault());
    this.on(c, "pointerdown", (e) => {
      if (e.button > 2 || this.drag) return;
      e.preventDefault();  // no text selection, no middle-click autoscroll
      c.focus({ preventScroll: true });
      c.setPointerCapture(e.pointerId);
      this.drag = { id: e.pointerId, button: BUTTONS[e.button], x: e.clientX, y: e.clientY, x0: e.clientX, y0: e.clientY };
      if (e.button === 0 && this.toolBox.checked && this.state?.correctable) {
        this.drag.stroke = [this.devicePoint(e)];
      } else if (e.button === 0 && this.measureBox.checked && this.state?.mode !== "3d") {
        this.drag.ruler = [this.devicePoint(e)];
      }
      c.classList.add("rfm-dragging");
    });
    this.on(c, "pointermove", (e) => {
      const d = this.drag;
      if (!d && this.state?.mode !== "3d") { const [x, y] = this.devicePoint(e); probe(x, y); }
      if (!d || e.pointerId !== d.id) return;
      if (d.stroke) {  // painting: collect points, draw them, send on release
        if (this.state.mode !== "3d") { d.stroke.push(this.devicePoint(e)); this.drawStroke(d.stroke); }
        return;
      }
      if (d.ruler) { d.ruler[1] = this.devicePoint(e); this.drawRuler(d.ruler); return; }   // sent on release
      const dx = e.clientX - d.x, dy = e.clientY - d.y;
      d.x = e.clientX; d.y = e.clientY;
      const shift = e.shiftKey, ctrl = e.ctrlKey || e.metaKey;
      this.dragger.add(`${d.button}|${shift}|${ctrl}`, { button: d.button, shift, ctrl }, dx, dy);
    });
    const end = (e) => {
      if (!this.drag || e.pointerId !== this.drag.id) return;
      const d = this.drag;
      if (d.stroke && e.type === "pointerup") {
        const label = Number(this.labelSel.value);
        if (this.state.mode !== "3d") {
          // radius: the brush (mm) Python holds; the frame then shows the pending marks
          this.send({ type: "stroke", points: d.stroke.slice(0, 4096), label });
        } else if (Math.hypot(e.clientX - d.x0, e.clientY - d.y0) < 4) {
          const [x, y] = this.devicePoint(e);
          this.send({ type: "mark", x, y, label });
        }
      } else if (d.ruler && e.type === "pointerup" && Math.hypot(e.clientX - d.x0, e.clientY - d.y0) >= 4) {
        this.send({ type: "measure", points: [d.ruler[0], this.devicePoint(e)] });
      } else if (!d.stroke && e.type === "pointerup" && d.button === "left" && !e.shiftKey && !(e.ctrlKey || e.metaKey)
                 && Math.hypot(e.clientX - d.x0, e.clientY - d.y0) < 4) {  // a click: the crosshair goes there
        const [x, y] = this.devicePoint(e);
        this.send({ type: "point", x, y });
      }
      this.dragger.flush();
      this.drag = null;
      c.classList.remove("rfm-dragging");
      if (c.hasPointerCapture(e.pointerId)) c.releasePointerCapture(e.pointerId);
    };
    this.on(c, "pointerup", end);
    this.on(c, "pointercancel", end);
    this.on(c, "lostpointercapture", end);
    this.on(c, "wheel", (e) => {
      e.preventDefault();
      const scale = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 100 : 1;  // lines / pages -> pixels
      const ctrl = e.ctrlKey || e.metaKey;  // on a slice: zoom instead of stepping (a trackpad pinch too)
      this.wheeler.add(`wheel|${ctrl}`, { ctrl }, 0, e.deltaY * scale);
    }, { passive: false });
    this.on(c, "keydown", (e) => {   // arrows orbit or step slices, PageUp/Down, + - zoom, Home resets
      if (!VIEW_KEYS.includes(e.key) || e.ctrlKey || e.altKey || e.metaKey) return;
      e.preventDefault();
      this.send({ type: "key", key: e.key });
    });
    this.cleanups.push(() => { this.dragger.dispose(); this.wheeler.dispose(); });
  }

  dpr() { return this.canvas.width / Math.max(1, this.canvas.clientWidth); }

  /** Pointer position in canvas device pixels (the frame's pixels). */
  devicePoint(e) {
    const r = this.canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * this.canvas.width / Math.max(1, r.width),
            (e.clientY - r.top) * this.canvas.height / Math.max(1, r.height)];
  }

  drawStroke(points) {
    const ctx = this.canvas.getContext("2d");
    ctx.strokeStyle = STROKE_COLORS[Number(this.labelSel.value)] || "#fff";
    // the brush's width on screen while painting (the frame draws the marked voxels once sent)
    ctx.lineWidth = 2 * (this.state?.brush_mm || 3) / Math.max(1e-6, this.state?.mm_per_px || 0.5);
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.globalAlpha = 0.5;
    ctx.beginPath();
    points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
    ctx.globalAlpha = 1;
  }

  /** The ruler while it is dragged (the frame draws it, with its length, once sent). */
  drawRuler([[x0, y0], [x1, y1]]) {
    this.redraw();
    const ctx = this.canvas.getContext("2d");
    const mm = Math.hypot(x1 - x0, y1 - y0) * (this.state?.mm_per_px || 0);   // square pixels of the plane
    ctx.strokeStyle = ctx.fillStyle = "#ffd200";
    ctx.lineWidth = Math.max(1, this.dpr());
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    ctx.font = `${Math.round(13 * this.dpr())}px sans-serif`;
    ctx.fillText(`${mm.toFixed(1)} mm`, x1 + 8 * this.dpr(), y1);
  }

  bindResize() {
    let ready = false;
    // ratio: device pixels per CSS pixel as laid out (drags come in CSS pixels)
    const size = (w, hgt) => ({ width: w, height: hgt, ratio: w / Math.max(1, this.canvas.clientWidth) });
    const sendSize = throttle((w, hgt) => this.send({ type: "resize", ...size(w, hgt) }), 100);
    const observer = new ResizeObserver(() => {
      const dpr = window.devicePixelRatio || 1;
      const w = Math.max(1, Math.min(4096, Math.round(this.canvas.clientWidth * dpr)));
      const hgt = Math.max(1, Math.min(4096, Math.round(this.canvas.clientHeight * dpr)));
      if (this.canvas.clientWidth === 0 || this.canvas.clientHeight === 0) return;  // not laid out yet
      if (w !== this.canvas.width || hgt !== this.canvas.height) {
        this.canvas.width = w;
        this.canvas.height = hgt;
        this.redraw();
        if (ready) sendSize(w, hgt);
      }
      if (!ready) { ready = true; this.send({ type: "ready", ...size(w, hgt) }); }
    });
    observer.observe(this.canvas);
    this.cleanups.push(() => { observer.disconnect(); sendSize.cancel(); });
  }

  redraw() {
    const ctx = this.canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.bitmap) return;
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.bitmap, 0, 0, this.canvas.width, this.canvas.height);
  }

  async onFrame(meta, buffer) {
    try {
      const bitmap = await createImageBitmap(new Blob([buffer], { type: meta.mime }));
      if (this.disposed || meta.id <= this.lastId) { bitmap.close(); return; }  // decoded out of order
      if (this.bitmap) this.bitmap.close();
      this.bitmap = bitmap;
      this.lastId = meta.id;
      this.frames += 1;
      this.redraw();
      this.overlay.hidden = true;
      const c = this.canvas.dataset;
      c.frames = String(this.frames); c.frameId = String(meta.id); c.kind = meta.kind;
      // progressive: a cinematic still's path-traced samples or a ray-marcher's jittered frames
      const kind = meta.kind === "progressive" ? `refined · ${meta.spp} spp`
        : meta.kind === "idle" ? "full quality" : "interactive";
      this.statusInfo.textContent = `${kind} · ${meta.width}×${meta.height} · ${Math.round(meta.render_ms)} ms`;
    } catch (err) {
      console.warn("rfmweb: could not draw frame", meta.id, err);
    } finally {
      if (!this.disposed) this.send({ type: "ack", id: meta.id });
    }
  }

  onScreenshot(meta, buffer) { this.download(new Blob([buffer], { type: meta.mime }), meta.filename); }

  onFile(meta, buffer) { this.download(new Blob([buffer], { type: meta.mime }), meta.filename); }

  onScene(meta) { this.download(new Blob([meta.text], { type: "application/json" }), meta.filename); }

  download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    this.flash(`saved ${filename}`);
  }

  flash(text, isError = false) {
    this.transient = text;
    this.statusText.textContent = text;
    this.statusText.classList.toggle("rfm-error", isError);
    if (this.errorTimer) clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(() => { this.transient = null; this.errorTimer = null; this.update(this.state); },
      isError ? 6000 : 2500);
  }

  update(state) {
    if (!state || this.disposed) return;
    this.state = state;
    const model = this.model;
    this.title.textContent = this.title.title = state.title;
    this.subtitle.textContent = this.subtitle.title = state.subtitle || "";
    this.subtitle.hidden = !state.subtitle;
    fillSelect(this.modeSel, state.can_slice ? MODES : MODES.slice(0, 1), state.mode);
    this.sliceRow.hidden = state.mode === "3d";
    this.sliceRange.max = String(Math.max(0, state.slice_count - 1));
    if (document.activeElement !== this.sliceRange) this.sliceRange.value = String(state.slice_index);
    this.sliceText.textContent = `${state.slice_index + 1} / ${state.slice_count}`;
    this.correctBox.hidden = !state.correctable;
    this.marksText.textContent = state.marks ? `${state.marks} marked` : "";
    this.clearBtn.disabled = !state.marks || state.correcting;
    this.applyBtn.disabled = !state.marks || state.correcting;
    this.undoBtn.disabled = !state.can_undo || state.correcting;
    this.saveSegBtn.disabled = !!state.correcting;  // it would save the labels from before the correction
    this.outcomeText.textContent = state.last_correction || "";
    if (document.activeElement !== this.brushRange) this.brushRange.value = String(state.brush_mm);
    this.brushText.textContent = `${state.brush_mm} mm`;
    this.canvas.dataset.mode = state.mode;
    this.canvas.dataset.slice = String(state.slice_index);
    this.sliceTools.hidden = state.mode === "3d";
    const windows = [["auto", state.auto_window || "auto"],
      ...(state.hu ? model.get("window_options").map((w) => [w.name, w.label]) : [])];
    fillSelect(this.windowSel, windows, state.window_preset);
    const channels = state.channels || [];
    this.channelRow.hidden = channels.length < 2;
    fillSelect(this.channelSel, channels.map((c, i) => [String(i), c]), String(state.slice_channel || 0));
    this.windowText.textContent = state.window || "";
    this.overlayBox.checked = state.label_overlay;
    this.overlayRange.disabled = !state.label_overlay;     // as in the web app: the opacity of labels shown
    if (document.activeElement !== this.overlayRange) this.overlayRange.value = String(state.overlay_opacity);
    this.probeText.textContent = state.probe || "";   // Python's words: slices and 3-D alike (shown_readout)
    this.notesText.textContent = (state.annotations || []).map((t, i) => `${i + 1}. ${t}`).join("  ");
    this.canvas.dataset.cursor = state.cursor || "";
    this.canvas.dataset.annotations = String((state.annotations || []).length);
    fillSelect(this.presetSel, model.get("preset_options").map((p) => [p.name, p.name, p.disabled ? p.hint : "",
      "other modality"]), state.preset);
    fillSelect(this.rendererSel, model.get("renderer_options").map((r) => [r.name, r.label, r.disabled ? r.hint : ""]),
      state.renderer);
    this.classColors.checked = state.class_colors;
    this.cinematic.checked = state.cinematic;
    // without Mitsuba the switch stays visible, disabled, its tooltip saying what to install
    const tracer = model.get("renderer_options").find((r) => r.name === "pathtrace");
    this.cinematicLabel.hidden = !tracer;
    this.cinematic.disabled = !tracer || tracer.disabled;
    this.cinematicLabel.title = tracer && tracer.disabled ? tracer.hint
      : "While the camera rests, path-trace the view and keep adding samples";
    this.updateGroups(state.groups);
    this.updateClasses(state.classes);
    this.spinner.hidden = !state.busy;
    if (!this.transient) {
      this.statusText.classList.remove("rfm-error");
      this.statusText.textContent = state.status;
    }
    this.root.classList.toggle("rfm-busy", state.busy);
    this.canvas.classList.toggle("rfm-stale", !!state.stale);   // the previous renderer's image, until the next one's
  }

  updateGroups(groups) {
    const key = groups.map((g) => g.name).join("|");
    if (key !== this.groupKey) {
      this.groupKey = key;
      this.groupsBox.replaceChildren();
      this.groupInputs = new Map();
      for (const g of groups) {
        const input = h("input", { type: "checkbox" });
        input.addEventListener("change", () => this.send({ type: "group", group: g.name, visible: input.checked }));
        this.groupInputs.set(g.name, input);
        this.groupsBox.append(h("label", { class: "rfm-chip", title: `Show or hide all ${g.name}` },
          [input, h("span", { text: g.name })]));
      }
    }
    for (const g of groups) {
      const input = this.groupInputs.get(g.name);
      input.checked = g.visible !== "none";
      input.indeterminate = g.visible === "some";
    }
  }

  updateClasses(classes) {
    // the background class (label 0) is air: toggling it is never what a user means
    const shown = classes.filter((c) => !(c.index === 0 && classes.length > 1));
    const key = shown.map((c) => `${c.index}:${c.name}`).join("|");
    if (key !== this.classKey) {
      this.classKey = key;
      this.classBox.replaceChildren();
      this.classRows.clear();
      // classes listed under their group (in order of first appearance), ungrouped ones last
      const groups = [...new Set(shown.map((c) => c.group))].sort((a, b) => (a === "") - (b === ""));
      for (const g of groups) {
        if (groups.length > 1 || g) this.classBox.append(h("div", { class: "rfm-class-group", text: g || "other" }));
        for (const c of shown.filter((x) => x.group === g)) this.classRows.set(c.index, this.classRow(c));
      }
      // a volume without labels (a brain template) has no Anatomy section: it stood empty, 200 px tall
      for (const el of [this.classBox, this.anatomyHead, this.colorsLabel]) el.hidden = shown.length === 0;
    }
    for (const c of shown) {
      const row = this.classRows.get(c.index);
      row.visible.checked = c.visible;
      if (document.activeElement !== row.color) row.color.value = c.color;
      if (document.activeElement !== row.opacity) row.opacity.value = String(c.opacity);
      row.root.classList.toggle("rfm-hidden-class", !c.visible);
      row.root.dataset.group = c.group;
    }
  }

  classRow(c) {
    const visible = h("input", { type: "checkbox", title: `Show ${c.name}` });
    const color = h("input", { type: "color", class: "rfm-swatch", title: `Colour of ${c.name}` });
    const opacity = h("input", { type: "range", class: "rfm-opacity", min: "0", max: "1", step: "0.01",
      title: `Opacity of ${c.name}` });
    const sendOpacity = throttle((v) => this.send({ type: "class", index: c.index, opacity: v }), SLIDER_MS);
    visible.addEventListener("change", () => this.send({ type: "class", index: c.index, visible: visible.checked }));
    color.addEventListener("input", () => this.send({ type: "class", index: c.index, color: color.value }));
    opacity.addEventListener("input", () => sendOpacity(Number(opacity.value)));
    this.cleanups.push(() => sendOpacity.cancel());
    const root = h("div", { class: "rfm-class" },
      [visible, color, h("span", { class: "rfm-class-name", text: c.name, title: c.group ? `${c.name} (${c.group})` : c.name }), opacity]);
    root.dataset.index = String(c.index);
    this.classBox.append(root);
    return { root, visible, color, opacity };
  }

  dispose() {
    this.disposed = true;
    for (const fn of this.cleanups.splice(0)) fn();
    if (this.errorTimer) clearTimeout(this.errorTimer);
    if (this.bitmap) this.bitmap.close();
    this.bitmap = null;
    this.root.remove();
  }
}

export default {
  render({ model, el }) {
    // right-drag is window/level or zoom: JupyterLab must not open its cell menu over the canvas
    const root = h("div", { class: "rfm-root", "data-jp-suppress-context-menu": "" });
    el.append(root);
    let panels = [];

    const layout = () => {
      root.className = `rfm-root rfm-${model.get("arrangement")}`;
      root.style.setProperty("--rfm-w", `${model.get("width")}px`);
      root.style.setProperty("--rfm-aspect", `${model.get("width")} / ${model.get("height")}`);
    };
    const sync = () => {
      const views = model.get("views");
      while (panels.length > views.length) panels.pop().dispose();
      while (panels.length < views.length) panels.push(new ViewPanel(model, panels.length, root));
      views.forEach((v, i) => panels[i].update(v));
    };
    const onMsg = (msg, buffers) => {
      const panel = panels[msg.view];
      if (msg.type === "frame" && panel) panel.onFrame(msg, buffers[0]);
      else if (msg.type === "screenshot" && panel) panel.onScreenshot(msg, buffers[0]);
      else if (msg.type === "scene" && panel) panel.onScene(msg);
      else if (msg.type === "file" && panel) panel.onFile(msg, buffers[0]);
      else if (msg.type === "error") {
        console.warn("rfmweb:", msg.message);
        (panel ? [panel] : panels).forEach((p) => p.flash(msg.message, true));
      }
    };
    layout();
    sync();
    // one event name per call: anywidget's model proxy does not promise Backbone's "a b" syntax
    const handlers = [["change:views", sync], ["change:preset_options", sync], ["change:renderer_options", sync],
      ["change:window_options", sync],
      ["change:arrangement", layout], ["change:width", layout], ["change:height", layout], ["msg:custom", onMsg]];
    for (const [name, fn] of handlers) model.on(name, fn);
    return () => {
      for (const [name, fn] of handlers) model.off(name, fn);
      panels.forEach((p) => p.dispose());
      panels = [];
      root.remove();
    };
  },
};
