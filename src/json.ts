/**
 * The default serializer, `json`: JSON text any other language reads, every non-ASCII character
 * escaped (Perl's readers decode memcached's bytes as Latin-1), and the types that tell at compile
 * time whether JSON keeps a session's data.
 */
import { noteAscii } from './ascii.js'
import { refuse, walker, type Serializer } from './serializers.js'

const jsonWalk = walker(
  'json',
  (value, path) => {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return value
      case 'number':
        if (!Number.isFinite(value)) refuse('json', path, value, '; use the rich serializer to keep it')
        return value === 0 ? 0 : value // JSON writes -0 as 0
      case 'undefined':
        // in an array (objects drop undefined before we get here): JSON would write null
        refuse('json', path, value, ' (JSON writes it as null); use null or the rich serializer')
        break
      default:
        if (value === null) return null
    }
    return refuse('json', path, value, typeof value === 'bigint' ? '; use the rich serializer to keep it' : '')
  },
  (value, path) =>
    refuse(
      'json',
      path,
      value,
      '; store plain objects, arrays, strings, finite numbers, booleans, null (or use the rich serializer for Date, Map, Set, BigInt)',
    ),
)

const NON_ASCII_ALL = /[\u0080-\uffff]/g
const escapeUnit = (c: string) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')

/**
 * JSON text with every non-ASCII character written as a `\uXXXX` escape (a character past U+FFFF
 * as its surrogate pair, as JSON says), so the text is ASCII: Perl's JSON readers
 * (Apache::Session::Serialize::JSON, Lemonldap::NG) decode memcached's bytes as Latin-1 and would
 * garble raw UTF-8. Any JSON parser reads the escapes back.
 */
export function asciiOnly(text: string): string {
  // JSON.stringify gives undefined for undefined, a function or a symbol: passed through
  // UTF-8 takes one byte per character exactly when every character is ASCII: a native count,
  // 4-5x faster than a regular expression over the text (this runs on every save)
  if (text === undefined) return text
  return Buffer.byteLength(text) !== text.length ? text.replace(NON_ASCII_ALL, escapeUnit) : noteAscii(text)
}

/** Marks the `json` serializer's type, so that tieSession's types refuse data JSON cannot keep. */
export const JSON_ONLY = Symbol('tied-session json only')

/** The type of {@link json}: a serializer that keeps only what JSON keeps. */
export interface JsonSerializer extends Serializer {
  readonly [JSON_ONLY]: true
}

/** Leaves JSON keeps as they are. */
type JsonLeaf = string | number | boolean | null | undefined

/**
 * `T` with every part JSON cannot keep (a Date, Map, Set, bigint, symbol or function) turned into
 * `never`: `[T] extends [JsonSafe<T>]` holds exactly when JSON keeps all of `T`.
 */
export type JsonSafe<T> = unknown extends T
  ? T
  : T extends JsonLeaf
    ? T
    : // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- any function
      T extends Function | Date | Map<unknown, unknown> | Set<unknown> | bigint | symbol
      ? never
      : { [K in keyof T]: JsonSafe<T[K]> }

/**
 * The default serializer: JSON text, readable by any other language. Keeps plain objects,
 * arrays, strings, finite numbers, booleans and null; refuses anything JSON would change.
 */
export const json: JsonSerializer = {
  [JSON_ONLY]: true,
  name: 'json',
  stringify: (value) => asciiOnly(JSON.stringify(value)),
  parse: (text) => JSON.parse(text),
  copy: jsonWalk.copy,
  adopt: jsonWalk.adopt,
}
