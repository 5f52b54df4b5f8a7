/**
 * Perl Storable's `thaw` for what sessions hold, from the bytes of `nfreeze` (network order), as
 * Cache::Memcached (so Apache::Session::Memorycached) and Apache::Session::Serialize::Storable
 * write them. Format facts from Storable.xs 3.26; test vectors in ../shared/storable-fixtures/.
 */
import { SessionError } from './errors.js'
import { put } from './serializers.js'

/** Classes whose blessed scalar is a boolean (JSON::PP's, and the JSON::XS / Types::Serialiser one). */
export const BOOLEAN_CLASSES = new Set(['JSON::PP::Boolean', 'JSON::XS::Boolean', 'Types::Serialiser::Boolean', 'boolean'])

/** True when `bytes` start like `nfreeze` output: 0x05 (major 2, network order), then a minor version up to 11. */
export function isStorable(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0x05 && bytes[1]! <= 0x0b
}

const refused = (what: string) =>
  new SessionError('ERR_CORRUPT', `the Storable data holds ${what}, which only Perl can rebuild; change the Perl side to store plain data`)

/** A value being built: a blessed one remembers its class until its referent is read. */
class Reader {
  private at = 0
  /** Every item read takes the next tag; SX_OBJECT refers back to one (shared references). */
  private readonly seen: unknown[] = []
  private readonly classes: string[] = []

  constructor(private readonly bytes: Buffer) {}

  read(): unknown {
    const major = this.u8()
    // bit 0 of the first byte: network order, the only form nfreeze writes; native freeze is machine-specific
    if ((major & 1) === 0) throw new SyntaxError('Storable data in native byte order (freeze, not nfreeze) cannot be read')
    this.u8() // minor version
    const value = this.item()
    if (this.at !== this.bytes.length) throw new SyntaxError(`${this.bytes.length - this.at} bytes left after the Storable data`)
    return value
  }

  private u8(): number {
    if (this.at >= this.bytes.length) throw new SyntaxError('the Storable data ends too soon')
    return this.bytes[this.at++]!
  }

  private u32(): number {
    if (this.at + 4 > this.bytes.length) throw new SyntaxError('the Storable data ends too soon')
    const n = this.bytes.readUInt32BE(this.at)
    this.at += 4
    return n
  }

  private text(length: number, encoding: 'latin1' | 'utf8'): string {
    if (this.at + length > this.bytes.length) throw new SyntaxError('the Storable data ends too soon')
    const { bytes, at } = this
    this.at += length
    if (length <= 32) {
      // short strings (most of a session) without a native call: Latin-1, or UTF-8 that is ASCII
      let s = ''
      for (let i = at; i < at + length; i++) {
        const c = bytes[i]!
        if (c >= 0x80 && encoding === 'utf8') return bytes.toString('utf8', at, at + length)
        s += String.fromCharCode(c)
      }
      return s
    }
    return bytes.toString(encoding, at, at + length)
  }

  /** Registers `value` under the next tag, returns it. */
  private tag<T>(value: T): T {
    this.seen.push(value)
    return value
  }

  private item(): unknown {
    const op = this.u8()
    switch (op) {
      case 0x00: {
        // SX_OBJECT: a tag already read (the same referent twice)
        const tag = this.u32()
        if (tag >= this.seen.length) throw new SyntaxError(`Storable SX_OBJECT refers to tag ${tag}, not read yet`)
        return this.seen[tag]
      }
      case 0x01: // SX_LSCALAR: u32 length, bytes; without the utf8 flag each byte is one character (Latin-1)
        return this.tag(this.text(this.u32(), 'latin1'))
      case 0x0a: // SX_SCALAR: u8 length, Latin-1 bytes
        return this.tag(this.text(this.u8(), 'latin1'))
      case 0x17: // SX_UTF8STR: u8 length, UTF-8 bytes
        return this.tag(this.text(this.u8(), 'utf8'))
      case 0x18: // SX_LUTF8STR: u32 length, UTF-8 bytes
        return this.tag(this.text(this.u32(), 'utf8'))
      case 0x02: {
        // SX_ARRAY: u32 count, items
        const count = this.u32()
        const out = this.tag(new Array<unknown>())
        for (let i = 0; i < count; i++) out.push(this.item())
        return out
      }
      case 0x03:
        return this.hash(false)
      case 0x19:
        return this.hash(true)
      case 0x04: // SX_REF
      case 0x14: // SX_OVERLOAD: a reference to a blessed referent of an overloaded class (JSON::PP's booleans)
        return this.reference()
      case 0x05: // SX_UNDEF
      case 0x0e: // SX_SV_UNDEF (an array slot never set)
        return this.tag(null)
      case 0x08: // SX_BYTE: value + 128
        return this.tag(this.u8() - 128)
      case 0x09: {
        // SX_NETINT: i32 big-endian. Integers past 32 bits are written as strings, doubles too.
        const n = this.u32()
        return this.tag(n | 0)
      }
      case 0x0f: // SX_SV_YES
      case 0x1d: // SX_BOOLEAN_TRUE (Storable 3.32, perl 5.36 booleans)
        return this.tag(true)
      case 0x10: // SX_SV_NO
      case 0x1e: // SX_BOOLEAN_FALSE
        return this.tag(false)
      case 0x11: // SX_BLESS: u8 length (high bit: u32 follows), class name, then the object
      case 0x12: {
        // SX_IX_BLESS: u8 index (high bit: u32 follows) of a class already named
        let n = this.u8()
        if (n & 0x80) n = this.u32()
        const name = op === 0x11 ? this.text(n, 'latin1') : this.classes[n]
        if (name === undefined) throw new SyntaxError(`Storable SX_IX_BLESS names class ${n}, not read yet`)
        if (op === 0x11) this.classes.push(name)
        const value = this.item()
        if (BOOLEAN_CLASSES.has(name) && (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean')) {
          return Boolean(Number(value))
        }
        throw refused(`an object of class ${name}`)
      }
      case 0x13:
        throw refused(`an object of class ${this.hookClass()} with a STORABLE_freeze hook (SX_HOOK)`)
      case 0x06:
      case 0x07:
        throw new SyntaxError('Storable native integers or doubles (freeze, not nfreeze) cannot be read')
      default:
        throw refused(`Storable item type 0x${op.toString(16).padStart(2, '0')} (code, tied, regexp or another Perl-only value)`)
    }
  }

  /** SX_HASH (value, u32 key length, key) and SX_FLAG_HASH (u8 hash flags; value, u8 key flags, u32 key length, key). */
  private hash(flagged: boolean): Record<string, unknown> {
    if (flagged) this.u8() // hash flags: restricted hashes, nothing a session keeps
    const count = this.u32()
    const out = this.tag({} as Record<string, unknown>)
    for (let i = 0; i < count; i++) {
      const value = this.item()
      const keyFlags = flagged ? this.u8() : 0
      // key flag 0x01 (SHV_K_UTF8): UTF-8 bytes; 0x02 (WASUTF8) and 0: Latin-1; 0x08 (ISSV): restricted-hash key
      if (keyFlags & 0x08) throw refused('a restricted-hash key (SHV_K_ISSV)')
      const key = this.text(this.u32(), keyFlags & 0x01 ? 'utf8' : 'latin1')
      put(out, key, value)
    }
    return out
  }

  /**
   * A reference takes its tag before its referent. A reference to a hash or array is that object
   * in JS; to a blessed boolean, the boolean; a reference to a scalar reads as the scalar.
   */
  private reference(): unknown {
    const slot = this.seen.length
    this.seen.push(undefined)
    const value = this.item()
    this.seen[slot] = value
    return value
  }

  /** The class name of an SX_HOOK item, for the error (flags byte; class index or name). */
  private hookClass(): string {
    const flags = this.u8()
    // SHF_IDX_CLASSNAME 0x20: an index into the classes seen; SHF_LARGE_CLASSLEN 0x04: a u32 length
    if (flags & 0x20) return this.classes[flags & 0x04 ? this.u32() : this.u8()] ?? 'unknown'
    const length = flags & 0x04 ? this.u32() : this.u8()
    return this.text(length, 'latin1')
  }
}

/**
 * The value Perl's `thaw` gives for nfreeze `bytes`: hashes as plain objects, arrays, strings,
 * 32-bit integers as numbers (Perl stores larger integers and doubles as strings), undef as null,
 * JSON::PP booleans as booleans. Other blessed objects and SX_HOOK throw ERR_CORRUPT naming the
 * class; malformed bytes throw a SyntaxError.
 */
export function thaw(bytes: Buffer): unknown {
  return new Reader(bytes).read()
}
