// rfmweb viewer, DOM helpers. Not a module of its own: rfmweb.widgets.viewer.esm() puts this file before
// viewer.js in the one ES module anywidget loads (an anywidget module cannot import a sibling file).

/** An element: "class", "html" and "text" props, other props as properties (non-strings) or attributes. */
function h(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "html") node.innerHTML = v;
    else if (k === "text") node.textContent = v;
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of [].concat(children)) if (c != null) node.append(c);
  return node;
}

/** Sums deltas of events with the same key and calls send(total) at most once per `ms`. */
class Coalescer {
  constructor(send, ms) { this.send = send; this.ms = ms; this.pending = null; this.timer = null; this.last = -Infinity; }
  add(key, fields, dx, dy) {
    if (this.pending && this.pending.key !== key) this.flush();
    if (!this.pending) this.pending = { key, fields, dx: 0, dy: 0 };
    this.pending.dx += dx;
    this.pending.dy += dy;
    const wait = this.last + this.ms - performance.now();
    if (wait <= 0) this.flush();
    else if (this.timer === null) this.timer = setTimeout(() => this.flush(), wait);
  }
  flush() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const p = this.pending;
    this.pending = null;
    if (!p || (p.dx === 0 && p.dy === 0)) return;
    this.last = performance.now();
    this.send(p);
  }
  dispose() { if (this.timer !== null) clearTimeout(this.timer); this.timer = null; this.pending = null; }
}

/** Calls fn(...args) at most once per `ms`, always ending with the latest arguments. */
function throttle(fn, ms) {
  let last = -Infinity, timer = null, args = null;
  const run = () => { timer = null; last = performance.now(); fn(...args); };
  const call = (...a) => {
    args = a;
    const wait = last + ms - performance.now();
    if (wait <= 0) run(); else if (timer === null) timer = setTimeout(run, wait);
  };
  call.cancel = () => { if (timer !== null) clearTimeout(timer); timer = null; };
  return call;
}

/** Options [value, label, hint?, why?]: an option with a hint is disabled, says why in short after its
 * label ("not installed" unless ``why``) and in full in its tooltip. */
function fillSelect(select, options, value) {
  if (!options.some(([v]) => v === value)) options = [...options, [value, value]];  // e.g. a custom TF
  const key = options.map(([v, l, hint]) => `${v}=${l}=${hint || ""}`).join("|");
  if (select.dataset.key !== key) {
    select.dataset.key = key;
    select.replaceChildren(...options.map(([v, l, hint, why]) => h("option", hint
      ? { value: v, text: `${l} (${why || "not installed"})`, disabled: true, title: hint } : { value: v, text: l })));
  }
  select.value = value;
}
