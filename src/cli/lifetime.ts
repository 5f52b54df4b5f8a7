/**
 * How long a stored session has left, so that `set` and `unset` keep a session's lifetime (the
 * Store contract has no TTL read: the file store's file and memcached's `mg <key> t` tell it).
 */
import path from 'node:path'
import { SessionError } from '../index.js'
import { readItem } from '../stores/file-item.js'
import { fileName } from '../stores/file-keys.js'
import { WireClient } from '../stores/memcached-wire.js'
import { requestTimeout, type OpenStore } from './store.js'

/**
 * The seconds `key` has left (0 = never expires; at least 1 while it lives), or undefined when it
 * is not there or the store cannot tell (memcached before 1.6 has no `mg`). A down server rejects.
 */
export async function secondsLeft(open: OpenStore, key: string): Promise<number | undefined> {
  if (open.kind === 'file') {
    let item
    try {
      item = readItem(key, path.join(open.store.directory, fileName(key)))
    } catch {
      return undefined // not a file this store can read: no lifetime to keep
    }
    if (item === undefined) return undefined
    return item.expires === 0 ? 0 : Math.max(1, Math.ceil((item.expires - Date.now()) / 1000))
  }
  // a connection of its own to the principal servers: the store keeps its pool to itself
  const pool = new WireClient(open.store.servers, requestTimeout(open.config))
  try {
    // memcached before 1.6 has no meta commands: the lifetime cannot be read, --expires (or its default) applies
    if (!(await pool.supportsMeta(key))) return undefined
    // mg's t flag: the seconds left, -1 for an item that never expires
    const item = await pool.metaGet(key, { ttl: true })
    if (item?.ttl === undefined) return undefined
    return item.ttl < 0 ? 0 : Math.max(1, item.ttl)
  } finally {
    pool.close(new SessionError('ERR_STORE_UNAVAILABLE', 'the lifetime probe is closed'))
  }
}
