export {
  tieSession,
  save,
  untie,
  reload,
  destroy,
  regenerate,
  isTied,
  snapshot,
  updateSession,
  findSessions,
  destroySessions,
} from './tie.js'
export { closeStores } from './options.js'
export { MAX_INDEXED } from './principal.js'
export { md5Hex, INDEX_AT } from './index-plan.js'
export type { Tied, TiedSession, OptionsFor, Saved } from './tie.js'
export type { TieOptions } from './options.js'
export type { JsonSerializer, JsonSafe } from './json.js'
export { SessionError, isSessionError } from './errors.js'
export type { SessionErrorCode } from './errors.js'
export { json } from './json.js'
export { MAX_DEPTH } from './serializers.js'
export { rich } from './rich.js'
export { storable } from './storable.js'
export type { Serializer } from './serializers.js'
export { memoryStore } from './stores/memory.js'
export type { MemoryStoreOptions } from './stores/memory.js'
export { fileStore } from './stores/file.js'
export type { FileStore, FileStoreOptions } from './stores/file.js'
export { memcachedStore } from './stores/memcached.js'
export type { MemcachedStore, MemcachedStoreOptions, MemcachedClient, MemcachedCallback } from './stores/memcached.js'
export type { Store, Entry, Head, Value, WriteMode, WriteOptions, WriteResult, LockOptions, LockRelease } from './stores/store.js'
