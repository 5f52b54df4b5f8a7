/**
 * Perl Storable's `nfreeze` for session data: the bytes Perl writes for the same hash, so that
 * Perl's `thaw` (Cache::Memcached, Apache::Session::Serialize::Storable) reads what Node wrote.
 * Format facts from Storable.xs 3.26; test vectors in ../shared/storable-fixtures/.
 */

/** Perl's string form of a number that is not a 32-bit integer: `%.15g`, as Perl prints an NV. */
export function perlNumber(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`${n} has no Perl Storable form`)
  // an integer is Perl's IV or UV (64-bit), printed in full (as JSON gives it to Perl); other numbers are NVs
  if (Number.isInteger(n) && n >= -(2 ** 63) && n < 2 ** 64) return String(n === 0 ? 0 : n)
  // JS's shortest form is %.15g's when it has at most 15 significant digits and no exponent
  const shortest = String(n)
  if (Math.abs(n) >= 1e-4 && Math.abs(n) < 1e15 && shortest.replace(/^-|\./g, '').replace(/^0+/, '').length <= 15) return shortest
  return (n < 0 ? '-' : '') + g15(Math.abs(n))
}

/**
 * C's `%.15g` of a positive finite number, rounded from its exact binary value with ties to even,
 * as glibc's printf (JS's toPrecision rounds ties up). `toPrecision(100)` holds every digit of the
 * value wherever a tie can happen (a tie needs an exact expansion of 16 significant digits).
 */
function g15(x: number): string {
  const p = x.toPrecision(100)
  let digits: string
  let exp: number
  const e = /^(\d)\.(\d*)e([+-]\d+)$/.exec(p)
  if (e) {
    digits = e[1]! + e[2]!
    exp = Number(e[3])
  } else {
    const [int, frac = ''] = p.split('.') as [string, string?]
    const all = int + frac
    const lead = /^0*/.exec(all)![0].length
    digits = all.slice(lead)
    exp = int.length - 1 - lead
  }
  let head = digits.slice(0, 15)
  const rest = digits.slice(15)
  const up = rest[0]! > '5' || (rest[0] === '5' && (/[1-9]/.test(rest.slice(1)) || Number(head[14]) % 2 === 1))
  if (up) {
    const bumped = String(BigInt(head) + 1n)
    if (bumped.length > 15) {
      head = bumped.slice(0, 15)
      exp++
    } else head = bumped
  }
  const trim = (s: string) => s.replace(/0+$/, '')
  if (exp < -4 || exp >= 15) {
    const frac = trim(head.slice(1))
    return `${head[0]}${frac ? '.' + frac : ''}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`
  }
  if (exp < 0) return `0.${'0'.repeat(-exp - 1)}${trim(head)}`
  const frac = trim(head.slice(exp + 1))
  return head.slice(0, exp + 1) + (frac ? '.' + frac : '')
}

const BOOLEAN_CLASS = Buffer.from('JSON::PP::Boolean', 'latin1')
/** Characters that need no UTF-8 flag: ASCII. */
const NON_ASCII = /[\u0080-\uffff]/
/** Characters past Latin-1: a hash key with one is stored as UTF-8 (key flag 0x01). */
const WIDE = /[\u0100-\uffff]/

/** A growing byte buffer, reused from one call to the next (nfreeze is synchronous). */
class Writer {
  buf = Buffer.allocUnsafe(4096)
  at = 0
  /** Whether JSON::PP::Boolean was named already (later booleans use its index, SX_IX_BLESS). */
  namedBoolean = false

  reset(): void {
    this.at = 0
    this.namedBoolean = false
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n))
    this.buf.copy(next, 0, 0, this.at)
    this.buf = next
  }

  u8(n: number): void {
    this.room(1)
    this.buf[this.at++] = n
  }

  u32(n: number): void {
    this.room(4)
    this.buf.writeUInt32BE(n, this.at)
    this.at += 4
  }

  bytes(b: Buffer): void {
    this.room(b.length)
    b.copy(this.buf, this.at)
    this.at += b.length
  }

  /** A string: SX_SCALAR/SX_LSCALAR for ASCII, SX_UTF8STR/SX_LUTF8STR (UTF-8 bytes, utf8 flag on) otherwise. */
  string(s: string): void {
    const utf8 = NON_ASCII.test(s)
    // written in place (no Buffer per string): ASCII is one byte per character
    const length = utf8 ? Buffer.byteLength(s, 'utf8') : s.length
    this.room(length + 5)
    if (length < 256) {
      this.buf[this.at++] = utf8 ? 0x17 : 0x0a
      this.buf[this.at++] = length
    } else {
      this.buf[this.at++] = utf8 ? 0x18 : 0x01
      this.buf.writeUInt32BE(length, this.at)
      this.at += 4
    }
    if (utf8) this.at += this.buf.write(s, this.at, length, 'utf8')
    else if (length <= 32)
      for (let i = 0; i < length; i++) this.buf[this.at++] = s.charCodeAt(i) // no native call for short ASCII
    else this.at += this.buf.write(s, this.at, length, 'latin1')
  }

  value(v: unknown): void {
    if (v === null || v === undefined) return this.u8(0x05) // SX_UNDEF
    switch (typeof v) {
      case 'string':
        return this.string(v)
      case 'number':
        // SX_BYTE (value + 128) for -128..127, SX_NETINT (i32) for 32-bit integers; Perl's nfreeze
        // writes every other number (larger integers, doubles) as its string
        if (Number.isInteger(v) && v >= -128 && v <= 127) {
          this.u8(0x08)
          return this.u8(v + 128)
        }
        if (Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff) {
          this.u8(0x09)
          this.room(4)
          this.buf.writeInt32BE(v, this.at)
          this.at += 4
          return
        }
        return this.string(perlNumber(v))
      case 'boolean':
        // JSON::PP::true/false, as Perl writes them: SX_OVERLOAD, the class (named once, then by
        // index 0), and the referent, an integer 1 or 0
        this.u8(0x14)
        if (this.namedBoolean) {
          this.u8(0x12)
          this.u8(0)
        } else {
          this.namedBoolean = true
          this.u8(0x11)
          this.u8(BOOLEAN_CLASS.length)
          this.bytes(BOOLEAN_CLASS)
        }
        this.u8(0x08)
        return this.u8(v ? 129 : 128)
      case 'object':
        this.u8(0x04) // SX_REF: a nested hash or array is a reference in Perl
        return this.container(v)
      default:
        throw new TypeError(`a ${typeof v} has no Perl Storable form`)
    }
  }

  container(v: object): void {
    if (Array.isArray(v)) {
      this.u8(0x02)
      this.u32(v.length)
      for (const item of v) this.value(item)
      return
    }
    const o = v as Record<string, unknown>
    const keys = Object.keys(o)
    let count = 0
    let flagged = false
    for (const k of keys) {
      if (o[k] === undefined) continue
      count++
      // a key that is not ASCII needs SX_FLAG_HASH and a flag per key: 0x01 UTF-8 bytes, 0x02
      // (WASUTF8) Latin-1 bytes of a key that was UTF-8, 0 plain, as Perl writes them
      if (!flagged && NON_ASCII.test(k)) flagged = true
    }
    this.u8(flagged ? 0x19 : 0x03)
    if (flagged) this.u8(0)
    this.u32(count)
    for (const k of keys) {
      const x = o[k]
      if (x === undefined) continue
      this.value(x)
      const wide = flagged && WIDE.test(k)
      if (flagged) this.u8(wide ? 0x01 : NON_ASCII.test(k) ? 0x02 : 0)
      const length = wide ? Buffer.byteLength(k, 'utf8') : k.length
      this.u32(length)
      this.room(length)
      if (wide) this.at += this.buf.write(k, this.at, length, 'utf8')
      else for (let i = 0; i < length; i++) this.buf[this.at++] = k.charCodeAt(i) // Latin-1: one byte per character
    }
  }
}

/**
 * The bytes of Perl's `nfreeze(\%value)` (or of an array): network order, Storable 2.11, as
 * Storable 3.x writes. Hashes, arrays, strings, numbers (32-bit integers as integers, others as
 * Perl's string of them), null (undef), booleans (JSON::PP::Boolean).
 */
export function nfreeze(value: object): Buffer {
  return Buffer.from(freeze(value))
}

/** {@link nfreeze}'s bytes as a Latin-1 string (one character per byte), without a copy in between. */
export function nfreezeLatin1(value: object): string {
  const bytes = freeze(value)
  return bytes.toString('latin1')
}

const shared = new Writer()

/** The bytes in the shared writer: valid until the next call. */
function freeze(value: object): Buffer {
  const w = shared
  w.reset()
  w.u8(0x05) // major 2 << 1 | network order
  w.u8(0x0b) // minor 11
  try {
    w.container(value)
  } catch (err) {
    w.buf = Buffer.allocUnsafe(4096) // an error mid-way: start clean
    throw err
  }
  return w.buf.subarray(0, w.at)
}
