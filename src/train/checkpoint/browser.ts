/** Checkpoints in the browser: IndexedDB storage (one transaction: all or nothing) and file downloads. */
import { type Checkpoint, decodeCheckpoint } from './format.ts';

const DB = 'slim-performer';
const STORE = 'checkpoints';

function openDB(): Promise<IDBDatabase> {
  if (typeof indexedDB === 'undefined') throw new Error('IndexedDB is not available in this runtime');
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function idb<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await openDB();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = f(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** Stores checkpoint bytes under `key` in IndexedDB (one transaction: all or nothing). */
export async function saveCheckpointToIndexedDB(key: string, bytes: Uint8Array): Promise<void> {
  await idb('readwrite', (s) => s.put(bytes, key));
}

/** Reads and verifies checkpoint bytes stored under `key` in IndexedDB. */
export async function loadCheckpointFromIndexedDB(key: string): Promise<Checkpoint> {
  const bytes = await idb<unknown>('readonly', (s) => s.get(key));
  if (bytes === undefined) throw new Error(`no checkpoint stored under "${key}" in IndexedDB`);
  return decodeCheckpoint(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes as ArrayBuffer));
}

/** Offers checkpoint bytes as a file download (browsers). */
export function downloadCheckpoint(bytes: Uint8Array, filename = 'model.slimckpt'): void {
  if (typeof document === 'undefined' || typeof URL?.createObjectURL !== 'function') throw new Error('downloadCheckpoint needs a browser document');
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: filename });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}
