/**
 * The store a command works on, opened from the store options, and the tie options that reach
 * it through the public API.
 */
import { fileStore, memcachedStore, type FileStore, type MemcachedStore, type TieOptions } from '../index.js'
import type { StoreConfig } from './args.js'

/** Milliseconds a memcached call may take unless --timeout says: a down server is reported within about a second. */
export const REQUEST_TIMEOUT = 1000

/** The request timeout of `config`: --timeout, TIED_SESSION_TIMEOUT, or {@link REQUEST_TIMEOUT}. */
export const requestTimeout = (config: StoreConfig): number => config.timeout ?? REQUEST_TIMEOUT

/** An open store: the file store or a memcached store, and the options to pass to the API. */
export type OpenStore =
  | { kind: 'file'; store: FileStore; tie: TieOptions; config: StoreConfig }
  | { kind: 'memcached'; store: MemcachedStore; tie: TieOptions; config: StoreConfig }

/** Opens the store `config` names (no I/O until it is used). */
export function openStore(config: StoreConfig): OpenStore {
  const common = {
    namespace: config.namespace,
    principal: config.principal,
    ...(config.expires === undefined ? {} : { expires: config.expires }),
  }
  if (config.kind === 'file') {
    const store = fileStore(config.dir === undefined ? {} : { directory: config.dir })
    return { kind: 'file', store, tie: { ...common, store }, config }
  }
  const store = memcachedStore({
    servers: config.servers,
    ...(config.local.length > 0 ? { local: config.local } : {}),
    requestTimeout: requestTimeout(config),
  })
  return { kind: 'memcached', store, tie: { ...common, store }, config }
}

/** Where the store is, for messages: the directory or the servers. */
export function describeStore(open: OpenStore): string {
  if (open.kind === 'file') return `the file store in ${open.store.directory}`
  const local = open.store.local.length > 0 ? ` (local: ${open.store.local.join(', ')})` : ''
  return `memcached ${open.store.servers.join(', ')}${local}`
}
