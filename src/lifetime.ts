/**
 * How long a session lives: `expires` seconds from its last save, or from its last tie with
 * `rolling` (sliding expiry: Lemonldap::NG's `timeoutActivity`, express-session's `rolling`), and
 * never past `maxLifetime` seconds from its creation (Lemonldap::NG's `timeout`), which the session
 * records as `_utime` (Unix seconds), the field Lemonldap::NG and its purge scripts read.
 */
import { notFound } from './errors.js'
import { UTIME_FIELD } from './tracker.js'
import type { Entry, Store } from './stores/store.js'

export { UTIME_FIELD }

/** What the lifetime of a session needs from its configuration. */
export interface LifetimeConfig {
  /** seconds from the last save (or tie, with rolling); 0 = never */
  ttl: number
  /** seconds from creation; 0 = no limit */
  maxLifetime: number
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000)

/** The creation time a session records, when it is a plausible Unix time. */
function createdAt(data: Record<string, unknown>): number | undefined {
  const at = data[UTIME_FIELD]
  return typeof at === 'number' && Number.isSafeInteger(at) && at > 0 ? at : undefined
}

/** Stamps the creation time into `data` unless it has one; true when it stamped. */
export function stampCreation(data: Record<string, unknown>, now = nowSeconds()): boolean {
  if (createdAt(data) !== undefined) return false
  data[UTIME_FIELD] = now
  return true
}

/**
 * The TTL (seconds, 0 = never) a write or a touch of `data` gives it now: `ttl`, shortened so
 * that the session ends at its maxLifetime. A session past its lifetime is ERR_SESSION_NOT_FOUND
 * (`id` names it); one without a creation time counts from now.
 */
export function ttlNow(config: LifetimeConfig, data: Record<string, unknown>, id: string): number {
  if (config.maxLifetime === 0) return config.ttl
  const left = (createdAt(data) ?? nowSeconds()) + config.maxLifetime - nowSeconds()
  if (left <= 0) throw notFound(id, `it passed its maxLifetime of ${config.maxLifetime} s`)
  return config.ttl === 0 ? left : Math.min(config.ttl, left)
}

/**
 * Reads `key` and sets its TTL to `ttl` (rolling): in one command where the store can
 * (`getAndTouch`: memcached's meta `mg … T`), else a get and a touch sent together (one round
 * trip of waiting).
 */
export async function readTouching(store: Store, key: string, ttl: number): Promise<Entry | undefined> {
  if (store.getAndTouch !== undefined) return store.getAndTouch(key, ttl)
  const [entry] = await Promise.all([store.get(key), store.touch(key, ttl)])
  return entry
}
