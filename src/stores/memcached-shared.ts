/**
 * The memcached stores tieSession shares: one per configuration, made on first use from the
 * options a tie gives (`servers`, `local`, ...), closed all at once by closeStores().
 */
import { createStore, type MemcachedStore } from './memcached.js'
import { resolveOptions, type MemcachedStoreOptions } from './memcached-options.js'

const shared = new Map<string, MemcachedStore>()

/**
 * The one store for this configuration, made on first use (what `tieSession({ servers, local })`
 * uses). Options with an injected client are not shared: they get a new store each time.
 */
export function sharedMemcachedStore(options: MemcachedStoreOptions): MemcachedStore {
  // tieSession calls this on every tie: the same options as last time cost a shallow comparison
  if (last !== undefined && sameOptions(last.options, options)) return last.store
  const store = sharedStoreFor(options)
  if (options.client === undefined && options.localClient === undefined) {
    const copy: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(options)) copy[k] = Array.isArray(v) ? [...(v as unknown[])] : v
    last = { options: copy as MemcachedStoreOptions, store }
  }
  return store
}

/** The options and store of the last {@link sharedMemcachedStore} call (forgotten when that store closes). */
let last: { options: MemcachedStoreOptions; store: MemcachedStore } | undefined

/** Same keys, and the same values: equal primitives, or arrays of equal primitives. */
function sameOptions(a: MemcachedStoreOptions, b: MemcachedStoreOptions): boolean {
  const x = a as Record<string, unknown>
  const y = b as Record<string, unknown>
  // no arrays of keys: tieSession calls this on every tie
  let count = 0
  for (const k in x) if (Object.hasOwn(x, k)) count++
  for (const k in y) {
    if (!Object.hasOwn(y, k)) continue
    if (!Object.hasOwn(x, k)) return false
    count--
    const u = x[k]
    const v = y[k]
    if (u === v && typeof v !== 'object') continue
    if (!Array.isArray(u) || !Array.isArray(v) || u.length !== v.length || u.some((e, i) => typeof e === 'object' || e !== v[i]))
      return false
  }
  return count === 0
}

function sharedStoreFor(options: MemcachedStoreOptions): MemcachedStore {
  // options already seen (as JSON) skip validation
  const seen = options.client === undefined && options.localClient === undefined ? JSON.stringify(options) : undefined
  const known = seen === undefined ? undefined : sharedBySeen.get(seen)
  if (known !== undefined) return known
  const config = resolveOptions(options)
  if (config.client || config.localClient) return createStore(config, undefined)
  const id = JSON.stringify(config)
  let store = shared.get(id)
  if (store === undefined) {
    const made: MemcachedStore = createStore(config, () => {
      if (last?.store === made) last = undefined
      if (shared.get(id) === made) shared.delete(id)
      for (const [k, v] of sharedBySeen) if (v === made) sharedBySeen.delete(k)
    })
    shared.set(id, made)
    store = made
  }
  if (seen !== undefined && sharedBySeen.size < 100) sharedBySeen.set(seen, store)
  return store
}
const sharedBySeen = new Map<string, MemcachedStore>()

/** Closes every store made by {@link sharedMemcachedStore}; later calls make new ones. */
export async function closeStores(): Promise<void> {
  last = undefined
  const stores = [...shared.values()]
  shared.clear()
  sharedBySeen.clear()
  await Promise.all(stores.map((store) => store.close()))
}
