/**
 * Cache::Memcached's server choice (Perl, 1.30), for pools shared with Perl processes: the
 * `distribution: 'crc32'` option. Every Perl client of the pool and this store then agree on
 * the server of every key, also while a server is down (the rehash below).
 */
import { crc32 } from 'node:zlib'

/**
 * Cache::Memcached's `_hashfunc`: `(crc32($key) >> 16) & 0x7fff`. String::CRC32 is the zlib
 * CRC-32 of the key's bytes (keys here are ASCII; a wide Perl key would be its UTF-8 bytes).
 */
export function perlHash(key: string): number {
  return (crc32(key) >>> 16) & 0x7fff
}

/** A server with its weight, as Cache::Memcached's `servers` takes it: `[host, weight]`. */
export type WeightedServer = readonly [server: string, weight: number]

/** Cache::Memcached gives up after this many tries (`while ($tries++ < 20)`). */
const TRIES = 20

/**
 * The bucket list (`init_buckets`): each server once, or `weight` times in a row for
 * `[server, weight]`, in the order given. A key's bucket is `hv % buckets.length`.
 */
export class Crc32Buckets {
  readonly buckets: readonly string[]

  constructor(servers: readonly (string | WeightedServer)[]) {
    const buckets: string[] = []
    for (const s of servers) {
      if (typeof s === 'string') buckets.push(s)
      else for (let i = 0; i < s[1]; i++) buckets.push(s[0])
    }
    this.buckets = buckets
  }

  /**
   * The server of `key` (`get_sock`): the bucket of its hash; when that server is down, the hash
   * grows by `_hashfunc($tries . $key)` for tries 1..19 ("stupid, but works", says its source),
   * until a server is up. Undefined when all 20 tries met a down server. One server: no hashing
   * (Cache::Memcached's `_single_sock`).
   */
  pick(key: string, down: (server: string) => boolean): string | undefined {
    if (this.buckets.length === 1) return this.buckets[0]
    let hv = perlHash(key)
    for (let tries = 1; tries <= TRIES; tries++) {
      const server = this.buckets[hv % this.buckets.length]!
      if (!down(server)) return server
      hv += perlHash(`${tries}${key}`)
    }
    return undefined
  }
}
