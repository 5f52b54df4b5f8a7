/**
 * The form a session is kept in: which serializer, which memcached flags, gzipped or not. A
 * session is read in whatever form the Perl side wrote and written back in the same form, so the
 * Perl reader that wrote it keeps reading it; a new session takes the configured serializer's form.
 */
import { isUtf8 } from 'node:buffer'
import { gunzipSync, gzipSync } from 'node:zlib'
import { SessionError } from './errors.js'
import { json } from './json.js'
import type { Serializer } from './serializers.js'
import { storable } from './storable.js'
import { isStorable } from './storable-read.js'
import type { Entry, Value } from './stores/store.js'

/** Cache::Memcached's flag bits: 1 = the value is Storable (nfreeze of a reference), 2 = gzipped (memGzip). */
const F_STORABLE = 1
const F_COMPRESS = 2

/** How a session is kept: its serializer, the flags it is written with, whether it is gzipped. */
export interface StoredForm {
  serializer: Serializer
  flags: number
  gzip: boolean
}

/** The form of a new session: the configured serializer's, with its flags, not gzipped. */
export function formFor(serializer: Serializer): StoredForm {
  return { serializer, flags: serializer.flags ?? 0, gzip: false }
}

/**
 * The form of a stored entry and its text (for a binary serializer: its bytes as Latin-1).
 * Flags 1 is Storable (Cache::Memcached), flags 2 gzip, 3 both; flags 0 is Storable when the bytes
 * start with nfreeze's magic 05 0b (Apache::Session::Serialize::Storable), else the configured
 * serializer's text (JSON when that serializer is binary). Text that is not valid UTF-8 is read as
 * Latin-1, as Perl's JSON readers read memcached's bytes.
 */
export function readForm(configured: Serializer, entry: Entry): { form: StoredForm; text: string } {
  const flags = entry.flags ?? 0
  let bytes: Value = entry.value
  const gzip = (flags & F_COMPRESS) !== 0
  if (gzip) {
    try {
      bytes = gunzipSync(typeof bytes === 'string' ? Buffer.from(bytes) : bytes)
    } catch (cause) {
      throw new SessionError('ERR_CORRUPT', 'a value with memcached flag 2 (gzip) does not gunzip; destroy it', { cause })
    }
  }
  const storableBytes = (flags & F_STORABLE) !== 0 || startsStorable(bytes)
  if (storableBytes) {
    const text = typeof bytes === 'string' ? Buffer.from(bytes).toString('latin1') : bytes.toString('latin1')
    const serializer = configured.binary ? configured : storable
    return { form: { serializer, flags, gzip }, text }
  }
  const serializer = configured.binary ? json : configured
  const text = typeof bytes === 'string' ? bytes : bytes.toString(isUtf8(bytes) ? 'utf8' : 'latin1')
  return { form: { serializer, flags, gzip }, text }
}

/** True when a flags-0 value starts with Storable's network-order magic (never the start of JSON text). */
function startsStorable(value: Value): boolean {
  if (typeof value === 'string') return value.charCodeAt(0) === 0x05 && value.charCodeAt(1) <= 0x0b && value.length >= 3
  return isStorable(value)
}

/** The value and flags to store `text` in `form`. */
export function toStored(form: StoredForm, text: string): { value: Value; flags: number } {
  let value: Value = form.serializer.binary ? Buffer.from(text, 'latin1') : text
  if (form.gzip) value = gzipSync(value)
  return { value, flags: form.flags }
}
