/**
 * The `storable` serializer: Perl's Storable `nfreeze`/`thaw`, the form Apache::Session::Memorycached
 * (through Cache::Memcached, memcached flags 1) and Apache::Session::Serialize::Storable (flags 0)
 * keep sessions in. Its text is the Storable bytes, one character per byte.
 */
import { refuse, walker, type Serializer } from './serializers.js'
import { thaw } from './storable-read.js'
import { nfreezeLatin1, perlNumber } from './storable-write.js'

const storableWalk = walker(
  'storable',
  (value, path) => {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return value
      case 'number':
        if (!Number.isFinite(value)) refuse('storable', path, value, '')
        // nfreeze keeps 32-bit integers as integers and writes every other number as Perl's string of it
        return Number.isInteger(value) && value >= -0x80000000 && value <= 0x7fffffff ? value || 0 : perlNumber(value)
      case 'undefined':
        return null // an array slot: Perl's undef, read back as null
      default:
        if (value === null) return null
    }
    return refuse('storable', path, value, '')
  },
  (value, path) => refuse('storable', path, value, '; store plain objects, arrays, strings, numbers, booleans, null'),
)

/**
 * Perl Storable (nfreeze) for sessions shared with Perl. Keeps plain objects, arrays, strings,
 * booleans (as JSON::PP booleans) and null (undef); a number stays a number when it is a 32-bit
 * integer and becomes Perl's string of it otherwise (`1.5` reads back as `"1.5"`, as in Perl).
 * Perl objects (blessed, STORABLE_freeze hooks) are refused on read with ERR_CORRUPT. New
 * sessions are written with memcached flags 1, as Cache::Memcached does.
 *
 * @example
 * const s = await tieSession(undefined, { servers, serializer: storable, distribution: 'crc32' })
 */
export const storable: Serializer = {
  name: 'storable',
  binary: true,
  flags: 1,
  // a single value (tied-session compares values by their text) is frozen as a one-item array
  stringify: (value) => nfreezeLatin1(typeof value === 'object' && value !== null ? value : [value]),
  parse: (text) => thaw(Buffer.from(text, 'latin1')),
  copy: storableWalk.copy,
  adopt: storableWalk.adopt,
}
