/**
 * The stores a tie opens by itself from its options (options.ts): the shared memcached store of
 * `servers` (with `local` and the tuning options), the file store of TIED_SESSION_DIR (one per
 * directory), or the default file store; and closing them all (closeStores).
 */
import { fileStore, type FileStore } from './stores/file.js'
import type { MemcachedStoreOptions } from './stores/memcached.js'
import { OPTION_NAMES as MEMCACHED_OPTIONS } from './stores/memcached-options.js'
import { closeStores as closeMemcachedStores, sharedMemcachedStore } from './stores/memcached-shared.js'
import type { Store } from './stores/store.js'

/** The memcachedStore options a tie passes on to its shared store (an injected client is given as `store`). */
export const MEMCACHED = MEMCACHED_OPTIONS.filter((k) => k !== 'client' && k !== 'localClient')

let defaultStore: Store | undefined
/** The file stores opened for TIED_SESSION_DIR, one per directory. */
const directoryStores = new Map<string, FileStore>()

/** The store of options `o` (with the environment merged in) that name no `store`: memcached for `servers`, else the file store of `dir`, else the default one. */
export function storeFor(o: Record<string, unknown>, dir: string | undefined): Store {
  return memcachedFrom(o) ?? (dir === undefined ? (defaultStore ??= fileStore()) : directoryStore(dir))
}

/** The file store of TIED_SESSION_DIR, one per directory, closed by closeStores(). */
function directoryStore(dir: string): FileStore {
  let store = directoryStores.get(dir)
  if (store === undefined) directoryStores.set(dir, (store = fileStore({ directory: dir })))
  return store
}

/** The shared memcached store for `servers` + `local` (+ tuning), or undefined without `servers`. */
function memcachedFrom(o: Record<string, unknown>): Store | undefined {
  const given = MEMCACHED.filter((k) => o[k] !== undefined)
  if (o.servers === undefined) {
    if (given.length > 0) throw new TypeError(`tied-session: option ${given[0]} needs servers (the principal memcached servers)`)
    return undefined
  }
  if (o.store !== undefined) throw new TypeError('tied-session: give either store or servers, not both')
  const options: Record<string, unknown> = {}
  for (const k of given) options[k] = o[k]
  return sharedMemcachedStore(options as MemcachedStoreOptions)
}

/** Closes every store {@link storeFor} opened. */
export async function closeTieStores(): Promise<void> {
  await closeMemcachedStores()
  const stores: Store[] = [...(defaultStore ? [defaultStore] : []), ...directoryStores.values()]
  defaultStore = undefined
  directoryStores.clear()
  await Promise.all(stores.map((store) => store.close()))
}
