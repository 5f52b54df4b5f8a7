/**
 * A memcached store's keys with `replicas: n`: each key on its own server and the next n distinct
 * servers of the ring (./memcached-copies.ts), so that a node that dies or restarts empty loses no
 * session. The memcached store hands its get, write, delete and touch here when n > 0.
 *
 * - Every copy carries a stamp in its flags. A read trusts the key's own server alone (one `mg`)
 *   while no server of the key is suspect of holding an old copy (./memcached-suspects.ts: a write
 *   that leaves a server without its copy marks it before it is acknowledged), and finds a copy
 *   there. Otherwise it asks every copy for its stamp in parallel (meta `mg <key> c f t`, the value
 *   only from the first server that answers), serves the newest copy, and writes it back to the
 *   copies that miss it or hold an older one (read repair): a node that comes back with old data
 *   loses to the newer copy, also in a process that started after it came back.
 * - Compare-and-swap: the authority of a key is the first of its servers that answers (its own
 *   server while it is up). A `cas` write goes to the authority the read found, at that copy's
 *   memcached cas, then to the other copies, each only if it still holds what the read saw or
 *   something older. When the authority changed since the read, the write answers `exists` and the
 *   session reads again, so concurrent writers in one process never both win. Processes see a
 *   server as down from its first failure for RETRY_MS (memcached-connection.ts): only in that
 *   window can two processes pick different authorities.
 * - A delete removes every copy; when a copy does not answer, the others get a tombstone (an empty
 *   value, flag bit 2) stamped past any copy the missing one can hold, living as long as the
 *   longest copy it replaces, so that the key does not come back with that server.
 *
 * Meta commands are needed on every server (memcached >= 1.6): `mg` returns flags and cas without
 * the value, and `ms` reports the new cas. A server without them (an old memcached, a proxy such
 * as twemproxy) fails every call with a message that says so.
 */
import { SessionError } from '../errors.js'
import type { Crc32Buckets } from './memcached-crc32.js'
import {
  copyOf,
  copyServers,
  flagsOf,
  formatVersion,
  MAX_STAMP,
  newest,
  parseVersion,
  UNKNOWN_CAS,
  type Copy,
  type Look,
} from './memcached-copies.js'
import { Suspects } from './memcached-suspects.js'
import { ReplicaServers } from './memcached-replica-servers.js'
import type { MetaSetOptions } from './memcached-wire.js'
import type { Entry, Value, WriteOptions, WriteResult } from './store.js'

/** How far a tombstone's stamp leaps past the newest copy that answered: a copy that missed more writes than this while down can outlive a destroy. */
export const TOMBSTONE_LEAP = 1024
/** Seconds a tombstone lives when no copy that answered said how long the key had left (the default `expires`). */
export const TOMBSTONE_TTL = 86_400
/** Rounds of look-then-write before a write or read gives up (each is lost only to another writer). */
const ROUNDS = 5
/**
 * Compare-and-swap tries of one copy in {@link Replicas.replicate} before its server is marked
 * suspect. Losing to another writer of the key is no failure (a newer copy there ends the loop at
 * once), but a mark sends every read of that server's keys to every copy for the write's TTL plus
 * MARKER_SLACK: with 3 tries, 64 concurrent writers on 256 keys (bench/replicas.ts) left a mark in
 * 2 of 6 runs (then 38% and 71% of the reads went to every copy), with 8 in none of 4. (Test: a
 * copy that loses 5 races in a row is written, and no marker set.)
 */
const REPLICA_TRIES = 8

/** What the replicated keys need from their store. */
export interface ReplicaOptions {
  servers: readonly string[]
  replicas: number
  requestTimeout: number
  crc32?: Crc32Buckets | undefined
  /** memcached's exptime for a TTL (over 30 days: a Unix time). */
  exptime(ttl: number): number
}

type Hit = Extract<Look, { state: 'hit' }>
const copyAt = (looks: readonly Look[], i: number): Copy => (looks[i] as Hit).copy

/** The keys of a memcached store with replicas: see the module comment. */
export class Replicas {
  private readonly pool: ReplicaServers
  private readonly copiesOf: (key: string) => string[]
  /** Servers that may hold an old copy: while none of a key's is, a read trusts its own server alone. */
  private readonly suspects: Suspects

  constructor(private readonly o: ReplicaOptions) {
    this.pool = new ReplicaServers(o.servers, o.requestTimeout)
    this.copiesOf = copyServers(o.servers, o.replicas, o.crc32)
    this.suspects = new Suspects(o.servers, this.pool.clients, o.exptime)
  }

  /** The newest live copy of `key`, or undefined; the copies that lack it get it. */
  get(key: string): Promise<Entry | undefined> {
    let servers: string[]
    let trusted: boolean
    try {
      servers = this.copiesOf(key)
      trusted = this.suspects.trusts(servers) && this.pool.firstUp(servers) === 0
    } catch (err) {
      return Promise.reject(err)
    }
    if (trusted) {
      // no server of the key is suspect: its own server's copy is the newest there is (one look
      // and one `.then`, no async frame: this is every read while no server is suspect)
      return this.pool.look(servers[0]!, key, true).then((own) => {
        if (own.state === 'hit' && own.copy.value !== undefined) {
          if (own.copy.tombstone) return undefined
          const cas = servers.map((_, i) => (i === 0 ? own.copy.cas : UNKNOWN_CAS))
          return entryOf(own.copy, formatVersion({ stamp: own.copy.stamp, authority: 0, cas }))
        }
        // a miss (no such key, or the server restarted empty) or a failure: every copy decides
        return this.getFromAll(key, servers)
      })
    }
    return this.getFromAll(key, servers)
  }

  /** The newest live copy of `key` as every server of it says (the copies that lack it get it). */
  private async getFromAll(key: string, servers: string[]): Promise<Entry | undefined> {
    for (let round = 0; round < ROUNDS; round++) {
      const looks = await this.pool.lookAll(key, servers, this.pool.firstUp(servers))
      const best = newest(looks)
      if (best < 0) return undefined
      let copy = copyAt(looks, best)
      if (copy.tombstone) {
        await this.dropOlder(key, servers, looks)
        return undefined
      }
      if (copy.value === undefined) {
        const again = await this.pool.look(servers[best]!, key, true)
        if (again.state !== 'hit' || again.copy.stamp !== copy.stamp || again.copy.tombstone) continue // changed meanwhile: look again
        copy = again.copy
        looks[best] = again
      }
      const cas = await this.repair(key, servers, looks, copy)
      const authority = looks.findIndex((look) => look.state !== 'failed')
      return entryOf(copy, formatVersion({ stamp: copy.stamp, authority, cas }))
    }
    throw new SessionError('ERR_STORE_UNAVAILABLE', `"${key}" kept changing while it was read (${ROUNDS} tries); read it again`)
  }

  async write(key: string, value: Value, opts: WriteOptions): Promise<WriteResult> {
    const own = opts.flags ?? 0
    if (own > 3) {
      throw new TypeError(
        `tied-session: with replicas, flags must be 0 to 3 (Perl's Storable and gzip bits; the others carry the copy's version), got ${own}`,
      )
    }
    const servers = this.copiesOf(key)
    const exptime = this.o.exptime(opts.ttl)
    if (opts.mode === 'cas') return this.casWrite(key, servers, value, own, opts.ttl, opts.version)
    for (let round = 0; round < ROUNDS; round++) {
      // set, add, replace: the stamps of every copy first, so the new one is newer than all of them
      const looks = await this.pool.lookAll(key, servers, -1)
      const best = newest(looks)
      const live = best >= 0 && !copyAt(looks, best).tombstone
      if (opts.mode === 'add' && live) return 'exists'
      if (opts.mode === 'replace' && !live) return 'not_found'
      const authority = looks.findIndex((look) => look.state !== 'failed')
      const cas = looks.map((look) => (look.state === 'hit' ? look.copy.cas : ''))
      const stamp = nextStamp(key, best < 0 ? 0 : copyAt(looks, best).stamp)
      await this.markSkipped(servers, authority, opts.ttl)
      let reply
      try {
        reply = await this.pool.on(servers[authority]!, (c) =>
          c.metaSet(key, value, writeAt(cas[authority]!, exptime, flagsOf(stamp, own))),
        )
      } catch (err) {
        if (this.pool.unsent(err)) continue // the authority went down since the look: the next look finds the next one
        throw await this.markOthers(err, servers, authority, opts.ttl)
      }
      if (reply.result !== 'stored') continue // another writer came between the look and the write
      await this.replicate(key, servers, authority, value, flagsOf(stamp, own), stamp, opts.ttl, cas)
      return 'stored'
    }
    throw new SessionError('ERR_CONFLICT', `"${key}" kept changing under this write (${ROUNDS} tries); write again`)
  }

  /** Removes every copy of `key`; a copy that does not answer is outlived by tombstones on the others. */
  async delete(key: string): Promise<boolean> {
    const servers = this.copiesOf(key)
    const looks = await this.pool.lookAll(key, servers, -1)
    const best = newest(looks)
    const existed = best >= 0 && !copyAt(looks, best).tombstone
    if (looks.every((look) => look.state !== 'failed')) {
      // Every copy answered: with them all gone, no server can bring the key back.
      const deleted = await Promise.allSettled(
        servers.map((server, i) =>
          looks[i]!.state === 'hit' ? this.pool.on(server, (c) => c.metaDelete(key)) : Promise.resolve('not_found'),
        ),
      )
      if (deleted.every((d) => d.status === 'fulfilled')) return existed
    }
    const stamp = nextStamp(key, (best < 0 ? 0 : copyAt(looks, best).stamp) + TOMBSTONE_LEAP)
    const left = looks.flatMap((look) => (look.state === 'hit' ? [look.copy.ttl] : []))
    // as long as the longest copy that answered (-1: never expires); unknown: the default expires
    const ttl = left.length === 0 ? TOMBSTONE_TTL : left.includes(-1) ? 0 : Math.max(...left) + 1
    const flags = flagsOf(stamp, 0, true)
    const written = await Promise.allSettled(
      servers.map((server) => this.pool.on(server, (c) => c.metaSet(key, '', { mode: 'set', ttl: this.o.exptime(ttl), flags }))),
    )
    const failed = written.filter((w) => w.status === 'rejected')
    if (failed.length === servers.length) throw this.pool.noneAnswered(key, servers, failed[0]!.reason)
    // a server without the tombstone may hold the live copy: no read trusts it alone while the tombstone lives
    await Promise.all(servers.flatMap((server, i) => (written[i]!.status === 'rejected' ? [this.suspects.mark(server, ttl)] : [])))
    return existed
  }

  /** Sets a new TTL on the current copies of `key`; false when it has none. */
  async touch(key: string, ttl: number): Promise<boolean> {
    const servers = this.copiesOf(key)
    const looks = await this.pool.lookAll(key, servers, -1)
    const best = newest(looks)
    if (best < 0 || copyAt(looks, best).tombstone) return false
    // only the copies at the newest stamp: an older one is not kept alive, nor is a tombstone cut short
    const stamp = copyAt(looks, best).stamp
    const touched = await Promise.allSettled(
      servers.map((server, i) => {
        const look = looks[i]!
        if (look.state !== 'hit' || look.copy.stamp !== stamp || look.copy.tombstone) return Promise.resolve('NOT_FOUND')
        return this.pool.on(server, (c) => c.touch(key, this.o.exptime(ttl)))
      }),
    )
    if (touched.some((t) => t.status === 'fulfilled' && t.value === 'TOUCHED')) return true
    const failed = touched.find((t) => t.status === 'rejected')
    if (failed) throw failed.reason
    return false
  }

  /** Fails the calls in flight and every later one with `error`. */
  close(error: SessionError): void {
    this.pool.close(error)
  }

  /** A `cas` write at the version a read handed out (see the module comment). */
  private async casWrite(
    key: string,
    servers: string[],
    value: Value,
    own: number,
    ttl: number,
    version: string | undefined,
  ): Promise<WriteResult> {
    const read = parseVersion(version, servers.length)
    // not a version of ours: it cannot be the current one
    if (read === undefined) return (await this.get(key)) === undefined ? 'not_found' : 'exists'
    const authority = this.pool.firstUp(servers)
    const cas = read.cas[authority]
    // the authority changed since the read (a server went down or came back): read again
    if (authority !== read.authority || !cas) return 'exists'
    const stamp = nextStamp(key, read.stamp)
    const flags = flagsOf(stamp, own)
    await this.markSkipped(servers, authority, ttl)
    // the copies a read that trusted the key's own server did not ask: asked now, alongside the write
    const asked = read.cas.map((c, i) => (i !== authority && c === UNKNOWN_CAS ? this.pool.look(servers[i]!, key, false) : undefined))
    let reply
    try {
      reply = await this.pool.on(servers[authority]!, (c) => c.metaSet(key, value, { mode: 'set', cas, ttl: this.o.exptime(ttl), flags }))
    } catch (err) {
      if (this.pool.unsent(err)) return 'exists' // not sent: the authority went down since the read, and the next read finds the next one
      throw await this.markOthers(err, servers, authority, ttl)
    }
    if (reply.result === 'exists') return 'exists'
    if (reply.result !== 'stored') {
      // gone from the authority: destroyed or expired, or its server restarted empty (a replica holds it)
      return (await this.get(key)) === undefined ? 'not_found' : 'exists'
    }
    const expected = await Promise.all(read.cas.map(async (c, i) => (asked[i] ? casAfter(await asked[i], stamp) : c)))
    await this.replicate(key, servers, authority, value, flags, stamp, ttl, expected)
    return 'stored'
  }

  /**
   * Writes a copy stamped `stamp` to every server of `key` but the authority, in parallel: at the
   * cas the look or read saw there ('' = it had none: add; UNKNOWN_CAS: looked up first), else
   * over whatever older copy it holds. A server left without the copy is marked suspect first.
   */
  private async replicate(
    key: string,
    servers: string[],
    authority: number,
    value: Value,
    flags: number,
    stamp: number,
    ttl: number,
    cas: readonly string[],
  ): Promise<void> {
    const exptime = this.o.exptime(ttl)
    await Promise.all(
      servers.map(async (server, i) => {
        if (i === authority) return
        let expected = cas[i]!
        if (expected === NEWER) return
        try {
          for (let tries = 0; tries < REPLICA_TRIES; tries++) {
            if (expected === UNKNOWN_CAS) {
              // a read that trusted the key's own server alone did not ask this copy
              const there = await this.pool.on(server, (c) => c.metaGet(key, { cas: true, flags: true }))
              if (there !== undefined && copyOf(there).stamp >= stamp) return // as new or newer there already
              expected = there?.cas ?? ''
            }
            const reply = await this.pool.on(server, (c) => c.metaSet(key, value, writeAt(expected, exptime, flags)))
            if (reply.result === 'stored') return
            expected = UNKNOWN_CAS // changed since it was seen: look again
          }
        } catch {
          // falls through to the mark
        }
        // This copy stays older or missing: every read that asks it serves the newest copy and
        // repairs it, and the mark makes every read ask it while the write lives. The write is lost
        // only if the authority fails before a read repairs this copy (README: High availability).
        await this.suspects.mark(server, ttl)
      }),
    )
  }

  /**
   * Before a write to an authority that is not the key's own server (which this process saw fail):
   * the servers before it are marked suspect first. Another process that still reaches the key's
   * own server would otherwise trust its copy alone, and write there at the old version, while this
   * write lands on the next one.
   */
  private async markSkipped(servers: string[], authority: number, ttl: number): Promise<void> {
    if (authority > 0) await Promise.all(servers.slice(0, authority).map((server) => this.suspects.mark(server, ttl)))
  }

  /**
   * After a write to the authority failed with its outcome unknown: the other copies did not get
   * it, so no read may trust the authority's copy alone (it may hold the write). Returns `err`,
   * or when a mark fails too, that failure.
   */
  private async markOthers(err: unknown, servers: string[], authority: number, ttl: number): Promise<unknown> {
    try {
      await Promise.all(servers.flatMap((server, i) => (i === authority ? [] : [this.suspects.mark(server, ttl)])))
    } catch (markError) {
      return markError
    }
    return err
  }

  /**
   * Read repair: writes `copy` (the newest) to the copies that answered without it, each only if it
   * still holds what was read. Returns every copy's cas after it ('' where unknown).
   */
  private repair(key: string, servers: string[], looks: Look[], copy: Copy): Promise<string[]> | string[] {
    // the usual read: every copy answered and is current, nothing to write
    if (looks.every((look) => look.state === 'hit' && look.copy.stamp >= copy.stamp))
      return looks.map((look) => (look.state === 'hit' ? look.copy.cas : ''))
    const ttl = this.o.exptime(copy.ttl < 0 ? 0 : Math.max(copy.ttl, 1))
    const flags = flagsOf(copy.stamp, copy.own)
    return Promise.all(
      looks.map(async (look, i) => {
        if (look.state === 'failed') return ''
        if (look.state === 'hit' && look.copy.stamp >= copy.stamp) return look.copy.cas
        const had = look.state === 'hit' ? look.copy.cas : ''
        try {
          const reply = await this.pool.on(servers[i]!, (c) => c.metaSet(key, copy.value!, writeAt(had, ttl, flags)))
          return reply.result === 'stored' ? (reply.cas ?? '') : ''
        } catch {
          return '' // harmless: the copy stays as it was, and the next read tries again; '' makes a cas write read again
        }
      }),
    )
  }

  /** After a tombstone won: deletes the older live copies, each only if still as read. */
  private async dropOlder(key: string, servers: string[], looks: Look[]): Promise<void> {
    await Promise.all(
      looks.map(async (look, i) => {
        if (look.state !== 'hit' || look.copy.tombstone) return
        // harmless if it fails: the tombstone wins every read while it lives, and outlives this copy
        await this.pool.on(servers[i]!, (c) => c.metaDelete(key, { cas: look.copy.cas })).catch(() => undefined)
      }),
    )
  }
}

/** In the cas list of a write: that copy is as new as the write or newer already, nothing to write there. */
const NEWER = '!'

/** What a write stamped `stamp` expects of a copy, from a look at it: its cas, '' (none), NEWER, or UNKNOWN_CAS (no answer). */
function casAfter(look: Look, stamp: number): string {
  if (look.state === 'failed') return UNKNOWN_CAS
  if (look.state === 'miss') return ''
  return look.copy.stamp >= stamp ? NEWER : look.copy.cas
}

/** How a copy is written over what a look saw there: at its cas, or with `add` where there was none. */
function writeAt(cas: string, ttl: number, flags: number): MetaSetOptions {
  return cas === '' ? { mode: 'add', ttl, flags } : { mode: 'set', cas, ttl, flags }
}

function nextStamp(key: string, stamp: number): number {
  if (stamp >= MAX_STAMP) throw new SessionError('ERR_CONFLICT', `"${key}" was written ${MAX_STAMP} times; destroy it and start again`)
  return stamp + 1
}

/** The entry a read returns: the value, its own flags, the version. */
function entryOf(copy: Copy, version: string): Entry {
  // the wire client hands a copy whose own bits are 0 as text when it is valid UTF-8 (its stamp bits do not count)
  const entry: Entry = { value: copy.value! }
  if (copy.own !== 0) entry.flags = copy.own
  entry.version = version
  return entry
}
