import { SessionError } from '../errors.js'
import {
  expiryTime,
  type Entry,
  type LockOptions,
  type LockRelease,
  type Store,
  type Value,
  type WriteOptions,
  type WriteResult,
} from './store.js'
import { MAX_TIMER, abortReason, checkLockOptions, lockedError, unrefAfter } from './lock.js'

interface Item {
  value: Value
  flags: number
  version: number
  /** ms since the epoch; Infinity = never */
  expiresAt: number
}

/** One key's lock: its holder (undefined when free) and the callers waiting for it, first come first served. */
interface LockState {
  holder: Holder | undefined
  waiters: Waiter[]
}
interface Holder {
  /** Cancels the ttl timer. */
  cancel(): void
}
interface Waiter {
  grant(): void
  fail(error: Error): void
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
 * Its `lock` is an async mutex per key: waiters are served first come, first served; a lock
 * held longer than its `ttl` passes to the next waiter (its old holder's release then does
 * nothing, and its `held()` is false). Lock timers are real timers (not `Date`): the ttl timer is unref'd, the wait timer
 * is not (it ends within `wait`).
 *
 * @example
 * const store = memoryStore()
 * const s = await tieSession(undefined, { store })
 */
export function memoryStore(options: MemoryStoreOptions = {}): Store & Required<Pick<Store, 'lock' | 'head'>> & { readonly size: number } {
  const maxValueBytes = options.maxValueBytes ?? 1_000_000
  const items = new Map<string, Item>()
  const locks = new Map<string, LockState>()
  let nextVersion = 1

  async function lock(key: string, opts: LockOptions): Promise<LockRelease> {
    checkLockOptions(opts)
    const { ttl, wait, signal } = opts
    if (signal?.aborted) throw abortReason(signal)
    let state = locks.get(key)
    if (state === undefined) locks.set(key, (state = { holder: undefined, waiters: [] }))
    const lockState = state

    /** Makes the caller the holder; the returned release frees the lock only while it still holds it. */
    const take = (): LockRelease => {
      const holder: Holder = { cancel: unrefAfter(ttl * 1000, () => free(holder)) }
      lockState.holder = holder
      // held: still the holder of this very state (close() drops every state)
      return Object.assign(async () => free(holder), { held: async () => lockState.holder === holder && locks.get(key) === lockState })
    }
    const free = (holder: Holder) => {
      holder.cancel()
      if (lockState.holder !== holder) return // released before, or expired and taken by another
      lockState.holder = undefined
      const next = lockState.waiters.shift()
      if (next !== undefined) next.grant()
      else if (locks.get(key) === lockState) locks.delete(key)
    }

    if (lockState.holder === undefined) return take()
    return new Promise((resolve, reject) => {
      const started = performance.now()
      const leave = () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        const at = lockState.waiters.indexOf(waiter)
        if (at >= 0) lockState.waiters.splice(at, 1)
      }
      const waiter: Waiter = {
        grant: () => {
          leave()
          resolve(take())
        },
        fail: (error) => {
          leave()
          reject(error)
        },
      }
      const onAbort = () => waiter.fail(abortReason(signal!))
      // not unref'd: the caller awaits it, and it ends within `wait`
      const timer = Number.isFinite(wait)
        ? setTimeout(() => waiter.fail(lockedError(key, performance.now() - started)), Math.min(wait, MAX_TIMER))
        : undefined
      signal?.addEventListener('abort', onAbort, { once: true })
      lockState.waiters.push(waiter)
    })
  }

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
      if (item === undefined) return undefined
      // bytes are copied both ways: no caller shares a Buffer with the store
      const value = typeof item.value === 'string' ? item.value : Buffer.from(item.value)
      return item.flags === 0 ? { value, version: String(item.version) } : { value, flags: item.flags, version: String(item.version) }
    },

    async write(key: string, value: Value, opts: WriteOptions): Promise<WriteResult> {
      const bytes = Buffer.byteLength(value)
      if (bytes > maxValueBytes) {
        throw new SessionError('ERR_TOO_LARGE', `value of ${bytes} bytes for "${key}" is over maxValueBytes (${maxValueBytes})`)
      }
      const current = live(key)
      if (opts.mode === 'add' && current !== undefined) return 'exists'
      if ((opts.mode === 'replace' || opts.mode === 'cas') && current === undefined) return 'not_found'
      if (opts.mode === 'cas' && String(current?.version) !== opts.version) return 'exists'
      const kept = typeof value === 'string' ? value : Buffer.from(value)
      const version = nextVersion++
      items.set(key, { value: kept, flags: opts.flags ?? 0, version, expiresAt: expiryTime(opts.ttl) })
      opts.onVersion?.(String(version))
      return 'stored'
    },

    async head(key) {
      const item = live(key)
      return item === undefined ? undefined : { size: Buffer.byteLength(item.value) }
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

    lock,

    /** Also drops every lock: waiters fail with ERR_STORE_UNAVAILABLE, holders' releases do nothing. */
    async close() {
      items.clear()
      for (const state of locks.values()) {
        state.holder?.cancel()
        state.holder = undefined
        const closed = new SessionError('ERR_STORE_UNAVAILABLE', 'the memory store was closed while waiting for a lock')
        for (const waiter of [...state.waiters]) waiter.fail(closed)
      }
      locks.clear()
    },
  }
}
