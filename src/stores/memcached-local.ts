/**
 * The `local` servers of a memcached store: a write-through cache of the principal whose copies
 * are checked against the principal before they are served, so that logout is final on every host.
 *
 * A local copy is the principal's value byte for byte (so a Perl reader of the local server reads
 * it, as Memorycached's hosts do), and its memcached flags carry the principal's cas it was taken
 * at: the cas's low 30 bits above the two low bits, which stay the value's own (Perl's
 * Cache::Memcached reads only bit 0, Storable, and bit 1, compressed). A read serves a copy only
 * when the principal's current cas has the same low 30 bits and the same size (meta
 * `mg <key> c s`, which sends no value): a copy of another version would have to be a multiple of
 * 2^30 writes of that server away, and of the same size. The text protocol's `cas` does not say the
 * new cas, so write-through needs meta commands (memcached >= 1.6) on both sides; without them
 * every read goes to the principal.
 */
import { isUtf8 } from 'node:buffer'
import type { Entry } from './store.js'
import type { Pool } from './memcached-wire.js'

const CAS_TAG_BITS = 0x3fffffffn
/** The 30-bit tag of a cas unique (a decimal 64-bit number). */
const tagOf = (cas: string): number => Number(BigInt(cas) & CAS_TAG_BITS)
/** How many keys' own last writes a trusting cache remembers. */
const OWN_MEMORY = 10_000

/** What the local cache needs from its store. */
export interface LocalCacheOptions {
  principal: Pool
  local: Pool
  /** Serve copies unchecked (Memorycached's way); this process still reads its own writes. */
  trust: boolean
  /** Reads `key` from the principal with its version (`gets`), or undefined. */
  readPrincipal(key: string): Promise<Entry | undefined>
  /** Seconds a copy of `key` may live now (0: none may be made). */
  copyTtl(key: string): number
}

/** A copy as read from local. */
interface Copy {
  value: string | Buffer
  /** The value's own flags (bits 0-1). */
  flags: number
  size: number
  tag: number
}

/** The local side of a memcached store; every local failure costs speed, never an error. */
export class LocalCache {
  /** This process's last acknowledged write of each key (its cas tag), for trusting reads; oldest first. */
  private readonly own = new Map<string, number>()

  constructor(private readonly o: LocalCacheOptions) {}

  /** True when `key` can have a checked copy: both sides speak meta commands. A side that cannot tell (down) means no. */
  async usable(key: string): Promise<boolean> {
    if (this.o.local.injected) return false
    try {
      return (await this.o.principal.supportsMeta(key)) && (await this.o.local.supportsMeta(key))
    } catch {
      return false
    }
  }

  /**
   * Reads `key` through local: a current copy, else the principal (copied into local). `touch`
   * (an exptime) also sets the principal's TTL, in the command that checks the copy.
   */
  async get(key: string, touch?: number): Promise<Entry | undefined> {
    if (this.o.trust) {
      const [copy] = await Promise.all([this.copy(key), touch === undefined ? undefined : this.o.principal.touch(key, touch)])
      // a copy older than this process's own last write is not served: a process reads its own
      // writes. Unchecked, a copy has no version: its save reads the principal first.
      const own = this.own.get(key)
      if (copy !== undefined && (own === undefined || own === copy.tag)) return withFlags({ value: copy.value }, copy.flags)
      return this.fill(key)
    }
    // the copy and the principal's current cas and size, asked together: one round trip each, in parallel
    const [copy, head] = await Promise.all([
      this.copy(key),
      this.o.principal.metaGet(key, { cas: true, size: true, ...(touch === undefined ? {} : { touch }) }),
    ])
    if (head?.cas === undefined) {
      // gone on the principal (destroyed, expired): a copy here must never be served
      if (copy !== undefined) await this.drop(key)
      return undefined
    }
    if (copy !== undefined && copy.tag === tagOf(head.cas) && copy.size === head.size)
      return withFlags({ value: copy.value, version: head.cas }, copy.flags)
    return this.fill(key)
  }

  /**
   * Write-through: puts `value`, the principal's version `cas`, into local. `flags` are the
   * value's own (Perl's bit 0 Storable, bit 1 gzip); only bits 0-1 can be kept, so a value with
   * other flag bits is not copied (the local copy of it is dropped).
   */
  async put(key: string, value: string | Buffer, cas: string, flags = 0): Promise<void> {
    const tag = tagOf(cas)
    if (this.o.trust) {
      this.own.delete(key)
      this.own.set(key, tag)
      if (this.own.size > OWN_MEMORY) this.own.delete(this.own.keys().next().value!)
    }
    const ttl = this.o.copyTtl(key)
    if (ttl <= 0 || (flags & ~3) !== 0) return this.drop(key)
    // flags are unsigned 32-bit: the tag above the value's own two low bits, which Perl's
    // Cache::Memcached reads (it ignores the others), so a Perl reader of local reads the copy
    // A failed copy is harmless by construction: a checked read never serves an older copy (its cas
    // tag differs), and a trusting one skips copies older than this process's own last write.
    await this.o.local.metaSet(key, value, { mode: 'set', ttl, flags: tag * 4 + flags }).catch(() => undefined)
  }

  /** Drops local's copy of `key`. */
  async drop(key: string): Promise<void> {
    this.own.delete(key)
    // A copy left behind is never served by a checked read (the principal no longer has its cas);
    // with trustLocal it may be, for at most localTtl: the bound that option documents.
    await this.o.local.delete(key).catch(() => undefined)
  }

  /** The copy of `key` in local, or undefined (none, not one of ours, or local failed). */
  private async copy(key: string): Promise<Copy | undefined> {
    try {
      const item = await this.o.local.get(key)
      if (item === undefined) return undefined
      // bits 0-1 are the value's own (Perl's), the rest the tag; a value Perl wrote to local itself has tag 0
      const flags = item.flags & 3
      // the wire client keeps a flagged value as bytes; with own flags 0 it is text again when it is UTF-8
      const value = flags === 0 && typeof item.value !== 'string' && isUtf8(item.value) ? item.value.toString('utf8') : item.value
      return { value, flags, size: Buffer.byteLength(item.value), tag: item.flags >>> 2 }
    } catch {
      return undefined
    }
  }

  /** Reads the principal (with its version) and copies what it read into local. */
  private async fill(key: string): Promise<Entry | undefined> {
    const entry = await this.o.readPrincipal(key)
    if (entry?.version !== undefined) await this.put(key, entry.value, entry.version, entry.flags)
    return entry
  }
}

/** `entry` with `flags` when they are not 0. */
function withFlags(entry: Entry, flags: number): Entry {
  if (flags !== 0) entry.flags = flags
  return entry
}
