/**
 * The page (UI thread): controls, the loss curve, status. Everything heavy (TF.js, the kernels,
 * training, generation, IndexedDB) runs in ./worker.ts; this file only posts requests and draws,
 * and deliberately imports nothing from TF.js so the page is interactive quickly.
 *
 * Test hooks (read by test/e2e): <html data-ready="ms"> when the worker is up and the controls
 * are enabled, data-model (the model's source) and data-busy (the running operation).
 */
import corpus from '../../data/corpus.txt?raw';
import type { BackendInfo, Event, MemoryInfo, ModelInfo, Request, TrainDevice, TrainedOn, WebGPUInfo } from './protocol.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const root = document.documentElement;
const IDB_KEY = 'browser-finetune';
const PRETRAINED = new URL('./pretrained.slimckpt', document.baseURI).href;

// ---------------------------------------------------------------------------------------------
// Errors in plain words

function showError(message: string, detail?: string): void {
  const box = $('error');
  box.replaceChildren();
  const p = document.createElement('p');
  p.textContent = message;
  box.append(p);
  if (detail && detail !== message) {
    const d = document.createElement('details');
    const s = document.createElement('summary');
    s.textContent = 'Technical details';
    const pre = document.createElement('pre');
    pre.textContent = detail;
    d.append(s, pre);
    box.append(d);
  }
  const close = document.createElement('button');
  close.textContent = 'Dismiss';
  close.onclick = () => (box.hidden = true);
  box.append(close);
  box.hidden = false;
  setStatus('Stopped by an error: see the message below.');
}
const clearError = () => ($('error').hidden = true);
const setStatus = (s: string) => ($('status').textContent = s);

window.addEventListener('error', (e) => showError(`The page hit an unexpected error: ${e.message}`, e.error?.stack));
window.addEventListener('unhandledrejection', (e) =>
  showError(`The page hit an unexpected error: ${(e.reason as Error)?.message ?? e.reason}`, (e.reason as Error)?.stack),
);

// ---------------------------------------------------------------------------------------------
// Worker client

class WorkerError extends Error {
  constructor(
    message: string,
    readonly detail?: string,
  ) {
    super(message);
  }
}

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
let nextId = 1;
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; onEvent?: (e: Event) => void }>();
worker.onmessage = (ev: MessageEvent<Event>) => {
  const e = ev.data;
  const p = pending.get(e.id);
  if (!p) return;
  if (e.type === 'done') {
    pending.delete(e.id);
    p.resolve(e.result);
  } else if (e.type === 'error') {
    pending.delete(e.id);
    p.reject(new WorkerError(e.message, e.detail));
  } else p.onEvent?.(e);
};
worker.onerror = (e) => {
  e.preventDefault();
  showError(`The training worker stopped: ${e.message || 'it could not be started'}. Reload the page to try again.`);
  for (const p of pending.values()) p.reject(new WorkerError('The training worker stopped.'));
  pending.clear();
};

function call<T = unknown>(req: Request, onEvent?: (e: Event) => void, transfer: Transferable[] = []): Promise<T> {
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onEvent });
    worker.postMessage({ id, req }, transfer);
  });
}

/** Runs a UI action: disables the controls meanwhile and shows any failure in plain words. */
async function action(name: string, f: () => Promise<void>): Promise<void> {
  clearError();
  root.dataset.busy = name;
  setControls(false);
  try {
    await f();
  } catch (e) {
    if (e instanceof WorkerError) showError(e.message, e.detail);
    else showError(`The page hit an unexpected error: ${(e as Error).message}`, (e as Error).stack);
  } finally {
    delete root.dataset.busy;
    setControls(true);
  }
}

// ---------------------------------------------------------------------------------------------
// Controls

const buttons = ['load-pretrained', 'scratch', 'train', 'long-step', 'eval', 'generate', 'save', 'restore', 'download'];
let ready = false;
let hasModel = false;
function setControls(enabled: boolean): void {
  for (const id of buttons) {
    const needsModel = !['load-pretrained', 'scratch', 'restore'].includes(id);
    $<HTMLButtonElement>(id).disabled = !ready || !enabled || (needsModel && !hasModel);
  }
  $<HTMLInputElement>('load-file').disabled = !ready || !enabled;
  $<HTMLButtonElement>('stop').disabled = enabled || root.dataset.busy !== 'train';
}

const num = (id: string) => Number($<HTMLInputElement>(id).value);

const MB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
let lastMem: MemoryInfo | undefined;
function showMemory(): void {
  const parts: string[] = [];
  if (lastMem) {
    parts.push(`kernels wasm heap ${MB(lastMem.kernelsHeap)} (${MB(lastMem.kernelsLive)} live)`);
    parts.push(lastMem.tfHeap ? `TF.js wasm heap ${MB(lastMem.tfHeap)}` : 'TF.js wasm heap —');
    parts.push(`tensors ${MB(lastMem.tensorBytes)}`);
  }
  const pm = (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory;
  parts.push(pm ? `page JS heap ${MB(pm.usedJSHeapSize)}` : 'page JS heap: not reported by this browser');
  $('memory').textContent = parts.join(' · ');
}
setInterval(showMemory, 2000);

function showModel(m: ModelInfo): void {
  hasModel = true;
  root.dataset.model = m.source;
  const c = m.config as { layers: number; dModel: number; heads: number; features: number };
  const v = m.vocab.length > 70 ? `${m.vocab.length} characters` : JSON.stringify(m.vocab);
  $('model-info').textContent =
    `${m.source}: ${c.layers} layers, d_model ${c.dModel}, ${c.heads} heads, FAVOR+ with ${c.features} features per head, ` +
    `${(m.params / 1000).toFixed(1)}k parameters, trained ${m.step} steps; vocabulary ${v}.`;
}

// ---------------------------------------------------------------------------------------------
// Texts

const gettysburg = corpus.slice(corpus.indexOf('Four score'), corpus.indexOf('shall not perish from the earth.') + 32);
const SAMPLES: Record<string, string> = {
  'Gettysburg Address (also in the pretraining text)': gettysburg,
  'Twinkle, Twinkle, Little Star (Jane Taylor, 1806)':
    'Twinkle, twinkle, little star,\nHow I wonder what you are!\nUp above the world so high,\nLike a diamond in the sky.\n\n' +
    'When the blazing sun is gone,\nWhen he nothing shines upon,\nThen you show your little light,\nTwinkle, twinkle, all the night.\n\n' +
    'Then the traveller in the dark\nThanks you for your tiny spark;\nHe could not see which way to go,\nIf you did not twinkle so.\n',
  'Your own text (paste below)': '',
};
const sample = $<HTMLSelectElement>('sample');
for (const k of Object.keys(SAMPLES)) sample.add(new Option(k, k));
$<HTMLTextAreaElement>('text').value = SAMPLES[sample.value];
sample.onchange = () => ($<HTMLTextAreaElement>('text').value = SAMPLES[sample.value]);
$<HTMLInputElement>('text-file').onchange = async (ev) => {
  const f = (ev.target as HTMLInputElement).files?.[0];
  if (f) $<HTMLTextAreaElement>('text').value = await f.text();
};
const text = () => $<HTMLTextAreaElement>('text').value;

// ---------------------------------------------------------------------------------------------
// Loss curve

// An SVG chart rather than a canvas: the first canvas of a Chromium process can block the UI
// thread for 80–580 ms while its raster backend starts (measured under SwiftShader), and this
// chart is a few hundred points.
const losses: number[] = [];
const runStarts: number[] = [];
const SVG = 'http://www.w3.org/2000/svg';
function svg(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}
function drawChart(): void {
  const chart = $('loss-chart') as unknown as SVGSVGElement;
  const W = 640;
  const H = 200;
  const parts: SVGElement[] = [];
  if (!losses.length) {
    parts.push(svg('text', { x: 10, y: H / 2, class: 'note' }, 'The loss of each step appears here while fine-tuning.'));
    chart.replaceChildren(...parts);
    return;
  }
  const pad = { l: 40, r: 10, t: 10, b: 20 };
  const lo = Math.min(...losses);
  const hi = Math.max(...losses);
  const span = hi - lo || 1;
  const x = (i: number) => pad.l + ((W - pad.l - pad.r) * i) / Math.max(1, losses.length - 1);
  const y = (v: number) => pad.t + ((H - pad.t - pad.b) * (hi - v)) / span;
  for (const v of [lo, (lo + hi) / 2, hi]) {
    parts.push(svg('line', { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: 'grid' }));
    parts.push(svg('text', { x: 2, y: y(v) + 4, class: 'note' }, v.toFixed(2)));
  }
  for (const st of runStarts) parts.push(svg('line', { x1: x(st), x2: x(st), y1: pad.t, y2: H - pad.b, class: 'grid' }));
  parts.push(svg('text', { x: W - 70, y: H - 5, class: 'note' }, `step (${losses.length})`));
  const line = (vals: number[], cls: string) =>
    parts.push(svg('polyline', { class: cls, points: vals.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ') }));
  line(losses, 'raw');
  let ema = losses[0];
  line(
    losses.map((v) => (ema = 0.8 * ema + 0.2 * v)),
    'smooth',
  );
  chart.replaceChildren(...parts);
}
drawChart();

// ---------------------------------------------------------------------------------------------
// Actions

async function loadPretrained(): Promise<void> {
  setStatus('Downloading the pretrained checkpoint…');
  const m = await call<ModelInfo>({ type: 'load-url', url: PRETRAINED });
  showModel(m);
  if (m.seq) $<HTMLInputElement>('seq').value = String(m.seq);
  if (m.slice) $<HTMLInputElement>('slice').value = String(m.slice);
  setStatus('Pretrained model loaded. Pick a text and fine-tune, or generate.');
}

$('load-pretrained').onclick = () => action('load', loadPretrained);
$('scratch').onclick = () =>
  action('scratch', async () => {
    showModel(await call<ModelInfo>({ type: 'scratch', text: text(), seed: num('seed') || 1 }));
    setStatus('New model with random weights; its vocabulary is the characters of the text.');
  });
$<HTMLInputElement>('load-file').onchange = (ev) => {
  const input = ev.target as HTMLInputElement;
  const f = input.files?.[0];
  if (!f) return;
  void action('load', async () => {
    const bytes = await f.arrayBuffer();
    showModel(await call<ModelInfo>({ type: 'load-bytes', bytes, name: f.name }, undefined, [bytes]));
    setStatus(`Loaded ${f.name}.`);
  }).finally(() => (input.value = ''));
};

/** A row of the per-run peak memory table. */
function addMemoryRow(seq: number, slice: number, batch: number, peak: MemoryInfo, tokPerSec: number): void {
  const row = document.createElement('tr');
  for (const v of [seq, slice, batch, MB(peak.kernelsHeap), peak.tfHeap ? MB(peak.tfHeap) : '—', MB(peak.tensorBytes), Math.round(tokPerSec)]) {
    const td = document.createElement('td');
    td.textContent = String(v);
    row.append(td);
  }
  $('mem-table').querySelector('tbody')!.append(row);
}

$('train').onclick = () =>
  action('train', async () => {
    const req = {
      type: 'train' as const,
      text: text(),
      seq: num('seq'),
      slice: num('slice'),
      batch: num('batch'),
      steps: num('steps'),
      lr: num('lr'),
      device: $<HTMLSelectElement>('train-device').value as TrainDevice,
    };
    setStatus(`Fine-tuning: ${req.steps} steps of ${req.batch} × ${req.seq} characters in slices of ${req.slice}…`);
    runStarts.push(losses.length);
    let last: Extract<Event, { type: 'progress' }> | undefined;
    const r = await call<{ losses: number[]; stopped: boolean; seconds: number; peak: MemoryInfo; model: ModelInfo; trainedOn: TrainedOn }>(req, (e) => {
      if (e.type !== 'progress') return;
      last = e;
      losses.push(e.loss);
      lastMem = e.memory;
      drawChart();
      showMemory();
      $('train-stats').textContent =
        `step ${e.step}/${e.steps} on ${e.device === 'webgpu' ? 'WebGPU' : 'wasm'} · loss ${e.loss.toFixed(3)} · ${Math.round(e.tokPerSec)} tokens/s · ${Math.round(e.msPerStep)} ms/step` +
        (e.dropped ? ` · ${e.dropped} characters of the text are not in the model's vocabulary and were skipped` : '');
    });
    showModel(r.model);
    if (last) {
      addMemoryRow(req.seq, req.slice, req.batch, r.peak, last.tokPerSec);
    }
    const first = r.losses.slice(0, 3);
    const end = r.losses.slice(-3);
    const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
    root.dataset.trainedOn = r.trainedOn.device;
    setStatus(
      `${r.stopped ? 'Stopped' : 'Done'}: ${r.losses.length} steps in ${r.seconds.toFixed(1)} s on ${r.trainedOn.reason}, loss ${r.losses.length ? `${mean(first).toFixed(3)} → ${mean(end).toFixed(3)}` : '—'}.`,
    );
  });
$('stop').onclick = () => void call({ type: 'stop' });

// One SLiM step over a long sequence: the progress bar follows the slices of both passes.
$('long-step').onclick = () =>
  action('long-step', async () => {
    const req = {
      type: 'long-step' as const,
      text: text(),
      source: $<HTMLSelectElement>('long-source').value as 'text' | 'random',
      tokens: num('long-tokens'),
      slice: num('slice'),
    };
    const bar = $<HTMLProgressElement>('long-progress');
    bar.value = 0;
    bar.dataset.updates = '0';
    $('long-stats').dataset.done = '0';
    setStatus(`One SLiM step over ${req.tokens} tokens in slices of ${req.slice}: pass 1 runs every slice forward, pass 2 walks back with gradients…`);
    const t0 = performance.now();
    const r = await call<{ loss: number; tokens: number; seconds: number; tokPerSec: number; peak: MemoryInfo; dropped: number; model: ModelInfo }>(
      req,
      (e) => {
        if (e.type !== 'slice-progress') return;
        bar.value = (e.pass - 1 + e.done / e.total) / 2;
        bar.dataset.updates = String(Number(bar.dataset.updates ?? 0) + 1);
        lastMem = e.memory;
        showMemory();
        $('long-stats').textContent = `pass ${e.pass} of 2: slice ${e.done}/${e.total} · ${((performance.now() - t0) / 1000).toFixed(0)} s`;
      },
    );
    bar.value = 1;
    showModel(r.model);
    const stats = $('long-stats');
    stats.dataset.done = '1';
    stats.dataset.loss = String(r.loss);
    stats.textContent = `${r.tokens} tokens in ${r.seconds.toFixed(1)} s (${Math.round(r.tokPerSec)} tokens/s), loss ${r.loss.toFixed(3)}, peak kernels heap ${MB(r.peak.kernelsHeap)}, TF.js heap ${r.peak.tfHeap ? MB(r.peak.tfHeap) : '—'}`;
    addMemoryRow(req.tokens, req.slice, 1, r.peak, r.tokPerSec);
    setStatus(
      `Done: one SLiM step over ${r.tokens} tokens in ${r.seconds.toFixed(1)} s${r.dropped ? ` (${r.dropped} characters of the text are not in the vocabulary and were skipped)` : ''}.`,
    );
  });

$('eval').onclick = () =>
  action('eval', async () => {
    const { loss } = await call<{ loss: number }>({ type: 'eval', text: text(), seq: num('seq'), slice: num('slice') });
    const el = $('eval-loss');
    el.dataset.loss = String(loss);
    el.textContent = `loss on the text: ${loss.toFixed(4)} nats/character`;
  });

$('generate').onclick = () =>
  action('generate', async () => {
    const out = $('output');
    out.dataset.done = '0';
    const prompt = $<HTMLInputElement>('prompt').value;
    out.textContent = prompt;
    const span = document.createElement('span');
    span.className = 'generated';
    out.append(span);
    setStatus('Generating…');
    let buf = '';
    let raf = 0;
    const r = await call<{ text: string; tokPerSec: number; dropped: number; memory: MemoryInfo }>(
      { type: 'generate', prompt, tokens: num('gen-len'), temperature: num('temperature'), topK: 10, seed: num('seed') },
      (e) => {
        if (e.type !== 'token') return;
        buf += e.text;
        // Coalesce tokens into one DOM update per frame.
        raf ||= requestAnimationFrame(() => {
          span.textContent += buf;
          buf = '';
          raf = 0;
        });
      },
    );
    if (raf) cancelAnimationFrame(raf);
    span.textContent = r.text;
    out.dataset.done = '1';
    lastMem = r.memory;
    showMemory();
    setStatus(
      `Generated ${r.text.length} characters at ${Math.round(r.tokPerSec)} tokens/s${r.dropped ? ` (${r.dropped} prompt characters unknown to the model were skipped)` : ''}.`,
    );
  });

$('save').onclick = () =>
  action('save', async () => {
    const r = await call<{ bytes: number }>({ type: 'save-idb', key: IDB_KEY });
    $('save-info').textContent =
      `Saved ${(r.bytes / 1024).toFixed(0)} KiB (weights and optimizer state) in this browser's IndexedDB; "Restore" brings them back after a reload.`;
    setStatus('Saved.');
  });
$('restore').onclick = () =>
  action('restore', async () => {
    showModel(await call<ModelInfo>({ type: 'restore-idb', key: IDB_KEY }));
    $('save-info').textContent = 'Restored the weights saved in this browser.';
    setStatus('Restored.');
  });
$('download').onclick = () =>
  action('download', async () => {
    const buf = await call<ArrayBuffer>({ type: 'export' });
    // As downloadCheckpoint() in src/train/checkpoint/index.ts, inlined so the page does not bundle TF.js.
    const url = URL.createObjectURL(new Blob([buf], { type: 'application/octet-stream' }));
    const a = Object.assign(document.createElement('a'), { href: url, download: 'finetuned.slimckpt' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    $('save-info').textContent = `Downloaded finetuned.slimckpt (${(buf.byteLength / 1024).toFixed(0)} KiB); load it again with "Load a checkpoint file…".`;
  });

// ---------------------------------------------------------------------------------------------
// Start

async function start(): Promise<void> {
  const prefer = new URLSearchParams(location.search).get('tf') === 'cpu' ? 'cpu' : 'wasm';
  try {
    const info = await call<BackendInfo>({ type: 'init', tfBackend: prefer });
    $('tf-backend').textContent = info.tfReason;
    $('kernels').textContent = info.kernels;
    $('threads').textContent = info.threads;
  } catch (e) {
    const err = e as WorkerError;
    showError(`The kernels could not start in this browser: ${err.message}`, err.detail);
    return;
  }
  ready = true;
  setControls(true);
  root.dataset.ready = String(Math.round(performance.now()));
  setStatus('Ready.');
  showMemory();
  call<WebGPUInfo>({ type: 'webgpu-check' }).then(
    (w) => {
      $('webgpu').textContent = w.summary;
      root.dataset.webgpu = w.available ? 'yes' : 'no';
    },
    (e: WorkerError) => {
      $('webgpu').textContent = `WebGPU could not be used: ${e.message}. Training uses the wasm kernels either way.`;
      root.dataset.webgpu = 'error';
    },
  );
  if (new URLSearchParams(location.search).get('autoload') !== '0') await action('load', loadPretrained);
}
void start();
