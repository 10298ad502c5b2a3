// patchfield explorer: windows, D and responsive fields recomputed in the page exactly as
// patchfield.windows / dip / field do in Python (same tie-breaking, counts rounded half up).
"use strict";

const DATA = JSON.parse(document.getElementById("pf-data").textContent);

// ------------------------------------------------------------------ decoding

function bytes(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
function float32(b64) { return new Float32Array(bytes(b64).buffer); }

const GH = DATA.grid[0], GW = DATA.grid[1], N = GH * GW;
const U = float32(DATA.U);                     // [N * N], row-major, float32 as in Python
const COLVAR = float32(DATA.column_variance);  // [N], torch's float32 column variances
const LUT = bytes(DATA.colormap);              // [256 * 3] RGB
const SORTED_U = Float32Array.from(U).sort();  // ascending, numeric
const DIP_ORDER = Array.from({ length: N }, (_, i) => i)
  .sort((a, b) => (COLVAR[a] - COLVAR[b]) || (a - b));  // stable: ties by the smaller index
const ATT = DATA.attention;
const LAYER_MEAN = ATT.layer_mean && { q: bytes(ATT.layer_mean.q), s: float32(ATT.layer_mean.scale) };
const HEAD_VAR = ATT.head_variance && { q: bytes(ATT.head_variance.q), s: float32(ATT.head_variance.scale) };
const FULL = ATT.full && { q: bytes(ATT.full.q), s: float32(ATT.full.scale) };
const L = ATT.num_layers, K = ATT.num_heads;
const HEAD_STATS = DATA.head_stats || null;  // mean_distance, entropy: [L][K]
const ARTEFACTS = DATA.artefacts || null;    // tokens of high norm at one block (Darcet et al.)
const IS_ARTEFACT = new Uint8Array(N);
if (ARTEFACTS) for (const t of ARTEFACTS.tokens) IS_ARTEFACT[t] = 1;

// ------------------------------------------------------------------ the computations (docs/spec.md §3-§5)

/** Round half up, as patchfield.grid.round_half_up: floor(x + 0.5) in double precision. */
function roundHalfUp(x) { return Math.floor(x + 0.5); }

/** Number of entries of the ascending array `a` that are <= v. */
function upperBound(a, v) {
  let lo = 0, hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] <= v) lo = mid + 1; else hi = mid; }
  return lo;
}

/** Adaptive windows (Eq. 4, 5): top round(alpha N^2) entries of U, ties by the smaller row-major index. */
function adaptiveWindows(alpha) {
  const total = N * N;
  const count = roundHalfUp(alpha * N * N);
  const left = new Int32Array(N), right = new Int32Array(N), top = new Int32Array(N), bottom = new Int32Array(N);
  for (let p = 0; p < N; p++) { left[p] = right[p] = p % GW; top[p] = bottom[p] = (p / GW) | 0; }
  if (count >= total) {
    left.fill(0); right.fill(GW - 1); top.fill(0); bottom.fill(GH - 1);
  } else if (count > 0) {
    const kth = SORTED_U[total - count];             // the count-th largest value
    const need = count - (total - upperBound(SORTED_U, kth));  // tied entries still to take
    let taken = 0;
    for (let idx = 0; idx < total; idx++) {
      const v = U[idx];
      if (v > kth || (v === kth && taken++ < need)) {
        const p = (idx / N) | 0, i = idx - p * N, x = i % GW, y = (i / GW) | 0;
        if (x < left[p]) left[p] = x;
        if (x > right[p]) right[p] = x;
        if (y < top[p]) top[p] = y;
        if (y > bottom[p]) bottom[p] = y;
      }
    }
  }
  return { count, left, right, top, bottom };
}

/** D (Sec. 4.2): the round(beta N) patches of lowest column variance, ties by the smaller index. */
function indiscriminative(beta) {
  const count = roundHalfUp(beta * N);
  const dropped = new Uint8Array(N);
  for (let j = 0; j < count; j++) dropped[DIP_ORDER[j]] = 1;
  return { count, dropped };
}

/** Responsive fields (Eq. 6, 7): S_p = {p} ∪ (window(p) \ D); size, extent, offset R_p. */
function responsiveFields(w, dropped) {
  // prefix sums of kept (not dropped) cells: P[(y + 1) * (GW + 1) + (x + 1)]
  const W1 = GW + 1, P = new Int32Array((GH + 1) * W1);
  for (let y = 0; y < GH; y++) {
    let row = 0;
    for (let x = 0; x < GW; x++) { row += dropped[y * GW + x] ? 0 : 1; P[(y + 1) * W1 + x + 1] = P[y * W1 + x + 1] + row; }
  }
  const kept = (l, r, t, b) => (l > r || t > b) ? 0 : P[(b + 1) * W1 + r + 1] - P[t * W1 + r + 1] - P[(b + 1) * W1 + l] + P[t * W1 + l];
  const size = new Int32Array(N), ext = new Int32Array(4 * N), offset = new Float64Array(2 * N);
  const tendency = new Float64Array(2 * N), magnitude = new Float64Array(N);
  for (let p = 0; p < N; p++) {
    const l = w.left[p], r = w.right[p], t = w.top[p], b = w.bottom[p], x = p % GW, y = (p / GW) | 0;
    const inside = kept(l, r, t, b);
    size[p] = inside + (dropped[p] ? 1 : 0);
    let el = x, er = x, et = y, eb = y;
    if (inside > 0) {
      let lo = l, hi = r;  // smallest column c with kept cells in [l, c]
      while (lo < hi) { const m = (lo + hi) >> 1; if (kept(l, m, t, b) > 0) hi = m; else lo = m + 1; }
      el = Math.min(el, lo);
      lo = l; hi = r;      // largest column c with kept cells in [c, r]
      while (lo < hi) { const m = (lo + hi + 1) >> 1; if (kept(m, r, t, b) > 0) lo = m; else hi = m - 1; }
      er = Math.max(er, lo);
      lo = t; hi = b;
      while (lo < hi) { const m = (lo + hi) >> 1; if (kept(l, r, t, m) > 0) hi = m; else lo = m + 1; }
      et = Math.min(et, lo);
      lo = t; hi = b;
      while (lo < hi) { const m = (lo + hi + 1) >> 1; if (kept(l, r, m, b) > 0) lo = m; else hi = m - 1; }
      eb = Math.max(eb, lo);
    }
    ext[4 * p] = el; ext[4 * p + 1] = er; ext[4 * p + 2] = et; ext[4 * p + 3] = eb;
    const dx = er + el - 2 * x, dy = eb + et - 2 * y, m = Math.hypot(dx, dy);
    offset[2 * p] = dx; offset[2 * p + 1] = dy; magnitude[p] = m;
    tendency[2 * p] = m > 0 ? dx / m : 0; tendency[2 * p + 1] = m > 0 ? dy / m : 0;
  }
  return { size, ext, offset, tendency, magnitude };
}

// ------------------------------------------------------------------ state

const S = {
  alpha: DATA.alpha, beta: DATA.beta, selected: DATA.initial_patch, pinned: true, hover: null,
  view: "field", layer: L - 1, head: -1, showDropped: true, showArtefacts: false, w: null, d: null, f: null, eo: 0, computeMs: 0,
};

function recompute() {
  const t0 = performance.now();
  S.w = adaptiveWindows(S.alpha);
  S.d = indiscriminative(S.beta);
  S.f = responsiveFields(S.w, S.d.dropped);
  let total = 0;
  if (S.d.count > 0) for (let p = 0; p < N; p++) total += S.f.size[p];
  else for (let p = 0; p < N; p++) total += (S.w.right[p] - S.w.left[p] + 1) * (S.w.bottom[p] - S.w.top[p] + 1);
  S.eo = total;
  S.computeMs = performance.now() - t0;
}

// ------------------------------------------------------------------ drawing helpers

const main = document.getElementById("main");
const ctx = main.getContext("2d");
const img = new Image();
const IMG_H = DATA.image_size[0], IMG_W = DATA.image_size[1];
const SCALE = Math.max(1, Math.ceil(640 / Math.max(IMG_W, IMG_H)));  // canvas pixels per image pixel
const CW = IMG_W * SCALE / GW, CH = IMG_H * SCALE / GH;              // one patch cell in canvas pixels
main.width = IMG_W * SCALE; main.height = IMG_H * SCALE;

function colour(t) {  // t in [0, 1] -> [r, g, b]
  const k = Math.max(0, Math.min(255, Math.round(t * 255))) * 3;
  return [LUT[k], LUT[k + 1], LUT[k + 2]];
}

/** Draw a per-patch map [N] over the image through a gw x gh canvas (nearest neighbour, full resolution). */
function drawPatchMap(values, alpha, lo, hi, rgbOf) {
  const off = document.createElement("canvas");
  off.width = GW; off.height = GH;
  const octx = off.getContext("2d"), im = octx.createImageData(GW, GH);
  const span = hi > lo ? hi - lo : 1;
  for (let p = 0; p < N; p++) {
    const c = rgbOf ? rgbOf(p) : colour((values[p] - lo) / span);
    im.data[4 * p] = c[0]; im.data[4 * p + 1] = c[1]; im.data[4 * p + 2] = c[2]; im.data[4 * p + 3] = 255;
  }
  octx.putImageData(im, 0, 0);
  ctx.save(); ctx.globalAlpha = alpha; ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, main.width, main.height); ctx.restore();
}

function cellRect(l, r, t, b, stroke, width, fill) {
  const x = l * CW, y = t * CH, w = (r - l + 1) * CW, h = (b - t + 1) * CH;
  if (fill) { ctx.fillStyle = fill; ctx.fillRect(x, y, w, h); }
  if (stroke) { ctx.strokeStyle = stroke; ctx.lineWidth = width; ctx.strokeRect(x + width / 2, y + width / 2, w - width, h - width); }
}

function drawDropped() {
  if (!S.showDropped) return;
  for (let p = 0; p < N; p++) if (S.d.dropped[p]) cellRect(p % GW, p % GW, (p / GW) | 0, (p / GW) | 0, null, 0, "rgba(0,0,0,0.62)");
}

function drawArtefacts() {  // the high-norm artefact tokens, outlined in magenta
  if (!S.showArtefacts || !ARTEFACTS) return;
  for (let p = 0; p < N; p++) if (IS_ARTEFACT[p]) cellRect(p % GW, p % GW, (p / GW) | 0, (p / GW) | 0, "#ff00ff", Math.max(2, SCALE), null);
}

function drawGrid() {  // the patch grid, faint
  ctx.save(); ctx.strokeStyle = "rgba(255,255,255,0.28)"; ctx.lineWidth = 1; ctx.beginPath();
  for (let c = 1; c < GW; c++) { const x = Math.round(c * CW) + 0.5; ctx.moveTo(x, 0); ctx.lineTo(x, main.height); }
  for (let r = 1; r < GH; r++) { const y = Math.round(r * CH) + 0.5; ctx.moveTo(0, y); ctx.lineTo(main.width, y); }
  ctx.stroke(); ctx.restore();
}

function minMax(a) {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < a.length; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i]; }
  return [lo, hi];
}

function setLegend(label, lo, hi, fmt) {
  const el = document.getElementById("legend");
  el.innerHTML = "";
  if (label === null) return;
  const bar = document.createElement("canvas");
  bar.width = 256; bar.height = 1;
  const bctx = bar.getContext("2d"), im = bctx.createImageData(256, 1);
  for (let i = 0; i < 256; i++) { const c = colour(i / 255); im.data.set([c[0], c[1], c[2], 255], 4 * i); }
  bctx.putImageData(im, 0, 0);
  const f = fmt || ((v) => v.toPrecision(3));
  el.append(label + ": ", f(lo), bar, f(hi));
}

// Middlebury optical-flow colour wheel (Baker et al.), as patchfield.figures.flow.
const WHEEL = (() => {
  const segs = [["RY", 15], ["YG", 6], ["GC", 4], ["CB", 11], ["BM", 13], ["MR", 6]], out = [];
  for (const [name, n] of segs) for (let i = 0; i < n; i++) {
    const rise = Math.floor(255 * i / n), fall = 255 - rise;
    out.push({ RY: [255, rise, 0], YG: [fall, 255, 0], GC: [0, 255, rise], CB: [0, fall, 255],
      BM: [rise, 0, 255], MR: [255, 0, fall] }[name]);
  }
  return out;
})();
function flowColour(u, v, maxMag) {
  if (maxMag > 0) { u /= maxMag; v /= maxMag; }
  v = v + 0;  // -0 -> +0
  const rad = Math.hypot(u, v), a = Math.atan2(-v, -u) / Math.PI, fk = (a + 1) / 2 * (WHEEL.length - 1);
  const k0 = Math.floor(fk), k1 = k0 + 1 === WHEEL.length ? 0 : k0 + 1, f = fk - k0, out = [];
  for (let c = 0; c < 3; c++) {
    let col = ((1 - f) * WHEEL[k0][c] + f * WHEEL[k1][c]) / 255;
    col = rad <= 1 ? 1 - rad * (1 - col) : col * 0.75;
    out.push(Math.floor(255 * col + 0.5));
  }
  return out;
}

// ------------------------------------------------------------------ views

function attentionRow(p, layer, head) {  // -> Float32Array [N] of attention of patch p (dequantised)
  const out = new Float32Array(N);
  let q, scale, base;
  if (head < 0) { q = LAYER_MEAN.q; scale = LAYER_MEAN.s[layer * N + p]; base = (layer * N + p) * N; }
  else { q = FULL.q; scale = FULL.s[(layer * K + head) * N + p]; base = ((layer * K + head) * N + p) * N; }
  for (let i = 0; i < N; i++) out[i] = q[base + i] / 255 * scale;
  return out;
}

function currentPatch() { return !S.pinned && S.hover !== null ? S.hover : S.selected; }

let matrixCanvas = null, matrixRange = null;
function matrixImage() {  // U on a log colour scale (four decades below its maximum), drawn once
  if (matrixCanvas) return matrixCanvas;
  const [, hi] = minMax(U), floor = hi > 0 ? hi * 1e-4 : 1, lo = Math.log10(floor), top = Math.log10(Math.max(hi, floor));
  const span = top > lo ? top - lo : 1, im = new ImageData(N, N);
  for (let i = 0; i < N * N; i++) {
    const c = colour((Math.log10(Math.max(U[i], floor)) - lo) / span);
    im.data[4 * i] = c[0]; im.data[4 * i + 1] = c[1]; im.data[4 * i + 2] = c[2]; im.data[4 * i + 3] = 255;
  }
  matrixCanvas = document.createElement("canvas"); matrixCanvas.width = N; matrixCanvas.height = N;
  matrixCanvas.getContext("2d").putImageData(im, 0, 0);
  matrixRange = [floor, hi];
  return matrixCanvas;
}

function drawMatrix(p) {
  const side = Math.max(N, 512), strip = Math.max(4, Math.round(side / 60));
  if (main.width !== side || main.height !== side + strip) { main.width = side; main.height = side + strip; }
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, side, strip);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(matrixImage(), 0, strip, side, side);
  const cell = side / N;
  ctx.fillStyle = "#000";  // the columns of D, marked above the matrix
  for (let j = 0; j < S.d.count; j++) ctx.fillRect(DIP_ORDER[j] * cell, 0, Math.max(1, cell), strip);
  ctx.strokeStyle = "#00e5ff"; ctx.lineWidth = Math.max(1.5, cell);
  ctx.strokeRect(0, strip + p * cell, side, cell);
  setLegend("U[p, i], log scale (row p outlined; columns of D marked black above)", matrixRange[0], matrixRange[1]);
}

function draw() {
  const p = currentPatch();
  if (S.view === "matrix") { drawMatrix(p); updateInfo(p); return; }
  if (main.width !== IMG_W * SCALE) { main.width = IMG_W * SCALE; main.height = IMG_H * SCALE; }
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, main.width, main.height);
  const x = p % GW, y = (p / GW) | 0;
  if (S.view === "row") {
    const row = U.subarray(p * N, (p + 1) * N), [lo, hi] = minMax(row);
    drawPatchMap(row, 0.62, lo, hi);
    setLegend("u_p = U[p, :]", lo, hi);
  } else if (S.view === "attention") {
    const row = attentionRow(p, S.layer, S.head), [lo, hi] = minMax(row);
    drawPatchMap(row, 0.62, lo, hi);
    setLegend(`attention, layer ${DATA.layers[S.layer] + 1}, ${S.head < 0 ? "mean of heads" : "head " + S.head}`, lo, hi);
  } else if (S.view === "size") {
    const [lo, hi] = minMax(S.f.size);
    drawPatchMap(S.f.size, 0.62, lo, hi);
    setLegend("|S_p|", lo, hi, (v) => String(v));
  } else if (S.view === "tendency") {
    const [, hi] = minMax(S.f.magnitude);
    drawPatchMap(null, 0.7, 0, 1, (q) => flowColour(S.f.offset[2 * q], S.f.offset[2 * q + 1], hi));
    ctx.strokeStyle = "#111"; ctx.fillStyle = "#111"; ctx.lineWidth = Math.max(1, Math.min(CW, CH) / 28);
    for (let q = 0; q < N; q++) {
      const m = S.f.magnitude[q]; if (m === 0 || hi === 0) continue;
      const cx = (q % GW + 0.5) * CW, cy = (((q / GW) | 0) + 0.5) * CH, len = 0.45 * Math.min(CW, CH) * m / hi;
      const ux = S.f.tendency[2 * q], uy = S.f.tendency[2 * q + 1], ex = cx + ux * len, ey = cy + uy * len;
      ctx.beginPath(); ctx.moveTo(cx - ux * len, cy - uy * len); ctx.lineTo(ex, ey); ctx.stroke();
      const hs = Math.max(2, len * 0.45);
      ctx.beginPath(); ctx.moveTo(ex, ey);
      ctx.lineTo(ex - hs * (ux - 0.5 * uy), ey - hs * (uy + 0.5 * ux));
      ctx.lineTo(ex - hs * (ux + 0.5 * uy), ey - hs * (uy - 0.5 * ux)); ctx.fill();
    }
    setLegend(null);
    document.getElementById("legend").textContent =
      "hue: direction of R_p (right red, down yellow, left cyan, up violet); saturation: magnitude";
  } else {
    setLegend(null);
    document.getElementById("legend").textContent = "yellow: window of p; green: responsive field S_p (dashed: its extent); dark: D";
  }
  drawDropped();
  drawGrid();
  drawArtefacts();
  if (S.view === "field") {
    for (let i = 0; i < N; i++) {
      const ix = i % GW, iy = (i / GW) | 0;
      const inWindow = ix >= S.w.left[p] && ix <= S.w.right[p] && iy >= S.w.top[p] && iy <= S.w.bottom[p];
      if ((inWindow && !S.d.dropped[i]) || i === p) cellRect(ix, ix, iy, iy, null, 0, "rgba(0,230,118,0.42)");
    }
    ctx.setLineDash([6, 4]);
    cellRect(S.f.ext[4 * p], S.f.ext[4 * p + 1], S.f.ext[4 * p + 2], S.f.ext[4 * p + 3], "#00e676", Math.max(2, SCALE), null);
    ctx.setLineDash([]);
  }
  cellRect(S.w.left[p], S.w.right[p], S.w.top[p], S.w.bottom[p], "#ffea00", Math.max(2, SCALE), null);
  cellRect(x, x, y, y, "#00e5ff", Math.max(2, SCALE), "rgba(0,229,255,0.35)");
  updateInfo(p);
}

/** "12.3 px\n2.10 nats" for layer l, head h: mean attention distance and entropy; null without head stats. */
function headStat(l, h) {
  if (!HEAD_STATS) return null;
  const d = HEAD_STATS.mean_distance[l][h], e = HEAD_STATS.entropy[l][h];
  return { d, e, text: `${d.toFixed(1)} px\n${e.toFixed(2)} nats` };
}

function thumb(container, values, label, onClick, active, stat) {
  const fig = document.createElement("figure");
  const c = document.createElement("canvas");
  c.width = GW; c.height = GH;
  const tctx = c.getContext("2d"), im = tctx.createImageData(GW, GH), [lo, hi] = minMax(values), span = hi > lo ? hi - lo : 1;
  for (let i = 0; i < N; i++) { const col = colour((values[i] - lo) / span); im.data.set([col[0], col[1], col[2], 255], 4 * i); }
  tctx.putImageData(im, 0, 0);
  fig.append(c);
  if (label) { const cap = document.createElement("figcaption"); cap.textContent = label; fig.append(cap); }
  if (stat) {
    const cap = document.createElement("figcaption"); cap.className = "stat"; cap.textContent = stat.text; fig.append(cap);
    fig.dataset.distance = String(stat.d); fig.dataset.entropy = String(stat.e);
  }
  if (active) fig.classList.add("active");
  fig.title = `${label}: ${lo.toPrecision(3)} to ${hi.toPrecision(3)}` +
    (stat ? `; mean attention distance ${stat.d.toFixed(2)} px, entropy ${stat.e.toFixed(3)} nats` : "");
  fig.addEventListener("click", onClick);
  container.append(fig);
}

let thumbsFor = null;
function drawThumbs(p) {
  const key = `${p}|${S.layer}|${S.head}|${S.view}`;
  if (thumbsFor === key) return;
  thumbsFor = key;
  const layers = document.getElementById("thumbs-layers"), heads = document.getElementById("thumbs-heads");
  layers.innerHTML = ""; heads.innerHTML = "";
  const pick = (layer, head) => () => { S.layer = layer; S.head = head; setView("attention"); };
  for (let l = 0; l < L; l++) thumb(layers, attentionRow(p, l, -1), `A${DATA.layers[l] + 1}`, pick(l, -1),
    S.view === "attention" && S.layer === l && S.head < 0);
  for (let h = 0; h < K; h++) {
    const base = (h * N + p) * N, scale = HEAD_VAR.s[h * N + p], row = new Float32Array(N);
    for (let i = 0; i < N; i++) row[i] = HEAD_VAR.q[base + i] / 255 * scale;
    thumb(heads, row, `head ${h}`, () => setView("row"), false, headStat(S.layer, h));
  }
  const full = document.getElementById("thumbs-full");
  if (!FULL) { document.getElementById("full-block").hidden = true; return; }
  full.innerHTML = "";
  full.style.gridTemplateColumns = `repeat(${K}, minmax(0, 52px))`;
  for (let l = 0; l < L; l++) for (let h = 0; h < K; h++)
    thumb(full, attentionRow(p, l, h), l === 0 ? `h${h}` : "", pick(l, h), S.view === "attention" && S.layer === l && S.head === h,
      headStat(l, h));
}

function fmt(v) { return Number.isInteger(v) ? String(v) : v.toFixed(4); }

function updateInfo(p) {
  const x = p % GW, y = (p / GW) | 0, w = S.w, f = S.f;
  const area = (w.right[p] - w.left[p] + 1) * (w.bottom[p] - w.top[p] + 1);
  const rows = [
    ["patch", `${p} (x ${x}, y ${y})${S.pinned ? ", pinned" : ""}`],
    ["window", `x ${w.left[p]}–${w.right[p]}, y ${w.top[p]}–${w.bottom[p]} (${area} cells)`],
    ["field |S_p|", String(f.size[p])],
    ["tendency R_p", `(${fmt(f.offset[2 * p])}, ${fmt(f.offset[2 * p + 1])}), |R_p| = ${f.magnitude[p].toFixed(3)}`],
    ["in D", S.d.dropped[p] ? "yes" : "no"],
    ...(ARTEFACTS ? [["artefact token", IS_ARTEFACT[p] ? "yes" : (ARTEFACTS.found ? "no" : "none found in this image")]] : []),
    ["column variance", COLVAR[p].toPrecision(4)],
    ["max of u_p", minMax(U.subarray(p * N, (p + 1) * N))[1].toPrecision(4)],
    ["T_sel", `${w.count} of ${N * N} entries`],
    ["|D|", `${S.d.count} of ${N} patches`],
    ["E_O (this image)", `${S.eo} of ${N * N} (full attention)`],
    ["recomputed in", `${S.computeMs.toFixed(1)} ms`],
  ];
  const dl = document.getElementById("info");
  dl.innerHTML = "";
  for (const [k, v] of rows) { const dt = document.createElement("dt"), dd = document.createElement("dd"); dt.textContent = k; dd.textContent = v; dl.append(dt, dd); }
  const st = document.getElementById("state").dataset;
  st.alpha = String(S.alpha); st.beta = String(S.beta); st.selected = String(p); st.view = S.view;
  st.tsel = String(w.count); st.dcount = String(S.d.count); st.eo = String(S.eo);
  st.window = [w.left[p], w.right[p], w.top[p], w.bottom[p]].join(",");
  st.fieldSize = String(f.size[p]);
  st.offset = `${f.offset[2 * p]},${f.offset[2 * p + 1]}`;
  st.tendency = `${f.tendency[2 * p]},${f.tendency[2 * p + 1]}`;
  st.computeMs = S.computeMs.toFixed(3);
  st.layer = String(DATA.layers[S.layer]); st.head = String(S.head); st.pinned = S.pinned ? "1" : "0";
  st.showArtefacts = S.showArtefacts ? "1" : "0";
  st.artefacts = ARTEFACTS ? ARTEFACTS.tokens.join(",") : "";
  drawThumbs(p);
}

/** All windows, D and field sizes as compact strings (for tests and for copying out). */
function exportState() {
  const st = document.getElementById("state").dataset, w = S.w, parts = [];
  for (let p = 0; p < N; p++) parts.push(`${w.left[p]},${w.right[p]},${w.top[p]},${w.bottom[p]}`);
  st.windows = parts.join(";");
  st.dropped = DIP_ORDER.slice(0, S.d.count).sort((a, b) => a - b).join(",");
  st.sizes = Array.from(S.f.size).join(",");
  const ext = []; for (let p = 0; p < N; p++) ext.push(Array.from(S.f.ext.subarray(4 * p, 4 * p + 4)).join(","));
  st.extents = ext.join(";");
}

// ------------------------------------------------------------------ interaction

let frame = 0;
function schedule(full) {
  if (full) S.dirty = true;
  if (frame) return;
  document.body.dataset.pending = "1";  // a redraw is due (tests wait for "0")
  frame = requestAnimationFrame(() => {
    frame = 0;
    if (S.dirty) { recompute(); exportState(); S.dirty = false; }
    draw();
    document.body.dataset.pending = "0";
  });
}

function setView(v) {
  S.view = v;
  for (const r of document.querySelectorAll("input[name=view]")) r.checked = r.value === v;
  schedule(false);
}

function patchAt(ev) {
  const r = main.getBoundingClientRect();
  if (S.view === "matrix") {
    const strip = main.height - main.width, y = (ev.clientY - r.top) / r.height * main.height - strip;
    return Math.min(N - 1, Math.max(0, Math.floor(y / main.width * N)));
  }
  const x = Math.floor((ev.clientX - r.left) / r.width * GW), y = Math.floor((ev.clientY - r.top) / r.height * GH);
  return Math.min(GH - 1, Math.max(0, y)) * GW + Math.min(GW - 1, Math.max(0, x));
}

main.addEventListener("mousemove", (ev) => { const p = patchAt(ev); if (p !== S.hover) { S.hover = p; if (!S.pinned) schedule(false); } });
main.addEventListener("mouseleave", () => { S.hover = null; if (!S.pinned) schedule(false); });
main.addEventListener("click", (ev) => { S.selected = patchAt(ev); S.pinned = true; main.focus(); schedule(false); });

const alphaEl = document.getElementById("alpha"), betaEl = document.getElementById("beta");
function readSliders() {
  S.alpha = parseFloat(alphaEl.value); S.beta = parseFloat(betaEl.value);
  document.getElementById("alpha-out").textContent = alphaEl.value;
  document.getElementById("beta-out").textContent = betaEl.value;
  schedule(true);
}
alphaEl.addEventListener("input", readSliders);
betaEl.addEventListener("input", readSliders);
for (const r of document.querySelectorAll("input[name=view]")) r.addEventListener("change", () => setView(r.value));
document.getElementById("show-dropped").addEventListener("change", (e) => { S.showDropped = e.target.checked; schedule(false); });
document.getElementById("show-artefacts").addEventListener("change", (e) => { S.showArtefacts = e.target.checked; schedule(false); });
if (ARTEFACTS) {
  const label = document.getElementById("artefacts-toggle");
  label.hidden = false;
  label.title = ARTEFACTS.found
    ? `${ARTEFACTS.tokens.length} tokens above the norm crossover ${ARTEFACTS.crossover.toPrecision(4)}` +
      (ARTEFACTS.block === null ? "" : ` at block ${ARTEFACTS.block + 1}`)
    : `none found: ${ARTEFACTS.reason}`;
}

document.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement && ev.target.type === "range") return;  // sliders keep their keys
  const p = S.selected, x = p % GW, y = (p / GW) | 0;
  const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  const views = { f: "field", r: "row", a: "attention", u: "matrix", t: "tendency", s: "size" };
  if (ev.key in moves) {
    const [dx, dy] = moves[ev.key];
    S.selected = Math.min(GH - 1, Math.max(0, y + dy)) * GW + Math.min(GW - 1, Math.max(0, x + dx));
    S.pinned = true;
  } else if (ev.key.toLowerCase() in views && !ev.ctrlKey && !ev.metaKey) {
    setView(views[ev.key.toLowerCase()]); return;
  } else if (ev.key === "d" || ev.key === "D") {
    const box = document.getElementById("show-dropped"); box.checked = !box.checked; S.showDropped = box.checked;
  } else if ((ev.key === "n" || ev.key === "N") && ARTEFACTS) {
    const box = document.getElementById("show-artefacts"); box.checked = !box.checked; S.showArtefacts = box.checked;
  } else if (ev.key === "Escape") { S.pinned = false; }
  else if (ev.key === "[" || ev.key === "]") { S.layer = (S.layer + (ev.key === "]" ? 1 : L - 1)) % L; if (S.view !== "attention") setView("attention"); }
  else if (ev.key === "," || ev.key === ".") {
    if (!FULL) return;
    S.head = ((S.head + 1 + (ev.key === "." ? 1 : K)) % (K + 1)) - 1;  // -1 = mean of heads
    if (S.view !== "attention") setView("attention");
  } else return;
  ev.preventDefault();
  schedule(false);
});

// ------------------------------------------------------------------ start

alphaEl.value = String(DATA.alpha); betaEl.value = String(DATA.beta);
document.getElementById("subtitle").textContent =
  `${GH}×${GW} patches (N = ${N}), ${L} layers × ${K} heads` + (DATA.model ? `, ${DATA.model}` : "") +
  (DATA.attention.full ? "" : "; per-head attention of each layer omitted to keep the file small");
img.onload = () => {
  readSliders(); recompute(); exportState(); S.dirty = false; draw();
  document.body.dataset.ready = "1";
};
img.src = DATA.image;
