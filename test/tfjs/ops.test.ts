/**
 * The TF.js ops under the models (src/tfjs/ops): GELU's value and gradient against its float64
 * twin (erf checked against known values, the gradient by finite differences); the dense op's value and its three gradients
 * against the float64 twin (itself checked by finite differences), in both weight layouts, with
 * and without bias, on 2-D and 3-D inputs with awkward sizes, on the cpu and wasm TF.js backends;
 * the wasm backend's explicit transpose bit-identical to `tf.transpose`; bad arguments refused by
 * name, leaving TF.js usable and no tensor behind.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { refDense, refDenseBackward, refErf, refGelu, refGeluBackward } from '../../src/reference/index.ts';
import { gelu } from '../../src/tfjs/ops/activation.ts';
import { dense } from '../../src/tfjs/ops/dense.ts';
import { matMul2d, transpose2d } from '../../src/tfjs/ops/matmul.ts';
import { assertClose, finiteDiff } from '../util/assert.ts';
import { Rng } from '../util/rng.ts';
import { useTfjsBackend } from '../util/tfjs_backend.ts';

const TOL = 1e-5;

describe('float64 dense twin', () => {
  it('its gradients equal finite differences (both layouts)', () => {
    for (const transposeW of [false, true]) {
      const rng = new Rng(3);
      const [n, i, o] = [3, 5, 4];
      const x = rng.normals(n * i);
      const w = rng.normals(i * o);
      const b = rng.normals(o);
      const dy = rng.normals(n * o);
      const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array) =>
        refDense({ x: xx, w: ww, b: bb, n, in: i, out: o, transposeW }).reduce((s, y, j) => s + y * dy[j], 0);
      const g = refDenseBackward({ x, w, b, n, in: i, out: o, transposeW }, dy);
      assertClose(
        `dx (transposeW ${transposeW})`,
        finiteDiff((v) => loss(v, w, b), x),
        g.dx,
        1e-7,
      );
      assertClose(
        `dw (transposeW ${transposeW})`,
        finiteDiff((v) => loss(x, v, b), w),
        g.dw,
        1e-7,
      );
      assertClose(
        `db (transposeW ${transposeW})`,
        finiteDiff((v) => loss(x, w, v), b),
        g.db,
        1e-7,
      );
    }
  });
});

describe('float64 GELU twin', () => {
  it('erf matches known values to 1e-12 on both sides of the series switch', () => {
    const known: Array<[number, number]> = [
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2.4, 0.9993114861033549],
      [2.6, 0.9997639655834707],
      [2.9, 0.9999589021219005],
      [3.1, 0.9999883513426328],
      [4, 0.9999999845827421],
      [-1.5, -0.9661051464753108],
    ];
    for (const [x, v] of known) expect(Math.abs(refErf(x) - v), `erf(${x})`).toBeLessThan(1e-12);
  });
  it('its gradient equals finite differences', () => {
    const x = Float64Array.from([-4.2, -2.9, -1, -0.3, 0, 0.2, 1.7, 3.05, 5]);
    const dy = new Rng(5).normals(x.length);
    const loss = (v: Float64Array) => refGelu(v).reduce((s, y, i) => s + y * dy[i], 0);
    assertClose('dx', finiteDiff(loss, x), refGeluBackward(x, dy), 1e-7);
  });
});

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`GELU op on the ${backend} backend`, () => {
    it('value and (autograd) gradient match the float64 twin', async () => {
      await useTfjsBackend(backend);
      const rng = new Rng(9);
      const x = Float64Array.from({ length: 999 }, () => rng.normal() * 3);
      x[0] = 0;
      x[1] = -12;
      x[2] = 12;
      const dy = rng.normals(x.length);
      const before = tf.memory().numTensors;
      const got = tf.tidy(() => {
        const xt = tf.tensor(Float32Array.from(x), [27, 37]);
        const [g] = tf.grads((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), tf.tensor(Float32Array.from(dy), [27, 37]))))([xt]);
        return { y: gelu(xt).dataSync(), dx: g.dataSync() };
      });
      expect(tf.memory().numTensors).toBe(before);
      const xf = Float64Array.from(Float32Array.from(x));
      assertClose('y', refGelu(xf), got.y, 1e-6);
      assertClose('dx', refGeluBackward(xf, dy), got.dx, 1e-6);
      await tf.setBackend('cpu');
    });
  });
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`dense op on the ${backend} backend`, () => {
    afterAll(() => tf.setBackend('cpu'));

    it('uses the backend', async () => {
      await useTfjsBackend(backend);
      expect(tf.getBackend()).toBe(backend);
    });

    const shapes = [
      { lead: [37], i: 60, o: 100 },
      { lead: [2, 13], i: 24, o: 7 },
      { lead: [1], i: 1, o: 3 },
    ];
    for (const { lead, i, o } of shapes) {
      for (const transposeW of [false, true]) {
        for (const bias of [true, false]) {
          it(`x [${lead}, ${i}] → ${o}, transposeW ${transposeW}, bias ${bias}: value and gradients match the float64 twin`, () => {
            const rng = new Rng(lead.length * 100 + i + o);
            const n = lead.reduce((a, c) => a * c, 1);
            const x = rng.normals(n * i);
            const w = rng.normals(i * o, 1 / Math.sqrt(i));
            const b = bias ? rng.normals(o) : undefined;
            const dy = rng.normals(n * o);
            const args = { x, w, b, n, in: i, out: o, transposeW };
            const before = tf.memory().numTensors;
            const got = tf.tidy(() => {
              const xt = tf.tensor(Float32Array.from(x), [...lead, i]);
              const wt = tf.tensor(Float32Array.from(w), transposeW ? [o, i] : [i, o]);
              const bt = b ? tf.tensor1d(Float32Array.from(b)) : undefined;
              const inputs = bt ? [xt, wt, bt] : [xt, wt];
              const y = dense(xt, wt, bt, { transposeW });
              expect(y.shape).toEqual([...lead, o]);
              const g = tf.grads((...ts: tf.Tensor[]) =>
                tf.sum(tf.mul(dense(ts[0], ts[1], ts[2], { transposeW }), tf.tensor(Float32Array.from(dy), [...lead, o]))),
              )(inputs);
              return { y: y.dataSync(), g: g.map((t) => t.dataSync()) };
            });
            expect(tf.memory().numTensors).toBe(before);
            const ref = refDenseBackward(args, dy);
            assertClose('y', refDense(args), got.y, TOL);
            assertClose('dx', ref.dx, got.g[0], TOL);
            assertClose('dw', ref.dw, got.g[1], TOL);
            if (b) assertClose('db', ref.db, got.g[2], TOL);
          });
        }
      }
    }

    it('transpose2d equals tf.transpose bit for bit; matMul2d equals tf.matMul for every flag', () => {
      tf.tidy(() => {
        for (const [r, c] of [
          [1, 1],
          [17, 33],
          [64, 5],
        ]) {
          const x = tf.randomNormal([r, c], 0, 1, 'float32', r * c) as tf.Tensor2D;
          expect(Array.from(transpose2d(x).dataSync())).toEqual(Array.from(tf.transpose(x).dataSync()));
          const y = tf.randomNormal([r, c], 0, 1, 'float32', r + c) as tf.Tensor2D;
          for (const [ta, tb] of [
            [false, true],
            [true, false],
          ] as const) {
            // y·xᵀ [r, r] and yᵀ·x [c, c]
            assertClose(`matMul2d ${ta} ${tb}`, tf.matMul(y, x, ta, tb).dataSync(), matMul2d(y, x, ta, tb).dataSync(), TOL);
          }
        }
      });
    });

    it('refuses bad arguments by name and leaves TF.js usable', () => {
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        const x = tf.ones([4, 3]);
        const w = tf.ones([3, 2]);
        expect(() => dense(x, tf.ones([4, 2]))).toThrow(/dense: x must be \[\.\.\., 4\], got \[4,3\]/);
        expect(() => dense(x, w, undefined, { transposeW: true })).toThrow(/dense: x must be \[\.\.\., 2\]/);
        expect(() => dense(x, w, tf.ones([3]))).toThrow(/dense: b must be a live float32 tf.Tensor \[2\]/);
        expect(() => dense(x, tf.ones([3]))).toThrow(/dense: w must be a live 2-D tf.Tensor \[in, out\]/);
        expect(() => dense(tf.ones([4, 3], 'int32'), w)).toThrow(/dense: x and w must be float32, got int32/);
        expect(() => dense([1, 2] as unknown as tf.Tensor, w)).toThrow(/dense: x must be a live tf.Tensor/);
        const gone = tf.ones([3, 2]);
        gone.dispose();
        expect(() => dense(x, gone)).toThrow(/dense: w must be a live/);
        expect(Array.from(dense(x, w).dataSync())).toEqual([3, 3, 3, 3, 3, 3, 3, 3]);
      });
      expect(tf.memory().numTensors).toBe(before);
    });
  });
}
