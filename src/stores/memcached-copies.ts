/**
 * The copies of a replicated key (`replicas: n`): which servers hold them, the version stamp each
 * copy carries in its memcached flags, which copy is the newest, and the version string a read
 * hands to the session (no network here; ./memcached-replicas.ts does the I/O).
 *
 * Flags of a copy: bits 0-1 are the value's own (Perl's Cache::Memcached reads only bit 0,
 * Storable, and bit 1, gzip, and ignores the others), bit 2 marks a tombstone (a destroyed key),
 * bits 3-31 hold the stamp: a per-key counter, 1 more than the newest copy a write started from.
 * memcached's own cas cannot serve as the stamp: each server counts its own, and memcached 1.6.18
 * has no way to set it (the meta `E` flag came later).
 */
import { createRequire } from 'node:module'
import type { Crc32Buckets } from './memcached-crc32.js'

/** The value's own flag bits (Perl's Storable and gzip); the others carry the copy's stamp and tombstone mark. */
export const OWN_BITS = 3
const TOMBSTONE_BIT = 4
const STAMP_SHIFT = 3
/** The largest stamp: 29 bits. A key written more often than this stops taking writes (ERR_CONFLICT). */
export const MAX_STAMP = 2 ** 29 - 1

/** What one copy said about itself (meta `mg <key> c f t`, with `v` when its value was asked for). */
export interface Copy {
  stamp: number
  tombstone: boolean
  /** The value's own flags (bits 0-1). */
  own: number
  /** The copy's cas on its own server: what a compare-and-swap of this copy names. */
  cas: string
  /** Seconds left, -1 = never expires. */
  ttl: number
  value?: string | Buffer
}

/** One server's answer about one key: a copy, none, or no answer. */
export type Look = { state: 'hit'; copy: Copy } | { state: 'miss' } | { state: 'failed'; error: unknown }

/** The flags a copy is written with. */
export function flagsOf(stamp: number, own: number, tombstone = false): number {
  return stamp * 2 ** STAMP_SHIFT + (tombstone ? TOMBSTONE_BIT : 0) + (own & OWN_BITS)
}

/** A copy as `mg` returned it; flags absent count as 0 (stamp 0: a write by another client loses to every stamped copy). */
export function copyOf(item: { cas?: string; flags?: number; ttl?: number; value?: string | Buffer }): Copy {
  const flags = item.flags ?? 0
  const copy: Copy = {
    stamp: Math.floor(flags / 2 ** STAMP_SHIFT),
    tombstone: (flags & TOMBSTONE_BIT) !== 0,
    own: flags & OWN_BITS,
    cas: item.cas ?? '',
    ttl: item.ttl ?? -1,
  }
  if (item.value !== undefined) copy.value = item.value
  return copy
}

/**
 * The index of the newest copy in `looks`, or -1 when none holds one. The highest stamp wins; at
 * equal stamps a tombstone wins (a destroy is final), then the copy nearer the key's own server.
 */
export function newest(looks: readonly Look[]): number {
  let best = -1
  let bestCopy: Copy | undefined
  for (const [i, look] of looks.entries()) {
    if (look.state !== 'hit') continue
    const c = look.copy
    if (bestCopy === undefined || c.stamp > bestCopy.stamp || (c.stamp === bestCopy.stamp && c.tombstone && !bestCopy.tombstone)) {
      best = i
      bestCopy = c
    }
  }
  return best
}

/**
 * The version a read hands out: the stamp read, the index of the copy that was the compare-and-swap
 * authority then (the first that answered), and each copy's cas ('' where it had none, UNKNOWN_CAS
 * where it was not asked). Opaque to the
 * session, which only gives it back to a `cas` write.
 */
export interface Version {
  stamp: number
  authority: number
  cas: string[]
}

/** A copy's cas in a version when the read did not ask that copy (it trusted the key's own server alone). */
export const UNKNOWN_CAS = '?'

const VERSION = /^r(\d+)\.(\d+)\.([\d,?]*)$/

export function formatVersion(v: Version): string {
  return `r${v.stamp}.${v.authority}.${v.cas.join(',')}`
}

/** The version in `text`, or undefined when it is not one of ours (such a cas write answers `exists`). */
export function parseVersion(text: string | undefined, copies: number): Version | undefined {
  const m = VERSION.exec(text ?? '')
  if (m === null) return undefined
  const cas = m[3]!.split(',')
  const authority = Number(m[2])
  if (cas.length !== copies || authority >= copies) return undefined
  return { stamp: Number(m[1]), authority, cas }
}

type HashRing = { range(key: string, size: number, unique: boolean): string[] }
const HashRingClass = createRequire(import.meta.url)('hashring') as new (
  servers: readonly string[],
  algorithm: string,
  options: Record<string, unknown>,
) => HashRing

/**
 * The servers of a key's copies, its own server first: the next `replicas` distinct servers
 * clockwise on the same ketama ring the wire client uses, or with crc32 buckets, the servers Perl's
 * Cache::Memcached would rehash the key to were the ones before down (then the list's order).
 */
/** How many keys' server lists {@link copyServers} remembers. */
const KNOWN_KEYS = 10_000

export function copyServers(servers: readonly string[], replicas: number, crc32?: Crc32Buckets): (key: string) => string[] {
  if (crc32 === undefined) {
    const ring = new HashRingClass(servers, 'md5', { compatibility: 'ketama', 'default port': 11211 })
    // a key's servers never change (the ring is fixed): remembered for the keys used last, so that
    // a request does not hash its key (md5) again for each call
    const known = new Map<string, string[]>()
    return (key) => {
      let found = known.get(key)
      if (found === undefined) {
        found = ring.range(key, replicas + 1, true) as string[]
        known.set(key, found)
        if (known.size > KNOWN_KEYS) known.delete(known.keys().next().value!)
      }
      return found
    }
  }
  return (key) => {
    const chosen: string[] = []
    while (chosen.length <= replicas) {
      const next = crc32.pick(key, (s) => chosen.includes(s)) ?? servers.find((s) => !chosen.includes(s))!
      chosen.push(next)
    }
    return chosen
  }
}
