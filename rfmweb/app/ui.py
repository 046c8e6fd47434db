"""Layout of the web app (vuetify 3): controls in the drawer, one or two views in the page.

Layout only: every value shown comes from :class:`~rfmweb.app.state.AppState` (``names`` gives its
state keys) and every action calls a controller of :mod:`rfmweb.app.logic` (``ctrl.rfm_*``,
``trigger('rfm_screenshot')``). No input names a server-side path. The one piece of page code,
:data:`CLIENT_SCRIPT`, displays and acknowledges the frames.
"""

from __future__ import annotations

import json

from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html, rca
from trame.widgets import vuetify3 as v3

from ..session.interaction import KEYS
from ..session.messages import BRUSH_MM_RANGE
from .state import PLANE_VIEWS, VIEW_A, VIEW_B, VIEW_C, VIEWS

#: The frame <img> fills its area; it lets pointer events through to trame-rca's listeners.
IMG_STYLE = ("position:absolute;inset:0;width:100%;height:100%;object-fit:contain;"
             "pointer-events:none;user-select:none;background:#000")
#: Until its first frame a view shows a neutral "rendering…" placeholder, never a broken-image icon
#: (an <img> without ``src`` is hidden).
#: Narrower windows than this (CSS px: a tablet upright, a phone) get the drawer over the views, closed
#: at first, instead of beside them: 320 px of controls would leave the views a strip.
NARROW_PX = 800
PAGE_CSS = """
img[data-rfm-view]:not([src]) { visibility: hidden; }
.rfm-placeholder { position:absolute; inset:0; display:flex; align-items:center; justify-content:center;
  color:#9e9e9e; font-size:0.85rem; background:#111; pointer-events:none; user-select:none; }
.rfm-one-line { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.rfm-dice { white-space:pre; }
img.rfm-stale { opacity:0.4; filter:grayscale(0.6); }
.rfm-area { position:relative; }   /* the keyboard's focus, drawn over the frame (an outline is under it) */
.rfm-area:focus-visible::after { content:""; position:absolute; inset:0; border:2px solid #64b5f6;
  pointer-events:none; z-index:5; }
@media (pointer: coarse) {   /* fingers: controls at least ~40 px (Vuetify's compact density is 28) */
  .v-navigation-drawer .v-selection-control { min-height:44px; }
  .v-navigation-drawer .v-selection-control__wrapper, .v-navigation-drawer .v-selection-control__input {
    width:44px; height:44px; }
  .v-navigation-drawer .v-slider.v-input--horizontal .v-input__control { min-height:44px; }
  .v-navigation-drawer .v-btn, .v-toolbar .v-btn { min-height:40px; }
  .v-navigation-drawer .v-field__input { min-height:44px; }
}
"""


#: The page half of the frame protocol of :class:`rfmweb.app.logic.FrameAdapter`: subscribe to
#: trame-rca's stream topic, show our frames (``meta.rfm == 1``) in ``img[data-rfm-view=NAME]``,
#: acknowledge each displayed frame (``FrameAck``: it and all earlier ones), and ask for a fresh frame
#: on (re)connection (``Refresh``). The ``data-frame-*`` attributes it writes are what tests read.
CLIENT_SCRIPT = r"""
(() => {
  if (window.__rfmweb) return;
  const st = window.__rfmweb = { session: null, latest: {}, urls: {}, meta: {}, shown: 0 };
  const getSession = () => window.trame?.client?.getConnection?.()?.getSession?.();
  const imgs = (name) => document.querySelectorAll(`img[data-rfm-view="${name}"]`);
  const send = (name, event) => { try { st.session?.call("trame.rca.event", [name, "rfm", event])
    .catch(() => {}); } catch (e) { /* connection gone: the server expires the frame */ } };
  function bind(img) {
    if (img.__rfm) return;
    img.__rfm = true;
    img.addEventListener("load", () => {
      const name = img.dataset.rfmView, meta = st.meta[img.src];
      if (!meta) return;
      Object.assign(img.dataset, { frameId: meta.id, frameGen: meta.gen, frameKind: meta.kind,
                                   frameVersion: meta.version, frameW: meta.w, frameH: meta.h,
                                   shownAt: performance.now() });
      st.shown += 1;
      send(name, { type: "FrameAck", id: meta.id, gen: meta.gen });
      const list = st.urls[name] || [];
      while (list.length && list[0] !== img.src) { const u = list.shift(); URL.revokeObjectURL(u); delete st.meta[u]; }
    });
    const url = st.latest[img.dataset.rfmView];
    if (url && img.src !== url) img.src = url;
  }
  function onFrame([msg]) {
    if (!msg || !msg.meta || msg.meta.rfm !== 1) return;
    const { name, meta, content } = msg;
    const url = URL.createObjectURL(new Blob([content], { type: meta.type }));
    st.meta[url] = meta;
    st.latest[name] = url;
    (st.urls[name] = st.urls[name] || []).push(url);
    const targets = imgs(name);
    if (!targets.length) { send(name, { type: "FrameAck", id: meta.id, gen: meta.gen }); return; }
    targets.forEach((img) => { bind(img); img.src = url; });
  }
  function refreshAll() {
    document.querySelectorAll("img[data-rfm-view]").forEach((img) => {
      bind(img); send(img.dataset.rfmView, { type: "Refresh" });
    });
  }
  // keys on a focused view (trame-rca sends none): arrows, PageUp/PageDown, + - and Home (interaction.KEYS)
  const KEYS = __RFM_KEYS__;
  document.addEventListener("keydown", (e) => {
    const img = e.target?.querySelector?.("img[data-rfm-view]");
    if (!img || !KEYS.includes(e.key) || e.ctrlKey || e.altKey || e.metaKey) return;
    e.preventDefault();
    send(img.dataset.rfmView, { type: "Key", key: e.key });
  });
  // fingers on a view, said before trame-rca's events of the same touch: one finger dragged on a slice
  // steps slices; with a second one down, its emulated button events are a pinch's or a pan's (never
  // a click that moves the cursor)
  const fingers = new Map();   // pointerId -> view name
  const touches = (name) => send(name, { type: "Touches", n: [...fingers.values()].filter((v) => v === name).length });
  document.addEventListener("pointerdown", (e) => {
    const img = e.pointerType === "touch" && e.target?.closest?.(".rfm-area")?.querySelector("img[data-rfm-view]");
    if (!img) return;
    fingers.set(e.pointerId, img.dataset.rfmView);
    touches(img.dataset.rfmView);
  }, { capture: true });
  const lifted = (e) => {
    const name = fingers.get(e.pointerId);
    if (name === undefined) return;
    fingers.delete(e.pointerId);
    if (![...fingers.values()].includes(name)) touches(name);
  };
  document.addEventListener("pointerup", lifted, { capture: true });
  document.addEventListener("pointercancel", lifted, { capture: true });
  // the wheel over a view: the browser's deltaY (px), summed per view over 20 ms, ahead of trame-rca
  // (whose events carry a spin that vtk.js rescales by the first event of each scroll)
  const wheels = {};
  document.addEventListener("wheel", (e) => {
    const img = e.target?.closest?.(".rfm-area")?.querySelector("img[data-rfm-view]");
    if (!img) return;
    e.preventDefault();
    e.stopPropagation();
    const name = img.dataset.rfmView, ctrl = e.ctrlKey || e.metaKey, key = `${name}|${ctrl}`;
    const scale = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 100 : 1;   // lines / pages -> pixels
    const w = wheels[key] || (wheels[key] = { dy: 0, timer: null });
    w.dy += e.deltaY * scale;
    if (!w.timer) w.timer = setTimeout(() => {
      send(name, { type: "Wheel", dy: w.dy, ctrl });
      w.dy = 0; w.timer = null;
    }, 20);
  }, { capture: true, passive: false });
  new MutationObserver(() => document.querySelectorAll("img[data-rfm-view]").forEach(bind))
    .observe(document.body, { childList: true, subtree: true });
  // a lost connection says so (the views would just stop); 4001: another tab took this viewer over.
  // Opaque: trame's own "Connection closed" spinner under it read as a second, contradicting message.
  // Otherwise the page reconnects by itself (a reload) as soon as the server answers: the session
  // waits __RFM_RECONNECT__ s for it (null: one app for every tab, which stays up).
  const LINK = 'style="color:#8cf"';
  function lost(code) {
    if (document.querySelector(".rfm-lost")) return;
    const box = document.createElement("div");
    box.className = "rfm-lost";
    box.setAttribute("role", "alert");
    box.style.cssText = "position:fixed;inset:0;z-index:10000;display:flex;align-items:center;" +
      "justify-content:center;background:#303030;color:#fff;font:16px sans-serif;text-align:center";
    box.innerHTML = '<div class="rfm-lost-text" style="background:#222;padding:16px 24px;border-radius:6px;' +
      'line-height:1.6"></div>';
    document.body.appendChild(box);
    const say = (html) => { box.firstChild.innerHTML = html; };
    if (code === 4001) {
      say(`This viewer was opened in another tab.<br><a href="" ${LINK}>Reload</a> to use it here, or ` +
        `<a href="/" ${LINK}>open a new viewer</a>.`);
      return;
    }
    const keep = __RFM_RECONNECT__;
    say("The connection to the viewer was lost. Reconnecting…" + (keep ? `<br>This viewer keeps your view and ` +
      `annotations for ${keep} s.` : ""));
    const retry = async () => {
      try {
        const r = await fetch(location.href, { cache: "no-store", redirect: "manual" });
        const gone = keep && (r.type === "opaqueredirect" || r.status === 404);   // the launcher ended it
        if (gone) {
          say(`This viewer session has ended: the connection was away for more than ${keep} s.<br>` +
            `<a href="/" ${LINK}>Open a new viewer</a> ("Save scene" keeps a view and its annotations).`);
          return;
        }
        if (r.status < 500) { location.reload(); return; }   // back (or asking for the key again)
      } catch (e) { /* no network yet */ }
      setTimeout(retry, 2000);
    };
    setTimeout(retry, 1000);
  }
  setInterval(() => {
    const s = getSession();
    if (s && s !== st.session) {
      if (!st.session && window.innerWidth < __RFM_NARROW__) window.trame.state.set("main_drawer", false);
      st.session = s; s.subscribe("trame.rca.topic.stream", onFrame); refreshAll();
      window.trame?.client?.getConnection?.()?.onConnectionClose?.((_c, event) => lost(event?.code));
    }
  }, 50);
})();
""".replace("__RFM_KEYS__", json.dumps(KEYS)).replace("__RFM_NARROW__", str(NARROW_PX))


def _view(name: str, title: str, names) -> None:
    """One view: trame-rca's event/size area with our frame <img> inside, and its status line."""
    view = getattr(names, name)
    status = view.status
    with html.Div(classes="d-flex flex-column", style="flex:1 1 0;min-width:0;min-height:0;height:100%;"):
        # a segmentation pane's subtitle has two lines (Dice; the regions' volumes): every pane's header
        # is as tall, so the three pictures stay level
        with html.Div(v_if=(view.title,), classes=f"px-2 rfm-title rfm-title-{name}",
                      style=(f"{names.segment} ? 'height:60px' : 'height:40px'",)):
            # each line cut with an ellipsis in a narrow pane (whole on hover)
            html.Div(f"{{{{ {view.title} }}}}", classes=f"text-subtitle-2 rfm-one-line rfm-view-title-{name}",
                     title=(view.title,))
            html.Div(f"{{{{ {view.subtitle} }}}}", classes=f"text-caption rfm-one-line rfm-dice rfm-dice-{name}",
                     title=(view.subtitle,))
        with html.Div(style="position:relative;flex:1 1 auto;min-height:0;background:#000;"):
            with rca.RemoteControlledArea(name=name, display="rfm", event_throttle_ms=16, send_mouse_move=True,
                                          classes=f"rfm-area rfm-area-{name}", role="application",
                                          __properties=[("aria_label", "aria-label"), "role"],
                                          aria_label=(f"{view.title} || '{title}'",)):
                # seen until the first frame covers it; never read out (a screen reader said "rendering…")
                html.Div("rendering…", classes=f"rfm-placeholder rfm-placeholder-{name}",
                         __properties=[("aria_hidden", "aria-hidden")], aria_hidden="true")
                # dimmed while it is the previous renderer's image (the menu names the next one)
                html.Img(__properties=[("rfm_view", "data-rfm-view")], rfm_view=name, draggable="false",
                         alt=title, style=IMG_STYLE, classes=(f"{view.stale} ? 'rfm-stale' : ''",))
        with html.Div(classes="d-flex text-caption px-2", style="height:20px;white-space:nowrap;overflow:hidden;"):
            html.Span(f"{{{{ {view.probe} }}}}", v_if=(view.probe,), classes=f"rfm-probe rfm-probe-{name} mr-3",
                      style="color:#8a5100;font-weight:500")  # dark amber: readable on the light status band
            html.Span(f"{{{{ {status} }}}}", classes=f"rfm-status rfm-status-{name}", title=(status,),
                      style="min-width:0;overflow:hidden;text-overflow:ellipsis;")   # whole line on hover


def _view_controls(view, names, label: str) -> None:
    # item_props: a renderer whose package is missing is listed disabled, its subtitle says what to install
    v3.VSelect(label=f"Renderer{label}", v_model=(view.renderer,), items=(names.renderers,), item_title="title",
               item_value="value", item_props=True, density="compact", hide_details=True, classes="mb-2 rfm-renderer")
    v3.VSelect(label=f"Preset{label}", v_model=(view.preset,), items=(names.presets,), item_title="title",
               item_value="value", item_props=True, density="compact", hide_details=True, classes="mb-2 rfm-preset")


def _slice_controls(names) -> None:
    """3-D or slice view (all views alike), the slice slider; the wheel on a slice view steps slices."""
    v3.VSelect(label="View", v_model=(names.view_mode,), items=(names.modes,), item_title="title", item_value="value",
               v_if=(f"{names.modes}.length",), disabled=(names.four_up,), density="compact", hide_details=True,
               classes="mb-2 rfm-mode")
    # an MR case's sequence: the slices and the 3-D render show the same one
    v3.VSelect(label="Sequence", v_model=(names.slice_channel,), items=(names.channels,), item_title="title",
               item_value="value", v_if=(f"{names.channels}.length > 1",), density="compact", hide_details=True,
               classes="mb-2 rfm-channel")
    with html.Div(v_if=(f"{names.view_mode} !== '3d'",), classes="d-flex align-center mb-2"):
        v3.VSlider(v_model=(names.slice_index,), min=0, max=(names.slice_max,), step=1, density="compact",
                   hide_details=True, classes="rfm-slice")
        html.Div(f"{{{{ {names.slice_index} + 1 }}}} / {{{{ {names.slice_max} + 1 }}}}",
                 classes="text-caption ml-2 rfm-slice-text", style="min-width:64px;text-align:right")
    # the four-view layout keeps its 3-D view's mode, but its planes need the window and labels
    with html.Div(v_if=(f"{names.view_mode} !== '3d' || {names.four_up}",), classes="mb-2 rfm-slice-style"):
        v3.VSelect(label=(f"{names.is_ct} ? 'Window (HU)' : 'Window'",), v_model=(names.window_preset,),
                   items=(f"{names.is_ct} ? {names.window_presets} : {names.window_presets}.slice(0, 1)",),
                   item_title="title", item_value="value", density="compact", hide_details=True,
                   classes="rfm-window")
        html.Div(f"{{{{ {names.window_text} }}}}", classes="text-caption rfm-window-text")
        with html.Div(v_if=(f"{names.classes}.length > 1",), classes="d-flex align-center"):
            v3.VSwitch(label="Labels", v_model=(names.label_overlay,), density="compact", hide_details=True,
                       color="primary", classes="rfm-overlay flex-grow-0")
            v3.VSlider(v_model=(names.overlay_opacity,), min=0, max=1, step=0.05, density="compact",
                       hide_details=True, classes="ml-3 rfm-overlay-opacity", disabled=(f"!{names.label_overlay}",))
        v3.VSwitch(label="Measure (drag on a slice)", v_model=(names.measure,), density="compact",
                   hide_details=True, color="primary", classes="rfm-measure")
        html.Div("right/ctrl-drag: window · shift/middle-drag: pan · ctrl+wheel: zoom · wheel: slices",
                 classes="text-caption text-medium-emphasis")


def _correction_controls(ctrl, names) -> None:
    """Segmentation corrections: tool switch, label (0 erases: "not tumour"), brush radius (mm),
    Apply / Undo / Clear (segmentation views only). Pending marks show on the slices until Apply or Clear."""
    with html.Div(v_if=(names.segment,), classes="mb-2"):
        v3.VSwitch(label="Correct (paint on slices, click in 3D)", v_model=(names.tool,), density="compact",
                   hide_details=True, color="primary", classes="rfm-tool")
        v3.VSelect(label="Mark as", v_model=(names.correct_label,), items=(names.correct_labels,), item_title="title",
                   item_value="value", v_if=(names.tool,), density="compact", hide_details=True,
                   classes="mb-2 rfm-correct-label")
        v3.VSlider(label="Brush (mm)", v_model=(names.brush_mm,), min=BRUSH_MM_RANGE[0], max=10, step=0.5,
                   v_if=(names.tool,), density="compact", hide_details=True, thumb_label=True,
                   classes="mb-2 rfm-brush")
        with html.Div(classes="d-flex align-center", style="gap:6px"):
            v3.VBtn("Apply", click=ctrl.rfm_apply_correction, variant="tonal", size="small", classes="rfm-apply",
                    disabled=(f"!{names.marks} || {names.correcting}",))
            v3.VBtn("Undo", click=ctrl.rfm_undo_correction, variant="tonal", size="small", classes="rfm-undo",
                    disabled=(f"!{names.can_undo} || {names.correcting}",))
            v3.VBtn("Clear", click=ctrl.rfm_clear_marks, variant="tonal", size="small", classes="rfm-clear-marks",
                    disabled=(f"!{names.marks} || {names.correcting}",))
            html.Div(f"{{{{ {names.marks} }}}} marked", classes="text-caption rfm-marks")
        html.Div(f"{{{{ {names.correction_note} }}}}", v_if=(names.correction_note,),
                 classes="text-caption rfm-correction-note mt-1")
        with html.Div(classes="d-flex mt-2", style="gap:6px"):
            # no download while a correction runs: it would be the labels from before it
            v3.VBtn("Labels .nii.gz", variant="tonal", size="small", prepend_icon="mdi-download",
                    classes="rfm-save-seg", disabled=(names.correcting,),
                    click=f"utils.download({names.seg_files}.nii, trigger('rfm_segmentation', [2]), "
                          "'application/gzip')")
            v3.VBtn("DICOM SEG .zip", variant="tonal", size="small", prepend_icon="mdi-download",
                    classes="rfm-save-seg-dcm", disabled=(names.correcting,),
                    click=f"utils.download({names.seg_files}.dcm, "
                          "trigger('rfm_segmentation', [2, 'dcm']), 'application/zip')")


def _annotation_controls(ctrl, names) -> None:
    """Annotations: click a point (the crosshair goes there), type a label, Add; the scene (look,
    camera, slices, annotations) saved to / loaded from a small JSON file that stays in the browser."""
    html.Div("Annotations", classes="text-subtitle-2 mt-1")
    html.Div(f"cursor {{{{ {names.cursor} }}}}", v_if=(names.cursor,), classes="text-caption rfm-cursor")
    html.Div("click a point in a view to place the crosshair", v_if=(f"!{names.cursor}",),
             classes="text-caption text-medium-emphasis")
    with html.Div(classes="d-flex align-center", style="gap:6px"):
        v3.VTextField(v_model=(names.annotation_text,), placeholder="label this point", density="compact",
                      __properties=[("aria_label", "aria-label")], aria_label="annotation text",
                      hide_details=True, maxlength=80, classes="rfm-note-text", keyup_enter=ctrl.rfm_annotate,
                      __events=[("keyup_enter", "keyup.enter")])
        v3.VBtn("Add", click=ctrl.rfm_annotate, variant="tonal", size="small", classes="rfm-annotate",
                disabled=(f"!{names.cursor} || !{names.annotation_text}",))
        v3.VBtn("Clear", click=ctrl.rfm_unannotate, variant="tonal", size="small", classes="rfm-unannotate")
    html.Div("{{ a }}", v_for=f"a in {names.annotations}", key="a", classes="text-caption rfm-note")
    with html.Div(classes="d-flex mt-1", style="gap:6px"):
        v3.VBtn("Save scene", variant="tonal", size="small", prepend_icon="mdi-content-save", classes="rfm-scene-save",
                click="utils.download('rfmweb-scene.json', trigger('rfm_scene'), 'application/json')")
        v3.VBtn("Load scene", variant="tonal", size="small", prepend_icon="mdi-folder-open", classes="rfm-scene-load",
                click="$event.currentTarget.parentElement.querySelector('input[type=file]').click()")
        # the file is read in the browser and its text sent: the server never opens a path it is given
        html.Input(type="file", accept=".json,application/json", classes="rfm-scene-file", style="display:none",
                   change="$event.target.files[0] && $event.target.files[0].text().then("
                          "(t) => trigger('rfm_load_scene', [t])); $event.target.value = ''")


def build_ui(server, names, *, reconnect_s: float | None = None):
    """Create the page of ``server``; ``names`` is the TypedState name proxy of AppState; ``reconnect_s``:
    how long the session waits for a page that lost its connection (``None``: the app stays up)."""
    ctrl = server.controller
    server.state.client_only("main_drawer")   # each tab opens and closes its own drawer (shared views too)
    with SinglePageWithDrawerLayout(server, full_height=True) as layout:
        layout.title.set_text("")
        layout.icon._attr_names += [("aria_label", "aria-label")]
        layout.icon.aria_label = "controls"   # the drawer of controls (a screen reader said nothing)
        with layout.toolbar:
            html.Div(f"{{{{ {names.title} }}}}", classes="text-h6 ml-2")
            v3.VSpacer()
            v3.VChip("Shared view: the first tab drives, the others follow", v_if=(names.shared,), size="small",
                     prepend_icon="mdi-account-multiple", classes="mr-2 rfm-shared",
                     title="Every tab shows this one viewer. Changes made in a following tab are undone; when "
                           "the driving tab closes, the next oldest drives.")
            v3.VProgressCircular(v_show=(" || ".join(f"{getattr(names, v).busy}" for v in VIEWS),),
                                 indeterminate=True,
                                 size=18, width=2, classes="mr-4")

        with layout.drawer as drawer:
            drawer.width = 320
            drawer.permanent = (f"$vuetify.display.width >= {NARROW_PX}",)   # narrow: over the views
            drawer.temporary = (f"$vuetify.display.width < {NARROW_PX}",)
            with html.Div(classes="pa-3"):
                _slice_controls(names)
                _correction_controls(ctrl, names)
                v3.VSwitch(label="2x2 layout", v_model=(names.grid,), v_if=(names.segment,), density="compact",
                           hide_details=True, color="primary", classes="rfm-grid")
                _view_controls(names.view_a, names, "")
                v3.VSwitch(label="Four views (3-D, axial, coronal, sagittal)", v_model=(names.four_up,),
                           v_if=(f"!{names.segment} && {names.modes}.length",), disabled=(names.compare,),
                           density="compact", hide_details=True, color="primary", classes="rfm-four-up")
                html.Div("(turn Compare off to show four views)", classes="text-caption text-medium-emphasis",
                         v_if=(f"{names.compare} && !{names.four_up} && !{names.segment} && {names.modes}.length",))
                v3.VSwitch(label="Compare side by side", v_model=(names.compare,), density="compact",
                           v_if=(f"!{names.segment}",), hide_details=True, color="primary", classes="rfm-compare")
                v3.VBtn("Ray-marcher | Render-FM", click=ctrl.rfm_compare_renderfm, v_if=(names.can_renderfm,),
                        block=True, variant="tonal", size="small", prepend_icon="mdi-compare",
                        classes="rfm-compare-renderfm mt-1 mb-2")
                with html.Div(v_if=(f"{names.compare} && !{names.segment}",), classes="mt-1"):
                    _view_controls(names.view_b, names, " (right view)")
                    v3.VSwitch(label="Linked cameras", v_model=(names.linked,), density="compact",
                               hide_details=True, color="primary", classes="rfm-linked")
                    v3.VSwitch(label="Difference (SSIM, PSNR)", v_model=(names.difference,), density="compact",
                               hide_details=True, color="primary", classes="rfm-difference")
                v3.VSwitch(label="Cinematic still (path traced)", v_model=(names.cinematic,),
                           v_if=(f"{names.can_cinematic} || {names.cinematic_hint}",),
                           disabled=(f"!{names.can_cinematic}",), density="compact", hide_details=True,
                           color="primary", classes="rfm-cinematic")
                html.Div(f"{{{{ {names.cinematic_hint} }}}}", v_if=(names.cinematic_hint,),
                         classes="text-caption text-medium-emphasis rfm-cinematic-hint")

                with html.Div(v_if=(f"{names.classes}.length",)):
                    v3.VDivider(classes="my-2")
                    v3.VSwitch(label="Colour by class", v_model=(names.class_colors,), density="compact",
                               hide_details=True, color="primary")
                    with html.Div(v_if=(f"{names.groups}.length",), classes="d-flex flex-wrap"):
                        v3.VCheckbox(v_for=f"g in {names.groups}", key="g.name", label=("g.name",),
                                     model_value=("g.visible",), density="compact", hide_details=True,
                                     classes="rfm-group mr-2",
                                     update_modelValue=(ctrl.rfm_group_visible, "[g.name, $event]"))
                    # a long class list (the phantom's 24) scrolls on its own: the buttons below stay in reach
                    # the background class (label 0: air, unlabelled voxels) is not listed beside others,
                    # as in the notebook widget: hiding it is never what a user means
                    with html.Div(classes="rfm-classes", style="max-height: 40vh; overflow-y: auto"):
                        with html.Div(v_for=f"c in {names.classes}.filter(r => r.index !== 0 || "
                                            f"{names.classes}.length === 1)", key="c.index",
                                      classes="d-flex align-center rfm-class"):
                            v3.VCheckbox(model_value=("c.visible",), density="compact", hide_details=True,
                                         classes="flex-grow-0", __properties=[("aria_label", "aria-label")],
                                         aria_label=("`show ${c.name}`",),
                                         update_modelValue=(ctrl.rfm_class_visible, "[c.index, $event]"))
                            html.Div(style=("{ background: c.color, width: '14px', height: '14px', flex: '0 0 14px',"
                                            " borderRadius: '3px', border: '1px solid #888' }",), classes="mr-2")
                            html.Div("{{ c.name }}", title=("c.name",), classes="text-body-2 text-truncate",
                                     style="width:90px")   # a long name is cut; the whole one shows on hover
                            v3.VSlider(model_value=("c.opacity",), min=0, max=1, step=0.01, density="compact",
                                       hide_details=True, classes="ml-2", __properties=[("aria_label", "aria-label")],
                                       aria_label=("`${c.name} opacity`",),
                                       # the page's class list moves at once and goes to the server as
                                       # state (a trigger overtook it: the server's answer was stale and
                                       # the next key press stepped from it); rounded as the rows are
                                       update_modelValue=f"{names.classes} = {names.classes}.map(r => "
                                                         "r.index === c.index ? {...r, opacity: "
                                                         "Math.round($event * 1000) / 1000} : r)")

                v3.VDivider(classes="my-2")
                _annotation_controls(ctrl, names)
                v3.VDivider(classes="my-2")
                v3.VBtn("Reset view", click=ctrl.rfm_reset_view, block=True, variant="tonal", classes="mb-2",
                        prepend_icon="mdi-crop-free")
                v3.VBtn("Screenshot (PNG)", block=True, variant="tonal", prepend_icon="mdi-camera",
                        classes="rfm-screenshot mb-2",
                        click=f"utils.download('rfmweb.png', trigger('rfm_screenshot', ['{VIEW_A}']), 'image/png')")
                v3.VBtn("Screenshot right view", v_if=(f"{names.compare} && !{names.segment}",), block=True,
                        variant="tonal",
                        prepend_icon="mdi-camera",
                        click=f"utils.download('rfmweb-right.png', trigger('rfm_screenshot', ['{VIEW_B}']), "
                              "'image/png')")
                v3.VBtn("Screenshot all views", v_if=(names.compare,), block=True, variant="tonal",
                        prepend_icon="mdi-camera", classes="rfm-screenshot-layout mt-2",
                        click="utils.download('rfmweb-layout.png', trigger('rfm_screenshot', ['layout']), "
                              "'image/png')")

        with layout.content:
            # one row of views; a 2x2 grid for the segmentation views' "2x2 layout" and for four-up
            four_up = f"({names.four_up} && !{names.compare} && !{names.segment})"
            grid = f"(({names.grid} && {names.segment}) || {four_up})"
            with html.Div(classes="rfm-views", style=(f"{grid} ? 'display:grid;grid-template-columns:1fr 1fr;"
                                                      "grid-template-rows:1fr 1fr;height:100%;width:100%;gap:4px' : "
                                                      "'display:flex;height:100%;width:100%;gap:4px'",)):
                _view(VIEW_A, "main view", names)
                with html.Template(v_if=(names.compare,)):
                    _view(VIEW_B, "compare view", names)
                with html.Template(v_if=(f"{names.segment} || ({names.compare} && {names.difference})",)):
                    _view(VIEW_C, "third view", names)
                with html.Template(v_if=(four_up,)):
                    for name, axis in PLANE_VIEWS.items():
                        _view(name, f"{axis} view", names)
            # errors the user must read whole (a scene that cannot load): until closed
            with v3.VSnackbar(model_value=(f"!!{names.alert}",), timeout=-1, color="error", location="top",
                              multi_line=True, classes="rfm-alert",
                              update_modelValue=f"{names.alert} = $event ? {names.alert} : ''"):
                with html.Div(classes="d-flex align-center"):
                    html.Div(f"{{{{ {names.alert} }}}}", classes="rfm-alert-text flex-grow-1")
                    v3.VBtn("Close", variant="text", classes="ml-2 rfm-alert-close", click=f"{names.alert} = ''")
            client.Style(PAGE_CSS)
            client.Script(CLIENT_SCRIPT.replace("__RFM_RECONNECT__", json.dumps(
                None if reconnect_s is None else round(reconnect_s))))
        layout.footer.hide()
    return layout
