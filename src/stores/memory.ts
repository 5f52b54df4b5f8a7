import { SessionError } from '../errors.js'
import { expiryTime, type Entry, type Store, type WriteOptions, type WriteResult } from './store.js'

interface Item {
  value: string
  version: number
  /** ms since the epoch; Infinity = never */
  expiresAt: number
}

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /** Largest value accepted, in bytes (UTF-8). @default 1000000 */
  maxValueBytes?: number
}

/**
 * A store in this process's memory: for tests and single-process scripts.
 * Expiry reads `Date.now()`, so fake clocks drive it.
 *
 * @example
 * const store = memoryStore()
 * const s = await tieSession(undefined, { store })
 */
export function memoryStore(options: MemoryStoreOptions = {}): Store & { readonly size: number } {
  const maxValueBytes = options.maxValueBytes ?? 1_000_000
  const items = new Map<string, Item>()
  let nextVersion = 1

  function live(key: string): Item | undefined {
    const item = items.get(key)
    if (item !== undefined && item.expiresAt <= Date.now()) {
      items.delete(key)
      return undefined
    }
    return item
  }

  return {
    get size() {
      for (const key of items.keys()) live(key)
      return items.size
    },

    async get(key): Promise<Entry | undefined> {
      const item = live(key)
      return item === undefined ? undefined : { value: item.value, version: String(item.version) }
    },

    async write(key: string, value: string, opts: WriteOptions): Promise<WriteResult> {
      const bytes = Buffer.byteLength(value)
      if (bytes > maxValueBytes) {
        throw new SessionError('ERR_TOO_LARGE', `value of ${bytes} bytes for "${key}" is over maxValueBytes (${maxValueBytes})`)
      }
      const current = live(key)
      if (opts.mode === 'add' && current !== undefined) return 'exists'
      if ((opts.mode === 'replace' || opts.mode === 'cas') && current === undefined) return 'not_found'
      if (opts.mode === 'cas' && String(current?.version) !== opts.version) return 'exists'
      items.set(key, { value, version: nextVersion++, expiresAt: expiryTime(opts.ttl) })
      return 'stored'
    },

    async delete(key) {
      const existed = live(key) !== undefined
      items.delete(key)
      return existed
    },

    async touch(key, ttl) {
      const item = live(key)
      if (item === undefined) return false
      item.expiresAt = expiryTime(ttl)
      return true
    },

    async *keys(prefix = '') {
      for (const key of [...items.keys()]) {
        if (key.startsWith(prefix) && live(key) !== undefined) yield key
      }
    },

    async close() {
      items.clear()
    },
  }
}
